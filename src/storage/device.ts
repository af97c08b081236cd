/**
 * @module storage/device
 * (Over 600 lines: reads, their fetches and the cache GC's hold on a blob work on one blob state that stays private here)
 * The read API over a set of blobs: `read(blobId, uncompressedOffset, length)`. Missing chunks are
 * fetched from the backend (missing chunks merged into ranged requests over small gaps, amplified
 * toward a window in regions that keep missing), decoded and verified as their bytes arrive (a
 * chunk is usable as soon as its own bytes are in, not when the whole request is), written to the
 * cache, then served from the cache file. A chunk being fetched is fetched once however many readers
 * want it. A chunk whose digest does not match is fetched once more, then the read fails (EIO at the
 * FUSE edge) with a log line naming blob and chunk. Every backend request has a hard deadline, so a
 * backend that stops answering fails the read instead of hanging it. Sequential streams get
 * asynchronous read-ahead one window ahead of the reader; the chunk where the next window is due is
 * a *trigger* (a shared bitmap the FUSE fast paths check, so that read reaches this thread). Which
 * requests to make is the fetch planner's decision (fetch-plan.ts); prefetch lists (the start-up
 * set) are the prefetcher's (prefetcher.ts), several requests in flight.
 */
import { FerryError, DigestMismatchError, systemClock, type Clock } from '../core/index.js';
import { silentLogger, type Logger } from '../observe/index.js';
import { decodeChunk, type ChunkCodec } from '../format/compress/index.js';
import type { ChunkRef } from '../format/rafs/index.js';
import type { Backend } from './backend.js';
import { BlobCache } from './cache.js';
import type { ChunkIndex } from './chunk-index.js';
import { DecodePool } from './decode-pool.js';
import {
  DEFAULT_AMPLIFY_BYTES,
  DEFAULT_FETCH_CONCURRENCY,
  DEFAULT_MERGE_BYTES,
  DEFAULT_MERGE_GAP,
  DEFAULT_MISS_WINDOW,
  DEFAULT_MISS_WINDOW_MAX,
  DEFAULT_AMPLIFY_BUDGET,
  ReadStreams,
  amplify,
  byUncompressedOffset,
  dedupe,
  nextReadAhead,
  overlapping,
  planFetch,
  withWholeFiles,
  type BlobLayout,
  type ReadStream,
} from './fetch-plan.js';
import { ChunkArrivals } from './arrivals.js';
import { Prefetcher, type PrefetchOptions } from './prefetcher.js';
import { Speculation } from './speculation.js';
import { chunkReady, clearChunk, markChunkReady } from './protocol.js';

export type { PrefetchOptions } from './prefetcher.js';

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
  /** bytes of chunks copied from another blob's cache (same digest) instead of fetched */
  sharedBytes: number;
  /**
   * chunks fetched though no reader asked for them yet, by why (compressed bytes fetched, and of
   * them read since — `read` counted for amplified misses only, unless `countAhead`): amplified
   * misses, the rest of files fetched whole, gaps read over, read-ahead, the start-up/trace prefetch
   */
  ahead: Record<AheadKind, { fetched: number; read: number }>;
}

/** Why a chunk was fetched before a reader asked for it (see DeviceStats.ahead). */
export type AheadKind = 'amplify' | 'whole' | 'gap' | 'read-ahead' | 'prefetch';

export interface StorageDeviceOptions {
  blobs: DeviceBlob[];
  backend: Backend;
  cacheDir: string;
  log?: Logger;
  /**
   * largest read-ahead window of a sequential stream (nydusd amplify_io / rafs.batch_size), default
   * 1 MiB, ramping up from 128 KiB (see fetch-plan's `nextReadAhead`); 0 turns read-ahead off
   */
  amplifyBytes?: number;
  /** largest gap (compressed bytes) read over to merge requests (default 32 KiB) */
  mergeGap?: number;
  /**
   * starting window (compressed bytes) a clustered on-demand miss is amplified toward (default
   * 512 KiB; 0 = only the chunks read, and the gaps merged over), the largest it grows to (default
   * 1 MiB) and the most amplified bytes fetched and not read yet (default 6 MiB): storage/speculation
   */
  missWindow?: number;
  missWindowMax?: number;
  amplifyBudget?: number;
  /**
   * misses are not amplified until `setFamilies` has given each blob its files' families (a mount
   * sets them once its file walk is done: before, amplification could spill over any file)
   */
  familiesPending?: boolean;
  /**
   * count the reads of every chunk fetched ahead (`stats.ahead[*].read`), not only amplified ones:
   * each such chunk's first read then reaches the main thread once (a diagnostic; default off)
   */
  countAhead?: boolean;
  /** prefetch and read-ahead requests in flight at once (default 4); on-demand reads never wait */
  fetchConcurrency?: number;
  /** hard deadline of one backend request including its retries, ms (default 30 s) */
  requestDeadlineMs?: number;
  /** prefetch: merged request size (merging_size, default 1 MiB), bandwidth bytes/s (0 = unlimited) */
  prefetchMergeBytes?: number;
  prefetchBandwidth?: number;
  /** worker threads decoding chunks over INLINE_DECODE_MAX (default 2; 0 = main thread) */
  decodeThreads?: number;
  /** time for deadlines, prefetch throttling and the trace window (default the system clock) */
  clock?: Clock;
  /**
   * the node's chunks by digest (storage/chunk-index): a missing chunk that another blob's cache
   * holds is copied from there (and verified) instead of fetched; absent = every miss is fetched
   */
  chunkIndex?: ChunkIndex;
}

