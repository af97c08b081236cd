import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CHUNK, blobOf } from '../../test/support/storage-blobs.js';
import { ChunkIndex, decodeDigestFile, digestFilePath, encodeDigestFile } from './chunk-index.js';
import { NodeCache } from './cache-gc.js';
import { LocalFsBackend, StorageDevice, type Backend, type DeviceBlob, type DeviceChunk, type ReadProgress } from './index.js';

class CountingBackend implements Backend {
  readonly kind = 'count';
  bytes = 0;
  constructor(private readonly inner: Backend) {}
  async read(id: string, off: number, len: number, signal: AbortSignal, progress?: ReadProgress): Promise<Buffer> {
    this.bytes += len;
    return this.inner.read(id, off, len, signal, progress);
  }
  fallbacks(): number {
    return 0;
  }
  async close(): Promise<void> {
    await this.inner.close();
  }
}

function part(seed: string, size = CHUNK): Buffer {
  const b = Buffer.alloc(size, seed.charCodeAt(0));
  b.write(seed);
  return b;
}

/** Ten shared chunks; image A's blob has them after one chunk of its own, B's after another and in reverse order. */
function images(): { a: ReturnType<typeof blobOf>; b: ReturnType<typeof blobOf>; c: ReturnType<typeof blobOf>; shared: number } {
  const shared = Array.from({ length: 10 }, (_, i) => part(`shared-${i}`));
  return {
    a: blobOf([part('a-own'), ...shared]),
    b: blobOf([part('b-own', 5000), ...[...shared].reverse()]),
    c: blobOf([...shared.slice(0, 5), part('c-own')]),
    shared: shared.reduce((n, s) => n + s.length, 0),
  };
}

test('chunk index: digest file round trip; a torn or foreign file is not trusted', () => {
  const { a } = images();
  const buf = encodeDigestFile('blake3', a.blob.chunks);
  const back = decodeDigestFile(buf)!;
  assert.equal(back.digester, 'blake3');
  assert.deepEqual(
    back.chunks.map((c) => [c.chunkIndex, c.uncompressedOffset, c.uncompressedSize, c.digest.toString('hex')]),
    a.blob.chunks.map((c) => [c.chunkIndex, c.uncompressedOffset, c.uncompressedSize, c.digest.toString('hex')]),
  );
  assert.equal(decodeDigestFile(buf.subarray(0, buf.length - 1)), undefined);
  assert.equal(decodeDigestFile(Buffer.from('not a digest file')), undefined);
});

