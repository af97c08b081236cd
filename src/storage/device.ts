/**
 * @module storage/device
 * The read API over a set of blobs: `read(blobId, uncompressedOffset, length)`. Missing chunks are
 * fetched from the backend (adjacent missing chunks merged into one ranged request, extended
 * forward up to the amplification size), decoded and verified, written to the cache, then served
 * from the cache file. A chunk being fetched is fetched once however many readers want it. A chunk
 * whose digest does not match is fetched once more, then the read fails (EIO at the FUSE edge) with
 * a log line naming blob and chunk. Every backend request has a hard deadline, so a backend that
 * stops answering fails the read instead of hanging it. Background prefetch runs behind on-demand
 * reads, merged into requests of `prefetchMergeBytes`, throttled to `prefetchBandwidth`.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import { FerryError, DigestMismatchError } from '../core/index.js';
import { silentLogger, type Logger } from '../observe/index.js';
import { decodeChunk, type ChunkCodec } from '../format/compress/index.js';
import type { ChunkRef } from '../format/rafs/index.js';
import type { Backend } from './backend.js';
import { BlobCache } from './cache.js';
import { DecodePool } from './decode-pool.js';

/** One chunk of a blob: the RAFS reader's ChunkRef without its file position and blob naming. */
export type DeviceChunk = Omit<ChunkRef, 'blobIndex' | 'blobId' | 'fileOffset'>;

export interface DeviceBlob {
  blobId: string;
  uncompressedSize: number;
  /** number of CI entries (bitmap size) */
  chunkCount: number;
  /** the chunks the image references, any order */
  chunks: DeviceChunk[];
  /** how the chunks are compressed and digested: the device decodes and verifies them with it */
  codec: ChunkCodec;
  /**
   * Runs once before the first chunk of this blob is decoded (started with that chunk's fetch, a
   * failure retried at the next): loads what decoding needs that the image did not ship — the
   * chunk digests of a bootstrap without a chunk table. `read` is a ranged read of this blob
   * through the device's backend (counted, with its deadline).
   */
  prepare?: (read: (offset: number, length: number) => Promise<Buffer>) => Promise<void>;
}

export interface DeviceStats {
  /** bytes received from the backend */
  bytesFetched: number;
  /** backend requests */
  requests: number;
  /** chunk lookups answered from the cache / needing a fetch */
  hits: number;
  misses: number;
  backendErrors: number;
  digestMismatches: number;
  prefetchedBytes: number;
}

export interface StorageDeviceOptions {
  blobs: DeviceBlob[];
  backend: Backend;
  cacheDir: string;
  log?: Logger;
  /**
   * largest read amplification (nydusd amplify_io / rafs.batch_size), default 1 MiB: reached by
   * sequential reads only, ramping up from 128 KiB (see `window`); 0 turns it off
   */
  amplifyBytes?: number;
  /** hard deadline of one backend request including its retries, ms (default 30 s) */
  requestDeadlineMs?: number;
  /** prefetch: merged request size (merging_size, default 1 MiB), bandwidth bytes/s (0 = unlimited) */
  prefetchMergeBytes?: number;
  prefetchBandwidth?: number;
  /** worker threads decoding chunks of blobs that name their codec (default 2; 0 = main thread) */
  decodeThreads?: number;
}

/** Chunks up to this uncompressed size are decoded on the calling thread, bigger ones in the pool. */
const INLINE_DECODE_MAX = 256 * 1024;

/**
 * Where each chunk of a blob sits in its uncompressed view (sorted by offset), with the cache's data
 * file and shared ready bitmap: what a reader in another thread needs to serve view reads whose
 * chunks are all cached (see daemon/view-fast-path).
 */
export interface BlobViewMap {
  blobId: string;
  size: number;
  dataPath: string;
  bitmap: SharedArrayBuffer;
  starts: Float64Array;
  ends: Float64Array;
  index: Uint32Array;
}

interface BlobState {
  blob: DeviceBlob;
  /** the blob's codec and id, as the chunk decoder takes them */
  decoder: ChunkCodec & { blobId: string };
  cache: BlobCache;
  /** chunks sorted by uncompressed offset (= CI order for native blobs) */
  byOffset: DeviceChunk[];
  pos: Map<number, number>;
  inflight: Map<number, Promise<void>>;
  /** compressed end of the last on-demand fetch, and how many misses in a row started there */
  seqEnd: number;
  streak: number;
  /** DeviceBlob.prepare in progress or done */
  prepared?: Promise<void> | undefined;
}