/** Chunks up to this uncompressed size are decoded on the calling thread, bigger ones in the pool. */
const INLINE_DECODE_MAX = 256 * 1024;
/** Decode threads of a device unless told (two: this runs on small machines). */
const DEFAULT_DECODE_THREADS = 2;
/** Hard deadline of one backend request, retries included, unless told. */
const DEFAULT_REQUEST_DEADLINE_MS = 30_000;

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
  /** read-ahead triggers (same bit order): a read touching one must go to the main thread */
  triggers: SharedArrayBuffer;
  /** the cache's eviction generation (BlobCache.sharedGeneration) */
  generation: SharedArrayBuffer;
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
  /** the blob's chunks and what not to fetch again, for the planner */
  layout: BlobLayout<DeviceChunk>;
  /** sequential streams over the view */
  streams: ReadStreams;
  /** how far this blob's clustered misses are amplified */
  spec: Speculation;
  /** chunks fetched before a reader asked (their trigger bit set until read), and why */
  ahead: Map<number, AheadKind>;
  /** read-ahead trigger chunks (their trigger bit set: the read that touches one asks for the next window) */
  aheadTriggers: Set<number>;
  /** files fetched whole when a read misses one of their chunks: CI index → its file's CI indexes (`setWholeFiles`) */
  wholeFiles: ReadonlyMap<number, readonly number[]>;
  /** CI index → its file's family: amplification stays within one (`setFamilies`; empty = no limit, undefined = none yet) */
  families: ReadonlyMap<number, number> | undefined;
  /**
   * chunks whose read must reach this thread, one bit per CI index (shared with the FUSE reader
   * threads): read-ahead triggers and chunks fetched ahead (`ahead`), whose first read is counted
   */
  triggers: Uint8Array;
  /** DeviceBlob.prepare in progress or done */
  prepared?: Promise<void> | undefined;
  /** an eviction emptying this blob's cache: fetches wait for it (see holdForEviction) */
  blocked?: Promise<void> | undefined;
  /** last read of this blob (clock ms), for the node cache's LRU */
  lastUsed: number;
}

/** Reads of a blob whose cache was emptied under them are retried this often before failing. */
const EVICTION_RETRIES = 4;

/** Access trace bounds: chunks recorded, and for how long after the device opened. */
const TRACE_MAX_CHUNKS = 65_536;
const TRACE_WINDOW_MS = 30_000;

/**
 * Why chunks are fetched: on-demand reads count hits and misses and steer read-ahead, prefetches
 * do neither and count prefetched bytes; `record`ed fetches enter the access trace.
 */
interface FetchPurpose {
  readonly prefetch: boolean;
  readonly record: boolean;
  /** what the request is for, in the debug log of every backend request (`fetch`) */
  readonly kind: 'read' | 'read-ahead' | 'prefetch';
}
const ON_DEMAND: FetchPurpose = { prefetch: false, record: true, kind: 'read' };
/** Asynchronous read-ahead of a sequential stream: not a reader's wait, recorded like the read it follows. */
const READ_AHEAD: FetchPurpose = { prefetch: false, record: true, kind: 'read-ahead' };

export class StorageDevice {
  readonly stats: DeviceStats = {
    bytesFetched: 0,
    requests: 0,
    hits: 0,
    misses: 0,
    backendErrors: 0,
    digestMismatches: 0,
    prefetchedBytes: 0,
    sharedBytes: 0,
    ahead: {
      amplify: { fetched: 0, read: 0 },
      whole: { fetched: 0, read: 0 },
      gap: { fetched: 0, read: 0 },
      'read-ahead': { fetched: 0, read: 0 },
      prefetch: { fetched: 0, read: 0 },
    },
  };
  private readonly blobs = new Map<string, BlobState>();
  private readonly log: Logger;
  private readonly amplify: number;
  private readonly mergeGap: number;
  private readonly missWindow: number;
  private readonly missWindowMax: number;
  private readonly amplifyBudget: number;
  private readonly deadline: number;
  private onDemand = 0;
  private closed = false;
  private readonly prefetcher: Prefetcher<BlobState, DeviceChunk>;
  /** Chunks in the order they were first fetched for a reader (see `trace`). */
  private readonly traced: Array<{ blobId: string; chunkIndex: number }> = [];
  private readonly clock: Clock;
  private readonly openedAt: number;
  /** Decode threads: created by `startDecoders()` or at the first decode (undefined until then). */
  private pool: DecodePool | null | undefined;

