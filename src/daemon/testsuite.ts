/**
 * @module daemon/testsuite
 * The `LazyFs` contract (daemon/protocol.ts) as a reusable test suite: what the snapshotter relies on
 * when it mounts images through the in-process `Daemon` or through `DaemonClient` and a separate
 * `ferry daemon`. Both run it (daemon/lazyfs.int.test.ts). Mounts are real (FUSE), so it needs root
 * and /dev/fuse; the caller checks those. Files on a mount this process serves are read with async
 * I/O only (a synchronous read would wait on this very thread).
 */
import { before, after, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, readlink, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FerryError, type ErrorCode } from '../core/index.js';
import { buildLayer } from '../builder/index.js';
import { mountsAt } from '../fuse/index.js';
import { parsePrefetchTrace } from '../oci/index.js';
import type { LazyFs, MountRequest } from './protocol.js';

/** Chunk size of the test image: the big file spans several chunks. */
const CHUNK_SIZE = 256 * 1024;
const BIG_FILE_BYTES = 3 * CHUNK_SIZE + 123;

interface Image {
  dir: string;
  src: string;
  bootstrapPath: string;
  blobDir: string;
  blobId: string;
}

async function buildImage(): Promise<Image> {
  const dir = await mkdtemp(join(tmpdir(), 'ferry-lazyfs-'));
  const src = join(dir, 'rootfs');
  await mkdir(join(src, 'etc'), { recursive: true });
  await mkdir(join(src, 'data'));
  await writeFile(join(src, 'etc', 'greeting'), 'hello from the lazy fs\n');
  await writeFile(join(src, 'data', 'big'), randomBytes(BIG_FILE_BYTES));
  await symlink('../etc/greeting', join(src, 'data', 'link'));
  const blobDir = join(dir, 'blobs');
  await mkdir(blobDir);
  const r = await buildLayer({
    source: { dir: src },
    blobDir,
    fsVersion: 6,
    compressor: 'zstd',
    chunkSize: CHUNK_SIZE,
    digester: 'sha256',
  });
  const bootstrapPath = join(dir, 'image.boot');
  await writeFile(bootstrapPath, r.bootstrap);
  return { dir, src, bootstrapPath, blobDir, blobId: r.blobId };
}

async function code(p: Promise<unknown>): Promise<ErrorCode | 'OK'> {
  try {
    await p;
    return 'OK';
  } catch (err) {
    assert.ok(FerryError.is(err), String(err));
    return err.code;
  }
}

/**
 * Registers the contract tests. `make` returns a LazyFs over a fresh daemon keeping its state in
 * `dataDir`; `cleanup` stops that daemon (unmounting what a test left mounted).
 */
export function lazyFsSuite(name: string, make: (dataDir: string) => Promise<{ fs: LazyFs; cleanup(): Promise<void> }>): void {
  let img: Image;
  let n = 0;
  before(async () => {
    img = await buildImage();
  });
  after(async () => {
    if (img) await rm(img.dir, { recursive: true, force: true });
  });

  const request = (tag: string): MountRequest => ({
    id: `suite-${tag}`,
    mountpoint: join(img.dir, `mnt-${tag}`),
    bootstrapPath: img.bootstrapPath,
    mode: 'fuse',
    backend: { type: 'localfs', dir: img.blobDir },
    cacheDir: join(img.dir, `cache-${tag}`),
  });

  const withFs = (title: string, fn: (fs: LazyFs, req: (tag: string) => MountRequest) => Promise<void>): void => {
    it(`${name}: ${title}`, async () => {
      const k = ++n;
      const { fs, cleanup } = await make(join(img.dir, `data-${k}`));
      try {
        await fn(fs, (tag) => request(`${k}-${tag}`));
      } finally {
        await cleanup();
      }
    });
  };

  withFs('mount serves the image at its mountpoint and lists it with its metrics', async (fs, req) => {
    const r = req('a');
    const info = await fs.mount(r);
    assert.equal(info.id, r.id);
    assert.equal(info.mountpoint, r.mountpoint);
    assert.equal(info.bootstrapPath, r.bootstrapPath);
    for (const k of ['bytesFetched', 'chunksCached', 'cacheHitRatio', 'backendErrors'] as const) {
      assert.equal(typeof info.metrics[k], 'number', k);
    }
    assert.equal(await readFile(join(r.mountpoint, 'etc', 'greeting'), 'utf8'), 'hello from the lazy fs\n');
    assert.deepEqual(await readFile(join(r.mountpoint, 'data', 'big')), await readFile(join(img.src, 'data', 'big')));
    assert.equal(await readlink(join(r.mountpoint, 'data', 'link')), '../etc/greeting');
    const listed = (await fs.list()).find((m) => m.id === r.id);
    assert.ok(listed, 'the mount is listed');
    assert.ok(listed.metrics.bytesFetched > 0, 'reading the big file fetched chunks');
  });

  withFs(
    'mounting again: the same request is done already; the id elsewhere or the mountpoint for another id is ALREADY_EXISTS',
    async (fs, req) => {
      const r = req('b');
      await fs.mount(r);
      assert.equal((await fs.mount(r)).id, r.id);
      assert.equal(await code(fs.mount({ ...r, mountpoint: req('other').mountpoint })), 'ALREADY_EXISTS');
      assert.equal(await code(fs.mount({ ...r, id: req('other').id })), 'ALREADY_EXISTS');
      assert.equal((await fs.list()).filter((m) => m.id.startsWith(r.id.replace(/-b$/, ''))).length, 1);
    },
  );

  withFs('a malformed request is INVALID_ARGUMENT and mounts nothing', async (fs, req) => {
    const r = req('c');
    assert.equal(await code(fs.mount({ ...r, id: 'no/slashes' })), 'INVALID_ARGUMENT');
    assert.equal(await code(fs.mount({ ...r, mountpoint: 'relative/path' })), 'INVALID_ARGUMENT');
    assert.equal(await code(fs.mount({ ...r, trace: { schemaVersion: 1, blobs: ['x'], chunks: [] } })), 'INVALID_ARGUMENT');
    assert.deepEqual(await fs.list(), []);
  });

  withFs("trace: the chunks read so far, a valid prefetch trace of the image's blob; NOT_FOUND for an unknown mount", async (fs, req) => {
    const r = req('d');
    await fs.mount(r);
    await readFile(join(r.mountpoint, 'data', 'big'));
    const t = parsePrefetchTrace(await fs.trace(r.id));
    assert.deepEqual(t.blobs, [img.blobId]);
    assert.ok(t.chunks.length >= Math.ceil(BIG_FILE_BYTES / CHUNK_SIZE), `${t.chunks.length} chunks traced`);
    assert.equal(await code(fs.trace('suite-none')), 'NOT_FOUND');
    // a mount handed that trace starts with it (the chunks are prefetched from it)
    const r2 = { ...req('d2'), trace: t };
    assert.equal((await fs.mount(r2)).id, r2.id);
  });

  withFs('umount: the image leaves its mountpoint and the list; umount of an unknown mount is NOT_FOUND', async (fs, req) => {
    const r = req('e');
    await fs.mount(r);
    assert.equal(mountsAt(r.mountpoint).length, 1);
    await fs.umount(r.id);
    assert.equal(mountsAt(r.mountpoint).length, 0);
    assert.deepEqual(
      (await fs.list()).map((m) => m.id),
      [],
    );
    assert.equal(await code(fs.umount(r.id)), 'NOT_FOUND');
    // the id is free again
    assert.equal((await fs.mount(r)).id, r.id);
    await fs.umount(r.id);
  });
}
