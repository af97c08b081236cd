import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createServer, type Server } from 'node:net';
import { mkdtempSync, rmSync, writeFileSync, readFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DigestMismatchError, FerryError } from '../core/index.js';
import { chunkDigest, getCodec } from '../format/compress/index.js';
import { FakeClock } from '../../test/support/clock.js';
import { chunkReady } from './protocol.js';
import { CHUNK, makeBlob } from '../../test/support/storage-blobs.js';
import {
  StorageDevice,
  LocalFsBackend,
  RegistryBackend,
  type Backend,
  type ReadProgress,
  type DeviceBlob,
  type DeviceChunk,
} from './index.js';

class CountingBackend implements Backend {
  readonly kind = 'count';
  calls: Array<[number, number]> = [];
  constructor(private readonly inner: Backend) {}
  async read(id: string, off: number, len: number, signal: AbortSignal, progress?: ReadProgress): Promise<Buffer> {
    this.calls.push([off, len]);
    await new Promise((r) => setTimeout(r, 5));
    return this.inner.read(id, off, len, signal, progress);
  }
  fallbacks(): number {
    return 0;
  }
  async close(): Promise<void> {
    await this.inner.close();
  }
}

test('storage: lazy reads, merged requests, single flight, read-ahead only when sequential, persisted cache', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ferry-storage-'));
  try {
    const { id, bytes, blob, view } = makeBlob(40);
    writeFileSync(join(dir, id), bytes);
    const be = new CountingBackend(new LocalFsBackend(dir));
    // no miss amplification: the read-ahead of sequential streams is what this test is about
    const dev = await StorageDevice.open({
      blobs: [blob],
      backend: be,
      cacheDir: join(dir, 'cache'),
      amplifyBytes: 256 * 1024,
      missWindow: 0,
    });
    // 8 concurrent reads of the same range: one backend request, for that chunk only.
    const rs = await Promise.all(Array.from({ length: 8 }, () => dev.read(id, 70000, 1000)));
    for (const r of rs) assert.ok(r.equals(view.subarray(70000, 71000)));
    assert.deepEqual(be.calls, [[CHUNK, CHUNK]]);
    // Reading on chunk by chunk: each read continues the stream; reads 2–4 fetch their chunk, the
    // 4th read in a row (SEQUENTIAL_AFTER) also starts read-ahead one window (128 KiB) ahead.
    const readChunk = async (i: number): Promise<void> => {
      assert.ok((await dev.read(id, i * CHUNK + 10, 100)).equals(view.subarray(i * CHUNK + 10, i * CHUNK + 110)));
    };
    const calls = (from: number): number[][] => be.calls.slice(from).map(([o, l]) => [o / CHUNK, l / CHUNK]);
    const triggers = new Uint8Array(dev.sharedCaches()[0]!.triggers);
    for (let i = 2; i <= 5; i++) await readChunk(i);
    assert.deepEqual(
      calls(1),
      [
        [2, 1],
        [3, 1],
        [4, 1],
        [5, 1],
        [6, 2],
      ],
      'chunks 6–7 read ahead',
    );
    // the window's first chunk past the reader is the trigger: its read (not answered by the FUSE
    // fast path) reaches the device, which reads the next, doubled window ahead (up to amplify_io)
    assert.equal(chunkReady(triggers, 6), true, 'chunk 6 is the trigger');
    await readChunk(6);
    assert.equal(chunkReady(triggers, 6), false, 'cleared once read');
    assert.deepEqual(calls(6), [[8, 4]], '256 KiB window, the cap');
    await readChunk(7);
    await readChunk(8); // read ahead: no request
    await dev.prefetchIdle();
    assert.deepEqual(calls(7), [[12, 4]], 'the next window; then a window is ahead: nothing');
    // A jump elsewhere fetches just its chunk again.
    await readChunk(30);
    assert.deepEqual(calls(8), [[30, 1]]);
    // One read over several missing chunks: one request for all of them, nothing more.
    assert.ok((await dev.read(id, 20 * CHUNK, 4 * CHUNK)).equals(view.subarray(20 * CHUNK, 24 * CHUNK)));
    assert.deepEqual(calls(9), [[20, 4]]);
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
    await assert.rejects(
      dev.read(id, 3 * CHUNK, 10),
      (e: Error & { code?: string }) => e.code === 'DATA_LOSS' && /chunk 3/.test(e.message),
    );
    assert.equal(dev.stats.digestMismatches, 2);
    assert.deepEqual(be.calls.at(-1), [3 * CHUNK, CHUNK]); // the refetch of just that chunk
    assert.ok((await dev.read(id, 0, CHUNK)).equals(view.subarray(0, CHUNK)));
    await dev.close();
    assert.ok(existsSync(join(dir, 'cache', `${id}.chunk_map`)));
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('storage: a backend that never answers (and ignores the abort) fails the read at the deadline, not before; then recovers', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ferry-storage-'));
  try {
    const { id, bytes, blob, view } = makeBlob(3);
    writeFileSync(join(dir, id), bytes);
    const local = new LocalFsBackend(dir);
    let hang = true;
    const signals: AbortSignal[] = [];
    const hanging: Backend = {
      kind: 'hang',
      read: (i, o, l, sig) => {
        signals.push(sig);
        return hang ? new Promise<Buffer>(() => undefined) : local.read(i, o, l);
      },
      fallbacks: () => 0,
      close: async () => {
        await local.close();
      },
    };
    const clock = new FakeClock();
    const dev = await StorageDevice.open({ blobs: [blob], backend: hanging, cacheDir: join(dir, 'cache'), requestDeadlineMs: 1500, clock });
    const outcome: { v?: unknown } = {};
    const read = dev.read(id, 0, 10).then(
      (b) => {
        outcome.v = b;
      },
      (e: unknown) => {
        outcome.v = e;
      },
    );
    await clock.timerSet();
    await clock.advance(1499);
    assert.equal(outcome.v, undefined, 'still waiting 1 ms before the deadline');
    assert.equal(signals[0]!.aborted, false);
    await clock.advance(1); // settles within the advance: no waiting on anything else
    const err: unknown = outcome.v;
    assert.ok(FerryError.hasCode(err, 'DEADLINE_EXCEEDED'), `failed at the deadline: ${String(err)}`);
    assert.match((err as Error).message, /backend gave no data in 1500 ms/);
    assert.equal(signals[0]!.aborted, true, 'the backend request was aborted');
    assert.equal(dev.stats.backendErrors, 1);
    await read;
    hang = false; // the backend is back
    assert.ok((await dev.read(id, 0, 10)).equals(view.subarray(0, 10)));
    assert.equal(clock.pending, 0, 'the deadline timer of a finished request is cancelled');
    await dev.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('storage: a registry that accepts connections and never answers fails the read (backend timeout), then recovers', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ferry-storage-'));
  const sockets = new Set<import('node:net').Socket>();
  const server: Server = createServer((s) => {
    sockets.add(s);
    s.on('error', () => undefined);
  }); // accepts, never answers
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
      close: async () => {
        await local.close();
      },
    };
    // the device deadline is far off: the backend's own timeout is what ends the read
    const dev = await StorageDevice.open({ blobs: [blob], backend: switching, cacheDir: join(dir, 'cache'), requestDeadlineMs: 600_000 });
    await assert.rejects(dev.read(id, 0, 10), (e: Error) => !/backend gave no data/.test(e.message));
    assert.ok(sockets.size >= 1, 'the registry was asked');
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
    const clock = new FakeClock();
    const bw = 2 * 1024 * 1024;
    const dev = await StorageDevice.open({
      blobs: [blob],
      backend: new LocalFsBackend(dir),
      cacheDir: join(dir, 'cache'),
      prefetchMergeBytes: 128 * 1024,
      prefetchBandwidth: bw,
      clock,
    });
    const t0 = clock.now();
    dev.prefetch('all');
    await clock.runUntil(dev.prefetchIdle(), { maxStepMs: 1000 }); // the pauses, not the 30 s request deadlines
    assert.equal(dev.chunksCached(), 8);
    assert.equal(dev.stats.prefetchedBytes, bytes.length);
    // 128 KiB requests (two chunks each), each followed by a pause of its bytes ÷ bandwidth (no
    // time passes during the reads on this clock, so each pause is the whole budget)
    const batches = [2 * CHUNK, 2 * CHUNK, 2 * CHUNK, CHUNK + 5000];
    assert.deepEqual(
      clock.history.filter((t) => t.sleep).map((t) => t.ms),
      batches.map((b) => (b / bw) * 1000),
    );
    const took = clock.now() - t0;
    assert.ok(Math.abs(took - (bytes.length / bw) * 1000) < 0.01, `the prefetch took bytes ÷ bandwidth (${took} ms)`);
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
    assert.deepEqual(
      dev.trace().map((t) => t.chunkIndex),
      [20, 3, 4, 30, 31],
    );
    assert.ok(dev.trace().every((t) => t.blobId === id));
    assert.equal(dev.chunksByIndex('f'.repeat(64), [1]), undefined);
    // an urgent prefetch completes while an on-demand read is still waiting for the backend (a
    // background one waits for on-demand reads to finish)
    let release!: () => void;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    const inner = be.read.bind(be);
    be.read = async (b, off, len, sig) => {
      if (off === 35 * CHUNK) await gate;
      return inner(b, off, len, sig);
    };
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

/**
 * A blob of zstd chunks with blake3 digests, decoded by the device with format/compress's
 * decodeChunk (what the daemon uses), small chunks on the calling thread and large ones in the decode threads.
 * `corrupt`: chunk indexes whose stored bytes are replaced by a well-formed zstd frame of the same
 * length holding other bytes — they decompress cleanly, only the digest comparison can tell.
 */
function makeZstdBlob(sizes: number[], corrupt: number[]): { id: string; bytes: Buffer; blob: DeviceBlob; view: Buffer } {
  const zstd = getCodec('zstd');
  const parts: Buffer[] = [];
  const chunks: DeviceChunk[] = [];
  const plains: Buffer[] = [];
  let co = 0;
  let uo = 0;
  sizes.forEach((size, i) => {
    let text = '';
    for (let n = 0; text.length < size; n++) text += `chunk ${i} line ${n} ${(n * 7919) % 1000}\n`;
    const plain = Buffer.from(text).subarray(0, size);
    let stored = zstd.compress(plain)!;
    if (corrupt.includes(i)) {
      // a byte changed inside a line: the frame of the altered bytes has the same length (bounded search)
      let found: Buffer | undefined;
      for (let pos = 1000; pos < 1000 + 64 && !found; pos++) {
        const altered = Buffer.from(plain);
        altered[pos] = altered[pos] === 0x61 ? 0x62 : 0x61;
        const frame = zstd.compress(altered)!;
        if (frame.length === stored.length && zstd.decompress(frame, size).equals(altered)) found = frame;
      }
      assert.ok(found, `a same-length corrupt frame for chunk ${i}`);
      stored = found;
    }
    parts.push(stored);
    plains.push(plain);
    chunks.push({
      chunkIndex: i,
      compressedOffset: co,
      compressedSize: stored.length,
      uncompressedOffset: uo,
      uncompressedSize: size,
      compressed: true,
      digest: chunkDigest('blake3', plain),
    });
    co += stored.length;
    uo += Math.ceil(size / 4096) * 4096;
  });
  const bytes = Buffer.concat(parts);
  const id = createHash('sha256').update(bytes).digest('hex');
  const view = Buffer.alloc(uo);
  chunks.forEach((c, i) => {
    plains[i]!.copy(view, c.uncompressedOffset);
  });
  const blob: DeviceBlob = {
    blobId: id,
    uncompressedSize: uo,
    chunkCount: sizes.length,
    chunks,
    codec: { compressor: 'zstd', digester: 'blake3' },
  };
  return { id, bytes, blob, view };
}

test('storage: with the RAFS decoder, chunks that decompress cleanly to other bytes fail their digest (inline and in the decode threads)', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ferry-storage-'));
  try {
    const small = 64 * 1024;
    const big = 320 * 1024; // over the inline limit: decoded in a worker thread
    const { id, bytes, blob, view } = makeZstdBlob([small, big, small, big], [0, 1]);
    writeFileSync(join(dir, id), bytes);
    const dev = await StorageDevice.open({
      blobs: [blob],
      backend: new LocalFsBackend(dir),
      cacheDir: join(dir, 'cache'),
      amplifyBytes: 0,
      missWindow: 0,
    });
    const at = (i: number): number => blob.chunks[i]!.uncompressedOffset;
    const digestFailure =
      (i: number) =>
      (e: Error & { cause?: Error }): boolean =>
        FerryError.hasCode(e, 'DATA_LOSS') &&
        new RegExp(`chunk ${i}: corrupt after refetch`).test(e.message) &&
        /digest mismatch: expected blake3:/.test(e.cause?.message ?? '');
    await assert.rejects(
      dev.read(id, at(0) + 10, 100),
      (e: Error & { cause?: Error }) => digestFailure(0)(e) && e.cause instanceof DigestMismatchError,
    );
    assert.equal(dev.stats.digestMismatches, 2, 'fetched, refetched, both failed the digest');
    await assert.rejects(dev.read(id, at(1) + 10, 100), digestFailure(1));
    assert.equal(dev.stats.digestMismatches, 4);
    assert.equal(dev.chunksCached(), 0, 'nothing unverified is cached');
    // the good chunks of the same blob read, through the same decoders
    assert.ok((await dev.read(id, at(2), small)).equals(view.subarray(at(2), at(2) + small)));
    assert.ok((await dev.read(id, at(3), big)).equals(view.subarray(at(3), at(3) + big)));
    await dev.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('storage: the access trace covers the first 30 s after the device opened', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ferry-storage-'));
  try {
    const { id, bytes, blob } = makeBlob(4);
    writeFileSync(join(dir, id), bytes);
    const clock = new FakeClock();
    const dev = await StorageDevice.open({
      blobs: [blob],
      backend: new LocalFsBackend(dir),
      cacheDir: join(dir, 'cache'),
      amplifyBytes: 0,
      missWindow: 0,
      clock,
    });
    await dev.read(id, 0, 10);
    await clock.advance(30_000);
    await dev.read(id, CHUNK, 10); // at 30 s: still recorded
    await clock.advance(1);
    await dev.read(id, 2 * CHUNK, 10); // past it: fetched, not recorded
    assert.deepEqual(
      dev.trace().map((t) => t.chunkIndex),
      [0, 1],
    );
    assert.equal(dev.chunksCached(), 3);
    await dev.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('storage: scattered misses merge over small gaps; prefetch goes out as a few large requests in parallel', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ferry-storage-'));
  try {
    const { id, bytes, blob, view } = makeBlob(40);
    writeFileSync(join(dir, id), bytes);
    const be = new CountingBackend(new LocalFsBackend(dir));
    const dev = await StorageDevice.open({
      blobs: [blob],
      backend: be,
      cacheDir: join(dir, 'cache'),
      amplifyBytes: 0,
      mergeGap: CHUNK,
      missWindow: 0,
      fetchConcurrency: 3,
    });
    const calls = (from: number): number[][] => be.calls.slice(from).map(([o, l]) => [o / CHUNK, l / CHUNK]);
    // chunk 1 cached, a read of chunks 0–2: one request reading over the one-chunk gap
    await dev.read(id, CHUNK, 10);
    await dev.read(id, 10, 2 * CHUNK);
    assert.deepEqual(calls(0), [
      [1, 1],
      [0, 3],
    ]);
    // prefetch of a start-up set (in need order): a few large requests, up to 3 in flight
    let inflight = 0;
    let most = 0;
    const inner = be.read.bind(be);
    be.read = async (b, off, len, sig, progress) => {
      inflight++;
      most = Math.max(most, inflight);
      try {
        return await inner(b, off, len, sig, progress);
      } finally {
        inflight--;
      }
    };
    const start = be.calls.length;
    const set = [30, 31, 32, 12, 13, 20, 21, 22, 23, 26, 27, 36];
    dev.prefetch([{ blobId: id, chunks: dev.chunksByIndex(id, set)! }], { urgent: true });
    await dev.prefetchIdle();
    assert.deepEqual(
      calls(start),
      [
        [30, 3],
        [12, 2],
        [20, 4],
        [26, 2],
        [36, 1],
      ],
      'need order, one request per run',
    );
    assert.ok(most > 1 && most <= 3, `requests in flight at once: ${most}`);
    for (const i of set) assert.ok((await dev.read(id, i * CHUNK, 10)).equals(view.subarray(i * CHUNK, i * CHUNK + 10)));
    await dev.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('storage: misses landing together are amplified over the chunks after them, the window growing while they are read, within a byte budget and a family of files', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ferry-storage-'));
  try {
    const { id, bytes, blob, view } = makeBlob(40);
    writeFileSync(join(dir, id), bytes);
    const be = new CountingBackend(new LocalFsBackend(dir));
    // regions of 8 chunks (the largest window); a 4-chunk starting window; at most 6 chunks fetched ahead unread
    const dev = await StorageDevice.open({
      blobs: [blob],
      backend: be,
      cacheDir: join(dir, 'cache'),
      amplifyBytes: 0,
      mergeGap: CHUNK,
      missWindow: 4 * CHUNK,
      missWindowMax: 8 * CHUNK,
      amplifyBudget: 6 * CHUNK,
    });
    const calls = (from: number): number[][] => be.calls.slice(from).map(([o, l]) => [o / CHUNK, l / CHUNK]);
    const read = async (i: number): Promise<void> => {
      assert.ok((await dev.read(id, i * CHUNK + 5, 10)).equals(view.subarray(i * CHUNK + 5, i * CHUNK + 15)));
    };
    await read(0);
    assert.deepEqual(calls(0), [[0, 1]], 'a first miss in a region: only its chunk');
    await read(1);
    assert.deepEqual(calls(1), [[1, 5]], 'region 0 missed before: 4 chunks (the window) past the request');
    assert.deepEqual(dev.stats.ahead.amplify, { fetched: 4 * CHUNK, read: 0 });
    for (const i of [2, 3, 4, 5]) await read(i);
    assert.equal(be.calls.length, 2, 'what came along is cached');
    assert.deepEqual(dev.stats.ahead.amplify, { fetched: 4 * CHUNK, read: 4 * CHUNK }, 'and counted as read');
    await read(6);
    assert.deepEqual(calls(2), [[6, 7]], 'all of it was read: the window doubled to 8, the budget caps it at 6');
    await read(20);
    await read(22);
    assert.deepEqual(
      calls(3),
      [
        [20, 1],
        [22, 1],
      ],
      'the budget is spent (6 chunks unread): no amplification',
    );
    for (const i of [7, 8, 9, 10, 11, 12]) await read(i);
    assert.equal(be.calls.length, 5);
    await read(18);
    assert.deepEqual(calls(5), [[18, 4]], 'read again: budget back; 19 and 21 come along, the cached 20 read over');
    // families (the mount's files): amplification stays within the missed chunk's family
    dev.setFamilies(id, new Map([24, 25, 26, 27, 28, 29].map((i) => [i, i < 27 ? 1 : 2])));
    await read(24);
    await read(25);
    assert.deepEqual(
      calls(6),
      [
        [24, 1],
        [25, 2],
      ],
      'chunk 26 is the last of its family',
    );
    assert.ok((await dev.read(id, 0, 40 * CHUNK)).equals(view));
    await dev.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('storage: with families pending (a mount before its file walk) misses are not amplified until they are set', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ferry-storage-'));
  try {
    const { id, bytes, blob } = makeBlob(20);
    writeFileSync(join(dir, id), bytes);
    const be = new CountingBackend(new LocalFsBackend(dir));
    const dev = await StorageDevice.open({
      blobs: [blob],
      backend: be,
      cacheDir: join(dir, 'cache'),
      amplifyBytes: 0,
      mergeGap: 0,
      missWindow: 4 * CHUNK,
      familiesPending: true,
    });
    const calls = (): number[][] => be.calls.map(([o, l]) => [o / CHUNK, l / CHUNK]);
    for (const i of [0, 1, 2]) await dev.read(id, i * CHUNK, 10);
    assert.deepEqual(calls(), [
      [0, 1],
      [1, 1],
      [2, 1],
    ]);
    dev.setFamilies(id, new Map());
    await dev.read(id, 3 * CHUNK, 10);
    assert.deepEqual(calls().slice(3), [[3, 5]], 'families known (none here): amplified');
    await dev.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('storage: a file marked whole is fetched in one request when a read misses any of its chunks, without what is cached', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ferry-storage-'));
  try {
    const { id, bytes, blob, view } = makeBlob(20);
    writeFileSync(join(dir, id), bytes);
    const be = new CountingBackend(new LocalFsBackend(dir));
    const dev = await StorageDevice.open({
      blobs: [blob],
      backend: be,
      cacheDir: join(dir, 'cache'),
      amplifyBytes: 0,
      mergeGap: 0,
      missWindow: 0,
      countAhead: true,
    });
    const calls = (): number[][] => be.calls.map(([o, l]) => [o / CHUNK, l / CHUNK]);
    // file A = chunks 2–6, file B = chunks 10–13
    dev.setWholeFiles(
      id,
      new Map([
        [2, [2, 3, 4, 5, 6]],
        [10, [10, 11, 12, 13]],
      ]),
    );
    assert.ok((await dev.read(id, 2 * CHUNK, 10)).equals(view.subarray(2 * CHUNK, 2 * CHUNK + 10)));
    assert.deepEqual(calls(), [[2, 5]], 'the first chunk of A: A in one request');
    assert.ok((await dev.read(id, 2 * CHUNK, 5 * CHUNK)).equals(view.subarray(2 * CHUNK, 7 * CHUNK)));
    assert.equal(be.calls.length, 1, 'the rest of A is cached');
    await dev.read(id, 12 * CHUNK, 10);
    assert.deepEqual(calls().slice(1), [[10, 4]], 'a read inside B (not its first chunk): B in one request');
    // file C = chunks 15–17; chunk 16 cached before C was marked
    await dev.read(id, 16 * CHUNK, 10);
    assert.deepEqual(calls().slice(2), [[16, 1]], 'not marked yet: only its chunk');
    dev.setWholeFiles(id, new Map([[15, [15, 16, 17]]]));
    await dev.read(id, 15 * CHUNK, 10);
    assert.deepEqual(
      calls().slice(3),
      [
        [15, 1],
        [17, 1],
      ],
      'the rest of C, without the cached chunk 16 (no merging over gaps here)',
    );
    assert.ok((await dev.read(id, 15 * CHUNK, 3 * CHUNK)).equals(view.subarray(15 * CHUNK, 18 * CHUNK)));
    assert.equal(be.calls.length, 5, 'C is cached');
    assert.deepEqual(
      dev.stats.ahead.whole,
      { fetched: 8 * CHUNK, read: 5 * CHUNK },
      'A 4 + B 3 + C 1 chunks came along; A 4 and C 1 read since',
    );
    await dev.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('storage: a reader waiting for the first chunk of a large request gets it before the rest arrives', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ferry-storage-'));
  try {
    const { id, bytes, blob, view } = makeBlob(8);
    let release!: () => void;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    const be: Backend = {
      kind: 'slow-tail',
      async read(_b, off, len, _sig, progress) {
        const out = Buffer.from(bytes.subarray(off, off + len));
        progress?.(out, Math.min(len, CHUNK)); // the first chunk's bytes arrive at once
        await gate; // the rest only when released
        return out;
      },
      fallbacks: () => 0,
      close: async () => undefined,
    };
    const dev = await StorageDevice.open({ blobs: [blob], backend: be, cacheDir: join(dir, 'cache'), amplifyBytes: 0 });
    dev.prefetch([{ blobId: id, chunks: dev.chunksByIndex(id, [0, 1, 2, 3])! }], { urgent: true });
    const first = await Promise.race([dev.read(id, 10, 100), new Promise((r) => setTimeout(() => r('timeout'), 5000))]);
    assert.ok(Buffer.isBuffer(first) && first.equals(view.subarray(10, 110)), 'chunk 0 served while the request is still open');
    release();
    assert.ok((await dev.read(id, 0, 4 * CHUNK)).equals(view.subarray(0, 4 * CHUNK)));
    await dev.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
