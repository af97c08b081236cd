/**
 * @module storage/fetch-plan
 * The fetch planner of the storage device: pure functions, no I/O. Which chunks a read of a blob's
 * uncompressed view touches (`overlapping`); how missing chunks become ranged backend requests
 * (`planFetch`: adjacent misses merged, bounded in size and gap, the last request extended by
 * read-ahead); when a miss continues a sequential read and how far read-ahead then reaches
 * (`nextStreak`, `readAheadWindow`, as the kernel's read-ahead follows the access pattern); how a
 * prefetch list is cut into requests (`nextPrefetchBatch`); and the sorted, de-duplicated chunk list
 * of a blob (`byUncompressedOffset`). The numbers that steer all of this are the constants below.
 */

/** Default size of one merged request (nydusd `merging_size`) and default read-ahead (`amplify_io`). */
export const DEFAULT_MERGE_BYTES = 1024 * 1024;
export const DEFAULT_AMPLIFY_BYTES = 1024 * 1024;
/** Chunks are merged into one request over gaps of at most merge >> MERGE_GAP_SHIFT (8 KiB at 1 MiB). */
export const MERGE_GAP_SHIFT = 7;
/** A miss starting at most this far past the previous fetch still counts as sequential. */
export const SEQUENTIAL_SLACK = 64 * 1024;
/**
 * Misses in a row, each starting where the previous fetch ended, before read-ahead starts: a cold
 * python start has runs of up to 3 (a threshold of 2 fetched 18 % more, 3 fetched 4 % more).
 */
export const SEQUENTIAL_AFTER = 4;
/** First read-ahead window of a sequential read; it doubles with each further sequential miss. */
export const MIN_WINDOW = 128 * 1024;
/** Cap on the doublings (the window reaches amplify_io long before; keeps the window finite). */
export const MAX_WINDOW_DOUBLINGS = 20;

/** Where a chunk lies in its blob (compressed) and in the blob's uncompressed view. */
export interface ChunkPlace {
  readonly chunkIndex: number;
  readonly compressedOffset: number;
  readonly compressedSize: number;
  readonly uncompressedOffset: number;
  readonly uncompressedSize: number;
}

/** The chunks of `byOffset` (sorted by uncompressed offset) overlapping [start, end) of the view (start < end). */
export function overlapping<C extends ChunkPlace>(byOffset: readonly C[], start: number, end: number): C[] {
  let lo = 0;
  let hi = byOffset.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    const c = byOffset[mid]!;
    if (c.uncompressedOffset + c.uncompressedSize <= start) lo = mid + 1;
    else hi = mid;
  }
  const out: C[] = [];
  for (let i = lo; i < byOffset.length && byOffset[i]!.uncompressedOffset < end; i++) out.push(byOffset[i]!);
  return out;
}

/**
 * The sequential-read streak after an on-demand fetch of `missing` (not empty): one more when the
 * lowest of them starts where the previous fetch ended (`prevEnd`, compressed; up to
 * SEQUENTIAL_SLACK later), else 0.
 */
export function nextStreak(streak: number, prevEnd: number, missing: readonly ChunkPlace[]): number {
  let start = missing[0]!.compressedOffset;
  for (const c of missing) if (c.compressedOffset < start) start = c.compressedOffset;
  return start >= prevEnd && start - prevEnd <= SEQUENTIAL_SLACK ? streak + 1 : 0;
}

/**
 * How far an on-demand fetch reads ahead after `streak` sequential misses: nothing before the
 * SEQUENTIAL_AFTER-th, then MIN_WINDOW doubling per further miss, up to `amplify` (0: never). A
 * program starting up touches scattered pages and fetches only their chunks (a fixed amplification
 * fetched 1.8× the bytes of a cold python start); a sequential read ramps up.
 */
export function readAheadWindow(streak: number, amplify: number): number {
  if (streak < SEQUENTIAL_AFTER || amplify <= 0) return 0;
  // a multiplication, not a shift: MIN_WINDOW << 14 overflows 32 bits (negative, then 0 from 15 on)
  return Math.min(amplify, MIN_WINDOW * 2 ** Math.min(streak - SEQUENTIAL_AFTER, MAX_WINDOW_DOUBLINGS));
}