/** A miss starting at most this far past the previous fetch still counts as sequential. */
const SEQUENTIAL_SLACK = 64 * 1024;
/**
 * Misses in a row, each starting where the previous fetch ended, before read-ahead starts: a cold
 * python start has runs of up to 3 (a threshold of 2 fetched 18 % more, 3 fetched 4 % more).
 */
const SEQUENTIAL_AFTER = 4;
/** First read-ahead window of a sequential read. */
const MIN_WINDOW = 128 * 1024;
/** Access trace bounds: chunks recorded, and for how long after the device opened. */
const TRACE_MAX_CHUNKS = 65_536;
const TRACE_WINDOW_MS = 30_000;

/** How a prefetch is run: `urgent` ones do not yield to on-demand reads; `record` ones enter the access trace. */
export interface PrefetchOptions { urgent?: boolean; record?: boolean }

interface Deferred { promise: Promise<void>; resolve(): void; reject(e: unknown): void }
function deferred(): Deferred {
  let resolve!: () => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<void>((a, b) => { resolve = a; reject = b; });
  promise.catch(() => undefined);
  return { promise, resolve, reject };
}

export class StorageDevice {
  readonly stats: DeviceStats = { bytesFetched: 0, requests: 0, hits: 0, misses: 0, backendErrors: 0, digestMismatches: 0, prefetchedBytes: 0 };
  private readonly blobs = new Map<string, BlobState>();
  private readonly log: Logger;
  private readonly amplify: number;
  private readonly deadline: number;
  private onDemand = 0;
  private closed = false;
  private prefetchRunning: Promise<void> | null = null;
  private readonly prefetchQueue: Array<{ state: BlobState; chunks: DeviceChunk[]; opts: PrefetchOptions }> = [];
  /** Chunks in the order they were first fetched for a reader (see `trace`). */
  private readonly traced: Array<{ blobId: string; chunkIndex: number }> = [];
  private readonly openedAt = Date.now();
  /** Decode threads: created by `startDecoders()` or at the first decode (undefined until then). */
  private pool: DecodePool | null | undefined;

  private constructor(private readonly o: StorageDeviceOptions) {
    this.log = (o.log ?? silentLogger()).child({ component: 'storage' });
    this.amplify = Math.max(0, o.amplifyBytes ?? 1024 * 1024);
    this.deadline = o.requestDeadlineMs ?? 30_000;
  }

  /**
   * Boots the decode threads now. A mount calls this once it is up, so the threads' start-up
   * does not compete for the CPU with the mount itself (it did, on a 2-core machine, inside a
   * busy snapshotter); a decode before that boots them on demand.
   */
  startDecoders(): void {
    if (this.pool !== undefined || this.closed) return;
    const threads = this.o.decodeThreads ?? 2;
    // Only chunks over INLINE_DECODE_MAX go to the pool: without any, no threads are booted.
    const big = this.o.blobs.some((b) => b.chunks.some((c) => c.uncompressedSize > INLINE_DECODE_MAX));
    this.pool = threads > 0 && big ? new DecodePool(threads) : null;
  }

  private decode(s: BlobState, c: DeviceChunk, raw: Buffer): Promise<Buffer> | Buffer {
    // A small chunk decodes in tens of microseconds: the two thread hops would cost more.
    if (c.uncompressedSize <= INLINE_DECODE_MAX) return decodeChunk(s.decoder, c, raw);
    this.startDecoders();
    if (this.pool) return this.pool.decode(s.decoder, c, raw);
    return decodeChunk(s.decoder, c, raw);
  }

  static async open(o: StorageDeviceOptions): Promise<StorageDevice> {
    const d = new StorageDevice(o);
    for (const blob of o.blobs) {
      const byOffset = byUncompressedOffset(blob.chunks);
      const cache = await BlobCache.open(o.cacheDir, blob.blobId, blob.uncompressedSize, blob.chunkCount);
      const decoder = { blobId: blob.blobId, compressor: blob.codec.compressor, digester: blob.codec.digester };
      d.blobs.set(blob.blobId, { blob, decoder, cache, byOffset, pos: new Map(byOffset.map((c, i) => [c.chunkIndex, i])), inflight: new Map(), seqEnd: Number.NEGATIVE_INFINITY, streak: 0 });
    }
    return d;
  }

  get backend(): Backend { return this.o.backend; }

