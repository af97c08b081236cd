import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  MIN_WINDOW,
  SEQUENTIAL_AFTER,
  SEQUENTIAL_SLACK,
  STREAMS_KEPT,
  ReadStreams,
  amplify,
  byUncompressedOffset,
  cutAtGrid,
  dedupe,
  nextReadAhead,
  overlapping,
  planFetch,
  planPrefetch,
  withWholeFiles,
  type BlobLayout,
  type ChunkPlace,
  type MergePolicy,
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

/** A layout over `blob` (sorted), skipping the chunks in `skip`. */
function layoutOf(blob: ChunkPlace[], skip: ReadonlySet<number> = new Set()): BlobLayout<ChunkPlace> {
  return { byOffset: blob, position: new Map(blob.map((c, i) => [c.chunkIndex, i])), skip: (i) => skip.has(i) };
}
const policy = (maxBytes: number, maxGap: number): MergePolicy => ({ maxBytes, maxGap });

test('fetch plan: merging wanted chunks into requests', () => {
  const gap = 32 * K;
  const table: Array<{ name: string; want: ChunkPlace[]; p: MergePolicy; out: number[][] }> = [
    { name: 'one chunk', want: run(3, 1, 10 * K), p: policy(MiB, gap), out: [[3]] },
    { name: 'adjacent chunks share a request', want: run(0, 4, 10 * K), p: policy(MiB, gap), out: [[0, 1, 2, 3]] },
    {
      name: 'any order in, sorted by compressed offset out',
      want: [...run(0, 3, 10 * K)].reverse(),
      p: policy(MiB, gap),
      out: [[0, 1, 2]],
    },
    {
      name: 'a gap up to maxGap is merged over',
      want: chunks([0, 0, 10 * K], [1, 10 * K + gap, 10 * K]),
      p: policy(MiB, gap),
      out: [[0, 1]],
    },
    { name: 'a wider gap splits', want: chunks([0, 0, 10 * K], [1, 10 * K + gap + 1, 10 * K]), p: policy(MiB, gap), out: [[0], [1]] },
    {
      name: 'maxGap 0 merges only touching chunks',
      want: chunks([0, 0, 10 * K], [1, 10 * K + 1, 10 * K]),
      p: policy(MiB, 0),
      out: [[0], [1]],
    },
    {
      name: 'requests span at most maxBytes',
      want: run(0, 5, 300 * K),
      p: policy(MiB, gap),
      out: [
        [0, 1, 2],
        [3, 4],
      ],
    },
    {
      name: 'a chunk bigger than maxBytes is its own request',
      want: chunks([0, 0, 10 * K], [1, 10 * K, 2 * MiB], [2, 10 * K + 2 * MiB, 10 * K]),
      p: policy(MiB, gap),
      out: [[0], [1], [2]],
    },
    {
      name: 'overlapping compressed ranges (deduplicated data) split',
      want: chunks([0, 0, 10 * K], [1, 5 * K, 10 * K]),
      p: policy(MiB, gap),
      out: [[0], [1]],
    },
  ];
  for (const t of table) assert.deepEqual(indexes(planFetch(t.want, t.p)), t.out, t.name);
  assert.deepEqual(planFetch([], policy(MiB, gap)), []);
});

test('fetch plan: the chunks in a gap read over join the request unless cached or in flight', () => {
  const blob = run(0, 8, 8 * K); // contiguous 8 KiB chunks
  // chunks 0 and 3 wanted, 16 KiB apart: one request, 1 and 2 taken along (their bytes are read anyway)
  assert.deepEqual(indexes(planFetch([blob[3]!, blob[0]!], policy(MiB, 32 * K), layoutOf(blob))), [[0, 1, 2, 3]]);
  // a cached chunk in the gap is read over but not fetched again
  assert.deepEqual(indexes(planFetch([blob[0]!, blob[3]!], policy(MiB, 32 * K), layoutOf(blob, new Set([2])))), [[0, 1, 3]]);
  // a gap too wide is neither read nor filled
  assert.deepEqual(indexes(planFetch([blob[0]!, blob[6]!], policy(MiB, 32 * K), layoutOf(blob))), [[0], [6]]);
  // files laid out together: chunks of different files (any CI index) merge the same way
  const mixed = chunks([7, 0, 8 * K], [2, 8 * K, 8 * K], [9, 16 * K, 8 * K]);
  mixed.sort((a, b) => a.compressedOffset - b.compressedOffset);
  const lay = { byOffset: mixed, position: new Map(mixed.map((c, i) => [c.chunkIndex, i])), skip: () => false };
  assert.deepEqual(indexes(planFetch([mixed[2]!, mixed[0]!], policy(MiB, 8 * K), lay)), [[7, 2, 9]]);
});

