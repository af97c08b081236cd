/**
 * `ferry build` end to end, everything real: a busybox base image pushed to a private loopback
 * `ferry registry` (and its Nydus form, as `ferry accel` would make it), a Dockerfile with RUN, COPY,
 * ENV and ENTRYPOINT built by buildah into the merged OCI + Nydus index, checked with `ferry check`,
 * run lazily through the ferry snapshotter with `ctr run`, its tree compared with the OCI image's as
 * containers see them; a rebuild pushes no blob, and a change in the last layer's instruction pushes
 * only that layer's blobs (counted in the registry's blob store).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { requirePrereqs } from '../support/prereq.js';
import {
  buildOciImage,
  busyboxRootfs,
  exec,
  pushImage,
  startContainerd,
  unmountUnder,
  type Containerd,
} from '../../src/bench/env/index.js';
import { startRegistry, type RegistryHandle } from '../../src/registry/index.js';
import { createLogger, metricValue } from '../../src/observe/index.js';
import { parseSnapshotterConfig } from '../../src/config/snapshotter.js';
import { startSnapshotter, type SnapshotterHandle } from '../../src/snapshotter/index.js';
import { Daemon } from '../../src/daemon/index.js';
import { convertImage } from '../../src/convert/index.js';
import { RegistryClient, parseReference } from '../../src/remote/index.js';
import { parseImageIndex, parseImageManifest, NydusAnnotation } from '../../src/oci/index.js';
import type { BuildResult } from '../../src/build/index.js';
import { ferry } from '../support/ferry.js';
import { FERRY_BIN } from '../support/paths.js';

const PW = 'pw-build-e2e';
let dir: string;
let reg: RegistryHandle;
let snap: SnapshotterHandle | undefined;
let cd: Containerd | undefined;
let client: RegistryClient;
let ctx: string;
let ref: string;
let baseNydusBlobs: string[] = [];
let first: BuildResult;

/** Digests of every blob the registry stores (files named by their hex under its data dir). */
async function storedBlobs(): Promise<Set<string>> {
  const out = new Set<string>();
  const walk = async (d: string, depth: number): Promise<void> => {
    if (depth > 8) return;
    for (const e of await readdir(d, { withFileTypes: true })) {
      if (e.isDirectory()) await walk(join(d, e.name), depth + 1);
      else if (/^[a-f0-9]{64}$/.test(e.name)) out.add(`sha256:${e.name}`);
    }
  };
  await walk(join(dir, 'reg', 'blobs'), 0);
  return out;
}

const received = (): Promise<number> => metricValue(reg.metrics, 'ferry_registry_blob_bytes_received_total');

function build(extra: string[] = [], tag = ref): ReturnType<typeof ferry> {
  return ferry(
    [
      'build',
      '--push',
      '--json',
      '-t',
      tag,
      '--user',
      'admin',
      '--storage-root',
      join(dir, 'buildah'),
      '--cache-dir',
      join(dir, 'cache'),
      ...extra,
      ctx,
    ],
    { env: { FERRY_REGISTRY_PASSWORD: PW } },
  );
}

before(async () => {
  requirePrereqs({
    root: true,
    commands: ['buildah', 'containerd', 'ctr', 'runc', 'skopeo', 'busybox', 'fusermount3'],
    devices: ['/dev/fuse'],
  });
  dir = await mkdtemp(join(tmpdir(), 'ferry-build-e2e-'));
  reg = await startRegistry({ listen: '127.0.0.1:0', dataDir: join(dir, 'reg'), adminPassword: PW });
  client = new RegistryClient({ credentials: () => ({ username: 'admin', password: PW }) });
  const rootfs = await busyboxRootfs(join(dir, 'rootfs'));
  const img = await buildOciImage({ layers: [rootfs], outDir: join(dir, 'base-oci'), config: { Cmd: ['/bin/sh'] } });
  const base = `${reg.host}/library/base:v1`;
  await pushImage(img.layoutDir, base, { creds: `admin:${PW}` });
  // the base's Nydus form, as ferry accel makes it (`<tag>-nydus`)
  const conv = await convertImage({ source: base, target: `${base}-nydus`, sourceClient: client });
  baseNydusBlobs = conv.layers.map((l) => l.blobDigest).filter(Boolean);
  assert.equal(baseNydusBlobs.length, 1);
  ctx = join(dir, 'ctx');
  await mkdir(ctx);
  await writeFile(join(ctx, 'app.txt'), 'app v1 from the build context\n');
  await writeFile(
    join(ctx, 'Dockerfile'),
    [
      `ARG BASE=${base}`,
      // biome-ignore lint/suspicious/noTemplateCurlyInString: a Dockerfile build argument, not a template
      'FROM ${BASE}',
      'RUN mkdir -p /data && echo "written by RUN" > /data/run.txt && ln -s run.txt /data/link',
      'ENV GREETING=hello-from-env',
      'COPY app.txt /app/app.txt',
      'ENTRYPOINT ["/bin/sh", "-c", "cat /app/app.txt /data/link; echo $GREETING"]',
      '',
    ].join('\n'),
  );
  ref = `${reg.host}/library/built:v1`;
});

