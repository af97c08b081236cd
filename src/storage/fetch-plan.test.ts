import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  MERGE_GAP_SHIFT,
  MIN_WINDOW,
  SEQUENTIAL_AFTER,
  SEQUENTIAL_SLACK,
  byUncompressedOffset,
  dedupe,
  nextPrefetchBatch,
  nextStreak,
  overlapping,
  planFetch,
  readAheadWindow,
  type ChunkPlace,
} from './fetch-plan.js';

const K = 1024;
const MiB = 1024 * K;

/** Chunks [index, compressed offset, compressed size] laid out in the view at 64 KiB each. */
function chunks(...spec: Array<[number, number, number]>): ChunkPlace[] {
  return spec.map(([chunkIndex, compressedOffset, compressedSize]) => ({
    chunkIndex,
    compressedOffset,
    compressedSize,
    uncompressedOffset: chunkIndex * 64 * K,
    uncompressedSize: 64 * K,
  }));
}
/** n contiguous chunks of `size` compressed bytes each, starting at chunk `first`. */
function run(first: number, n: number, size: number): ChunkPlace[] {
  return chunks(...Array.from({ length: n }, (_, i) => [first + i, (first + i) * size, size] as [number, number, number]));
}
const indexes = (groups: ChunkPlace[][]): number[][] => groups.map((g) => g.map((c) => c.chunkIndex));

test('fetch plan: merging missing chunks into requests', () => {
  const gap = MiB >> MERGE_GAP_SHIFT; // 8 KiB at a 1 MiB merge size
  const table: Array<{ name: string; missing: ChunkPlace[]; merge: number; want: number[][] }> = [
    { name: 'one chunk', missing: run(3, 1, 10 * K), merge: MiB, want: [[3]] },
    { name: 'adjacent chunks share a request', missing: run(0, 4, 10 * K), merge: MiB, want: [[0, 1, 2, 3]] },
    { name: 'any order in, sorted by compressed offset out', missing: [...run(0, 3, 10 * K)].reverse(), merge: MiB, want: [[0, 1, 2]] },
    {
      name: 'a gap up to merge/128 is merged over',
      missing: chunks([0, 0, 10 * K], [1, 10 * K + gap, 10 * K]),
      merge: MiB,
      want: [[0, 1]],
    },
    { name: 'a wider gap splits', missing: chunks([0, 0, 10 * K], [1, 10 * K + gap + 1, 10 * K]), merge: MiB, want: [[0], [1]] },
    {
      name: 'requests are at most `merge` bytes',
      missing: run(0, 5, 300 * K),
      merge: MiB,
      want: [
        [0, 1, 2],
        [3, 4],
      ],
    },
    {
      name: 'a chunk bigger than `merge` is its own request',
      missing: chunks([0, 0, 10 * K], [1, 10 * K, 2 * MiB], [2, 10 * K + 2 * MiB, 10 * K]),
      merge: MiB,
      want: [[0], [1], [2]],
    },
    {
      name: 'overlapping compressed ranges (deduplicated data) split',
      missing: chunks([0, 0, 10 * K], [1, 5 * K, 10 * K]),
      merge: MiB,
      want: [[0], [1]],
    },
    {
      name: 'a smaller merge size merges less',
      missing: run(0, 4, 100 * K),
      merge: 256 * K,
      want: [
        [0, 1],
        [2, 3],
      ],
    },
  ];
  for (const t of table) assert.deepEqual(indexes(planFetch(t.missing, t.merge)), t.want, t.name);
  assert.deepEqual(planFetch([], MiB), []);
});

test('fetch plan: read-ahead extends the last request over following missing chunks, within limits', () => {
  const blob = run(0, 12, 64 * K); // 12 chunks of 64 KiB, contiguous
  const position = new Map(blob.map((c, i) => [c.chunkIndex, i]));
  const ra = (bytes: number, skip: (i: number) => boolean = () => false) => ({ bytes, byOffset: blob, position, skip });
  const table: Array<{ name: string; missing: ChunkPlace[]; bytes: number; skip?: (i: number) => boolean; want: number[][] }> = [
    { name: 'no window, no read-ahead', missing: [blob[2]!], bytes: 0, want: [[2]] },
    { name: '128 KiB window: two more chunks', missing: [blob[2]!], bytes: 128 * K, want: [[2, 3, 4]] },
    { name: 'a window that does not fit a whole chunk adds nothing', missing: [blob[2]!], bytes: 63 * K, want: [[2]] },
    { name: 'stops at a cached or in-flight chunk', missing: [blob[2]!], bytes: 512 * K, skip: (i) => i === 5, want: [[2, 3, 4]] },
    { name: 'stops at the end of the blob', missing: [blob[10]!], bytes: MiB, want: [[10, 11]] },
    { name: 'only the last request grows', missing: [blob[0]!, blob[6]!], bytes: 128 * K, want: [[0], [6, 7, 8]] },
    { name: 'chunks already planned are not added twice', missing: [blob[3]!, blob[2]!], bytes: 64 * K, want: [[2, 3, 4]] },
  ];
  for (const t of table) assert.deepEqual(indexes(planFetch(t.missing, MiB, ra(t.bytes, t.skip))), t.want, t.name);
  // read-ahead never bridges a gap wider than merge/128 in the compressed blob
  const gappy = chunks([0, 0, 64 * K], [1, 64 * K + 20 * K, 64 * K]);
  assert.deepEqual(
    indexes(
      planFetch([gappy[0]!], MiB, {
        bytes: MiB,
        byOffset: gappy,
        position: new Map([
          [0, 0],
          [1, 1],
        ]),
        skip: () => false,
      }),
    ),
    [[0]],
  );
});

