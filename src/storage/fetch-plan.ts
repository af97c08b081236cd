/**
 * @module storage/fetch-plan
 * The fetch planner of the storage device: pure functions and small state machines, no I/O.
 *
 * - Which chunks a read of a blob's uncompressed view touches (`overlapping`).
 * - How chunks to fetch become ranged requests (`planFetch`): sorted by compressed offset, merged
 *   while the gap between neighbours is at most `maxGap` (a gap read over costs less than another
 *   round trip; the chunks lying in it are taken along when they are neither cached nor in flight,
 *   so nothing read is wasted), each request at most `maxBytes`.
 * - Read amplification of on-demand misses (`amplify`): a request grows over the blob's following
 *   chunks — chunks of the same file, and of the files laid out after it, reading over cached ones —
 *   up to a window; how far, and when, storage/speculation decides (misses landing together, an
 *   adaptive window, a byte budget).
 * - Sequential streams at the view level (`ReadStreams`): a read continuing one of the last few
 *   reads (or landing inside the read-ahead issued for it) extends that stream; from the
 *   SEQUENTIAL_AFTER-th such read on, the device reads ahead asynchronously, one window ahead of the
 *   reader, the window doubling up to `amplify_io` (as the kernel's read-ahead does).
 * - Whole files (`withWholeFiles`): a miss on a chunk of a file the mount marked (shared objects,
 *   small files) brings the file's other chunks along — a file read from its start is read to its
 *   end, a dlopen faults in pages all over the library.
 * - How a prefetch list (the start-up set: a trace, the loader's reads) becomes a few large
 *   requests issued in the order the chunks are needed (`planPrefetch`).
 * - The sorted, de-duplicated chunk list of a blob (`byUncompressedOffset`).
 * The numbers that steer all of this are the constants below; the daemon's configuration overrides
 * the defaults (docs/daemon.md, "Reads").
 */

/** Default largest request of a prefetch (nydusd `merging_size`) and largest sequential read-ahead (`amplify_io`). */
export const DEFAULT_MERGE_BYTES = 1024 * 1024;
export const DEFAULT_AMPLIFY_BYTES = 1024 * 1024;
/**
 * Default largest gap (compressed bytes) read over to merge two requests into one: ~the bytes a
 * 100 Mbit/s link moves in one round trip to a registry (docker-registry answers a small range in
 * ~2.4 ms on loopback).
 */
export const DEFAULT_MERGE_GAP = 32 * 1024;
/**
 * Default starting window a clustered on-demand miss is amplified toward (0 = off), the largest it
 * grows to while what was fetched ahead is read, and the most bytes fetched ahead and not read yet
 * (storage/speculation).
 */
export const DEFAULT_MISS_WINDOW = 512 * 1024;
export const DEFAULT_MISS_WINDOW_MAX = 1024 * 1024;
export const DEFAULT_AMPLIFY_BUDGET = 6 * 1024 * 1024;
/** Default requests in flight per device for prefetches and read-ahead (on-demand reads never wait). */
export const DEFAULT_FETCH_CONCURRENCY = 4;
/** A read starting at most this far past where a stream's last read ended still continues it. */
export const SEQUENTIAL_SLACK = 64 * 1024;
/**
 * Reads in a row continuing a stream before read-ahead starts: a cold python start has runs of up
 * to 3 (a threshold of 2 fetched 18 % more, 3 fetched 4 % more).
 */
export const SEQUENTIAL_AFTER = 4;
/** Streams followed per blob (several files read at once). */
export const STREAMS_KEPT = 8;
/** First read-ahead window of a sequential stream (view bytes); it doubles up to amplify_io. */
export const MIN_WINDOW = 128 * 1024;

/** Where a chunk lies in its blob (compressed) and in the blob's uncompressed view. */
export interface ChunkPlace {
  readonly chunkIndex: number;
  readonly compressedOffset: number;
  readonly compressedSize: number;
  readonly uncompressedOffset: number;
  readonly uncompressedSize: number;
}

/** How chunks are merged into requests. */
export interface MergePolicy {
  /** largest request (compressed span, bytes); a single bigger chunk is its own request */
  maxBytes: number;
  /** largest gap between two chunks read over to put them in one request */
  maxGap: number;
}