after(async () => {
  await cd?.stop();
  await snap?.close();
  await reg?.close();
  if (dir) {
    await unmountUnder(dir); // buildah's overlay driver keeps its store's overlay/ dir mounted
    await rm(dir, { recursive: true, force: true });
  }
});

test('ferry build --push: merged OCI + Nydus index; the base Nydus blob is reused; ferry check passes', async () => {
  const r = await build();
  assert.equal(r.code, 0, r.stderr);
  first = JSON.parse(r.stdout) as BuildResult;
  // the auth file buildah got (on tmpfs) is gone, and the password is in no output
  assert.deepEqual(
    (await readdir('/dev/shm')).filter((n) => n.startsWith('ferry-build-auth-')),
    [],
  );
  assert.ok(!r.stdout.includes(PW) && !r.stderr.includes(PW));
  assert.equal(first.base, `${reg.host}/library/base:v1`);
  assert.equal(first.chunkDict, `${reg.host}/library/base:v1-nydus`);
  assert.equal(first.unchanged, false);
  const top = await client.getManifest(parseReference(ref));
  assert.equal(top.digest, first.digest);
  const index = parseImageIndex(top.body);
  assert.equal(index.manifests.length, 2);
  assert.equal(index.manifests[0]!.digest, first.oci.digest);
  assert.deepEqual(index.manifests[1]!.platform?.['os.features'], [NydusAnnotation.PLATFORM_FEATURE]);
  assert.equal(index.manifests[1]!.digest, first.nydus!.digest);
  const nydus = parseImageManifest((await client.getManifest(parseReference(`${reg.host}/library/built@${first.nydus!.digest}`))).body);
  const blobs = nydus.layers.slice(0, -1).map((l) => l.digest);
  // the base layer's chunks all come from the base's Nydus blob: no new blob for it
  for (const b of baseNydusBlobs) assert.ok(blobs.includes(b), `base Nydus blob ${b} reused in ${blobs.join(' ')}`);
  assert.equal(blobs.length, 1 + 2, `blobs: the base's, the RUN layer's, the COPY layer's: ${blobs.join(' ')}`);
  const check = await ferry(['check', '--source', `${reg.host}/library/built@${first.oci.digest}`, '--target', ref]);
  assert.equal(check.code, 0, `${check.stdout}\n${check.stderr}`);
  assert.match(check.stdout, /check passed/);
});

/** What a container sees of its root filesystem: type, mode, owner, size, link target, content digest (directory sizes are the filesystem's own). */
const LISTING =
  'find / -xdev \\( -path /proc -o -path /sys -o -path /dev \\) -prune -o -print | sort | while read -r f; do ' +
  'if [ -d "$f" ] && [ ! -L "$f" ]; then stat -c "%n %f %u %g" "$f"; else stat -c "%n %f %u %g %s %N" "$f"; fi; ' +
  'if [ -f "$f" ] && [ ! -L "$f" ]; then md5sum "$f"; fi; done';

