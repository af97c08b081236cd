import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fixture } from '../../../test/support/paths.js';
import { decodeChunk } from '../compress/index.js';
import { openBootstrap, type ChunkRef } from './index.js';
import { FileReadPlan, HOLE, PLAN_STRIDE, fixedChunkSpan, planFileRead, tilingProblem, type FileExtent } from './read-plan.js';

/** A plan as [chunk label | 'hole', offset in the chunk, length] triples. */
function segments<C extends FileExtent & { label: string }>(
  chunks: C[],
  size: number,
  offset: number,
  length: number,
): Array<[string, number, number]> {
  const plan = planFileRead(chunks, size, offset, length);
  const out: Array<[string, number, number]> = [];
  for (let k = 0; k < plan.count; k++) {
    const [i, from, len] = plan.segments.subarray(k * PLAN_STRIDE, (k + 1) * PLAN_STRIDE);
    out.push([i === HOLE ? 'hole' : chunks[i!]!.label, from!, len!]);
  }
  const total = out.reduce((n, s) => n + s[2], 0);
  assert.equal(total, plan.length, 'segments cover the planned length exactly');
  return out;
}

const K = 4096;
/** A 10 000-byte file in 4 KiB chunks: two full ones and a partial last one (1808 bytes). */
const fixed = [
  { label: 'a', fileOffset: 0, uncompressedSize: K },
  { label: 'b', fileOffset: K, uncompressedSize: K },
  { label: 'c', fileOffset: 2 * K, uncompressedSize: 10_000 - 2 * K },
];
/** A v5-style file of 20 000 bytes with holes: [0,4K) data, hole, [8K,12K) data, hole to the end. */
const holey = [
  { label: 'x', fileOffset: 0, uncompressedSize: K },
  { label: 'y', fileOffset: 2 * K, uncompressedSize: K },
];
/** A file whose chunks live in two blobs (labels say which): the planner is blob-agnostic. */
const twoBlobs = [
  { label: 'blob1#7', fileOffset: 0, uncompressedSize: K },
  { label: 'blob2#0', fileOffset: K, uncompressedSize: K },
  { label: 'blob1#8', fileOffset: 2 * K, uncompressedSize: K },
  { label: 'blob2#1', fileOffset: 3 * K, uncompressedSize: 100 },
];

const cases: Array<{
  name: string;
  chunks: typeof fixed;
  size: number;
  offset: number;
  length: number;
  want: Array<[string, number, number]>;
}> = [
  { name: 'inside one chunk', chunks: fixed, size: 10_000, offset: 100, length: 50, want: [['a', 100, 50]] },
  { name: 'exactly one chunk', chunks: fixed, size: 10_000, offset: K, length: K, want: [['b', 0, K]] },
  {
    name: 'across a chunk boundary',
    chunks: fixed,
    size: 10_000,
    offset: K - 10,
    length: 20,
    want: [
      ['a', K - 10, 10],
      ['b', 0, 10],
    ],
  },
  {
    name: 'across every chunk',
    chunks: fixed,
    size: 10_000,
    offset: 1,
    length: 9_998,
    want: [
      ['a', 1, K - 1],
      ['b', 0, K],
      ['c', 0, 10_000 - 2 * K - 1],
    ],
  },
  {
    name: 'whole file',
    chunks: fixed,
    size: 10_000,
    offset: 0,
    length: 10_000,
    want: [
      ['a', 0, K],
      ['b', 0, K],
      ['c', 0, 1808],
    ],
  },
  {
    name: 'last partial chunk, request past the end is clamped',
    chunks: fixed,
    size: 10_000,
    offset: 9_000,
    length: 128 * 1024,
    want: [['c', 9_000 - 2 * K, 1000]],
  },
  { name: 'zero length', chunks: fixed, size: 10_000, offset: 50, length: 0, want: [] },
  { name: 'at the end of the file', chunks: fixed, size: 10_000, offset: 10_000, length: 10, want: [] },
  { name: 'past the end of the file', chunks: fixed, size: 10_000, offset: 20_000, length: 10, want: [] },
  { name: 'empty file', chunks: [], size: 0, offset: 0, length: 4096, want: [] },
  {
    name: 'hole in the middle',
    chunks: holey,
    size: 20_000,
    offset: K - 1,
    length: K + 2,
    want: [
      ['x', K - 1, 1],
      ['hole', 0, K],
      ['y', 0, 1],
    ],
  },
  { name: 'only a hole', chunks: holey, size: 20_000, offset: K + 5, length: 10, want: [['hole', 0, 10]] },
  {
    name: 'trailing hole',
    chunks: holey,
    size: 20_000,
    offset: 3 * K - 1,
    length: 100_000,
    want: [
      ['y', K - 1, 1],
      ['hole', 0, 20_000 - 3 * K],
    ],
  },
  {
    name: 'whole file with holes',
    chunks: holey,
    size: 20_000,
    offset: 0,
    length: 20_000,
    want: [
      ['x', 0, K],
      ['hole', 0, K],
      ['y', 0, K],
      ['hole', 0, 20_000 - 3 * K],
    ],
  },
  { name: 'a file with no chunks is all hole', chunks: [], size: 300, offset: 10, length: 100, want: [['hole', 0, 100]] },
  {
    name: 'chunks in two blobs',
    chunks: twoBlobs,
    size: 3 * K + 100,
    offset: K / 2,
    length: 3 * K,
    want: [
      ['blob1#7', K / 2, K / 2],
      ['blob2#0', 0, K],
      ['blob1#8', 0, K],
      ['blob2#1', 0, 100],
    ],
  },
  {
    name: 'overlapping chunks: the later one contributes only new bytes',
    size: 3 * K,
    offset: 0,
    length: 3 * K,
    chunks: [
      { label: 'p', fileOffset: 0, uncompressedSize: 2 * K },
      { label: 'q', fileOffset: K, uncompressedSize: 2 * K },
    ],
    want: [
      ['p', 0, 2 * K],
      ['q', K, K],
    ],
  },
  {
    name: 'a repeated chunk is read once',
    size: 2 * K,
    offset: 0,
    length: 2 * K,
    chunks: [
      { label: 'a', fileOffset: 0, uncompressedSize: K },
      { label: 'a2', fileOffset: 0, uncompressedSize: K },
      { label: 'b', fileOffset: K, uncompressedSize: K },
    ],
    want: [
      ['a', 0, K],
      ['b', 0, K],
    ],
  },
];