  /** Chunks of all blobs that are in the cache. */
  chunksCached(): number {
    let n = 0;
    for (const s of this.blobs.values()) n += s.cache.readyCount;
    return n;
  }

  /** Chunks referenced by the image (denominator for "fully cached"). */
  chunksTotal(): number {
    let n = 0;
    for (const s of this.blobs.values()) n += s.byOffset.length;
    return n;
  }

  blobIds(): string[] { return [...this.blobs.keys()]; }

  /** Per blob: cache data file and shared ready bitmap, for readers in other threads. */
  sharedCaches(): Array<{ blobId: string; dataPath: string; bitmap: SharedArrayBuffer }> {
    return [...this.blobs.values()].map((s) => ({ blobId: s.blob.blobId, dataPath: s.cache.dataPath, bitmap: s.cache.sharedBitmap }));
  }

  /** Per blob: chunk extents in the uncompressed view plus the cache files (see BlobViewMap). */
  viewMaps(): BlobViewMap[] {
    return [...this.blobs.values()].map((s) => {
      const n = s.byOffset.length;
      const starts = new Float64Array(n);
      const ends = new Float64Array(n);
      const index = new Uint32Array(n);
      s.byOffset.forEach((c, i) => { starts[i] = c.uncompressedOffset; ends[i] = c.uncompressedOffset + c.uncompressedSize; index[i] = c.chunkIndex; });
      return { blobId: s.blob.blobId, size: s.blob.uncompressedSize, dataPath: s.cache.dataPath, bitmap: s.cache.sharedBitmap, starts, ends, index };
    });
  }

  /** Counts chunk lookups answered elsewhere (a fast path reading the cache files directly). */
  countHits(n: number): void { this.stats.hits += n; }
  blobSize(blobId: string): number { return this.state(blobId).blob.uncompressedSize; }

  private state(blobId: string): BlobState {
    const s = this.blobs.get(blobId);
    if (!s) throw new FerryError('NOT_FOUND', `unknown blob ${blobId}`);
    return s;
  }

  /** Reads `length` bytes at `offset` of a blob's uncompressed view (clamped to its size). */
  async read(blobId: string, offset: number, length: number): Promise<Buffer> {
    const s = this.state(blobId);
    const end = Math.min(offset + length, s.blob.uncompressedSize);
    if (end <= offset) return Buffer.alloc(0);
    this.onDemand++;
    try {
      await this.ensure(s, this.overlapping(s, offset, end), false, true);
    } finally {
      this.onDemand--;
    }
    return s.cache.read(offset, end - offset);
  }