test("--nydus of the same build converts nothing again; the Nydus image runs lazily with ctr run; its tree equals the OCI image's", async () => {
  const nydusRef = `${reg.host}/library/built:v1-nydus`;
  const blobs0 = await storedBlobs();
  const nb = await build(['--nydus'], nydusRef);
  assert.equal(nb.code, 0, nb.stderr);
  const res = JSON.parse(nb.stdout) as BuildResult;
  assert.equal(res.oci.digest, first.oci.digest);
  const ociBlobs = [res.oci.configDigest, ...res.oci.layers!.map((l) => l.digest)];
  const added = [...(await storedBlobs())].filter((b) => !blobs0.has(b));
  assert.deepEqual(
    added.filter((b) => ociBlobs.includes(b)),
    [],
  );
  assert.ok(added.length <= 2, `only the Nydus config (its media type differs from the merged one) and maybe the bootstrap: ${added}`);
  assert.deepEqual(
    res.nydus!.layers.map((l) => l.cached),
    [true, true, true],
    'every layer from the conversion cache',
  );
  const log = createLogger({ name: 'build-e2e', level: process.env.FERRY_TEST_LOG ?? 'silent' });
  const config = parseSnapshotterConfig({ address: join(dir, 'snap.sock'), root: join(dir, 'snaproot') });
  snap = await startSnapshotter({
    config,
    log,
    lazyFs: new Daemon({ log, dataDir: join(dir, 'daemon'), config: { amplify_io: config.daemon.amplifyIo } }),
  });
  cd = await startContainerd({ dir: join(dir, 'cd'), snapshotters: { ferry: snap.address } });
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
  const layers = (JSON.parse(pull.stdout) as { layers: Array<{ how: string }> }).layers.map((l) => l.how);
  assert.deepEqual(layers, ['remote', 'remote', 'remote', 'remote'], 'three blob layers and the bootstrap, none downloaded');
  const run = await cd.ctr(['run', '--rm', '--snapshotter', 'ferry', nydusRef, 'build-1']);
  assert.equal(run.code, 0, `${run.stdout}\n${run.stderr}`);
  assert.equal(run.stdout, 'app v1 from the build context\nwritten by RUN\nhello-from-env\n');
  const nydusTree = await cd.ctr(['run', '--rm', '--snapshotter', 'ferry', nydusRef, 'build-tree-n', '/bin/sh', '-c', LISTING]);
  assert.equal(nydusTree.code, 0, nydusTree.stderr);
  // the OCI manifest of the same index, pulled whole and unpacked by containerd (overlayfs)
  const ociRef = `${reg.host}/library/built@${first.oci.digest}`;
  const ociPull = await cd.ctr(['images', 'pull', '--plain-http', ociRef]);
  assert.equal(ociPull.code, 0, ociPull.stderr);
  const ociTree = await cd.ctr(['run', '--rm', ociRef, 'build-tree-o', '/bin/sh', '-c', LISTING]);
  assert.equal(ociTree.code, 0, ociTree.stderr);
  assert.ok(ociTree.stdout.includes('/data/link'), ociTree.stdout.slice(0, 2000));
  assert.equal(nydusTree.stdout, ociTree.stdout);
});

test('the merged index (--both): plain containerd pulls and runs its OCI entry; ferry pull runs its Nydus entry lazily', async () => {
  const c = cd!; // started by the test above
  // plain containerd: ctr pull + run with its own snapshotter (overlayfs) takes the OCI entry (the
  // Nydus entry's config media type is nydusify's, which containerd does not pull)
  const plain = await c.ctr(['images', 'pull', '--plain-http', ref]);
  assert.equal(plain.code, 0, plain.stderr);
  const ociRun = await c.ctr(['run', '--rm', ref, 'merged-oci']);
  assert.equal(ociRun.code, 0, `${ociRun.stdout}\n${ociRun.stderr}`);
  assert.equal(ociRun.stdout, 'app v1 from the build context\nwritten by RUN\nhello-from-env\n');
  const rm = await c.ctr(['images', 'rm', ref]);
  assert.equal(rm.code, 0, rm.stderr);
  // ferry pull: the Nydus entry, every layer remote; ctr run reads the recorded image's config
  // --snapshotter-api: without it ferry pull looks for a running snapshotter and may find another run's
  const pull = await ferry([
    'pull',
    '--address',
    c.address,
    '--namespace',
    c.namespace,
    '--plain-http',
    '--json',
    '--snapshotter-api',
    snap!.apiAddress,
    ref,
  ]);
  assert.equal(pull.code, 0, pull.stderr);
  const res = JSON.parse(pull.stdout) as { manifestDigest: string; layers: Array<{ how: string }> };
  assert.equal(res.manifestDigest, first.nydus!.digest);
  assert.ok(
    res.layers.every((l) => l.how === 'remote' || l.how === 'present'),
    JSON.stringify(res.layers),
  );
  const run = await c.ctr(['run', '--rm', '--snapshotter', 'ferry', ref, 'merged-nydus']);
  assert.equal(run.code, 0, `${run.stdout}\n${run.stderr}`);
  assert.equal(run.stdout, 'app v1 from the build context\nwritten by RUN\nhello-from-env\n');
  const tree = await c.ctr(['run', '--rm', '--snapshotter', 'ferry', ref, 'merged-tree', '/bin/sh', '-c', LISTING]);
  assert.equal(tree.code, 0, tree.stderr);
  const ociRef = `${reg.host}/library/built@${first.oci.digest}`;
  const ociTree = await c.ctr(['run', '--rm', ociRef, 'merged-tree-o', '/bin/sh', '-c', LISTING]);
  assert.equal(ociTree.code, 0, ociTree.stderr);
  assert.equal(tree.stdout, ociTree.stdout);
});

test('--oci tags the OCI image itself; its blobs are already there, so none is sent', async () => {
  const ociRef = `${reg.host}/library/built:v1-oci`;
  const blobs0 = await storedBlobs();
  const r = await build(['--oci'], ociRef);
  assert.equal(r.code, 0, r.stderr);
  const res = JSON.parse(r.stdout) as BuildResult;
  assert.equal(res.digest, first.oci.digest);
  assert.equal(res.nydus, undefined);
  assert.deepEqual(
    [...(await storedBlobs())].filter((b) => !blobs0.has(b)),
    [],
  );
  assert.equal((await client.headManifest(parseReference(ociRef)))?.digest, first.oci.digest);
});