/** A blob's chunks in order, for planning beyond the chunks asked for (gap filling, amplification, read-ahead). */
export interface BlobLayout<C extends ChunkPlace> {
  /** the blob's chunks sorted by uncompressed offset (the compressed order, in native blobs) */
  byOffset: readonly C[];
  /** each CI index's position in `byOffset` */
  position: ReadonlyMap<number, number>;
  /** chunks not to fetch (cached or in flight) */
  skip(chunkIndex: number): boolean;
}

/** The chunks of `byOffset` (sorted by uncompressed offset) overlapping [start, end) of the view (start < end). */
export function overlapping<C extends ChunkPlace>(byOffset: readonly C[], start: number, end: number): C[] {
  const out: C[] = [];
  for (let i = firstEndingAfter(byOffset, start); i < byOffset.length && byOffset[i]!.uncompressedOffset < end; i++) out.push(byOffset[i]!);
  return out;
}

/** Position of the first chunk of `byOffset` ending after view offset `off`. */
export function firstEndingAfter(byOffset: readonly ChunkPlace[], off: number): number {
  let lo = 0;
  let hi = byOffset.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    const c = byOffset[mid]!;
    if (c.uncompressedOffset + c.uncompressedSize <= off) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

const endOf = (c: ChunkPlace): number => c.compressedOffset + c.compressedSize;

/**
 * Ranged requests for `want` (any order, no repeats): sorted by compressed offset, consecutive
 * chunks share a request while the gap before each is at most `maxGap` and the request spans at
 * most `maxBytes` (a bigger chunk alone). Chunks whose compressed ranges overlap (deduplicated data)
 * never share one. With `layout`, the chunks lying in a gap that was read over join the request
 * unless `layout.skip` says they are cached or in flight.
 */
export function planFetch<C extends ChunkPlace>(want: readonly C[], policy: MergePolicy, layout?: BlobLayout<C>): C[][] {
  const sorted = [...want].sort((a, b) => a.compressedOffset - b.compressedOffset);
  const groups: C[][] = [];
  let cur: C[] = [];
  for (const c of sorted) {
    const last = cur[cur.length - 1];
    if (last) {
      const gap = c.compressedOffset - endOf(last);
      const span = endOf(c) - cur[0]!.compressedOffset;
      if (gap > policy.maxGap || gap < 0 || span > Math.max(policy.maxBytes, c.compressedSize)) {
        groups.push(cur);
        cur = [];
      } else if (gap > 0 && layout) {
        fillGap(cur, c, layout);
      }
    }
    cur.push(c);
  }
  if (cur.length) groups.push(cur);
  return groups;
}

/** Appends to `g` the chunks lying entirely between its last chunk and `next` that may be fetched. */
function fillGap<C extends ChunkPlace>(g: C[], next: C, layout: BlobLayout<C>): void {
  const last = g[g.length - 1]!;
  const from = layout.position.get(last.chunkIndex);
  if (from === undefined) return;
  for (let i = from + 1; i < layout.byOffset.length; i++) {
    const c = layout.byOffset[i]!;
    if (c.compressedOffset < endOf(g[g.length - 1]!)) continue;
    if (endOf(c) > next.compressedOffset) break;
    if (!layout.skip(c.chunkIndex)) g.push(c);
  }
}

/**
 * Grows request `g` (sorted, from `planFetch`) over the blob's following chunks while they are
 * contiguous (gaps up to `maxGap`; cached or in-flight chunks are read over as gaps, not added),
 * are not in `planned` (chunks of the other requests of the same plan; the chunks added are put in
 * it), end within `bytes` of the request's start (compressed) and, with `joins`, belong with the
 * chunk before them (the same family of files): the read amplification of a miss. Returns the
 * chunks added.
 */
export function amplify<C extends ChunkPlace>(
  g: C[],
  layout: BlobLayout<C>,
  bytes: number,
  maxGap: number,
  planned: Set<number> = new Set(),
  joins?: (prev: C, next: C) => boolean,
): C[] {
  const added: C[] = [];
  if (bytes <= 0 || g.length === 0) return added;
  const start = g[0]!.compressedOffset;
  const taken = planned;
  for (const c of g) taken.add(c.chunkIndex);
  const from = layout.position.get(g[g.length - 1]!.chunkIndex);
  if (from === undefined) return added;
  for (let i = from + 1; i < layout.byOffset.length; i++) {
    const c = layout.byOffset[i]!;
    const lastEnd = endOf(g[g.length - 1]!);
    if (taken.has(c.chunkIndex)) break;
    if (c.compressedOffset < lastEnd) break;
    // a cached or in-flight chunk is read over like a gap: a few cached files in a package do not stop it
    if (layout.skip(c.chunkIndex)) {
      if (endOf(c) - lastEnd > maxGap) break;
      continue;
    }
    if (c.compressedOffset - lastEnd > maxGap) break;
    if (endOf(c) - start > bytes) break;
    if (joins && !joins(g[g.length - 1]!, c)) break;
    g.push(c);
    added.push(c);
    taken.add(c.chunkIndex);
  }
  return added;
}

/**
 * The chunks to fetch for on-demand misses `missing` when files are fetched whole: each missing
 * chunk of a file of `files` (CI index of any of its chunks → the file's CI indexes, in order)
 * brings that file's other chunks along, unless `layout.skip` says they are cached or in flight or
 * they are wanted already. Unknown indexes are ignored. The result starts with `missing`, in its order.
 */
export function withWholeFiles<C extends ChunkPlace>(
  missing: readonly C[],
  layout: BlobLayout<C>,
  files: ReadonlyMap<number, readonly number[]>,
): C[] {
  if (files.size === 0) return [...missing];
  const out = [...missing];
  const wanted = new Set(missing.map((c) => c.chunkIndex));
  for (const c of missing) {
    const rest = files.get(c.chunkIndex);
    if (!rest) continue;
    for (const i of rest) {
      const p = layout.position.get(i);
      if (p === undefined || wanted.has(i) || layout.skip(i)) continue;
      wanted.add(i);
      out.push(layout.byOffset[p]!);
    }
  }
  return out;
}

/** One sequential stream over a blob's view. */
export interface ReadStream {
  /** where the last read of the stream ended (view offset) */
  next: number;
  /** reads in a row that continued the stream */
  streak: number;
  /** read-ahead issued up to here (view offset) */
  aheadEnd: number;
  /** the current read-ahead window (view bytes) */
  window: number;
}

/**
 * The sequential streams of one blob's view (STREAMS_KEPT of them, least recent replaced): a read
 * that starts where a stream's last read ended (up to SEQUENTIAL_SLACK later), or inside the
 * read-ahead issued for it, continues it; anything else starts a new stream. The device sees only
 * reads that miss the cache and reads of read-ahead trigger chunks (the FUSE fast path answers the
 * rest), which is why landing inside the read-ahead counts as continuing.
 */
export class ReadStreams {
  private streams: ReadStream[] = [];

  observe(start: number, end: number): ReadStream {
    const i = this.streams.findIndex((s) => start >= s.next - SEQUENTIAL_SLACK && start <= Math.max(s.next, s.aheadEnd) + SEQUENTIAL_SLACK);
    let s: ReadStream;
    if (i >= 0) {
      s = this.streams[i]!;
      this.streams.splice(i, 1);
      // a read behind the stream's end (the kernel re-reading a page) neither advances nor breaks it
      if (end > s.next) {
        s.streak++;
        s.next = end;
      }
    } else {
      s = { next: end, streak: 0, aheadEnd: end, window: 0 };
    }
    this.streams.unshift(s);
    if (this.streams.length > STREAMS_KEPT) this.streams.length = STREAMS_KEPT;
    return s;
  }
}

/**
 * The read-ahead a stream wants after a read (`amplify` the largest window, 0 = none): nothing
 * before SEQUENTIAL_AFTER reads in a row; then, whenever less than one window is left between the
 * reader and the end of what was read ahead, the next window — starting where the read-ahead
 * ended, the window doubling from MIN_WINDOW each time up to `amplify`. Updates the stream; returns
 * the view range to fetch, or undefined.
 */
export function nextReadAhead(s: ReadStream, amplify: number, viewSize: number): { start: number; end: number } | undefined {
  if (amplify <= 0 || s.streak < SEQUENTIAL_AFTER) return undefined;
  const window = s.window === 0 ? Math.min(MIN_WINDOW, amplify) : s.window;
  const from = Math.max(s.next, s.aheadEnd);
  if (from - s.next >= window || from >= viewSize) return undefined;
  const end = Math.min(viewSize, from + window);
  s.aheadEnd = end;
  s.window = Math.min(amplify, window * 2);
  return { start: from, end };
}

/**
 * A prefetch list as requests, in the order its chunks are needed: `chunks` in need order (a trace's
 * order; repeats ignored) are merged into requests (`planFetch`, gaps filled), and the requests are
 * ordered by the first position any of their chunks has in the list — a few large ranges that can
 * go out in parallel, the earliest needed first.
 */
export function planPrefetch<C extends ChunkPlace>(chunks: readonly C[], policy: MergePolicy, layout?: BlobLayout<C>): C[][] {
  const rank = new Map<number, number>();
  chunks.forEach((c, i) => {
    if (!rank.has(c.chunkIndex)) rank.set(c.chunkIndex, i);
  });
  const want = dedupe(chunks);
  const groups = planFetch(want, policy, layout);
  const first = (g: C[]): number => Math.min(...g.map((c) => rank.get(c.chunkIndex) ?? Number.MAX_SAFE_INTEGER));
  return groups
    .map((g) => ({ g, r: first(g) }))
    .sort((a, b) => a.r - b.r)
    .map((x) => x.g);
}

/**
 * [offset, offset + length) cut at the multiples of `grid` (0: not cut), as [offset, length] pairs
 * in order: a request through a P2P peer cut at the peers' range grid is one whole-cell range task
 * per piece, which every node's reads of that cell share.
 */
export function cutAtGrid(offset: number, length: number, grid: number): Array<[number, number]> {
  if (grid <= 0 || length <= 0) return [[offset, length]];
  const out: Array<[number, number]> = [];
  const end = offset + length;
  for (let at = offset; at < end; ) {
    const next = Math.min(end, (Math.floor(at / grid) + 1) * grid);
    out.push([at, next - at]);
    at = next;
  }
  return out;
}

/** Chunks without repeats (the first of each CI index), in their order. */
export function dedupe<C extends ChunkPlace>(chunks: readonly C[]): C[] {
  const m = new Map<number, C>();
  for (const c of chunks) if (!m.has(c.chunkIndex)) m.set(c.chunkIndex, c);
  return [...m.values()];
}

/** A CI index range up to this many times the chunk count (+ a margin) is sorted by placing chunks at their index. */
const SLOT_SORT_SPREAD = 4;
const SLOT_SORT_MARGIN = 1024;

/**
 * A blob's chunks without repeats, sorted by uncompressed offset. CI index order is offset order
 * in native blobs, so placing each chunk at its index is the sort (28 000 chunks: ~1 ms instead of
 * a Map and a comparison sort on the mount's critical path); any other order is sorted.
 */
export function byUncompressedOffset<C extends ChunkPlace>(chunks: readonly C[]): C[] {
  let max = -1;
  for (const c of chunks) if (c.chunkIndex > max) max = c.chunkIndex;
  if (max < SLOT_SORT_SPREAD * chunks.length + SLOT_SORT_MARGIN) {
    const slots: Array<C | undefined> = new Array(max + 1);
    for (const c of chunks) if (slots[c.chunkIndex] === undefined) slots[c.chunkIndex] = c;
    const out: C[] = [];
    for (const c of slots) if (c !== undefined) out.push(c);
    let sorted = true;
    for (let i = 1; i < out.length && sorted; i++) sorted = out[i - 1]!.uncompressedOffset <= out[i]!.uncompressedOffset;
    if (sorted) return out;
    return out.sort((a, b) => a.uncompressedOffset - b.uncompressedOffset);
  }
  return dedupe(chunks).sort((a, b) => a.uncompressedOffset - b.uncompressedOffset);
}