  /** The chunks overlapping [start, end) of the uncompressed view. */
  private overlapping(s: BlobState, start: number, end: number): DeviceChunk[] {
    const a = s.byOffset;
    let lo = 0;
    let hi = a.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      const c = a[mid]!;
      if (c.uncompressedOffset + c.uncompressedSize <= start) lo = mid + 1;
      else hi = mid;
    }
    const out: DeviceChunk[] = [];
    for (let i = lo; i < a.length && a[i]!.uncompressedOffset < end; i++) out.push(a[i]!);
    return out;
  }

  /** Makes sure every chunk is in the cache (fetching what is missing), or throws. */
  private async ensure(s: BlobState, chunks: DeviceChunk[], prefetch: boolean, record: boolean): Promise<void> {
    const waits: Promise<void>[] = [];
    const missing: DeviceChunk[] = [];
    for (const c of chunks) {
      if (s.cache.isReady(c.chunkIndex)) { if (!prefetch) this.stats.hits++; continue; }
      if (!prefetch) this.stats.misses++;
      const f = s.inflight.get(c.chunkIndex);
      if (f) waits.push(f);
      else missing.push(c);
    }
    if (missing.length) {
      const merge = prefetch ? (this.o.prefetchMergeBytes ?? 1024 * 1024) : Math.max(this.amplify, 1024 * 1024);
      const groups = this.plan(s, missing, merge, prefetch ? 0 : this.window(s, missing));
      if (!prefetch) {
        const g = groups[groups.length - 1]!;
        const last = g[g.length - 1]!;
        s.seqEnd = last.compressedOffset + last.compressedSize;
      }
      if (record) this.record(s, groups);
      for (const group of groups) waits.push(...this.fetchGroup(s, group, prefetch));
    }
    if (waits.length) await Promise.all(waits);
  }

  private record(s: BlobState, groups: DeviceChunk[][]): void {
    if (this.traced.length >= TRACE_MAX_CHUNKS || Date.now() - this.openedAt > TRACE_WINDOW_MS) return;
    for (const g of groups) for (const c of g) this.traced.push({ blobId: s.blob.blobId, chunkIndex: c.chunkIndex });
    if (this.traced.length > TRACE_MAX_CHUNKS) this.traced.length = TRACE_MAX_CHUNKS;
  }

  /**
   * The access trace: every chunk fetched for a reader (on-demand reads, their read-ahead, and
   * prefetches marked `record` — the start-up and trace prefetches) in the order first fetched,
   * during the first 30 s after the device opened (at most 65 536 chunks). Background prefetch of
   * whole images or prefetch tables is not in it: it says what the workload read, not what was pushed.
   */
  trace(): Array<{ blobId: string; chunkIndex: number }> { return this.traced.slice(); }

  /** The chunks of a blob with these CI indexes (unknown indexes are skipped); undefined for an unknown blob. */
  chunksByIndex(blobId: string, indexes: Iterable<number>): DeviceChunk[] | undefined {
    const s = this.blobs.get(blobId);
    if (!s) return undefined;
    const out: DeviceChunk[] = [];
    for (const i of indexes) {
      const p = s.pos.get(i);
      if (p !== undefined) out.push(s.byOffset[p]!);
    }
    return out;
  }

  /**
   * Read amplification that follows the access pattern, as the kernel's read-ahead does: misses
   * that each start where the previous on-demand fetch ended are a sequential read, and from the
   * fourth such miss on each fetch reaches further ahead (128 KiB, doubling up to amplify_io). Any
   * other miss resets it — the scattered page faults of a program starting fetch only the chunks
   * they touch (a fixed amplification fetched 1.8x the bytes for a cold python start).
   */
  private window(s: BlobState, missing: DeviceChunk[]): number {
    let first = missing[0]!;
    for (const c of missing) if (c.compressedOffset < first.compressedOffset) first = c;
    const sequential = first.compressedOffset >= s.seqEnd && first.compressedOffset - s.seqEnd <= SEQUENTIAL_SLACK;
    s.streak = sequential ? s.streak + 1 : 0;
    if (s.streak < SEQUENTIAL_AFTER || this.amplify <= 0) return 0;
    return Math.min(this.amplify, MIN_WINDOW << Math.min(s.streak - SEQUENTIAL_AFTER, 20));
  }

  /**
   * Splits missing chunks into ranged requests of consecutive compressed ranges (gaps of at most
   * merge/128, spans of at most `merge`), and extends the last one forward over following missing
   * chunks by up to `extend` bytes.
   */
  private plan(s: BlobState, missing: DeviceChunk[], merge: number, extend: number): DeviceChunk[][] {
    const sorted = [...missing].sort((a, b) => a.compressedOffset - b.compressedOffset);
    const maxGap = merge >> 7;
    const groups: DeviceChunk[][] = [];
    let cur: DeviceChunk[] = [];
    const span = (g: DeviceChunk[], c: DeviceChunk): number => c.compressedOffset + c.compressedSize - g[0]!.compressedOffset;
    for (const c of sorted) {
      const last = cur[cur.length - 1];
      if (last && (c.compressedOffset - (last.compressedOffset + last.compressedSize) > maxGap ||
        c.compressedOffset < last.compressedOffset + last.compressedSize || span(cur, c) > Math.max(merge, c.compressedSize))) {
        groups.push(cur);
        cur = [];
      }
      cur.push(c);
    }
    if (cur.length) groups.push(cur);
    if (extend > 0) {
      const g = groups[groups.length - 1]!;
      const reach = g[g.length - 1]!.compressedOffset + g[g.length - 1]!.compressedSize + extend;
      let i = (s.pos.get(g[g.length - 1]!.chunkIndex) ?? s.byOffset.length) + 1;
      const taken = new Set(sorted.map((c) => c.chunkIndex));
      for (; i < s.byOffset.length; i++) {
        const c = s.byOffset[i]!;
        const last = g[g.length - 1]!;
        if (s.cache.isReady(c.chunkIndex) || s.inflight.has(c.chunkIndex) || taken.has(c.chunkIndex)) break;
        if (c.compressedOffset < last.compressedOffset + last.compressedSize) break;
        if (c.compressedOffset - (last.compressedOffset + last.compressedSize) > maxGap) break;
        if (c.compressedOffset + c.compressedSize > reach) break;
        g.push(c);
      }
    }
    return groups;
  }

  /** The blob's `prepare` step, run once (again after a failure). */
  private prepared(s: BlobState): Promise<void> {
    const prep = s.blob.prepare;
    if (!prep) return Promise.resolve();
    if (!s.prepared) {
      const p = prep((offset, length) => this.backendRead(s.blob.blobId, offset, length));
      s.prepared = p;
      p.catch((err: unknown) => {
        if (s.prepared === p) s.prepared = undefined;
        this.log.warn({ blob: s.blob.blobId, err: (err as Error).message }, 'loading the blob\'s chunk digests failed');
      });
    }
    return s.prepared;
  }

  /** Starts one ranged request for a group; returns one promise per chunk. */
  private fetchGroup(s: BlobState, group: DeviceChunk[], prefetch: boolean): Promise<void>[] {
    const ready = this.prepared(s);
    const ds = group.map(() => deferred());
    group.forEach((c, i) => s.inflight.set(c.chunkIndex, ds[i]!.promise));
    const done = (): void => { for (const c of group) s.inflight.delete(c.chunkIndex); };
    const start = group[0]!.compressedOffset;
    const last = group[group.length - 1]!;
    const len = last.compressedOffset + last.compressedSize - start;
    (async () => {
      let raw: Buffer;
      try {
        [raw] = await Promise.all([this.backendRead(s.blob.blobId, start, len), ready]);
      } catch (err) {
        this.stats.backendErrors++;
        this.log.warn({ blob: s.blob.blobId, offset: start, length: len, err: (err as Error).message }, 'backend read failed');
        const e = FerryError.is(err) ? err : new FerryError('UNAVAILABLE', (err as Error).message, { cause: err });
        ds.forEach((d) => d.reject(e));
        return;
      }
      if (prefetch) this.stats.prefetchedBytes += len;
      await Promise.all(group.map(async (c, i) => {
        try {
          const rawChunk = raw.subarray(c.compressedOffset - start, c.compressedOffset - start + c.compressedSize);
          const data = await this.decodeOrRefetch(s, c, rawChunk);
          await s.cache.put(c.chunkIndex, c.uncompressedOffset, data);
          ds[i]!.resolve();
        } catch (err) {
          ds[i]!.reject(err);
        }
      }));
    })().finally(done);
    return ds.map((d) => d.promise);
  }

  private async decodeOrRefetch(s: BlobState, c: DeviceChunk, raw: Buffer): Promise<Buffer> {
    try {
      return await this.decode(s, c, raw);
    } catch (err) {
      if (!(err instanceof DigestMismatchError) && !FerryError.hasCode(err, 'DATA_LOSS')) throw err;
      this.stats.digestMismatches++;
      this.log.warn({ blob: s.blob.blobId, chunk: c.chunkIndex, err: (err as Error).message }, 'chunk failed verification, fetching it again');
    }
    let again: Buffer;
    try {
      again = await this.backendRead(s.blob.blobId, c.compressedOffset, c.compressedSize);
    } catch (err) {
      this.stats.backendErrors++;
      throw err;
    }
    try {
      return await this.decode(s, c, again);
    } catch (err) {
      this.stats.digestMismatches++;
      this.log.error({ blob: s.blob.blobId, chunk: c.chunkIndex, compressedOffset: c.compressedOffset, err: (err as Error).message },
        'chunk corrupt after refetch, failing the read');
      throw new FerryError('DATA_LOSS', `blob ${s.blob.blobId} chunk ${c.chunkIndex}: corrupt after refetch`, { cause: err });
    }
  }

  private async backendRead(blobId: string, offset: number, length: number): Promise<Buffer> {
    const ctl = new AbortController();
    const timer = setTimeout(() => ctl.abort(new FerryError('DEADLINE_EXCEEDED', `blob ${blobId}: backend gave no data in ${this.deadline} ms`)), this.deadline);
    this.stats.requests++;
    try {
      const p = this.o.backend.read(blobId, offset, length, ctl.signal);
      // Whatever the backend does with the signal, the caller is released at the deadline.
      const buf = await Promise.race([p, new Promise<never>((_, rej) => ctl.signal.addEventListener('abort', () => rej(ctl.signal.reason), { once: true }))]);
      this.stats.bytesFetched += buf.length;
      return buf;
    } finally {
      clearTimeout(timer);
    }
  }

  // ---- prefetch ---------------------------------------------------------------------------

  /**
   * Queues chunks (by blob) for background prefetch; `all` = every chunk of every blob. Urgent
   * prefetches go ahead of queued background ones and do not wait for on-demand reads.
   */
  prefetch(sel: 'all' | Array<{ blobId: string; chunks: DeviceChunk[] }>, opts: PrefetchOptions = {}): void {
    const items: Array<{ state: BlobState; chunks: DeviceChunk[]; opts: PrefetchOptions }> = [];
    if (sel === 'all') {
      for (const s of this.blobs.values()) items.push({ state: s, chunks: s.byOffset, opts });
    } else {
      for (const { blobId, chunks } of sel) {
        const s = this.blobs.get(blobId);
        if (s) items.push({ state: s, chunks: dedupe(chunks).sort((a, b) => a.compressedOffset - b.compressedOffset), opts });
      }
    }
    if (opts.urgent) {
      const at = this.prefetchQueue.findIndex((q) => !q.opts.urgent);
      this.prefetchQueue.splice(at < 0 ? this.prefetchQueue.length : at, 0, ...items);
    } else {
      this.prefetchQueue.push(...items);
    }
    if (!this.prefetchRunning) this.prefetchRunning = this.runPrefetch().finally(() => { this.prefetchRunning = null; });
  }

  /** Resolves when the prefetch queue is drained. */
  async prefetchIdle(): Promise<void> { while (this.prefetchRunning) await this.prefetchRunning; }

  private async runPrefetch(): Promise<void> {
    const merge = this.o.prefetchMergeBytes ?? 1024 * 1024;
    const bw = this.o.prefetchBandwidth ?? 0;
    while (!this.closed && this.prefetchQueue.length) {
      const { state, chunks, opts } = this.prefetchQueue.shift()!;
      let i = 0;
      while (!this.closed && i < chunks.length) {
        // On-demand reads first: wait while any is in progress.
        while (!opts.urgent && this.onDemand > 0 && !this.closed) await sleep(5);
        const batch: DeviceChunk[] = [];
        let bytes = 0;
        while (i < chunks.length && (batch.length === 0 || bytes + chunks[i]!.compressedSize <= merge)) {
          const c = chunks[i++]!;
          if (state.cache.isReady(c.chunkIndex) || state.inflight.has(c.chunkIndex)) continue;
          batch.push(c);
          bytes += c.compressedSize;
        }
        if (!batch.length) continue;
        const t0 = Date.now();
        try {
          await this.ensure(state, batch, true, opts.record === true);
        } catch (err) {
          this.log.warn({ blob: state.blob.blobId, err: (err as Error).message }, 'prefetch failed, stopping this blob');
          break;
        }
        if (bw > 0) {
          const want = (bytes / bw) * 1000;
          const spent = Date.now() - t0;
          if (want > spent) await sleep(want - spent);
        }
      }
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.prefetchIdle().catch(() => undefined);
    for (const s of this.blobs.values()) {
      await Promise.allSettled([...s.inflight.values()]);
      await s.cache.close();
    }
    await this.o.backend.close();
    await this.pool?.close();
  }
}

