/**
 * Lazy pull end to end, with everything real: a debootstrap-based two-layer image pushed to
 * `ferry registry`, converted by `ferry accel` (registry webhook → accel → `<tag>-nydus`), pulled with `ferry pull` into a private
 * containerd through the ferry snapshotter (in-process daemon), and run with
 * `ctr run --snapshotter ferry`. The registry's byte counter shows how little of the image was
 * read. The ordinary OCI image runs through the same snapshotter (overlay fallback). Two
 * containers of the image share one lazy mount and do not see each other's writes.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile, chmod } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { requirePrereqs } from '../support/prereq.js';
import {
  buildOciImage,
  debootstrapRootfs,
  exec,
  pushImage,
  startContainerd,
  whiteout,
  type Containerd,
} from '../../src/bench/env/index.js';
import { startRegistry, type RegistryHandle } from '../../src/registry/index.js';
import { metricValue, createLogger } from '../../src/observe/index.js';
import { parseSnapshotterConfig } from '../../src/config/snapshotter.js';
import { startSnapshotter, type SnapshotterHandle } from '../../src/snapshotter/index.js';
import { Daemon } from '../../src/daemon/index.js';
import { ferry, startAccelFor } from './snapshotter-support.js';
import type { AccelHandle } from '../../src/accel/index.js';
import { RegistryClient, parseReference, staticCredentials } from '../../src/remote/index.js';
import { parseImageManifest } from '../../src/oci/index.js';

const PW = 'pw-lazy-e2e';
let dir: string;
let reg: RegistryHandle;
let accel: AccelHandle;
let snap: SnapshotterHandle;
let cd: Containerd;
let ociRef: string;
let nydusRef: string;
let nydusBlobBytes = 0;
let nydusLayers: string[] = [];
let nydusConfig = '';

const served = (): Promise<number> => metricValue(reg.metrics, 'ferry_registry_blob_bytes_served_total');

before(async () => {
  requirePrereqs({ root: true, commands: ['containerd', 'ctr', 'runc', 'skopeo', 'debootstrap', 'fusermount3'], devices: ['/dev/fuse'] });
  dir = await mkdtemp(join(tmpdir(), 'ferry-lazy-'));
  reg = await startRegistry({
    listen: '127.0.0.1:0',
    dataDir: join(dir, 'reg'),
    adminPassword: PW,
    config: { webhook: { settleDelay: 200, pollInterval: 100 } },
  });
  accel = await startAccelFor(reg, dir, PW);
  const base = await debootstrapRootfs({});
  const app = join(dir, 'app');
  await mkdir(join(app, 'srv/app'), { recursive: true });
  await writeFile(join(app, 'srv/app/message.txt'), 'hello from a lazily loaded layer\n');
  await writeFile(join(app, 'srv/app/run.sh'), '#!/bin/bash\necho "script ran in bash $BASH_VERSINFO"\n');
  await chmod(join(app, 'srv/app/run.sh'), 0o755);
  await mkdir(join(app, 'etc'), { recursive: true });
  await whiteout(app, 'etc/motd');
  const img = await buildOciImage({ layers: [base, app], outDir: join(dir, 'oci'), config: { Cmd: ['/srv/app/run.sh'] } });
  ociRef = `${reg.host}/library/deb:v1`;
  nydusRef = `${reg.host}/library/deb:v1-nydus`;
  await pushImage(img.layoutDir, ociRef, { creds: `admin:${PW}` });
  // the push fires PUSH_ARTIFACT; ferry accel converts and pushes <tag>-nydus
  const client = new RegistryClient({ credentials: () => ({ username: 'admin', password: PW }) });
  const nref = parseReference(nydusRef);
  let found: unknown;
  for (let i = 0; i < 600 && !found; i++) {
    found = await client.headManifest(nref).catch(() => undefined);
    if (!found) await new Promise((r) => setTimeout(r, 200));
  }
  assert.ok(found, `ferry accel did not produce ${nydusRef} within 120 s`);
  const man = parseImageManifest((await client.getManifest(nref)).body);
  assert.equal(man.layers.length, 3);
  nydusBlobBytes = man.layers.reduce((n, l) => n + l.size, 0);
  nydusLayers = man.layers.map((l) => l.digest);
  nydusConfig = man.config.digest;

  const log = createLogger({ name: 'lazy-e2e', level: process.env.FERRY_TEST_LOG ?? 'silent' });
  const config = parseSnapshotterConfig({ address: join(dir, 'snap.sock'), root: join(dir, 'snaproot') });
  snap = await startSnapshotter({
    config,
    log,
    lazyFs: new Daemon({ log, dataDir: join(dir, 'daemon'), config: { amplify_io: config.daemon.amplifyIo } }),
  });
  cd = await startContainerd({ dir: join(dir, 'cd'), snapshotters: { ferry: snap.address } });
});

after(async () => {
  await cd?.stop();
  await snap?.close();
  await accel?.close();
  await reg?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

test('ferry pull of the Nydus image downloads no layer; ctr run reads a file and runs binaries; small fraction fetched', async () => {
  const before0 = await served();
  // through the snapshotter's pull API: the pull runs in the snapshotter, which mounts early
  const pull = await ferry([
    'pull',
    '--address',
    cd.address,
    '--namespace',
    cd.namespace,
    '--plain-http',
    '--json',
    '--snapshotter-api',
    snap.apiAddress,
    nydusRef,
  ]);
  assert.equal(pull.code, 0, pull.stderr);
  const res = JSON.parse(pull.stdout) as { layers: Array<{ how: string }> };
  assert.deepEqual(
    res.layers.map((l) => l.how),
    ['remote', 'remote', 'remote'],
  ); // 2 blob layers + bootstrap
  // containerd sees the committed remote snapshots
  const sn = await cd.ctr(['snapshots', '--snapshotter', 'ferry', 'ls']);
  assert.equal(sn.stdout.trim().split('\n').length, 4, sn.stdout);

  const run = await cd.ctr([
    'run',
    '--rm',
    '--snapshotter',
    'ferry',
    nydusRef,
    'lazy-1',
    '/bin/bash',
    '-c',
    // biome-ignore lint/suspicious/noTemplateCurlyInString: dpkg-query's own ${Package} format, not a template
    "cat /srv/app/message.txt; /srv/app/run.sh; test -e /etc/motd && echo LEAK || echo whiteout-ok; dpkg-query -W -f '${Package}\\n' dpkg",
  ]);
  assert.equal(run.code, 0, `${run.stdout}\n${run.stderr}`);
  assert.equal(run.stdout, 'hello from a lazily loaded layer\nscript ran in bash 5\nwhiteout-ok\ndpkg\n');
  const fetched = (await served()) - before0;
  const fraction = fetched / nydusBlobBytes;
  process.stdout.write(`# lazy run: registry served ${fetched} of ${nydusBlobBytes} image bytes (${(fraction * 100).toFixed(1)} %)\n`);
  assert.ok(fraction < 0.2, `registry served ${(fraction * 100).toFixed(1)} % of the image`);
  assert.equal((await snap.lazy!.mounts()).length, 1);
});

test('ferry trace push shares what the run read; a fresh node prefetches it at mount and then needs no registry request', async () => {
  const creds = ['--plain-http', '--user', `admin:${PW}`];
  const notNydus = await ferry(['trace', 'push', ...creds, '--snapshotter-api', snap.apiAddress, ociRef]);
  assert.equal(notNydus.code, 1);
  assert.match(notNydus.stderr, /not a Nydus image/);
  const push = await ferry(['trace', 'push', ...creds, '--snapshotter-api', snap.apiAddress, nydusRef]);
  assert.equal(push.code, 0, push.stderr);
  const m = /pushed prefetch trace sha256:[0-9a-f]{64} \((\d+) chunks of (\d+) blobs\)/.exec(push.stdout);
  assert.ok(m, push.stdout);
  const chunks = Number(m[1]);
  assert.ok(chunks > 0);
  const got = await ferry(['trace', 'get', ...creds, nydusRef]);
  assert.equal(got.code, 0, got.stderr);
  const trace = JSON.parse(got.stdout) as { chunks: unknown[]; bootstrap: string };
  assert.equal(trace.chunks.length, chunks);
  assert.match(trace.bootstrap, /^sha256:[0-9a-f]{64}$/);

  // a second node: its own snapshotter, daemon and containerd, cold
  const log = createLogger({ name: 'lazy-e2e-2', level: process.env.FERRY_TEST_LOG ?? 'silent' });
  const config = parseSnapshotterConfig({ address: join(dir, 'snap2.sock'), root: join(dir, 'snaproot2') });
  const daemon2 = new Daemon({ log, dataDir: join(dir, 'daemon2'), config: { amplify_io: config.daemon.amplifyIo } });
  const snap2 = await startSnapshotter({ config, log, lazyFs: daemon2 });
  let cd2: Containerd | undefined;
  try {
    cd2 = await startContainerd({ dir: join(dir, 'cd2'), snapshotters: { ferry: snap2.address } });
    const pull = await ferry([
      'pull',
      '--address',
      cd2.address,
      '--namespace',
      cd2.namespace,
      '--plain-http',
      '--snapshotter-api',
      snap2.apiAddress,
      nydusRef,
    ]);
    assert.equal(pull.code, 0, pull.stderr);
    let mounts = await snap2.lazy!.mounts();
    for (let i = 0; i < 100 && mounts.length === 0; i++) {
      await new Promise((r) => setTimeout(r, 100));
      mounts = await snap2.lazy!.mounts();
    }
    assert.equal(mounts.length, 1);
    await daemon2.prefetchIdle(mounts[0]!.id);
    const pre = await daemon2.get(mounts[0]!.id);
    assert.ok((pre.stats?.prefetchedBytes ?? 0) > 0, 'the trace was prefetched at mount');
    const run = await cd2.ctr([
      'run',
      '--rm',
      '--snapshotter',
      'ferry',
      nydusRef,
      'lazy-t',
      '/bin/bash',
      '-c',
      // biome-ignore lint/suspicious/noTemplateCurlyInString: dpkg-query's own ${Package} format, not a template
      "cat /srv/app/message.txt; /srv/app/run.sh; test -e /etc/motd && echo LEAK || echo whiteout-ok; dpkg-query -W -f '${Package}\\n' dpkg",
    ]);
    assert.equal(run.code, 0, run.stderr);
    assert.equal(run.stdout, 'hello from a lazily loaded layer\nscript ran in bash 5\nwhiteout-ok\ndpkg\n');
    const post = await daemon2.get(mounts[0]!.id);
    process.stdout.write(
      `# trace: ${chunks} chunks, prefetched ${pre.stats?.prefetchedBytes} B; requests at mount ${pre.stats?.requests}, after the run ${post.stats?.requests}\n`,
    );
    assert.equal(post.stats?.requests, pre.stats?.requests, 'the run read only what the trace had prefetched');
  } finally {
    await cd2?.stop();
    await snap2.close();
  }
});

test('daemon.tracePush: a canary snapshotter pushes its trace for an image that has none', async () => {
  // the same image in another repository: no trace there yet (referrers are per repository)
  const ref2 = `${reg.host}/library/deb2:v1-nydus`;
  const pushed = await exec('skopeo', [
    'copy',
    '--src-tls-verify=false',
    '--dest-tls-verify=false',
    '--src-creds',
    `admin:${PW}`,
    '--dest-creds',
    `admin:${PW}`,
    `docker://${ociRef}`,
    `docker://${reg.host}/library/deb2:v1`,
  ]);
  assert.equal(pushed.code, 0, pushed.stderr);
  const creds = ['--plain-http', '--user', `admin:${PW}`];
  let ready = false;
  for (let i = 0; i < 600 && !ready; i++) {
    ready = (await ferry(['trace', 'get', ...creds, ref2])).stderr.includes('no prefetch trace attached');
    if (!ready) await new Promise((r) => setTimeout(r, 200));
  }
  assert.ok(ready, `ferry accel did not produce ${ref2} within 120 s`);
  const log = createLogger({ name: 'lazy-e2e-3', level: process.env.FERRY_TEST_LOG ?? 'silent' });
  const config = parseSnapshotterConfig({
    address: join(dir, 'snap3.sock'),
    root: join(dir, 'snaproot3'),
    daemon: { tracePush: true, tracePushAfter: '500ms' },
  });
  const snap3 = await startSnapshotter({
    config,
    log,
    lazyFs: new Daemon({ log, dataDir: join(dir, 'daemon3') }),
    credentialSources: [staticCredentials({ username: 'admin', password: PW })],
  });
  let cd3: Containerd | undefined;
  try {
    cd3 = await startContainerd({ dir: join(dir, 'cd3'), snapshotters: { ferry: snap3.address } });
    const pull = await ferry([
      'pull',
      '--address',
      cd3.address,
      '--namespace',
      cd3.namespace,
      '--plain-http',
      '--snapshotter-api',
      snap3.apiAddress,
      ref2,
    ]);
    assert.equal(pull.code, 0, pull.stderr);
    const run = await cd3.ctr(['run', '--rm', '--snapshotter', 'ferry', ref2, 'lazy-p', '/bin/cat', '/srv/app/message.txt']);
    assert.equal(run.stdout, 'hello from a lazily loaded layer\n', run.stderr);
    let got: { code: number; stdout: string; stderr: string } | undefined;
    for (let i = 0; i < 50; i++) {
      got = await ferry(['trace', 'get', ...creds, ref2]);
      if (got.code === 0) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    assert.equal(got!.code, 0, got!.stderr);
    assert.ok((JSON.parse(got!.stdout) as { chunks: unknown[] }).chunks.length > 0);
  } finally {
    await cd3?.stop();
    await snap3.close();
  }
});

test('two containers share one lazy mount; writes stay in each container', async () => {
  for (const id of ['share-a', 'share-b']) {
    const r = await cd.ctr(['run', '-d', '--snapshotter', 'ferry', nydusRef, id, '/bin/sleep', '120']);
    assert.equal(r.code, 0, r.stderr);
  }
  try {
    const w = await cd.ctr([
      'tasks',
      'exec',
      '--exec-id',
      'w1',
      'share-a',
      '/bin/sh',
      '-c',
      'echo changed-by-a > /srv/app/message.txt; echo new > /new-in-a',
    ]);
    assert.equal(w.code, 0, w.stderr);
    const ra = await cd.ctr(['tasks', 'exec', '--exec-id', 'r1', 'share-a', '/bin/cat', '/srv/app/message.txt']);
    assert.equal(ra.stdout, 'changed-by-a\n');
    const rb = await cd.ctr([
      'tasks',
      'exec',
      '--exec-id',
      'r2',
      'share-b',
      '/bin/sh',
      '-c',
      'cat /srv/app/message.txt; test -e /new-in-a && echo LEAK || echo isolated',
    ]);
    assert.equal(rb.stdout, 'hello from a lazily loaded layer\nisolated\n');
    const mounts = await snap.lazy!.mounts();
    assert.equal(mounts.length, 1, 'one lazy mount for both containers');
    const lowers = await Promise.all(
      ['share-a', 'share-b'].map(async (id) => {
        const info = snap.snapshotter.list([]).find((i) => i.kind === 'ACTIVE' && i.name.endsWith(`/${id}`));
        assert.ok(info, `active snapshot of ${id}`);
        return (await snap.snapshotter.mounts(info.name))[0]!.options.find((o) => o.startsWith('lowerdir='));
      }),
    );
    assert.equal(lowers[0], lowers[1]);
    assert.equal(lowers[0], `lowerdir=${mounts[0]!.mountpoint}`);
  } finally {
    for (const id of ['share-a', 'share-b']) {
      await cd.ctr(['tasks', 'kill', '-s', 'SIGKILL', id]);
      for (let i = 0; i < 50 && (await cd.ctr(['tasks', 'delete', id])).code !== 0; i++) await new Promise((r) => setTimeout(r, 100));
      await cd.ctr(['containers', 'delete', id]);
    }
  }
});

test('the ordinary OCI image of the same content runs through the ferry snapshotter (overlay fallback)', async () => {
  const nowhere = await ferry(['pull', '--address', cd.address, '--snapshotter-api', join(dir, 'no-such.sock'), ociRef]);
  assert.equal(nowhere.code, 1);
  assert.match(nowhere.stderr, /no-such\.sock: ENOENT \(is `ferry snapshotter` running there\? --local pulls without it\)/);
  // in this process (--local), not through the snapshotter
  const pull = await ferry(['pull', '--address', cd.address, '--namespace', cd.namespace, '--plain-http', '--json', '--local', ociRef]);
  assert.equal(pull.code, 0, pull.stderr);
  assert.deepEqual(
    (JSON.parse(pull.stdout) as { layers: Array<{ how: string }> }).layers.map((l) => l.how),
    ['applied', 'applied'],
  );
  const run = await cd.ctr([
    'run',
    '--rm',
    '--snapshotter',
    'ferry',
    ociRef,
    'oci-1',
    '/bin/bash',
    '-c',
    'cat /srv/app/message.txt; /srv/app/run.sh',
  ]);
  assert.equal(run.code, 0, run.stderr);
  assert.equal(run.stdout, 'hello from a lazily loaded layer\nscript ran in bash 5\n');
});

test('removing the Nydus image unmounts and deletes the lazy image', async () => {
  const rmi = await cd.ctr(['images', 'rm', '--sync', nydusRef]);
  assert.equal(rmi.code, 0, rmi.stderr);
  assert.equal(snap.snapshotter.list([]).filter((i) => i.labels['containerd.io/snapshot/remote']).length, 0);
  assert.equal((await snap.lazy!.mounts()).length, 0);
});

test('ctr-remote images rpull --snapshotter ferry pulls the Nydus image lazily (stargz label family)', async () => {
  requirePrereqs({ commands: ['ctr-remote'] });
  const before0 = await served();
  const r = await exec('ctr-remote', [
    '--address',
    cd.address,
    '-n',
    cd.namespace,
    'images',
    'rpull',
    '--plain-http',
    '--snapshotter',
    'ferry',
    nydusRef,
  ]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(snap.snapshotter.list([]).filter((i) => i.labels['containerd.io/snapshot/remote']).length, 3);
  // lazily: containerd fetched manifest and config only, no layer (blobs nor bootstrap) into its content store
  const content = await cd.ctr(['content', 'ls', '-q']);
  assert.equal(content.code, 0, content.stderr);
  assert.ok(content.stdout.includes(nydusConfig), `the listing shows the config ${nydusConfig}: ${content.stdout}`);
  const held = nydusLayers.filter((d) => content.stdout.includes(d));
  assert.deepEqual(held, [], `containerd downloaded layers of ${nydusRef}: ${held.join(', ')}`);
  const run = await cd.ctr(['run', '--rm', '--snapshotter', 'ferry', nydusRef, 'rpull-1', '/bin/cat', '/srv/app/message.txt']);
  assert.equal(run.code, 0, run.stderr);
  assert.equal(run.stdout, 'hello from a lazily loaded layer\n');
  const fetched = (await served()) - before0;
  assert.ok(fetched < nydusBlobBytes * 0.35, `registry served ${fetched} of ${nydusBlobBytes}`);
});
