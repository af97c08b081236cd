/**
 * @module builder/chunker
 * Cuts file data into fixed-size chunks and hands each to the blob writer (a file is never held in
 * memory as a whole; chunks wholly inside an input piece are passed on without copying, chunks
 * spanning pieces are assembled in one reused scratch buffer).
 */
import { FerryError } from '../core/index.js';
import type { AddChunkOptions, BlobWriter } from './blob-writer.js';
import type { ChunkRef } from './tree.js';

/** A chunk assembled in the shared scratch buffer (one constant: no allocation per chunk). */
const SCRATCH: AddChunkOptions = { transient: true };

/**
 * Synchronous chunker for one file whose body arrives as pieces (the tar parser's `data` calls):
 * chunks wholly inside a piece go to the writer without a copy; the caller awaits
 * `writer.flush()` between input pieces when `writer.needsFlush`.
 */
export class FileChunker {
  readonly refs: ChunkRef[] = [];
  private fileOffset = 0;
  private buf: Buffer | undefined;
  private fill = 0;
  /** scratch for chunks that span input pieces, shared by the files of one build */
  private readonly scratch: { buf?: Buffer };

  constructor(
    private readonly size: number,
    private readonly writer: BlobWriter,
    private readonly chunkSize: number,
    private readonly onBytes?: (n: number) => void,
    scratch: { buf?: Buffer } = {},
  ) {
    this.scratch = scratch;
  }

  private add(data: Buffer, opts?: AddChunkOptions): void {
    const ref = this.writer.addSync(data, opts);
    this.refs.push({ ...ref, fileOffset: this.fileOffset });
    this.fileOffset += data.length;
    this.onBytes?.(data.length);
  }

  push(piece: Buffer): void {
    let p = 0;
    while (p < piece.length) {
      const want = Math.min(this.chunkSize, this.size - this.fileOffset);
      if (want <= 0) throw new FerryError('DATA_LOSS', `file body longer than its declared size ${this.size}`);
      if (!this.buf && piece.length - p >= want) {
        this.add(piece.subarray(p, p + want));
        p += want;
        continue;
      }
      if (!this.buf) {
        // the writer copies a transient chunk only when it keeps the raw bytes
        if (!this.scratch.buf || this.scratch.buf.length < this.chunkSize) this.scratch.buf = Buffer.allocUnsafe(this.chunkSize);
        this.buf = this.scratch.buf.subarray(0, want);
      }
      const n = Math.min(piece.length - p, want - this.fill);
      piece.copy(this.buf, this.fill, p, p + n);
      this.fill += n;
      p += n;
      if (this.fill === want) {
        const full = this.buf;
        this.buf = undefined;
        this.fill = 0;
        this.add(full, SCRATCH);
      }
    }
  }

  /** The file's chunk references; DATA_LOSS when fewer than `size` bytes arrived. */
  finish(): ChunkRef[] {
    const got = this.fileOffset + this.fill;
    if (this.buf || this.fileOffset !== this.size) throw new FerryError('DATA_LOSS', `file body ended after ${got} of ${this.size} bytes`);
    return this.refs;
  }
}