test("fetch plan: a miss on a whole file's first chunk brings the file along, nothing else does", () => {
  const blob = run(0, 12, 8 * K);
  // file A: chunks 0-3; file B: chunks 4-9 (its last two cached); file C (chunks 10, 11) is not marked
  const files = new Map<number, number[]>([
    [0, [0, 1, 2, 3]],
    [4, [4, 5, 6, 7, 8, 9]],
  ]);
  const lay = layoutOf(blob, new Set([8, 9]));
  assert.deepEqual(
    withWholeFiles([blob[0]!], lay, files).map((c) => c.chunkIndex),
    [0, 1, 2, 3],
    'first chunk of A: all of A',
  );
  assert.deepEqual(
    withWholeFiles([blob[2]!], lay, files).map((c) => c.chunkIndex),
    [2],
    'a chunk inside A (a read not from its start): only itself',
  );
  assert.deepEqual(
    withWholeFiles([blob[5]!, blob[4]!, blob[10]!], lay, files).map((c) => c.chunkIndex),
    [5, 4, 10, 6, 7],
    'first chunk of B: the rest of B not cached and not wanted already; C untouched',
  );
  // the whole file becomes one request (merged like any chunks laid out together)
  assert.deepEqual(indexes(planFetch(withWholeFiles([blob[4]!], lay, files), policy(MiB, 32 * K), lay)), [[4, 5, 6, 7]]);
  assert.deepEqual(
    withWholeFiles([blob[4]!], lay, new Map()).map((c) => c.chunkIndex),
    [4],
  );
});

test('fetch plan: amplification grows a request over the following chunks, within limits', () => {
  const blob = run(0, 12, 64 * K); // 12 chunks of 64 KiB, contiguous
  const table: Array<{ name: string; g: number[]; bytes: number; skip?: number[]; planned?: number[]; out: number[] }> = [
    { name: 'no window, nothing added', g: [2], bytes: 0, out: [2] },
    { name: '192 KiB window from the request start: two more chunks', g: [2], bytes: 192 * K, out: [2, 3, 4] },
    { name: 'a window that does not fit the next chunk adds nothing', g: [2], bytes: 127 * K, out: [2] },
    { name: 'the window counts from the start of the request', g: [2, 3], bytes: 192 * K, out: [2, 3, 4] },
    { name: 'stops at a cached or in-flight chunk', g: [2], bytes: MiB, skip: [5], out: [2, 3, 4] },
    { name: 'stops at a chunk another request of the plan has', g: [2], bytes: MiB, planned: [6], out: [2, 3, 4, 5] },
    { name: 'stops at the end of the blob', g: [10], bytes: MiB, out: [10, 11] },
  ];
  for (const t of table) {
    const g = t.g.map((i) => blob[i]!);
    const added = amplify(g, layoutOf(blob, new Set(t.skip)), t.bytes, 32 * K, new Set(t.planned));
    assert.deepEqual(
      g.map((c) => c.chunkIndex),
      t.out,
      t.name,
    );
    assert.equal(added.length, t.out.length - t.g.length, `${t.name}: added`);
  }
  // never bridges a gap wider than maxGap in the compressed blob
  const gappy = chunks([0, 0, 64 * K], [1, 64 * K + 40 * K, 64 * K]);
  const g = [gappy[0]!];
  amplify(g, layoutOf(gappy), MiB, 32 * K);
  assert.deepEqual(
    g.map((c) => c.chunkIndex),
    [0],
  );
});

test('fetch plan: sequential streams are detected per stream, reads in between do not break them', () => {
  const rs = new ReadStreams();
  const step = 16 * K;
  let s = rs.observe(0, step);
  assert.equal(s.streak, 0);
  for (let i = 1; i <= SEQUENTIAL_AFTER; i++) {
    // another file read in between (a different stream) does not break this one
    rs.observe(50 * MiB + i * 4 * MiB, 50 * MiB + i * 4 * MiB + 4 * K);
    s = rs.observe(i * step, (i + 1) * step);
    assert.equal(s.streak, i, `read ${i}`);
  }
  // up to SEQUENTIAL_SLACK past the end still continues it; further starts a new stream
  assert.equal(rs.observe(s.next + SEQUENTIAL_SLACK, s.next + SEQUENTIAL_SLACK + step).streak, SEQUENTIAL_AFTER + 1);
  assert.equal(rs.observe(s.next + SEQUENTIAL_SLACK + 1, s.next + 2 * SEQUENTIAL_SLACK).streak, 0);
  // a re-read behind the end neither advances nor breaks the stream
  const before = { ...s };
  assert.equal(rs.observe(s.next - step, s.next).streak, before.streak);
  // random reads: never a streak
  const random = new ReadStreams();
  const offsets = [7, 3, 11, 1, 9, 5, 13].map((x) => x * MiB);
  for (const o of offsets) assert.equal(random.observe(o, o + 4 * K).streak, 0);
  // bounded: the least recent stream is dropped past STREAMS_KEPT
  const kept = new ReadStreams();
  for (let i = 0; i <= STREAMS_KEPT; i++) kept.observe(i * MiB, i * MiB + K);
  assert.equal(kept.observe(K, 2 * K).streak, 0, 'the first stream was forgotten');
  assert.equal(kept.observe(STREAMS_KEPT * MiB + K, STREAMS_KEPT * MiB + 2 * K).streak, 1, 'the last is kept');
});