  private constructor(private readonly o: StorageDeviceOptions) {
    this.log = (o.log ?? silentLogger()).child({ component: 'storage' });
    this.amplify = Math.max(0, o.amplifyBytes ?? DEFAULT_AMPLIFY_BYTES);
    this.mergeGap = Math.max(0, o.mergeGap ?? DEFAULT_MERGE_GAP);
    this.missWindow = Math.max(0, o.missWindow ?? DEFAULT_MISS_WINDOW);
    this.missWindowMax = Math.max(this.missWindow, o.missWindowMax ?? DEFAULT_MISS_WINDOW_MAX);
    this.amplifyBudget = Math.max(0, o.amplifyBudget ?? DEFAULT_AMPLIFY_BUDGET);
    this.deadline = o.requestDeadlineMs ?? DEFAULT_REQUEST_DEADLINE_MS;
    this.clock = o.clock ?? systemClock;
    this.openedAt = this.clock.now();
    this.prefetcher = new Prefetcher<BlobState, DeviceChunk>({
      mergeBytes: o.prefetchMergeBytes ?? DEFAULT_MERGE_BYTES,
      mergeGap: this.mergeGap,
      concurrency: o.fetchConcurrency ?? DEFAULT_FETCH_CONCURRENCY,
      bandwidth: o.prefetchBandwidth ?? 0,
      log: this.log,
      clock: this.clock,
      reading: () => this.onDemand > 0,
      layout: (s) => s.layout,
      fetch: (s, batch, opts) =>
        this.ensure(s, batch, { prefetch: true, record: opts.record === true, kind: 'prefetch' }, (missing) => {
          // the start-up set and a trace: whether the container then reads them is counted
          if (opts.record) for (const c of missing) this.fetchedAhead(s, c, 'prefetch');
          return [missing];
        }),
      idOf: (s) => s.blob.blobId,
    });
  }