test('fetch plan: sequential streaks and the read-ahead window', () => {
  const at = (offset: number): ChunkPlace[] => chunks([0, offset, 10 * K]);
  // a miss that starts where the previous fetch ended (or a little after) continues the streak
  assert.equal(nextStreak(3, 100 * K, at(100 * K)), 4);
  assert.equal(nextStreak(3, 100 * K, at(100 * K + SEQUENTIAL_SLACK)), 4);
  assert.equal(nextStreak(3, 100 * K, at(100 * K + SEQUENTIAL_SLACK + 1)), 0);
  assert.equal(nextStreak(3, 100 * K, at(100 * K - 1)), 0); // behind: not sequential
  assert.equal(nextStreak(0, Number.NEGATIVE_INFINITY, at(0)), 0); // no previous fetch
  // the lowest missing chunk decides, whatever the order
  assert.equal(nextStreak(1, 100 * K, [...chunks([0, 300 * K, K]), ...at(100 * K)]), 2);
  const table: Array<[streak: number, amplify: number, want: number]> = [
    [0, MiB, 0],
    [SEQUENTIAL_AFTER - 1, MiB, 0], // scattered or too short: only the chunks touched
    [SEQUENTIAL_AFTER, MiB, MIN_WINDOW],
    [SEQUENTIAL_AFTER + 1, MiB, 2 * MIN_WINDOW],
    [SEQUENTIAL_AFTER + 2, MiB, 4 * MIN_WINDOW],
    [SEQUENTIAL_AFTER + 3, MiB, MiB],
    [SEQUENTIAL_AFTER + 10, MiB, MiB], // capped at amplify_io
    // a long sequential read keeps its read-ahead (a 32-bit shift made it negative, then 0, from the 14th doubling)
    [SEQUENTIAL_AFTER + 14, MiB, MiB],
    [SEQUENTIAL_AFTER + 15, MiB, MiB],
    [SEQUENTIAL_AFTER + 1000, MiB, MiB],
    [SEQUENTIAL_AFTER + 5, 256 * K, 256 * K],
    [SEQUENTIAL_AFTER + 5, 0, 0], // amplify 0: never
  ];
  for (const [streak, amplify, want] of table) assert.equal(readAheadWindow(streak, amplify), want, `streak ${streak}, amplify ${amplify}`);
});

test('fetch plan: the chunks a view range touches', () => {
  const blob = run(0, 4, 10 * K); // view: 64 KiB per chunk
  const table: Array<[start: number, end: number, want: number[]]> = [
    [0, 1, [0]],
    [64 * K - 1, 64 * K + 1, [0, 1]],
    [64 * K, 128 * K, [1]],
    [0, 256 * K, [0, 1, 2, 3]],
    [256 * K, 300 * K, []],
  ];
  for (const [start, end, want] of table)
    assert.deepEqual(
      overlapping(blob, start, end).map((c) => c.chunkIndex),
      want,
      `${start}..${end}`,
    );
});

test('fetch plan: prefetch batches', () => {
  const list = run(0, 6, 300 * K);
  const skip = (i: number): boolean => i === 1 || i === 2;
  // up to `merge` bytes of chunks not cached or in flight, at least one
  assert.deepEqual(
    nextPrefetchBatch(list, 0, MiB, () => false).batch.map((c) => c.chunkIndex),
    [0, 1, 2],
  );
  const b = nextPrefetchBatch(list, 0, MiB, skip);
  assert.deepEqual([b.batch.map((c) => c.chunkIndex), b.bytes, b.next], [[0, 3, 4], 900 * K, 5]);
  assert.deepEqual(
    nextPrefetchBatch(list, 0, 100 * K, () => false).batch.map((c) => c.chunkIndex),
    [0],
  );
  assert.deepEqual(
    nextPrefetchBatch(list, 1, MiB, skip).batch.map((c) => c.chunkIndex),
    [3, 4, 5],
  );
  // all skipped: an empty batch, and the position moves on to the end
  assert.deepEqual(
    nextPrefetchBatch(list, 0, MiB, () => true),
    { batch: [], bytes: 0, next: 6 },
  );
  assert.deepEqual(nextPrefetchBatch(list, 6, MiB, skip), { batch: [], bytes: 0, next: 6 });
});

test("fetch plan: a blob's chunk list sorted by view offset without repeats", () => {
  const a = run(0, 5, 10 * K);
  assert.deepEqual(
    byUncompressedOffset([a[3]!, a[0]!, a[3]!, a[1]!]).map((c) => c.chunkIndex),
    [0, 1, 3],
  );
  // CI indexes far apart (not a native blob): sorted by comparison
  const sparse = chunks([1_000_000, 0, K], [5, K, K]);
  assert.deepEqual(
    byUncompressedOffset(sparse).map((c) => c.chunkIndex),
    [5, 1_000_000],
  );
  // index order that is not view order
  const swapped = [{ ...a[0]!, uncompressedOffset: 200 * K }, a[1]!];
  assert.deepEqual(
    byUncompressedOffset(swapped).map((c) => c.chunkIndex),
    [1, 0],
  );
  assert.deepEqual(
    dedupe([a[1]!, a[0]!, a[1]!]).map((c) => c.chunkIndex),
    [1, 0],
  );
});
