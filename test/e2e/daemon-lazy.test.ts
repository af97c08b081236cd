/**
 * The lazy-loading daemon end to end, in each mode (EROFS and FUSE): a debootstrap rootfs with
 * python3 is built with buildLayer and pushed to a ferry registry, then mounted lazily:
 * - the mounted tree is identical to the source rootfs (content digests, modes, owners, links, xattrs);
 * - `cat /etc/os-release` and `chroot MNT python3 -c 'print(1)'` fetch a small fraction of the blob
 *   (per-mount metrics and the registry's served-bytes counter agree);
 * - a remount over the warm cache fetches nothing;
 * - with the registry stopped an uncached read fails with EIO, and works once the registry is
 *   back; a corrupted blob gives EIO after one refetch.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, readFile, rm, open, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { requirePrereqs } from '../support/prereq.js';
import { FERRY_BIN } from '../support/paths.js';
import { startRegistry, type RegistryHandle } from '../../src/registry/index.js';
import { metricValue, silentLogger } from '../../src/observe/index.js';
import { debootstrapRootfs } from '../../src/bench/env/index.js';
import { openBootstrap } from '../../src/format/rafs/index.js';
import { Daemon, type MountRequest } from '../../src/daemon/index.js';
import { mergeBootstraps } from '../../src/builder/index.js';
import { mountsAt } from '../../src/fuse/index.js';
import { buildAndPush, describeTree, type PushedImage } from './daemon-support.js';

const pexec = promisify(execFile);
const PASSWORD = 'Daemon-e2e-1';

let dir: string;
let reg: RegistryHandle;
let img: PushedImage;
let rootfs: string;
let want: string[];

const served = (): Promise<number> => metricValue(reg.metrics, 'ferry_registry_blob_bytes_served_total');

before(async () => {
  requirePrereqs({
    root: true,
    devices: ['/dev/fuse', '/dev/loop-control'],
    commands: ['mount', 'umount', 'losetup', 'getfattr', 'chroot', 'debootstrap'],
  });
  dir = await mkdtemp(join(tmpdir(), 'ferry-daemon-e2e-'));
  rootfs = await debootstrapRootfs({ include: ['python3'] });
  reg = await startRegistry({ listen: '127.0.0.1:0', dataDir: join(dir, 'registry'), adminPassword: PASSWORD, log: silentLogger() });
  img = await buildAndPush({
    rootfs,
    host: reg.host,
    repo: 'library/debian',
    tag: 'nydus',
    password: PASSWORD,
    workDir: join(dir, 'build'),
  });
  want = await describeTree(rootfs);
});

after(async () => {
  await reg?.close();
  if (dir) {
    for (const m of [
      'erofs',
      'fuse',
      'fault-erofs',
      'fault-fuse',
      'corrupt',
      'cli',
      'lean-erofs',
      'lean-fuse',
      'lean-fetch',
      'lean-corrupt',
    ]) {
      if (mountsAt(join(dir, `mnt-${m}`)).length) await pexec('umount', ['-l', join(dir, `mnt-${m}`)]).catch(() => undefined);
    }
    await rm(dir, { recursive: true, force: true });
  }
});

function request(mode: 'erofs' | 'fuse', name: string = mode, cacheDir = join(dir, `cache-${name}`)): MountRequest {
  return {
    id: `e2e-${name}`,
    mountpoint: join(dir, `mnt-${name}`),
    bootstrapPath: img.bootstrapPath,
    mode,
    cacheDir,
    backend: { type: 'registry', host: reg.host, repo: img.repo, insecure: true },
  };
}

for (const mode of ['erofs', 'fuse'] as const) {
  describe(`daemon ${mode} mode`, () => {
    test('small reads fetch a small fraction; full tree identical; warm remount fetches nothing', async (t) => {
      const daemon = new Daemon({ log: silentLogger(), dataDir: join(dir, `data-${mode}`) });
      const req = request(mode);
      try {
        const s0 = await served();
        const info = await daemon.mount(req);
        assert.equal(info.activeMode, mode);
        const osr = await pexec('cat', [join(req.mountpoint, 'etc/os-release')]);
        assert.equal(osr.stdout, await readFile(join(rootfs, 'etc/os-release'), 'utf8'));
        const m1 = (await daemon.get(req.id)).metrics;
        const s1 = await served();
        assert.ok(m1.bytesFetched > 0);
        assert.equal(s1 - s0, m1.bytesFetched, 'registry served bytes == daemon fetched bytes');
        const f1 = m1.bytesFetched / img.blobSize;
        t.diagnostic(`${mode}: cat /etc/os-release fetched ${m1.bytesFetched} of ${img.blobSize} bytes (${(f1 * 100).toFixed(2)} %)`);
        assert.ok(f1 < 0.05, `os-release fetched ${(f1 * 100).toFixed(2)} % of the image`);

        const py = await pexec('chroot', [req.mountpoint, '/usr/bin/python3', '-c', 'print(1)']);
        assert.equal(py.stdout, '1\n');
        const m2 = (await daemon.get(req.id)).metrics;
        assert.equal((await served()) - s0, m2.bytesFetched);
        const f2 = m2.bytesFetched / img.blobSize;
        t.diagnostic(
          `${mode}: + python3 -c 'print(1)' fetched ${m2.bytesFetched} bytes in all (${(f2 * 100).toFixed(2)} %), ${m2.chunksCached} chunks cached`,
        );
        assert.ok(f2 < 0.35, `python3 start fetched ${(f2 * 100).toFixed(2)} % of the image`);

        const got = await describeTree(req.mountpoint);
        assert.equal(got.length, want.length);
        assert.deepEqual(got, want);
        const m3 = (await daemon.get(req.id)).metrics;
        t.diagnostic(
          `${mode}: full walk: ${m3.bytesFetched} bytes fetched, ${m3.chunksCached} chunks cached, hit ratio ${m3.cacheHitRatio.toFixed(3)}`,
        );
        await daemon.umount(req.id);
        assert.equal(mountsAt(req.mountpoint).length, 0);

        // Restart over the warm cache: a new daemon, same cache dir — nothing is fetched.
        const daemon2 = new Daemon({ log: silentLogger(), dataDir: join(dir, `data-${mode}-2`) });
        try {
          const s2 = await served();
          await daemon2.mount(req);
          const again = await describeTree(req.mountpoint, { xattrs: false });
          assert.equal(again.length, want.length);
          const m4 = (await daemon2.get(req.id)).metrics;
          assert.equal(m4.bytesFetched, 0);
          assert.equal((await served()) - s2, 0);
          assert.equal(m4.cacheHitRatio, 1);
        } finally {
          await daemon2.close();
        }
      } finally {
        await daemon.close();
      }
    });
  });
}

test('a bootstrap without chunk table: CI tables from blob.meta or the blob, digests fetched with the first chunk; a corrupt digest array is EIO', async (t) => {
  const lean = mergeBootstraps([await readFile(img.bootstrapPath)], { omitChunkTable: true });
  assert.equal(openBootstrap(lean).summary().chunkTableEntries, 0);
  const withMeta = join(dir, 'lean-meta');
  const without = join(dir, 'lean-fetch');
  for (const d of [withMeta, without]) {
    await mkdir(d, { recursive: true });
    await writeFile(join(d, 'image.boot'), lean);
  }
  await writeFile(join(withMeta, `${img.blobId}.blob.meta`), img.blobMeta);
  const daemon = new Daemon({ log: silentLogger(), dataDir: join(dir, 'data-lean') });
  try {
    for (const [name, bootDir, mode] of [
      ['lean-erofs', withMeta, 'erofs'],
      ['lean-fuse', withMeta, 'fuse'],
      ['lean-fetch', without, 'erofs'],
    ] as const) {
      const req: MountRequest = { ...request(mode, name), bootstrapPath: join(bootDir, 'image.boot') };
      const s0 = await served();
      await daemon.mount(req);
      const atMount = (await served()) - s0;
      assert.equal(atMount, (await daemon.get(req.id)).metrics.bytesFetched, 'mount-time table fetches are counted');
      assert.equal(await readFile(join(req.mountpoint, 'etc/os-release'), 'utf8'), await readFile(join(rootfs, 'etc/os-release'), 'utf8'));
      const m = (await daemon.get(req.id)).metrics;
      t.diagnostic(`${name}: ${atMount} bytes at mount, cat /etc/os-release fetched ${m.bytesFetched} of ${img.blobSize} bytes in all`);
      // blob.meta shipped: nothing before the first read; else the CI table + digests at mount
      if (bootDir === withMeta) assert.equal(atMount, 0);
      else assert.ok(atMount > 0);
      assert.ok(m.bytesFetched / img.blobSize < 0.05);
      assert.equal((await served()) - s0, m.bytesFetched);
      if (mode === 'fuse' || name === 'lean-fetch') assert.deepEqual(await describeTree(req.mountpoint), want);
      await daemon.umount(req.id);
    }
    // A localfs copy of the blob whose digest array has one byte flipped: reads fail (nothing unverified is served).
    const blobs = join(dir, 'lean-corrupt-blobs');
    await mkdir(blobs, { recursive: true });
    await copyFile(img.blobPath, join(blobs, img.blobId));
    const b = openBootstrap(lean).blobs[0]!;
    const at = b.ciOffset + b.ciCompressedSize + 4096 + 512 + 40; // Ferry blob: CI, header, tar header, digest array
    const fh = await open(join(blobs, img.blobId), 'r+');
    const one = Buffer.alloc(1);
    await fh.read(one, 0, 1, at);
    one[0] = one[0]! ^ 0x5a;
    await fh.write(one, 0, 1, at);
    await fh.close();
    const creq: MountRequest = {
      ...request('fuse', 'lean-corrupt'),
      bootstrapPath: join(withMeta, 'image.boot'),
      backend: { type: 'localfs', dir: blobs },
    };
    await daemon.mount(creq);
    await assert.rejects(readFile(join(creq.mountpoint, 'etc/os-release')), { code: 'EIO' });
    assert.ok((await daemon.get(creq.id)).metrics.backendErrors >= 1);
  } finally {
    await daemon.close();
  }
});

// How soon the EIO comes is the device's request deadline, checked on a fake clock in
// storage/device.test.ts; here only that it comes (the test's timeout bounds a hang).
test('daemon faults: registry stopped → EIO → recovery; corrupt chunk → EIO', { timeout: 300_000 }, async (t) => {
  const config = {
    device: { backend: { type: 'registry' as const, config: { timeout: 1, retry_limit: 0 } } },
    ferry: { request_deadline: '3s' },
  };
  const daemon = new Daemon({ log: silentLogger(), dataDir: join(dir, 'data-fault'), config });
  try {
    for (const mode of ['erofs', 'fuse'] as const) {
      const req = request(mode, `fault-${mode}`);
      await daemon.mount(req);
      await reg.close();
      const t0 = Date.now();
      await assert.rejects(readFile(join(req.mountpoint, 'etc/os-release')), { code: 'EIO' });
      t.diagnostic(`${mode}: registry down: EIO after ${Date.now() - t0} ms`);
      assert.ok((await daemon.get(req.id)).metrics.backendErrors >= 1);
      reg = await startRegistry({ listen: reg.host, dataDir: join(dir, 'registry'), adminPassword: PASSWORD, log: silentLogger() });
      assert.equal(await readFile(join(req.mountpoint, 'etc/os-release'), 'utf8'), await readFile(join(rootfs, 'etc/os-release'), 'utf8'));
    }

    // A corrupted copy of the blob on a localfs backend: the chunk holding os-release.
    const blobs = join(dir, 'corrupt-blobs');
    await pexec('mkdir', ['-p', blobs]);
    await copyFile(img.blobPath, join(blobs, img.blobId));
    const bs = openBootstrap(await readFile(img.bootstrapPath));
    const ino = bs.lookup('/usr/lib/os-release')!; // /etc/os-release is a symlink to it
    const ch = bs.mapRead(ino, 0, 1)[0]!;
    const fh = await open(join(blobs, img.blobId), 'r+');
    const b = Buffer.alloc(1);
    await fh.read(b, 0, 1, ch.compressedOffset + (ch.compressedSize >> 1));
    b[0] = b[0]! ^ 0x5a;
    await fh.write(b, 0, 1, ch.compressedOffset + (ch.compressedSize >> 1));
    await fh.close();
    const creq: MountRequest = { ...request('fuse', 'corrupt'), backend: { type: 'localfs', dir: blobs } };
    await daemon.mount(creq);
    await assert.rejects(readFile(join(creq.mountpoint, 'etc/os-release')), { code: 'EIO' });
    const info = await daemon.get(creq.id);
    // Each failed read = one mismatch + one refetch that mismatched again (the kernel may retry a
    // failed read-ahead with a single-page read, which goes through the same two steps).
    const mm = info.stats?.digestMismatches ?? 0;
    assert.ok(mm >= 2 && mm % 2 === 0, `digest mismatches ${mm}: fetched and refetched once per failed read`);
    // Other files still read fine.
    assert.equal(
      await readFile(join(creq.mountpoint, 'etc/debian_version'), 'utf8'),
      await readFile(join(rootfs, 'etc/debian_version'), 'utf8'),
    );
  } finally {
    await daemon.close();
  }
});

test('ferry mount --image: bootstrap from the registry, lazy reads, unmount on SIGTERM', async () => {
  const mnt = join(dir, 'mnt-cli');
  const s0 = await served();
  const c = spawn(
    process.execPath,
    [FERRY_BIN, 'mount', '--image', img.ref, '--plain-http', '--mountpoint', mnt, '--data-dir', join(dir, 'cli-data')],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  c.stderr!.resume();
  try {
    const line = await new Promise<string>((resolve, reject) => {
      let out = '';
      c.stdout!.on('data', (x: Buffer) => {
        out += x.toString();
        if (out.includes('\n')) resolve(out.split('\n')[0]!);
      });
      c.once('exit', (code) => reject(new Error(`ferry mount exited ${code}`)));
    });
    assert.equal(JSON.parse(line).mode, 'erofs');
    assert.equal(await readFile(join(mnt, 'etc/os-release'), 'utf8'), await readFile(join(rootfs, 'etc/os-release'), 'utf8'));
    const fetched = (await served()) - s0;
    assert.ok(fetched < img.blobSize * 0.1, `fetched ${fetched} bytes (bootstrap layer + os-release chunk)`);
  } finally {
    c.kill('SIGTERM');
    await new Promise((r) => {
      if (c.exitCode !== null) r(null);
      else c.once('exit', r);
    });
  }
  assert.equal(c.exitCode, 0);
  assert.equal(mountsAt(mnt).length, 0);
});