  /**
   * Boots the decode threads now. A mount calls this once it is up, so the threads' start-up
   * does not compete for the CPU with the mount itself (it did, on a 2-core machine, inside a
   * busy snapshotter); a decode before that boots them on demand.
   */
  startDecoders(): void {
    if (this.pool !== undefined || this.closed) return;
    const threads = this.o.decodeThreads ?? DEFAULT_DECODE_THREADS;
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
      const pos = new Map(byOffset.map((c, i) => [c.chunkIndex, i]));
      const inflight = new Map<number, Promise<void>>();
      const idx = o.chunkIndex;
      // a chunk another blob's cache holds is not fetched along with others (planner gaps, read-ahead): it is copied when wanted
      const shareable = (i: number): boolean => {
        const c = idx ? byOffset[pos.get(i) ?? -1] : undefined;
        return c !== undefined && idx!.has(blob.codec.digester, c.digest, c.uncompressedSize, blob.blobId);
      };
      if (idx) {
        await idx.scan(o.cacheDir);
        // a blob whose digests come with its `prepare` step is indexed once they are in (see `prepared`)
        if (!blob.prepare) await idx.add(o.cacheDir, cache, blob.codec.digester, blob.chunks);
      }
      d.blobs.set(blob.blobId, {
        blob,
        decoder,
        cache,
        byOffset,
        pos,
        inflight,
        layout: { byOffset, position: pos, skip: (i) => cache.isReady(i) || inflight.has(i) || shareable(i) },
        streams: new ReadStreams(),
        spec: new Speculation({ window: d.missWindow, max: d.missWindowMax, budget: d.amplifyBudget }),
        ahead: new Map(),
        aheadTriggers: new Set(),
        wholeFiles: new Map(),
        families: o.familiesPending ? undefined : new Map(),
        triggers: new Uint8Array(new SharedArrayBuffer(Math.max(1, Math.ceil(blob.chunkCount / 8)))),
        lastUsed: d.openedAt,
      });
    }
    return d;
  }

  get backend(): Backend {
    return this.o.backend;
  }

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

  blobIds(): string[] {
    return [...this.blobs.keys()];
  }

  /** Per blob: cache data file and shared ready bitmap, for readers in other threads. */
  sharedCaches(): Array<{
    blobId: string;
    dataPath: string;
    bitmap: SharedArrayBuffer;
    triggers: SharedArrayBuffer;
    generation: SharedArrayBuffer;
  }> {
    return [...this.blobs.values()].map((s) => ({
      blobId: s.blob.blobId,
      dataPath: s.cache.dataPath,
      bitmap: s.cache.sharedBitmap,
      triggers: s.triggers.buffer as SharedArrayBuffer,
      generation: s.cache.sharedGeneration,
    }));
  }

  /** Per blob: chunk extents in the uncompressed view plus the cache files (see BlobViewMap). */
  viewMaps(): BlobViewMap[] {
    return [...this.blobs.values()].map((s) => {
      const n = s.byOffset.length;
      const starts = new Float64Array(n);
      const ends = new Float64Array(n);
      const index = new Uint32Array(n);
      s.byOffset.forEach((c, i) => {
        starts[i] = c.uncompressedOffset;
        ends[i] = c.uncompressedOffset + c.uncompressedSize;
        index[i] = c.chunkIndex;
      });
      return {
        blobId: s.blob.blobId,
        size: s.blob.uncompressedSize,
        dataPath: s.cache.dataPath,
        bitmap: s.cache.sharedBitmap,
        triggers: s.triggers.buffer as SharedArrayBuffer,
        generation: s.cache.sharedGeneration,
        starts,
        ends,
        index,
      };
    });
  }

  /** Counts chunk lookups answered elsewhere (a fast path reading the cache files directly). */
  countHits(n: number): void {
    this.stats.hits += n;
    const now = this.clock.now();
    for (const s of this.blobs.values()) s.lastUsed = now;
  }

  // ---- the node cache GC's side (storage/cache-gc.ts) ----

  /** Per blob: its cache dir, last read and the bytes fetched again after an eviction. */
  cacheUse(): Array<{ blobId: string; dir: string; lastUsed: number; refetchedBytes: number }> {
    return [...this.blobs.values()].map((s) => ({
      blobId: s.blob.blobId,
      dir: this.o.cacheDir,
      lastUsed: s.lastUsed,
      refetchedBytes: s.cache.refetchedBytes,
    }));
  }

  /**
   * Blocks fetches of a blob until `until` settles, for an eviction of its cache. False (nothing
   * blocked) when a fetch of it is in flight or it is already held: the GC passes it over this round.
   */
  holdForEviction(blobId: string, until: Promise<void>): boolean {
    const s = this.blobs.get(blobId);
    if (!s || s.inflight.size > 0 || s.blocked) return false;
    const p: Promise<void> = until.then(
      () => undefined,
      () => undefined,
    );
    void p.then(() => {
      if (s.blocked === p) s.blocked = undefined;
    });
    s.blocked = p;
    return true;
  }

  /** Empties a held blob's cache (ready bits cleared first, then its bytes dropped). */
  async emptyCache(blobId: string): Promise<void> {
    const s = this.state(blobId);
    if (!s.blocked || s.inflight.size > 0) throw new FerryError('FAILED_PRECONDITION', `blob ${blobId} is not held for eviction`);
    await s.cache.empty();
  }
  blobSize(blobId: string): number {
    return this.state(blobId).blob.uncompressedSize;
  }

  private state(blobId: string): BlobState {
    const s = this.blobs.get(blobId);
    if (!s) throw new FerryError('NOT_FOUND', `unknown blob ${blobId}`);
    return s;
  }

  /**
   * Reads `length` bytes at `offset` of a blob's uncompressed view (clamped to its size). The read
   * also steers read-ahead: it continues a sequential stream or starts one (fetch-plan's
   * `ReadStreams`), and a stream long enough gets its next window fetched in the background.
   */
  async read(blobId: string, offset: number, length: number): Promise<Buffer> {
    const s = this.state(blobId);
    const end = Math.min(offset + length, s.blob.uncompressedSize);
    if (end <= offset) return Buffer.alloc(0);
    const chunks = overlapping(s.byOffset, offset, end);
    const why = this.arrived(s, chunks);
    // a read that came here only to be counted (all its chunks fetched ahead and cached) is what the
    // fast path answers otherwise: it does not steer read-ahead
    const stream = why === 'counted' ? undefined : s.streams.observe(offset, end);
    s.lastUsed = this.clock.now();
    // bytes read while the GC emptied the cache (generation changed, a chunk no longer ready) are
    // read again: the chunks are fetched anew, the read never fails because of an eviction
    for (let attempt = 0; attempt <= EVICTION_RETRIES; attempt++) {
      const gen = s.cache.generation;
      this.onDemand++;
      try {
        // this read's own requests go out first, the read-ahead beside them
        const ready = this.ensure(s, chunks, ON_DEMAND);
        if (attempt === 0 && stream) this.readAhead(s, stream);
        await ready;
      } finally {
        this.onDemand--;
      }
      const buf = await s.cache.read(offset, end - offset);
      if (s.cache.generation === gen && chunks.every((c) => s.cache.isReady(c.chunkIndex))) return buf;
    }
    throw new FerryError('UNAVAILABLE', `blob ${blobId}: cache emptied under ${EVICTION_RETRIES + 1} reads in a row`);
  }

  /**
   * Clears the trigger bits of a read's chunks: a read-ahead trigger makes it `trigger`, a chunk
   * fetched ahead is counted as read (and credited to the speculation that fetched it). `counted`:
   * the read touched chunks fetched ahead only and all are cached; `miss`: anything else.
   */
  private arrived(s: BlobState, chunks: readonly DeviceChunk[]): 'trigger' | 'counted' | 'miss' {
    let trigger = false;
    let counted = false;
    for (const c of chunks) {
      if (!chunkReady(s.triggers, c.chunkIndex)) continue;
      clearChunk(s.triggers, c.chunkIndex);
      if (s.aheadTriggers.delete(c.chunkIndex)) trigger = true;
      const kind = s.ahead.get(c.chunkIndex);
      if (kind === undefined) continue;
      s.ahead.delete(c.chunkIndex);
      this.stats.ahead[kind].read += c.compressedSize;
      if (kind === 'amplify') s.spec.read(c.compressedOffset, c.compressedSize);
      counted = true;
    }
    if (trigger) return 'trigger';
    return counted && chunks.every((c) => s.cache.isReady(c.chunkIndex)) ? 'counted' : 'miss';
  }

  /** A chunk fetched before a reader asked for it: its first read reaches this thread and is counted. */
  private fetchedAhead(s: BlobState, c: DeviceChunk, kind: AheadKind): void {
    this.stats.ahead[kind].fetched += c.compressedSize;
    // the hop to this thread costs a little on every first read: only amplified chunks need it
    // (their reads steer the window), the others only when asked (a diagnostic)
    if (kind !== 'amplify' && !this.o.countAhead) return;
    if (s.ahead.has(c.chunkIndex)) return;
    s.ahead.set(c.chunkIndex, kind);
    markChunkReady(s.triggers, c.chunkIndex);
    if (kind === 'amplify') s.spec.fetched(c.compressedOffset, c.compressedSize);
  }

  /**
   * Makes sure every chunk is in the cache (fetching what is missing), or throws. `plan` cuts the
   * missing chunks into requests (default: the on-demand plan).
   */
  private async ensure(
    s: BlobState,
    chunks: DeviceChunk[],
    why: FetchPurpose,
    plan?: (missing: DeviceChunk[]) => DeviceChunk[][],
  ): Promise<void> {
    const idx = this.o.chunkIndex;
    // a blob whose chunk digests are not loaded yet: loaded first when other blobs may hold its
    // chunks (before the eviction check below: nothing may come between that check and the fetches)
    if (idx && s.blob.prepare && idx.size > 0 && chunks.some((c) => !s.cache.isReady(c.chunkIndex)))
      await this.prepared(s).catch(() => undefined);
    while (s.blocked) await s.blocked; // an eviction of this blob in progress (bounded: it only ends)
    const waits: Promise<void>[] = [];
    let missing: DeviceChunk[] = [];
    for (const c of chunks) {
      if (s.cache.isReady(c.chunkIndex)) {
        if (!why.prefetch) this.stats.hits++;
        continue;
      }
      if (!why.prefetch) this.stats.misses++;
      const f = s.inflight.get(c.chunkIndex);
      if (f) waits.push(f);
      else missing.push(c);
    }
    if (idx && missing.length) {
      const shared = missing.filter((c) => idx.has(s.decoder.digester, c.digest, c.uncompressedSize, s.blob.blobId));
      if (shared.length) {
        const set = new Set(shared);
        missing = missing.filter((c) => !set.has(c));
        waits.push(...this.copyShared(s, idx, shared, why));
      }
    }
    if (missing.length) {
      const groups = plan ? plan(missing) : this.planOnDemand(s, missing);
      if (why.record) this.record(s, groups);
      // the reader waits for its own chunks only, not for what came along (amplified, whole files,
      // gaps): those may still be arriving, and one failing verification is not this read's failure
      const asked = new Set(missing.map((c) => c.chunkIndex));
      for (const group of groups) {
        const ps = this.fetchGroup(s, group, why);
        group.forEach((c, i) => {
          if (asked.has(c.chunkIndex)) waits.push(ps[i]!);
        });
      }
    }
    if (waits.length) await Promise.all(waits);
  }

  /**
   * Chunks another blob's cache holds (same digest): copied from there, one at a time, each
   * verified against its digest by the index; those not found after all (emptied or deleted
   * meanwhile) are fetched. One promise per chunk, in flight like a fetch.
   */
  private copyShared(s: BlobState, idx: ChunkIndex, chunks: DeviceChunk[], why: FetchPurpose): Promise<void>[] {
    // what the workload read, wherever the bytes came from: a start elsewhere prefetches them
    if (why.record) this.record(s, [chunks]);
    const settle = new Map<number, { resolve: () => void; reject: (e: unknown) => void }>();
    const promises = chunks.map((c) => {
      const p = new Promise<void>((resolve, reject) => settle.set(c.chunkIndex, { resolve, reject }));
      s.inflight.set(c.chunkIndex, p);
      const done = (): void => {
        if (s.inflight.get(c.chunkIndex) === p) s.inflight.delete(c.chunkIndex);
      };
      p.then(done, done);
      return p;
    });
    void (async () => {
      const rest: DeviceChunk[] = [];
      for (const c of chunks) {
        const r = settle.get(c.chunkIndex)!;
        const bytes = await idx.find(s.decoder.digester, c.digest, c.uncompressedSize, s.blob.blobId).catch(() => undefined);
        if (!bytes) {
          rest.push(c);
          continue;
        }
        try {
          await s.cache.put(c.chunkIndex, c.uncompressedOffset, bytes);
          this.stats.sharedBytes += bytes.length;
          r.resolve();
        } catch (err) {
          r.reject(err);
        }
      }
      if (!rest.length) return;
      for (const c of rest) s.inflight.delete(c.chunkIndex);
      const groups = planFetch(rest, { maxBytes: Math.max(this.amplify, DEFAULT_MERGE_BYTES), maxGap: this.mergeGap });
      for (const g of groups)
        this.fetchGroup(s, g, why).forEach((p, i) => {
          const r = settle.get(g[i]!.chunkIndex)!;
          p.then(r.resolve, r.reject);
        });
    })();
    return promises;
  }

  /**
   * The requests for an on-demand read's missing chunks: a file marked whole one of whose chunks is
   * missing comes along whole (`setWholeFiles`), merged over small gaps (the chunks in the gaps
   * taken along), and a miss landing near recent ones is amplified over the chunks laid out after
   * its request, as far as storage/speculation allows (adaptive window, byte budget). Requests are
   * at most 1 MiB (or the largest miss window) plus the amplification, all sent at once. Every chunk
   * no reader asked for is marked as fetched ahead.
   */
  private planOnDemand(s: BlobState, missing: DeviceChunk[]): DeviceChunk[][] {
    const want = withWholeFiles(missing, s.layout, s.wholeFiles);
    const groups = planFetch(want, { maxBytes: Math.max(this.missWindowMax, DEFAULT_MERGE_BYTES), maxGap: this.mergeGap }, s.layout);
    const planned = new Set(groups.flatMap((g) => g.map((c) => c.chunkIndex)));
    const asked = new Set(missing.map((c) => c.chunkIndex));
    const whole = new Set(want.slice(missing.length).map((c) => c.chunkIndex));
    for (const g of groups) {
      for (const c of g) if (!asked.has(c.chunkIndex)) this.fetchedAhead(s, c, whole.has(c.chunkIndex) ? 'whole' : 'gap');
      const first = g[0]!;
      const last = g[g.length - 1]!;
      const bytes = s.spec.onMiss(first.compressedOffset);
      if (bytes <= 0 || !s.families) continue;
      const span = last.compressedOffset + last.compressedSize - first.compressedOffset;
      const fam = s.families;
      const joins = fam.size ? (a: DeviceChunk, b: DeviceChunk) => fam.get(a.chunkIndex) === fam.get(b.chunkIndex) : undefined;
      for (const c of amplify(g, s.layout, span + bytes, this.mergeGap, planned, joins)) this.fetchedAhead(s, c, 'amplify');
    }
    return groups;
  }

  /**
   * The next read-ahead window of a sequential stream, if one is due (fetch-plan's
   * `nextReadAhead`): its missing chunks are fetched in the background, and its first chunk past the reader becomes
   * the trigger whose read asks for the window after it.
   */
  private readAhead(s: BlobState, stream: ReadStream): void {
    const r = nextReadAhead(stream, this.amplify, s.blob.uncompressedSize);
    if (!r || this.closed || s.blocked) return;
    const chunks = overlapping(s.byOffset, r.start, r.end);
    if (!chunks.length) return;
    // the trigger: the window's first chunk past the reader (its first chunk may be the one being read)
    const trigger = (chunks.find((c) => c.uncompressedOffset >= r.start) ?? chunks[0]!).chunkIndex;
    markChunkReady(s.triggers, trigger);
    s.aheadTriggers.add(trigger);
    const idx = this.o.chunkIndex;
    if (idx) {
      const shared = chunks.filter(
        (c) =>
          !s.cache.isReady(c.chunkIndex) &&
          !s.inflight.has(c.chunkIndex) &&
          idx.has(s.decoder.digester, c.digest, c.uncompressedSize, s.blob.blobId),
      );
      if (shared.length) for (const p of this.copyShared(s, idx, shared, READ_AHEAD)) p.catch(() => undefined);
    }
    const missing = chunks.filter((c) => !s.layout.skip(c.chunkIndex));
    if (!missing.length) return;
    const groups = planFetch(missing, { maxBytes: Math.max(this.amplify, DEFAULT_MERGE_BYTES), maxGap: this.mergeGap }, s.layout);
    this.record(s, groups);
    for (const g of groups) for (const c of g) if (c.chunkIndex !== trigger) this.fetchedAhead(s, c, 'read-ahead');
    for (const g of groups) for (const p of this.fetchGroup(s, g, READ_AHEAD)) p.catch(() => undefined);
  }

  private record(s: BlobState, groups: DeviceChunk[][]): void {
    if (this.traced.length >= TRACE_MAX_CHUNKS || this.clock.now() - this.openedAt > TRACE_WINDOW_MS) return;
    for (const g of groups) for (const c of g) this.traced.push({ blobId: s.blob.blobId, chunkIndex: c.chunkIndex });
    if (this.traced.length > TRACE_MAX_CHUNKS) this.traced.length = TRACE_MAX_CHUNKS;
  }

  /**
   * The access trace: every chunk fetched for a reader (on-demand reads, their read-ahead, and
   * prefetches marked `record` — the start-up and trace prefetches) in the order first fetched,
   * during the first 30 s after the device opened (at most 65 536 chunks). Background prefetch of
   * whole images or prefetch tables is not in it: it says what the workload read, not what was pushed.
   */
  trace(): Array<{ blobId: string; chunkIndex: number }> {
    return this.traced.slice();
  }

  /**
   * Marks files of a blob to be fetched whole when an on-demand read misses one of their chunks
   * (first CI index → the file's CI indexes in order; fetch-plan's `withWholeFiles`), replacing
   * what was marked before. Unknown blobs are ignored.
   */
  setWholeFiles(blobId: string, files: ReadonlyMap<number, readonly number[]>): void {
    const s = this.blobs.get(blobId);
    if (!s) return;
    const byChunk = new Map<number, readonly number[]>();
    for (const chunks of files.values()) for (const i of chunks) byChunk.set(i, chunks);
    s.wholeFiles = byChunk;
  }

  /**
   * Gives a blob's chunks their files' families (CI index → family; daemon/whole-files): an
   * amplified miss grows only over chunks of its own family. Unknown blobs are ignored.
   */
  setFamilies(blobId: string, families: ReadonlyMap<number, number>): void {
    const s = this.blobs.get(blobId);
    if (s) s.families = families;
  }

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
   * Per blob: its chunks (in uncompressed order) and whether a chunk is cached now — what a
   * background fill walks to find what is still missing (daemon/fill.ts).
   */
  cacheView(): Array<{ blobId: string; chunks: readonly DeviceChunk[]; cached(chunkIndex: number): boolean }> {
    return [...this.blobs.values()].map((s) => ({
      blobId: s.blob.blobId,
      chunks: s.byOffset,
      cached: (i: number) => s.cache.isReady(i),
    }));
  }

  /** When a reader last used any blob of this device (clock ms; the device's opening when never). */
  lastReadAt(): number {
    let t = this.openedAt;
    for (const s of this.blobs.values()) if (s.lastUsed > t) t = s.lastUsed;
    return t;
  }

  /** The blob's `prepare` step, run once (again after a failure). */
  private prepared(s: BlobState): Promise<void> {
    const prep = s.blob.prepare;
    if (!prep) return Promise.resolve();
    if (!s.prepared) {
      const p = prep((offset, length) => this.backendRead(s.blob.blobId, offset, length));
      s.prepared = p;
      const idx = this.o.chunkIndex;
      // its chunks' digests are known now: the index can offer them to other blobs
      if (idx) p.then(() => idx.add(this.o.cacheDir, s.cache, s.blob.codec.digester, s.blob.chunks)).catch(() => undefined);
      p.catch((err: unknown) => {
        if (s.prepared === p) s.prepared = undefined;
        this.log.warn({ blob: s.blob.blobId, err: (err as Error).message }, "loading the blob's chunk digests failed");
      });
    }
    return s.prepared;
  }

  /**
   * Starts one ranged request for a group (sorted by compressed offset, not overlapping); returns
   * one promise per chunk. Each chunk is decoded, verified and cached as soon as its own bytes have
   * arrived (and the blob's `prepare` step is done), so a reader waiting for the first chunk of a
   * large request does not wait for the rest.
   */
  private fetchGroup(s: BlobState, group: DeviceChunk[], why: FetchPurpose): Promise<void>[] {
    const ready = this.prepared(s);
    const chunks = new ChunkArrivals(group, async (c, raw) => {
      await ready;
      await s.cache.put(c.chunkIndex, c.uncompressedOffset, await this.decodeOrRefetch(s, c, raw));
    });
    const promises = chunks.promises;
    group.forEach((c, i) => {
      const p = promises[i]!;
      s.inflight.set(c.chunkIndex, p);
      const done = (): void => {
        if (s.inflight.get(c.chunkIndex) === p) s.inflight.delete(c.chunkIndex);
      };
      p.then(done, done);
    });
    const start = group[0]!.compressedOffset;
    const last = group[group.length - 1]!;
    const len = last.compressedOffset + last.compressedSize - start;
    this.log.debug(
      { blob: s.blob.blobId, offset: start, length: len, chunks: group.length, first: group[0]!.chunkIndex, kind: why.kind },
      'fetch',
    );
    let prepFailed = false;
    ready.catch(() => {
      if (!prepFailed) this.stats.backendErrors++;
      prepFailed = true;
    });
    this.backendRead(s.blob.blobId, start, len, (buf, n) => chunks.arrived(buf, n)).then(
      (raw) => {
        if (why.prefetch) this.stats.prefetchedBytes += len;
        chunks.arrived(raw, len);
      },
      (err: unknown) => {
        this.stats.backendErrors++;
        this.log.warn({ blob: s.blob.blobId, offset: start, length: len, err: (err as Error).message }, 'backend read failed');
        chunks.fail(FerryError.is(err) ? err : new FerryError('UNAVAILABLE', (err as Error).message, { cause: err }));
      },
    );
    return promises;
  }

  private async decodeOrRefetch(s: BlobState, c: DeviceChunk, raw: Buffer): Promise<Buffer> {
    try {
      return await this.decode(s, c, raw);
    } catch (err) {
      if (!(err instanceof DigestMismatchError) && !FerryError.hasCode(err, 'DATA_LOSS')) throw err;
      this.stats.digestMismatches++;
      this.log.warn(
        { blob: s.blob.blobId, chunk: c.chunkIndex, err: (err as Error).message },
        'chunk failed verification, fetching it again',
      );
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
      this.log.error(
        { blob: s.blob.blobId, chunk: c.chunkIndex, compressedOffset: c.compressedOffset, err: (err as Error).message },
        'chunk corrupt after refetch, failing the read',
      );
      throw new FerryError('DATA_LOSS', `blob ${s.blob.blobId} chunk ${c.chunkIndex}: corrupt after refetch`, { cause: err });
    }
  }

  private async backendRead(
    blobId: string,
    offset: number,
    length: number,
    progress?: (buf: Buffer, filled: number) => void,
  ): Promise<Buffer> {
    const ctl = new AbortController();
    const cancel = this.clock.setTimer(this.deadline, () =>
      ctl.abort(new FerryError('DEADLINE_EXCEEDED', `blob ${blobId}: backend gave no data in ${this.deadline} ms`)),
    );
    this.stats.requests++;
    try {
      const p = this.o.backend.read(blobId, offset, length, ctl.signal, progress);
      // Whatever the backend does with the signal, the caller is released at the deadline.
      const buf = await Promise.race([
        p,
        new Promise<never>((_, rej) => ctl.signal.addEventListener('abort', () => rej(ctl.signal.reason), { once: true })),
      ]);
      this.stats.bytesFetched += buf.length;
      return buf;
    } finally {
      cancel();
    }
  }

  // ---- prefetch ---------------------------------------------------------------------------

  /**
   * Queues chunks (by blob, each list in the order the chunks will be needed) for prefetch; `all` =
   * every chunk of every blob. They go out as a few large requests, several in flight (the
   * prefetcher). Urgent prefetches go ahead of queued background ones and do not wait for
   * on-demand reads.
   */
  prefetch(sel: 'all' | Array<{ blobId: string; chunks: DeviceChunk[] }>, opts: PrefetchOptions = {}): void {
    const jobs: Array<{ blob: BlobState; chunks: DeviceChunk[] }> = [];
    if (sel === 'all') {
      for (const s of this.blobs.values()) jobs.push({ blob: s, chunks: s.byOffset });
    } else {
      for (const { blobId, chunks } of sel) {
        const s = this.blobs.get(blobId);
        // in the order given: the order they will be needed (a trace's order)
        if (s) jobs.push({ blob: s, chunks: dedupe(chunks) });
      }
    }
    if (!this.closed) this.prefetcher.add(jobs, opts);
  }

  /** Resolves when the prefetch queue is drained. */
  async prefetchIdle(): Promise<void> {
    await this.prefetcher.idle();
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.prefetcher.close();
    for (const s of this.blobs.values()) {
      await Promise.allSettled([...s.inflight.values()]);
      this.o.chunkIndex?.release(this.o.cacheDir, s.cache, new Uint8Array(s.cache.sharedBitmap, 0, Math.ceil(s.blob.chunkCount / 8)));
      await s.cache.close();
    }
    await this.o.backend.close();
    await this.pool?.close();
  }
}