test('chunk index: a blob whose chunks another blob cached fetches only its own; verified copies; across a restart', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ferry-share-'));
  try {
    const { a, b, c, shared } = images();
    for (const x of [a, b, c]) writeFileSync(join(dir, x.id), x.bytes);
    const cacheDir = join(dir, 'cache');
    const index = new ChunkIndex();
    const open1 = async (x: ReturnType<typeof blobOf>, idx: ChunkIndex | undefined) => {
      const be = new CountingBackend(new LocalFsBackend(dir));
      const opts = { blobs: [x.blob], backend: be, cacheDir, amplifyBytes: 256 * 1024 };
      return { be, dev: await StorageDevice.open(idx ? { ...opts, chunkIndex: idx } : opts) };
    };
    const A = await open1(a, index);
    assert.ok((await A.dev.read(a.id, 0, a.view.length)).equals(a.view));
    assert.equal(A.be.bytes, a.bytes.length, 'A alone: all of it fetched');
    assert.ok(existsSync(digestFilePath(cacheDir, a.id)), 'digest file written beside the cache');
    // B (other blob, other order) while A is open: only its own chunk is fetched
    const B = await open1(b, index);
    assert.ok((await B.dev.read(b.id, 0, b.view.length)).equals(b.view));
    assert.equal(B.be.bytes, 5000, 'B fetched only its own chunk');
    assert.equal(B.dev.stats.sharedBytes, shared);
    assert.equal(index.stats.sharedChunks, 10);
    assert.deepEqual(
      B.dev
        .trace()
        .map((t) => t.chunkIndex)
        .sort((x, y) => x - y),
      [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
      "copied chunks are in B's access trace like fetched ones",
    );
    await B.dev.close();
    await A.dev.close();

    // after a restart (a new index, the devices closed): the digest files on disk are found
    const index2 = new ChunkIndex();
    // A's cached copy of shared-0 is corrupted on disk: the copy fails its digest, that chunk is fetched
    const f = await open(join(cacheDir, `${a.id}.blob.data`), 'r+');
    await f.write(Buffer.from('garbage'), 0, 7, a.blob.chunks[1]!.uncompressedOffset + 100);
    await f.close();
    const C = await open1(c, index2);
    assert.ok((await C.dev.read(c.id, 0, c.view.length)).equals(c.view), 'C reads correctly');
    assert.equal(index2.stats.staleSources, 1, 'the corrupt source was refused');
    // shared-0, refused from A, came from B's cache: C fetched only its own chunk
    assert.equal(C.be.bytes, CHUNK);
    assert.equal(C.dev.stats.sharedBytes, 5 * CHUNK);
    await C.dev.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('chunk index: an emptied or deleted source is not used; the GC deletes the digest file and forgets the blob', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ferry-share-gc-'));
  try {
    const { a, b } = images();
    for (const x of [a, b]) writeFileSync(join(dir, x.id), x.bytes);
    const cacheDir = join(dir, 'cache');
    const users: StorageDevice[] = [];
    const node = new NodeCache({ quota: 0, dirs: () => [cacheDir], users: () => users });
    const be = new CountingBackend(new LocalFsBackend(dir));
    const A = await StorageDevice.open({ blobs: [a.blob], backend: be, cacheDir, chunkIndex: node.chunks });
    users.push(A);
    await A.read(a.id, 0, a.view.length);
    // emptied in place (an eviction of a mounted image): nothing of it is shareable any more
    let release!: () => void;
    assert.equal(
      A.holdForEviction(
        a.id,
        new Promise<void>((r) => {
          release = r;
        }),
      ),
      true,
    );
    await A.emptyCache(a.id);
    release();
    const be2 = new CountingBackend(new LocalFsBackend(dir));
    const B = await StorageDevice.open({ blobs: [b.blob], backend: be2, cacheDir, chunkIndex: node.chunks });
    assert.ok((await B.read(b.id, 0, b.view.length)).equals(b.view));
    assert.equal(be2.bytes, b.bytes.length, 'A was emptied: B fetched everything');
    assert.equal(node.chunks.stats.staleSources, 0, 'emptied chunks were not even tried');
    await B.close();
    await A.read(a.id, 0, a.view.length); // A again (fetches again)
    await A.close();
    users.length = 0;
    const r = await node.gc({ collectUnused: true });
    assert.equal(r.removedBlobs, 2);
    assert.equal(existsSync(digestFilePath(cacheDir, a.id)), false, 'digest file deleted with the blob');
    assert.equal(node.chunks.size, 0, 'the index forgot both blobs');
    const c1 = a.blob.chunks[1]!;
    assert.equal(node.chunks.has('sha256', c1.digest, c1.uncompressedSize, 'another'), false, 'no place left for their chunks');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('chunk index: a blob whose digests come with its prepare step is shared both ways once they are loaded', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ferry-share-prep-'));
  try {
    const { a, b } = images();
    for (const x of [a, b]) writeFileSync(join(dir, x.id), x.bytes);
    const cacheDir = join(dir, 'cache');
    const index = new ChunkIndex();
    // digests withheld until `prepare` (a bootstrap without a chunk table: they are in the blob's tail)
    const tableless = (x: ReturnType<typeof blobOf>): DeviceBlob => {
      const chunks = x.blob.chunks.map((c): DeviceChunk => ({ ...c, digest: Buffer.alloc(0) }));
      let prepares = 0;
      return {
        ...x.blob,
        chunks,
        prepare: async () => {
          prepares++;
          assert.equal(prepares, 1, 'prepared once');
          chunks.forEach((c, i) => {
            c.digest = x.blob.chunks[i]!.digest;
          });
        },
      };
    };
    const beA = new CountingBackend(new LocalFsBackend(dir));
    const A = await StorageDevice.open({ blobs: [tableless(a)], backend: beA, cacheDir, chunkIndex: index });
    assert.ok((await A.read(a.id, 0, a.view.length)).equals(a.view));
    assert.equal(index.size, 1, 'A indexed once its digests were loaded');
    const beB = new CountingBackend(new LocalFsBackend(dir));
    const B = await StorageDevice.open({ blobs: [tableless(b)], backend: beB, cacheDir, chunkIndex: index });
    assert.ok((await B.read(b.id, 0, b.view.length)).equals(b.view));
    assert.equal(beB.bytes, 5000, 'B loaded its digests before fetching, then fetched only its own chunk');
    await B.close();
    await A.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