/**
 * A blob's chunks without repeats, sorted by uncompressed offset. CI index order is offset order
 * in native blobs, so placing each chunk at its index is the sort (28 000 chunks: ~1 ms instead of
 * a Map and a comparison sort on the mount's critical path); any other order is sorted.
 */
function byUncompressedOffset(chunks: DeviceChunk[]): DeviceChunk[] {
  let max = -1;
  for (const c of chunks) if (c.chunkIndex > max) max = c.chunkIndex;
  if (max < 4 * chunks.length + 1024) {
    const slots: Array<DeviceChunk | undefined> = new Array(max + 1);
    for (const c of chunks) if (slots[c.chunkIndex] === undefined) slots[c.chunkIndex] = c;
    const out: DeviceChunk[] = [];
    for (const c of slots) if (c !== undefined) out.push(c);
    let sorted = true;
    for (let i = 1; i < out.length && sorted; i++) sorted = out[i - 1]!.uncompressedOffset <= out[i]!.uncompressedOffset;
    if (sorted) return out;
    return out.sort((a, b) => a.uncompressedOffset - b.uncompressedOffset);
  }
  return dedupe(chunks).sort((a, b) => a.uncompressedOffset - b.uncompressedOffset);
}

function dedupe(chunks: DeviceChunk[]): DeviceChunk[] {
  const m = new Map<number, DeviceChunk>();
  for (const c of chunks) if (!m.has(c.chunkIndex)) m.set(c.chunkIndex, c);
  return [...m.values()];
}