test('a rebuild with nothing changed reuses every layer and pushes no blob', async () => {
  const blobs0 = await storedBlobs();
  const bytes0 = await received();
  const r = await build();
  assert.equal(r.code, 0, r.stderr);
  const res = JSON.parse(r.stdout) as BuildResult;
  assert.equal(res.oci.digest, first.oci.digest);
  assert.equal(res.unchanged, true);
  assert.equal(res.digest, first.digest);
  assert.equal(await received(), bytes0);
  assert.deepEqual(
    [...(await storedBlobs())].filter((b) => !blobs0.has(b)),
    [],
  );
});

test("a change in the last layer instruction pushes only that layer's blobs (plus bootstrap and configs)", async () => {
  await writeFile(join(ctx, 'app.txt'), 'app v2 from the build context\n');
  const blobs0 = await storedBlobs();
  const r = await build();
  assert.equal(r.code, 0, r.stderr);
  const res = JSON.parse(r.stdout) as BuildResult;
  assert.notEqual(res.oci.digest, first.oci.digest);
  assert.deepEqual(res.oci.layers!.slice(0, -1), first.oci.layers!.slice(0, -1), 'layers before the COPY are reused');
  const newLayer = res.oci.layers!.at(-1)!.digest;
  const converted = res.nydus!.layers.filter((l) => !l.cached);
  assert.deepEqual(
    converted.map((l) => l.sourceDigest),
    [newLayer],
  );
  const nydus = parseImageManifest((await client.getManifest(parseReference(`${reg.host}/library/built@${res.nydus!.digest}`))).body);
  const expected = [res.oci.configDigest, newLayer, converted[0]!.blobDigest, nydus.layers.at(-1)!.digest, nydus.config.digest];
  const added = [...(await storedBlobs())].filter((b) => !blobs0.has(b));
  assert.deepEqual(added.sort(), expected.sort());
  const check = await ferry(['check', '--source', `${reg.host}/library/built@${res.oci.digest}`, '--target', ref]);
  assert.equal(check.code, 0, `${check.stdout}\n${check.stderr}`);
});

test('progress on a terminal (buildah steps, blobs); nothing with --quiet; bad input is a clear error that pushes nothing', async () => {
  requirePrereqs({ commands: ['script'] });
  const blobs0 = await storedBlobs();
  const args = [
    'build',
    '--push',
    '-t',
    ref,
    '--user',
    'admin',
    '--storage-root',
    join(dir, 'buildah'),
    '--cache-dir',
    join(dir, 'cache'),
    ctx,
  ];
  const quoted = [process.execPath, FERRY_BIN, ...args].map((a) => `'${a}'`).join(' ');
  const tty = await exec('script', ['-qec', quoted, '/dev/null'], {
    env: { ...process.env, FERRY_REGISTRY_PASSWORD: PW } as Record<string, string>,
  });
  assert.equal(tty.code, 0, tty.stdout + tty.stderr);
  assert.match(tty.stdout, /STEP 2\/5: RUN mkdir -p \/data/);
  assert.match(tty.stdout, /unchanged: the tag already holds the acceleration/);
  const quiet = await ferry([...args.slice(0, -1), '--quiet', ctx], { env: { FERRY_REGISTRY_PASSWORD: PW } });
  assert.equal(quiet.code, 0, quiet.stderr);
  assert.equal(quiet.stdout + quiet.stderr, '');
  const noPassword = await ferry(args, { env: { FERRY_REGISTRY_PASSWORD: '' } });
  assert.equal(noPassword.code, 1);
  assert.match(noPassword.stderr, /--user needs the password in the environment variable FERRY_REGISTRY_PASSWORD/);
  const noDockerfile = await ferry([...args.slice(0, -1), '-f', join(dir, 'missing.Dockerfile'), ctx], {
    env: { FERRY_REGISTRY_PASSWORD: PW },
  });
  assert.equal(noDockerfile.code, 1);
  assert.match(noDockerfile.stderr, /cannot read .*missing\.Dockerfile/);
  const badTag = await ferry(['build', '-t', `${reg.host}/library/built@sha256:${'0'.repeat(64)}`, ctx]);
  assert.equal(badTag.code, 1);
  assert.match(badTag.stderr, /needs REGISTRY\/REPOSITORY:TAG/);
  assert.deepEqual(
    [...(await storedBlobs())].filter((b) => !blobs0.has(b)),
    [],
  );
});