/** Read-ahead for `planFetch`: the blob's chunks after the last planned one that may join its request. */
export interface ReadAhead<C extends ChunkPlace> {
  /** bytes past the end of the last request it may reach (compressed) */
  bytes: number;
  /** the blob's chunks sorted by uncompressed offset, and each CI index's position in it */
  byOffset: readonly C[];
  position: ReadonlyMap<number, number>;
  /** chunks not to fetch again (cached or in flight): read-ahead stops at the first */
  skip(chunkIndex: number): boolean;
}

/**
 * Ranged requests for missing chunks: sorted by compressed offset, consecutive chunks share a
 * request while the gap before each is at most merge >> MERGE_GAP_SHIFT and the request spans at
 * most `merge` bytes (or one chunk, if bigger). With `readAhead`, the last request then grows over
 * the blob's following chunks — while they are missing, contiguous and within `readAhead.bytes`.
 */
export function planFetch<C extends ChunkPlace>(missing: readonly C[], merge: number, readAhead?: ReadAhead<C>): C[][] {
  const sorted = [...missing].sort((a, b) => a.compressedOffset - b.compressedOffset);
  const maxGap = merge >> MERGE_GAP_SHIFT;
  const groups: C[][] = [];
  let cur: C[] = [];
  for (const c of sorted) {
    const last = cur[cur.length - 1];
    if (last) {
      const lastEnd = last.compressedOffset + last.compressedSize;
      const span = c.compressedOffset + c.compressedSize - cur[0]!.compressedOffset;
      if (c.compressedOffset - lastEnd > maxGap || c.compressedOffset < lastEnd || span > Math.max(merge, c.compressedSize)) {
        groups.push(cur);
        cur = [];
      }
    }
    cur.push(c);
  }
  if (cur.length) groups.push(cur);
  if (readAhead && readAhead.bytes > 0 && groups.length > 0) extend(groups[groups.length - 1]!, sorted, maxGap, readAhead);
  return groups;
}

function extend<C extends ChunkPlace>(g: C[], planned: readonly C[], maxGap: number, ra: ReadAhead<C>): void {
  const tail = g[g.length - 1]!;
  const reach = tail.compressedOffset + tail.compressedSize + ra.bytes;
  const taken = new Set(planned.map((c) => c.chunkIndex));
  for (let i = (ra.position.get(tail.chunkIndex) ?? ra.byOffset.length) + 1; i < ra.byOffset.length; i++) {
    const c = ra.byOffset[i]!;
    const last = g[g.length - 1]!;
    const lastEnd = last.compressedOffset + last.compressedSize;
    if (ra.skip(c.chunkIndex) || taken.has(c.chunkIndex)) break;
    if (c.compressedOffset < lastEnd || c.compressedOffset - lastEnd > maxGap) break;
    if (c.compressedOffset + c.compressedSize > reach) break;
    g.push(c);
  }
}

/**
 * The next prefetch request from `chunks` (sorted by compressed offset) starting at `from`:
 * consecutive chunks up to `merge` compressed bytes (at least one), leaving out those `skip` says
 * are cached or in flight. `next` is where the following batch starts; `batch` may be empty when
 * every chunk looked at was skipped.
 */
export function nextPrefetchBatch<C extends ChunkPlace>(
  chunks: readonly C[],
  from: number,
  merge: number,
  skip: (chunkIndex: number) => boolean,
): { batch: C[]; bytes: number; next: number } {
  const batch: C[] = [];
  let bytes = 0;
  let i = from;
  while (i < chunks.length && (batch.length === 0 || bytes + chunks[i]!.compressedSize <= merge)) {
    const c = chunks[i++]!;
    if (skip(c.chunkIndex)) continue;
    batch.push(c);
    bytes += c.compressedSize;
  }
  return { batch, bytes, next: i };
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
