import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createServer, type Server } from 'node:net';
import { mkdtempSync, rmSync, writeFileSync, readFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { StorageDevice, LocalFsBackend, RegistryBackend, type Backend, type DeviceBlob, type DeviceChunk } from './index.js';

const CHUNK = 64 * 1024;

/** A blob of n raw (uncompressed) chunks of varying sizes, 4 KiB-aligned uncompressed layout. */
function makeBlob(n: number): { id: string; bytes: Buffer; blob: DeviceBlob; view: Buffer } {
  const parts: Buffer[] = [];
  const chunks: DeviceChunk[] = [];
  let co = 0;
  let uo = 0;
  for (let i = 0; i < n; i++) {
    const size = i === n - 1 ? 5000 : CHUNK;
    const data = Buffer.alloc(size, i + 1);
    data.write(`chunk-${i}`);
    parts.push(data);
    chunks.push({ chunkIndex: i, compressedOffset: co, compressedSize: size, uncompressedOffset: uo, uncompressedSize: size, compressed: false, digest: createHash('sha256').update(data).digest() });
    co += size;
    uo += Math.ceil(size / 4096) * 4096;
  }
  const bytes = Buffer.concat(parts);
  const id = createHash('sha256').update(bytes).digest('hex');
  const view = Buffer.alloc(uo);
  chunks.forEach((c, i) => parts[i]!.copy(view, c.uncompressedOffset));
  const blob: DeviceBlob = { blobId: id, uncompressedSize: uo, chunkCount: n, chunks, codec: { compressor: 'none', digester: 'sha256' } };
  return { id, bytes, blob, view };
}

class CountingBackend implements Backend {
  readonly kind = 'count';
  calls: Array<[number, number]> = [];
  constructor(private readonly inner: Backend) {}
  async read(id: string, off: number, len: number, signal: AbortSignal): Promise<Buffer> {
    this.calls.push([off, len]);
    await new Promise((r) => setTimeout(r, 5));
    return this.inner.read(id, off, len, signal);
  }
  fallbacks(): number { return 0; }
  async close(): Promise<void> { await this.inner.close(); }
}

test('storage: lazy reads, merged requests, single flight, read-ahead only when sequential, persisted cache', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ferry-storage-'));
  try {
    const { id, bytes, blob, view } = makeBlob(40);
    writeFileSync(join(dir, id), bytes);
    const be = new CountingBackend(new LocalFsBackend(dir));
    const dev = await StorageDevice.open({ blobs: [blob], backend: be, cacheDir: join(dir, 'cache'), amplifyBytes: 256 * 1024 });
    // 8 concurrent reads of the same range: one backend request, for that chunk only.
    const rs = await Promise.all(Array.from({ length: 8 }, () => dev.read(id, 70000, 1000)));
    for (const r of rs) assert.ok(r.equals(view.subarray(70000, 71000)));
    assert.deepEqual(be.calls, [[CHUNK, CHUNK]]);
    // Reading on chunk by chunk: misses 2–4 fetch their chunk; from the 4th miss in a row that
    // starts where the previous fetch ended, fetches reach ahead (128 KiB, then 256 KiB = the cap).
    const readChunk = async (i: number): Promise<void> => {
      assert.ok((await dev.read(id, i * CHUNK + 10, 100)).equals(view.subarray(i * CHUNK + 10, i * CHUNK + 110)));
    };
    for (let i = 2; i <= 5; i++) await readChunk(i);
    assert.deepEqual(be.calls.slice(1), [[2 * CHUNK, CHUNK], [3 * CHUNK, CHUNK], [4 * CHUNK, CHUNK], [5 * CHUNK, 3 * CHUNK]]);
    await readChunk(6); await readChunk(7); // read ahead: no request
    await readChunk(8);
    assert.deepEqual(be.calls.slice(5), [[8 * CHUNK, 5 * CHUNK]]);
    // A jump elsewhere fetches just its chunk again.
    await readChunk(30);
    assert.deepEqual(be.calls.slice(6), [[30 * CHUNK, CHUNK]]);
    // One read over several missing chunks: one request for all of them, nothing more.
    assert.ok((await dev.read(id, 20 * CHUNK, 4 * CHUNK)).equals(view.subarray(20 * CHUNK, 24 * CHUNK)));
    assert.deepEqual(be.calls.slice(7), [[20 * CHUNK, 4 * CHUNK]]);
    // A read spanning cached and missing chunks.
    const all = await dev.read(id, 0, view.length + 999);
    assert.ok(all.equals(view));
    assert.equal(dev.chunksCached(), 40);
    assert.ok(dev.stats.hits > 0 && dev.stats.misses > 0);
    await dev.close();
    assert.ok(readFileSync(join(dir, 'cache', `${id}.blob.data`)).equals(view));
    // Restart: nothing is fetched again.
    const be2 = new CountingBackend(new LocalFsBackend(dir));
    const dev2 = await StorageDevice.open({ blobs: [blob], backend: be2, cacheDir: join(dir, 'cache') });
    assert.ok((await dev2.read(id, 0, view.length)).equals(view));
    assert.equal(be2.calls.length, 0);
    await dev2.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('storage: corrupt chunk is refetched once then fails; the rest of the blob still reads', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ferry-storage-'));
  try {
    const { id, bytes, blob, view } = makeBlob(6);
    const bad = Buffer.from(bytes);
    bad.writeUInt8(bad.readUInt8(3 * CHUNK + 100) ^ 0xff, 3 * CHUNK + 100);
    writeFileSync(join(dir, id), bad);
    const be = new CountingBackend(new LocalFsBackend(dir));
    const dev = await StorageDevice.open({ blobs: [blob], backend: be, cacheDir: join(dir, 'cache'), amplifyBytes: 128 * 1024 });
    await assert.rejects(dev.read(id, 3 * CHUNK, 10), (e: Error & { code?: string }) => e.code === 'DATA_LOSS' && /chunk 3/.test(e.message));
    assert.equal(dev.stats.digestMismatches, 2);
    assert.deepEqual(be.calls.at(-1), [3 * CHUNK, CHUNK]); // the refetch of just that chunk
    assert.ok((await dev.read(id, 0, CHUNK)).equals(view.subarray(0, CHUNK)));
    await dev.close();
    assert.ok(existsSync(join(dir, 'cache', `${id}.chunk_map`)));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('storage: a registry that stops answering fails the read within the deadline, then recovers', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ferry-storage-'));
  const sockets = new Set<import('node:net').Socket>();
  const server: Server = createServer((s) => { sockets.add(s); s.on('error', () => undefined); }); // accepts, never answers
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  try {
    const port = (server.address() as { port: number }).port;
    const { id, bytes, blob, view } = makeBlob(3);
    writeFileSync(join(dir, id), bytes);
    const reg = new RegistryBackend({ host: `127.0.0.1:${port}`, repo: 'library/x', insecure: true, timeoutMs: 300, retries: 0 });
    let useLocal = false;
    const local = new LocalFsBackend(dir);
    const switching: Backend = {
      kind: 'switch',
      read: (i, o, l, s) => (useLocal ? local.read(i, o, l) : reg.read(i, o, l, s)),
      fallbacks: () => 0,
      close: async () => { await local.close(); },
    };
    const dev = await StorageDevice.open({ blobs: [blob], backend: switching, cacheDir: join(dir, 'cache'), requestDeadlineMs: 1500 });
    const t0 = Date.now();
    await assert.rejects(dev.read(id, 0, 10));
    assert.ok(Date.now() - t0 < 2500, `failed after ${Date.now() - t0} ms`);
    assert.equal(dev.stats.backendErrors, 1);
    useLocal = true; // the backend is back
    assert.ok((await dev.read(id, 0, 10)).equals(view.subarray(0, 10)));
    await dev.close();
  } finally {
    for (const s of sockets) s.destroy();
    server.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('storage: prefetch fills the cache in the background under a bandwidth limit', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ferry-storage-'));
  try {
    const { id, bytes, blob } = makeBlob(8);
    writeFileSync(join(dir, id), bytes);
    const dev = await StorageDevice.open({ blobs: [blob], backend: new LocalFsBackend(dir), cacheDir: join(dir, 'cache'), prefetchMergeBytes: 128 * 1024, prefetchBandwidth: 2 * 1024 * 1024 });
    const t0 = Date.now();
    dev.prefetch('all');
    await dev.prefetchIdle();
    const ms = Date.now() - t0;
    assert.equal(dev.chunksCached(), 8);
    // ~450 KiB at 2 MiB/s: at least ~150 ms (the last batch's sleep may be cut short).
    assert.ok(ms >= 150, `prefetch took only ${ms} ms`);
    assert.equal(dev.stats.prefetchedBytes, bytes.length);
    await dev.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('storage: the access trace lists chunks fetched for readers in order, not background prefetch; urgent prefetch does not wait', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ferry-storage-'));
  try {
    const { id, bytes, blob, view } = makeBlob(40);
    writeFileSync(join(dir, id), bytes);
    const be = new CountingBackend(new LocalFsBackend(dir));
    const dev = await StorageDevice.open({ blobs: [blob], backend: be, cacheDir: join(dir, 'cache'), amplifyBytes: 0 });
    await dev.read(id, 20 * CHUNK + 5, 10);
    await dev.read(id, 3 * CHUNK, 2 * CHUNK); // chunks 3 and 4 in one request
    await dev.read(id, 20 * CHUNK, 10); // a hit: not traced again
    dev.prefetch([{ blobId: id, chunks: dev.chunksByIndex(id, [10, 11])! }]); // background: not in the trace
    await dev.prefetchIdle();
    dev.prefetch([{ blobId: id, chunks: dev.chunksByIndex(id, [30, 999, 31])! }], { record: true });
    await dev.prefetchIdle();
    assert.deepEqual(dev.trace().map((t) => t.chunkIndex), [20, 3, 4, 30, 31]);
    assert.ok(dev.trace().every((t) => t.blobId === id));
    assert.equal(dev.chunksByIndex('f'.repeat(64), [1]), undefined);
    // an urgent prefetch completes while an on-demand read is still waiting for the backend (a
    // background one waits for on-demand reads to finish)
    let release!: () => void;
    const gate = new Promise<void>((r) => { release = r; });
    const inner = be.read.bind(be);
    be.read = async (b, off, len, sig) => { if (off === 35 * CHUNK) await gate; return inner(b, off, len, sig); };
    const slow = dev.read(id, 35 * CHUNK, 10);
    dev.prefetch([{ blobId: id, chunks: dev.chunksByIndex(id, [37])! }], { urgent: true });
    const idle = await Promise.race([dev.prefetchIdle().then(() => true), new Promise((r) => setTimeout(() => r(false), 2000))]);
    assert.equal(idle, true, 'urgent prefetch finished before the on-demand read');
    release();
    assert.ok((await slow).equals(view.subarray(35 * CHUNK, 35 * CHUNK + 10)));
    await dev.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