test('fetch plan: read-ahead keeps one growing window ahead of a stream, up to amplify_io', () => {
  const view = 100 * MiB;
  const s = { next: 0, streak: SEQUENTIAL_AFTER - 1, aheadEnd: 0, window: 0 };
  assert.equal(nextReadAhead(s, MiB, view), undefined, 'not yet sequential');
  s.streak = SEQUENTIAL_AFTER;
  s.next = 64 * K;
  assert.deepEqual(nextReadAhead(s, MiB, view), { start: 64 * K, end: 64 * K + MIN_WINDOW });
  // the next, doubled window follows where the last ended while less than one (doubled) window is ahead
  s.next = 64 * K + 4 * K;
  assert.deepEqual(nextReadAhead(s, MiB, view), { start: 64 * K + MIN_WINDOW, end: 64 * K + 3 * MIN_WINDOW });
  assert.deepEqual(nextReadAhead(s, MiB, view), { start: 64 * K + 3 * MIN_WINDOW, end: 64 * K + 7 * MIN_WINDOW });
  assert.deepEqual(nextReadAhead(s, MiB, view), { start: 64 * K + 7 * MIN_WINDOW, end: 64 * K + 7 * MIN_WINDOW + MiB });
  // a whole window ahead of the reader: nothing new until it moves on
  assert.equal(nextReadAhead(s, MiB, view), undefined);
  // windows double up to amplify_io and stay there
  const widths: number[] = [];
  for (let i = 0; i < 10; i++) {
    s.next = s.aheadEnd - 4 * K;
    const r = nextReadAhead(s, MiB, view)!;
    widths.push(r.end - r.start);
  }
  assert.deepEqual(widths, [MiB, MiB, MiB, MiB, MiB, MiB, MiB, MiB, MiB, MiB]);
  // stops at the end of the view
  s.next = view - 4 * K;
  s.aheadEnd = view - 8 * K;
  assert.deepEqual(nextReadAhead(s, MiB, view), { start: view - 4 * K, end: view });
  assert.equal(nextReadAhead(s, MiB, view), undefined, 'nothing past the end');
  // amplify_io 0: off; smaller than MIN_WINDOW: that is the window
  assert.equal(nextReadAhead({ next: 0, streak: 99, aheadEnd: 0, window: 0 }, 0, view), undefined);
  assert.deepEqual(nextReadAhead({ next: 0, streak: 99, aheadEnd: 0, window: 0 }, 32 * K, view), { start: 0, end: 32 * K });
});

test('fetch plan: a prefetch list becomes a few large requests, the earliest needed first', () => {
  const blob = run(0, 40, 64 * K); // 40 chunks of 64 KiB = 2.5 MiB
  const trace = [blob[30]!, blob[31]!, blob[0]!, blob[1]!, blob[2]!, blob[30]!, blob[20]!, blob[22]!];
  const groups = planPrefetch(trace, policy(MiB, 64 * K), layoutOf(blob));
  assert.deepEqual(
    indexes(groups),
    [
      [30, 31],
      [0, 1, 2],
      [20, 21, 22],
    ],
    'need order; repeats once; the gap 21 filled',
  );
  // a long start-up set: requests of at most maxBytes
  const all = planPrefetch(blob, policy(MiB, 32 * K), layoutOf(blob));
  assert.equal(all.length, 3);
  assert.ok(all.every((g) => g.length <= 16));
  // chunks already cached are not fetched; those left still merge
  assert.deepEqual(indexes(planPrefetch([blob[0]!, blob[2]!], policy(MiB, 0), layoutOf(blob, new Set([1])))), [[0], [2]]);
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

test('fetch plan: requests through a P2P peer are cut at the range grid', () => {
  assert.deepEqual(cutAtGrid(0, 100, MiB), [[0, 100]]);
  assert.deepEqual(cutAtGrid(MiB - 10, 30, MiB), [
    [MiB - 10, 10],
    [MiB, 20],
  ]);
  assert.deepEqual(cutAtGrid(MiB, 2 * MiB, MiB), [
    [MiB, MiB],
    [2 * MiB, MiB],
  ]);
  assert.deepEqual(cutAtGrid(5, 3 * MiB, 0), [[5, 3 * MiB]], 'grid 0: not cut');
  // the pieces cover the range exactly, in order
  const cuts = cutAtGrid(123_456, 5 * MiB + 7, MiB);
  assert.equal(cuts[0]![0], 123_456);
  assert.equal(
    cuts.reduce((n, [, l]) => n + l, 0),
    5 * MiB + 7,
  );
  for (let i = 1; i < cuts.length; i++) assert.equal(cuts[i]![0], cuts[i - 1]![0] + cuts[i - 1]![1]);
  assert.ok(cuts.slice(1).every(([o]) => o % MiB === 0));
});
