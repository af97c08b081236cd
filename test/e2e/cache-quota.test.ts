/**
 * The node cache quota with real containerd: a snapshotter with a small `--cache-quota` runs ten
 * lazy images in turn, each reading a file of its own in full (checked against its digest); after
 * each run the chunk cache on disk comes back under the quota while every image stays pulled
 * (their mounts' least recently read data is evicted). The first image then runs again and reads
 * correctly (its evicted chunks fetched again). With the images removed, `ferry snapshotter gc`
 * deletes what no snapshot uses.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { requirePrereqs } from '../support/prereq.js';
import { pseudoRandom } from './convert-support.js';
import { busyboxRootfs, buildOciImage, pushImage, startContainerd, type Containerd } from '../../src/bench/env/index.js';
import { startRegistry, type RegistryHandle } from '../../src/registry/index.js';
import { ferry, startFerryChild, type Child } from './snapshotter-support.js';

const PW = 'pw-cache-e2e';
const IMAGES = 10;
const FILE_BYTES = 3 * 1024 * 1024;
const QUOTA = 10 * 1024 * 1024;
let dir: string;
let reg: RegistryHandle;
const refs: string[] = [];
const children: Child[] = [];
const containerds: Containerd[] = [];

/** Bytes on disk (allocated blocks) of the cache files in `cacheDir`. */
async function cacheBytes(cacheDir: string): Promise<number> {
  let n = 0;
  for (const f of await readdir(cacheDir).catch(() => [] as string[]))
    n += ((await stat(join(cacheDir, f)).catch(() => null))?.blocks ?? 0) * 512;
  return n;
}

/** Waits (bounded) for the cache's GC rounds to bring it under the quota; returns the last figure. */
async function underQuota(cacheDir: string): Promise<number> {
  let used = 0;
  for (let i = 0; i < 60; i++) {
    used = await cacheBytes(cacheDir);
    if (used <= QUOTA) return used;
    await new Promise((r) => setTimeout(r, 250));
  }
  return used;
}

before(async () => {
  requirePrereqs({ root: true, commands: ['containerd', 'ctr', 'runc', 'skopeo', 'busybox', 'fusermount3'], devices: ['/dev/fuse'] });
  dir = await mkdtemp(join(tmpdir(), 'ferry-cq-'));
  reg = await startRegistry({ listen: '127.0.0.1:0', dataDir: join(dir, 'reg'), adminPassword: PW });
  const l0 = await busyboxRootfs(join(dir, 'l0'));
  for (let i = 0; i < IMAGES; i++) {
    const l1 = join(dir, `l1-${i}`);
    await mkdir(join(l1, 'data'), { recursive: true });
    const big = pseudoRandom(FILE_BYTES, `image-${i}`);
    await writeFile(join(l1, 'data/file.bin'), big);
    await writeFile(join(l1, 'data/file.sha256'), `${createHash('sha256').update(big).digest('hex')}  /data/file.bin\n`);
    const img = await buildOciImage({ layers: [l0, l1], outDir: join(dir, `oci-${i}`) });
    const src = `${reg.host}/library/cq${i}:v1`;
    const ref = `${reg.host}/library/cq${i}:v1-nydus`;
    await pushImage(img.layoutDir, src, { creds: `admin:${PW}` });
    const conv = await ferry([
      'convert',
      '--source',
      src,
      '--target',
      ref,
      '--source-creds',
      `admin:${PW}`,
      '--target-creds',
      `admin:${PW}`,
    ]);
    assert.equal(conv.code, 0, conv.stderr);
    refs.push(ref);
  }
});

after(async () => {
  for (const c of containerds) await c.stop();
  for (const c of children.reverse()) await c.stop();
  await reg?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

test('cache quota: ten images in turn on a small quota, every run correct, the cache back under quota after each; gc deletes what no snapshot uses', async () => {
  const d = join(dir, 'node');
  await mkdir(d, { recursive: true });
  const sock = join(d, 'snap.sock');
  const root = join(d, 'root');
  const cacheDir = join(root, 'cache');
  // GC rounds every second (besides after each mount and unmount), so the test need not wait long
  const daemonConfig = join(d, 'daemon.json');
  await writeFile(daemonConfig, JSON.stringify({ ferry: { cache_gc_interval: 1 } }));
  const snap = await startFerryChild(
    ['snapshotter', '--address', sock, '--root', root, '--cache-quota', String(QUOTA), '--daemon-config', daemonConfig],
    sock,
  );
  children.push(snap);
  const cd = await startContainerd({ dir: join(d, 'cd'), snapshotters: { ferry: sock } });
  containerds.push(cd);
  const run = async (i: number, name: string): Promise<void> => {
    const r = await cd.ctr(['run', '--rm', '--snapshotter', 'ferry', refs[i]!, name, '/usr/bin/sha256sum', '-c', '/data/file.sha256']);
    assert.equal(r.code, 0, `${name}: ${r.stdout}${r.stderr}\n${snap.output().slice(-2000)}`);
    if (!/OK/.test(r.stdout)) {
      // what the container saw, for the failure message
      const look = await cd.ctr([
        'run',
        '--rm',
        '--snapshotter',
        'ferry',
        refs[i]!,
        `${name}-look`,
        '/bin/sh',
        '-c',
        'od -c /data/file.sha256 | head -3; sha256sum /data/file.bin',
      ]);
      assert.fail(
        `${name}: stdout ${JSON.stringify(r.stdout)} stderr ${r.stderr}; a second look: ${look.stdout}${look.stderr}\n${snap.output().slice(-3000)}`,
      );
    }
  };
  const peaks: number[] = [];
  for (let i = 0; i < IMAGES; i++) {
    const pull = await ferry(['pull', '--local', '--address', cd.address, '--namespace', cd.namespace, '--plain-http', refs[i]!]);
    assert.equal(pull.code, 0, pull.stderr);
    await run(i, `cq-${i}`);
    peaks.push(await cacheBytes(cacheDir));
    const used = await underQuota(cacheDir);
    assert.ok(used <= QUOTA, `after image ${i}: ${used} bytes on disk > quota ${QUOTA}`);
  }
  // ten images of 3 MiB each were read: without eviction the cache would hold over 30 MiB
  assert.ok(Math.max(...peaks) < 30 * 1024 * 1024, `peaks ${peaks.join(',')}`);
  // the first image, long evicted, still reads correctly: its chunks are fetched again
  await run(0, 'cq-0-again');
  // with every image removed, a gc asked for deletes their cached data
  for (const ref of refs) await cd.ctr(['images', 'rm', '--sync', ref]);
  const gc = await ferry(['snapshotter', 'gc', '--api', join(root, 'api.sock')]);
  assert.equal(gc.code, 0, gc.stderr);
  const report = JSON.parse(gc.stdout) as { removedBlobs: number; after: number };
  assert.ok(report.removedBlobs >= 1, gc.stdout);
  assert.ok((await cacheBytes(cacheDir)) < FILE_BYTES, `cache after gc: ${await cacheBytes(cacheDir)}`);
  process.stdout.write(
    `# cache quota e2e: peaks after each run ${peaks.map((p) => (p / 1048576).toFixed(1)).join(', ')} MiB; quota ${QUOTA / 1048576} MiB; gc ${gc.stdout}`,
  );
  await cd.stop();
  await snap.stop();
});
