/**
 * Background fill with a deadline, end to end: a `ferry daemon` with `--fill-deadline` behind the
 * snapshotter, real containerd. A container runs on the lazy image; the daemon fills the rest of
 * the image in the background until its status (API and metrics) says 100 %; then the registry is
 * stopped and every file of the image reads correctly in the running container and in a new one,
 * checked against a checksum list made from the plain OCI image pulled by containerd.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { requirePrereqs } from '../support/prereq.js';
import { pseudoRandom } from './convert-support.js';
import { busyboxRootfs, buildOciImage, pushImage, startContainerd, type Containerd } from '../../src/bench/env/index.js';
import { startRegistry, type RegistryHandle } from '../../src/registry/index.js';
import { DaemonClient, type MountInfo } from '../../src/daemon/index.js';
import { ferry, startFerryChild, type Child } from './snapshotter-support.js';

const PW = 'pw-fill-e2e';
let dir: string;
let reg: RegistryHandle | undefined;
let src: string;
let ref: string;
const children: Child[] = [];
let cd: Containerd | undefined;

before(async () => {
  requirePrereqs({ root: true, commands: ['containerd', 'ctr', 'runc', 'skopeo', 'busybox', 'fusermount3'], devices: ['/dev/fuse'] });
  dir = await mkdtemp(join(tmpdir(), 'ferry-fill-'));
  reg = await startRegistry({ listen: '127.0.0.1:0', dataDir: join(dir, 'reg'), adminPassword: PW });
  const l0 = await busyboxRootfs(join(dir, 'l0'));
  const l1 = join(dir, 'l1');
  await mkdir(join(l1, 'data/sub'), { recursive: true });
  await writeFile(join(l1, 'data/a.bin'), pseudoRandom(3 * 1024 * 1024, 'a'));
  await writeFile(join(l1, 'data/b.bin'), pseudoRandom(2 * 1024 * 1024 + 123, 'b'));
  await writeFile(join(l1, 'data/sub/c.bin'), pseudoRandom(700 * 1024, 'c'));
  await writeFile(join(l1, 'data/sub/small.txt'), 'a small file\n');
  const img = await buildOciImage({ layers: [l0, l1], outDir: join(dir, 'oci') });
  src = `${reg.host}/library/fill:v1`;
  ref = `${reg.host}/library/fill:v1-nydus`;
  await pushImage(img.layoutDir, src, { creds: `admin:${PW}` });
  const conv = await ferry(['convert', '--source', src, '--target', ref, '--source-creds', `admin:${PW}`, '--target-creds', `admin:${PW}`]);
  assert.equal(conv.code, 0, conv.stderr);
});

after(async () => {
  await cd?.stop();
  for (const c of children.reverse()) await c.stop();
  await reg?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function fillOf(client: DaemonClient): Promise<MountInfo> {
  const m = (await client.list()).find((x) => x.id.startsWith('ferry-snap-'));
  assert.ok(m, 'the lazy image is mounted');
  return m;
}

test('background fill reaches 100 %; with the registry stopped every file of the image still reads correctly', async () => {
  const apisock = join(dir, 'daemon.sock');
  const daemon = await startFerryChild(
    ['daemon', '--apisock', apisock, '--data-dir', join(dir, 'daemon'), '--fill-deadline', '2m', '--fill-rate', '4m'],
    apisock,
  );
  children.push(daemon);
  const sock = join(dir, 'snap.sock');
  const snap = await startFerryChild(['snapshotter', '--address', sock, '--root', join(dir, 'root'), '--daemon-apisock', apisock], sock);
  children.push(snap);
  cd = await startContainerd({ dir: join(dir, 'cd'), snapshotters: { ferry: sock } });

  // the checksum list, from the OCI image as containerd pulls and unpacks it (overlayfs)
  const pullOci = await cd.ctr(['images', 'pull', '--plain-http', src]);
  assert.equal(pullOci.code, 0, pullOci.stderr);
  const sums = await cd.ctr(['run', '--rm', src, 'sums', '/bin/sh', '-c', 'find /bin /data -type f | sort | xargs sha256sum']);
  assert.equal(sums.code, 0, sums.stderr);
  const lines = sums.stdout.trim().split('\n');
  assert.ok(lines.length >= 5 && lines.some((l) => l.endsWith('/data/sub/c.bin')), sums.stdout);
  const list = join(dir, 'image.sha256');
  await writeFile(list, sums.stdout);

  const pull = await ferry(['pull', '--local', '--address', cd.address, '--namespace', cd.namespace, '--plain-http', '--json', ref]);
  assert.equal(pull.code, 0, pull.stderr);
  assert.ok((JSON.parse(pull.stdout) as { layers: Array<{ how: string }> }).layers.every((l) => l.how === 'remote'));
  const bind = ['--mount', `type=bind,src=${list},dst=/image.sha256,options=rbind:ro`];
  const start = await cd.ctr(['run', '-d', '--snapshotter', 'ferry', ...bind, ref, 'filled', '/bin/sleep', '300']);
  assert.equal(start.code, 0, start.stderr);

  const client = new DaemonClient(apisock);
  let m = await fillOf(client);
  assert.ok(m.fill, 'the mount has a fill status');
  assert.ok(m.fill.totalBytes > 5 * 1024 * 1024, `total ${m.fill.totalBytes}`);
  assert.ok(Date.parse(m.fill.deadline) > Date.now(), 'the deadline lies ahead');
  for (let i = 0; i < 240 && m.fill?.state !== 'done'; i++) {
    await new Promise((r) => setTimeout(r, 500));
    m = await fillOf(client);
  }
  const fill = m.fill!;
  assert.equal(fill.state, 'done', JSON.stringify(fill));
  assert.equal(fill.percent, 100);
  assert.equal(fill.filledBytes, fill.totalBytes);
  assert.equal(fill.etaSeconds, 0);
  assert.equal(m.stats?.chunksTotal, m.metrics.chunksCached, 'every chunk is cached');
  const metrics = await client.metricsText();
  assert.match(metrics, new RegExp(`ferry_daemon_fill_filled_bytes\\{mount="${m.id}"\\} ${fill.totalBytes}\\b`));
  assert.match(metrics, new RegExp(`ferry_daemon_fill_total_bytes\\{mount="${m.id}"\\} ${fill.totalBytes}\\b`));

  // the registry goes away: nothing of the image depends on it any more
  const host = reg!.host;
  await reg!.close();
  reg = undefined;
  await assert.rejects(fetch(`http://${host}/v2/`), 'the registry is down');
  const fetched = m.metrics.bytesFetched;
  try {
    const r = await cd.ctr(['tasks', 'exec', '--exec-id', 'check', 'filled', '/usr/bin/sha256sum', '-c', '/image.sha256']);
    assert.equal(r.code, 0, `${r.stdout}${r.stderr}\n${daemon.output().slice(-2000)}`);
    assert.equal(
      r.stdout
        .trim()
        .split('\n')
        .filter((l) => l.endsWith(': OK')).length,
      lines.length,
    );
    const again = await cd.ctr([
      'run',
      '--rm',
      '--snapshotter',
      'ferry',
      ...bind,
      ref,
      'after-outage',
      '/usr/bin/sha256sum',
      '-c',
      '/image.sha256',
    ]);
    assert.equal(again.code, 0, `${again.stdout}${again.stderr}`);
    const after = await fillOf(client);
    assert.equal(after.metrics.bytesFetched, fetched, 'nothing fetched after the outage');
    assert.equal(after.metrics.backendErrors, m.metrics.backendErrors, 'no backend request failed');
  } finally {
    await cd.ctr(['tasks', 'kill', '-s', 'SIGKILL', 'filled']);
    for (let i = 0; i < 50 && (await cd.ctr(['tasks', 'delete', 'filled'])).code !== 0; i++) await new Promise((r) => setTimeout(r, 100));
    await cd.ctr(['containers', 'delete', 'filled']);
  }
});
