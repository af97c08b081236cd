/**
 * @module format/rafs/read-plan
 * The read planner: which bytes of which chunks make up a byte range of a file, and where the holes
 * are. Every reader of file data plans here — the FUSE filesystem (daemon/rafs-fs), the FUSE fast
 * path in reader threads (daemon/fast-path), `rafs unpack` (convert/blob-files) and `ferry check`
 * (convert/check) — and then fetches, reads or decodes the chunks its own way. Pure arithmetic on
 * chunk extents: no bootstrap, no I/O and no imports, so worker threads load it for nothing.
 */

/** Where a chunk's bytes sit in its file (the RAFS reader's ChunkRef has these). */
export interface FileExtent {
  /** offset of the chunk's first byte in the file */
  readonly fileOffset: number;
  /** bytes of the file the chunk holds */
  readonly uncompressedSize: number;
}

/** Numbers per segment in `FileReadPlan.segments`: chunk position, offset in that chunk, length. */
export const PLAN_STRIDE = 3;
/** The chunk position of a segment no chunk covers: a hole, read as zeros. */
export const HOLE = -1;

/**
 * A planned read: segments in file order that together are exactly [offset, offset + length).
 * Reusable: `planFileRead(…, plan)` overwrites it, so a hot caller plans every read into the one
 * plan it keeps and allocates nothing per read (its segment array grows when a read needs more).
 */
export class FileReadPlan {
  /** the range planned: the request clamped to the file */
  offset = 0;
  length = 0;
  /** number of segments */
  count = 0;
  /**
   * `PLAN_STRIDE` numbers per segment (the first `count` are valid): the chunk's position in the
   * planned `chunks` (HOLE for zeros), the offset of the segment's first byte within that chunk
   * (0 for a hole), its length.
   */
  segments: Float64Array = new Float64Array(INITIAL_SEGMENTS * PLAN_STRIDE);
}

/** Segments a new plan has room for (a read of up to 4 chunks with holes; more grow the array). */
const INITIAL_SEGMENTS = 9;

/**
 * Plans reading [offset, offset + length) of a file of `fileSize` bytes from its chunks, sorted by
 * file offset (what `mapRead` or `chunks()` of the reader return), into `into` (a new plan when not
 * given). The range is clamped to the file (an empty plan at or past its end, or for a zero
 * length); bytes no chunk covers are holes; a chunk overlapping bytes already planned contributes
 * only the bytes after them. No object per chunk: this is on the path of every FUSE read.
 */
export function planFileRead(
  chunks: ArrayLike<FileExtent>,
  fileSize: number,
  offset: number,
  length: number,
  into?: FileReadPlan,
): FileReadPlan {
  const plan = into ?? new FileReadPlan();
  const end = Math.min(fileSize, offset + length);
  plan.offset = offset;
  plan.count = 0;
  if (!(end > offset)) {
    plan.length = 0;
    return plan;
  }
  // each chunk adds at most itself and the hole before it; one more hole may end the range
  const need = (2 * chunks.length + 1) * PLAN_STRIDE;
  if (plan.segments.length < need) plan.segments = new Float64Array(need);
  const seg = plan.segments;
  let p = 0;
  let pos = offset;
  for (let i = 0; i < chunks.length; i++) {
    const c = chunks[i]!;
    const cs = Math.max(pos, c.fileOffset);
    const ce = Math.min(end, c.fileOffset + c.uncompressedSize);
    if (ce <= cs) continue;
    if (cs > pos) {
      seg[p] = HOLE;
      seg[p + 1] = 0;
      seg[p + 2] = cs - pos;
      p += PLAN_STRIDE;
    }
    seg[p] = i;
    seg[p + 1] = cs - c.fileOffset;
    seg[p + 2] = ce - cs;
    p += PLAN_STRIDE;
    pos = ce;
  }
  if (pos < end) {
    seg[p] = HOLE;
    seg[p + 1] = 0;
    seg[p + 2] = end - pos;
    p += PLAN_STRIDE;
  }
  plan.length = end - offset;
  plan.count = p / PLAN_STRIDE;
  return plan;
}

/**
 * The chunks [first, end) of a file cut into fixed-size chunks (RAFS v6: chunk k holds bytes
 * [k·chunkSize, (k+1)·chunkSize) of the file) that [offset, offset + length) touches, the range
 * clamped to the file; first === end when it touches none.
 */
export function fixedChunkSpan(fileSize: number, chunkSize: number, offset: number, length: number): { first: number; end: number } {
  const end = Math.min(fileSize, offset + length);
  if (!(end > offset)) return { first: 0, end: 0 };
  return { first: Math.floor(offset / chunkSize), end: Math.floor((end - 1) / chunkSize) + 1 };
}

/**
 * Whether chunks (in the given order) tile a file of `fileSize` bytes exactly, each starting where
 * the previous one ended: undefined when they do, else what is wrong (for a DATA_LOSS message).
 * A stricter reader than `planFileRead`, which reads holes as zeros and skips overlaps.
 */
export function tilingProblem(chunks: ArrayLike<FileExtent>, fileSize: number): string | undefined {
  let pos = 0;
  for (let i = 0; i < chunks.length; i++) {
    const c = chunks[i]!;
    if (c.fileOffset !== pos) return `chunk at file offset ${c.fileOffset}, expected ${pos}`;
    pos += Math.min(c.uncompressedSize, fileSize - pos);
  }
  return pos === fileSize ? undefined : `chunks cover ${pos} of ${fileSize} bytes`;
}
