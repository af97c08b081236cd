/**
 * @module format/zran/checkpoints
 * Gzip random access (what zlib's zran example and upstream Nydus' zran do): one pass over a gzip
 * member records *checkpoints* — deflate block boundaries every `spacing` bytes of output, each
 * with its compressed and uncompressed offset, the bits of the byte before the boundary that
 * belong to the next block, and the 32 KiB of output before it (the window a later inflate starts
 * from). The inflated bytes are handed to `onOutput` as they come, so the same pass can read the
 * tar inside. Block boundaries come from pako's port of zlib's inflater (Z_BLOCK + data_type).
 */
import ZStream from 'pako/lib/zlib/zstream.js';
import pakoInflate from 'pako/lib/zlib/inflate.js';
import { FerryError } from '../../core/index.js';

/** Deflate's window: a checkpoint carries this much of the output before it. */
export const WINDOW_SIZE = 32 * 1024;
/** Default output between checkpoints. */
export const DEFAULT_SPACING = 2 << 20;
const Z_OK = 0;
const Z_STREAM_END = 1;
const Z_BUF_ERROR = -5;
const Z_BLOCK = 5;
/** data_type bits (zlib.h): at a block boundary; the last block was seen; unused-bit count. */
const AT_BOUNDARY = 128;
const LAST_BLOCK = 64;
const OUT_PIECE = 256 * 1024;

export interface Checkpoint {
  /** compressed offset of the first whole byte of the block (in the gzip file) */
  inOffset: number;
  /** uncompressed offset of the block's first byte */
  outOffset: number;
  /** bits of the byte at inOffset-1 that belong to this block (0–7) */
  bits: number;
  /** that byte (0 when bits is 0) */
  byte: number;
  /** the output before outOffset, at most WINDOW_SIZE bytes */
  window: Buffer;
}

export interface GzipIndex {
  checkpoints: Checkpoint[];
  compressedSize: number;
  uncompressedSize: number;
}

/** Push indexer of one gzip member: `push` the file in order, then `finish`. */
export class GzipIndexer {
  private readonly strm = new ZStream();
  private readonly out = new Uint8Array(OUT_PIECE);
  private readonly checkpoints: Checkpoint[] = [];
  /** the last WINDOW_SIZE bytes of output (a ring, `winFill` bytes valid, next write at `winPos`) */
  private readonly win = Buffer.alloc(WINDOW_SIZE);
  private winPos = 0;
  private winFill = 0;
  private totalOut = 0;
  private lastByte = 0;
  private ended = false;

  constructor(
    private readonly spacing: number,
    private readonly onOutput: (piece: Buffer, outOffset: number) => void,
  ) {
    if (!Number.isInteger(spacing) || spacing < WINDOW_SIZE) {
      throw new FerryError('INVALID_ARGUMENT', `checkpoint spacing ${spacing}: at least ${WINDOW_SIZE} bytes`);
    }
    if (pakoInflate.inflateInit2(this.strm, 16 + 15) !== Z_OK) throw new FerryError('INTERNAL', 'inflate init failed');
  }

  push(input: Buffer): void {
    if (this.ended) {
      if (input.some((b) => b !== 0))
        throw new FerryError('INVALID_ARGUMENT', 'gzip: data after the first member (multi-member gzip is not indexed)');
      return;
    }
    const s = this.strm;
    s.input = input;
    s.next_in = 0;
    s.avail_in = input.length;
    for (let guard = 0; guard < 1e9; guard++) {
      s.output = this.out;
      s.next_out = 0;
      s.avail_out = OUT_PIECE;
      const ret = pakoInflate.inflate(s, Z_BLOCK);
      this.emit(OUT_PIECE - s.avail_out);
      if (ret === Z_STREAM_END) {
        this.ended = true;
        this.push(input.subarray(s.next_in));
        return;
      }
      if (ret !== Z_OK && ret !== Z_BUF_ERROR) throw new FerryError('DATA_LOSS', `gzip: ${s.msg || `inflate error ${ret}`}`);
      if ((s.data_type & AT_BOUNDARY) !== 0 && (s.data_type & LAST_BLOCK) === 0) this.maybeCheckpoint(input);
      if (s.avail_in === 0 && s.avail_out !== 0) break;
    }
    if (s.next_in > 0) this.lastByte = input[s.next_in - 1]!;
  }

  private emit(n: number): void {
    if (n === 0) return;
    const piece = Buffer.from(this.out.subarray(0, n));
    this.onOutput(piece, this.totalOut);
    this.totalOut += n;
    const tail = piece.length > WINDOW_SIZE ? piece.subarray(piece.length - WINDOW_SIZE) : piece;
    const first = Math.min(tail.length, WINDOW_SIZE - this.winPos);
    tail.copy(this.win, this.winPos, 0, first);
    tail.copy(this.win, 0, first);
    this.winPos = (this.winPos + tail.length) % WINDOW_SIZE;
    this.winFill = Math.min(WINDOW_SIZE, this.winFill + tail.length);
  }

  private window(): Buffer {
    if (this.winFill < WINDOW_SIZE) return Buffer.from(this.win.subarray(0, this.winFill));
    return Buffer.concat([this.win.subarray(this.winPos), this.win.subarray(0, this.winPos)]);
  }

  private maybeCheckpoint(input: Buffer): void {
    const last = this.checkpoints[this.checkpoints.length - 1];
    if (last && this.totalOut - last.outOffset < this.spacing) return;
    if (last && last.outOffset === this.totalOut) return;
    const s = this.strm;
    const bits = s.data_type & 7;
    const prev = s.next_in > 0 ? input[s.next_in - 1]! : this.lastByte;
    this.checkpoints.push({ inOffset: s.total_in, outOffset: this.totalOut, bits, byte: bits ? prev : 0, window: this.window() });
  }

  finish(): GzipIndex {
    if (!this.ended) throw new FerryError('DATA_LOSS', 'gzip: stream ends before the end of the compressed data');
    return { checkpoints: this.checkpoints, compressedSize: this.strm.total_in, uncompressedSize: this.totalOut };
  }
}