for (const c of cases) {
  test(`read plan: ${c.name}`, () => {
    assert.deepEqual(segments(c.chunks, c.size, c.offset, c.length), c.want);
  });
}

test('read plan: the planned range is the request clamped to the file', () => {
  assert.deepEqual([planFileRead(fixed, 10_000, 9_000, 5_000).offset, planFileRead(fixed, 10_000, 9_000, 5_000).length], [9_000, 1_000]);
  assert.equal(planFileRead(fixed, 10_000, 10_000, 5).length, 0);
});

test('read plan: fixed-size chunk spans (RAFS v6)', () => {
  const table: Array<[size: number, offset: number, length: number, first: number, end: number]> = [
    [10_000, 0, 1, 0, 1],
    [10_000, K - 1, 2, 0, 2], // crosses the first boundary
    [10_000, K, K, 1, 2], // exactly chunk 1
    [10_000, 0, 10_000, 0, 3], // whole file, last chunk partial
    [10_000, 9_999, 100, 2, 3], // last byte, request clamped
    [10_000, 10_000, 100, 0, 0], // at the end
    [10_000, 50, 0, 0, 0], // zero length
    [0, 0, 100, 0, 0], // empty file
  ];
  for (const [size, offset, length, first, end] of table) {
    assert.deepEqual(fixedChunkSpan(size, K, offset, length), { first, end }, `${offset}+${length} of ${size}`);
  }
});

test('read plan: tiling check of whole-file reads', () => {
  assert.equal(tilingProblem(fixed, 10_000), undefined);
  assert.equal(tilingProblem([], 0), undefined);
  assert.equal(tilingProblem(holey, 20_000), `chunk at file offset ${2 * K}, expected ${K}`);
  assert.equal(tilingProblem(fixed.slice(0, 2), 10_000), `chunks cover ${2 * K} of 10000 bytes`);
  assert.equal(tilingProblem([fixed[0]!, fixed[0]!], 10_000), `chunk at file offset 0, expected ${K}`);
  assert.equal(tilingProblem([{ fileOffset: 0, uncompressedSize: K }], 100), undefined); // a last chunk may hold more than the file
});

test('read plan: ranges of a real v6 image (nydus 2.2) read the bytes of the whole file', () => {
  const NY = (...p: string[]): string => fixture('nydus', ...p);
  const bs = openBootstrap(readFileSync(NY('rafs-v6-2.2.boot')));
  const blob = readFileSync(NY('blobs', bs.blobs[0]!.blobId));
  const decode = (c: ChunkRef): Buffer =>
    decodeChunk(bs.blobs[c.blobIndex]!, c, blob.subarray(c.compressedOffset, c.compressedOffset + c.compressedSize));
  for (const path of ['/lib.rs', '/sync_io.rs']) {
    const ino = bs.lookup(path)!;
    const size = bs.stat(ino).size;
    const whole = Buffer.concat(bs.chunks(ino).map(decode)).subarray(0, size);
    for (const [offset, length] of [
      [0, size],
      [0, 1],
      [100, 50],
      [size - 1, 10],
      [4095, 4098],
      [size, 1],
      [7, 0],
    ] as const) {
      const refs = bs.mapRead(ino, offset, length);
      const plan = planFileRead(refs, size, offset, length);
      const parts: Buffer[] = [];
      for (let p = 0; p < plan.count * PLAN_STRIDE; p += PLAN_STRIDE) {
        const [i, from, len] = [plan.segments[p]!, plan.segments[p + 1]!, plan.segments[p + 2]!];
        parts.push(i === HOLE ? Buffer.alloc(len) : decode(refs[i]!).subarray(from, from + len));
      }
      assert.deepEqual(Buffer.concat(parts), whole.subarray(offset, Math.min(size, offset + length)), `${path} ${offset}+${length}`);
    }
  }
});

test('read plan: one plan reused for every read gives the same segments, growing when a read needs more', () => {
  const plan = new FileReadPlan();
  const many = Array.from({ length: 40 }, (_, i) => ({ label: `c${i}`, fileOffset: 2 * i * K, uncompressedSize: K })); // 40 chunks, 40 holes
  for (const [chunks, size, offset, length] of [
    [fixed, 10_000, 1, 9_998],
    [many, 80 * K, 0, 80 * K],
    [fixed, 10_000, 10_000, 5],
    [holey, 20_000, K - 1, K + 2],
  ] as const) {
    const fresh = planFileRead(chunks, size, offset, length);
    const reused = planFileRead(chunks, size, offset, length, plan);
    assert.equal(reused, plan);
    assert.deepEqual([reused.offset, reused.length, reused.count], [fresh.offset, fresh.length, fresh.count]);
    assert.deepEqual(reused.segments.subarray(0, reused.count * PLAN_STRIDE), fresh.segments.subarray(0, fresh.count * PLAN_STRIDE));
  }
  assert.equal(planFileRead(many, 80 * K, 0, 80 * K, plan).count, 80);
});
