/**
 * @module convert/blob-files
 * Local blob files for `rafs check` / `rafs unpack` (and the unpack benchmark): `<blob-dir>/<blob id>`
 * opened on demand, chunk reads by positioned `readSync`, chunk decode + digest verification
 * (format/compress), and a file's bytes as a stream of buffers in file order, planned by the read
 * planner (holes zero-filled).
 */
import { closeSync, existsSync, fstatSync, openSync, readSync } from 'node:fs';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { FerryError } from '../core/index.js';
import { decodeChunk } from '../format/compress/index.js';
import {
  HOLE,
  PLAN_STRIDE,
  attachBlobTables,
  loadCiTable,
  planFileRead,
  type BlobInfo,
  type ChunkRef,
  type RafsBootstrap,
  type CiLocation,
} from '../format/rafs/index.js';

export class BlobFiles {
  private readonly fds = new Map<number, { fd: number; size: number }>();

  /**
   * `dir`: directory of blobs named by id. `blobFile`: a file to use for the bootstrap's only blob
   * (per-layer bootstraps carry a placeholder id, like `nydus-image --blob`).
   */
  constructor(
    private readonly bs: RafsBootstrap,
    private readonly dir: string | undefined,
    private readonly blobFile?: string,
  ) {
    if (blobFile !== undefined && bs.blobs.length !== 1) {
      throw new FerryError('INVALID_ARGUMENT', `--blob needs a bootstrap with exactly one blob (this one has ${bs.blobs.length})`);
    }
    if (dir === undefined && blobFile === undefined) throw new FerryError('INVALID_ARGUMENT', 'a blob directory or a blob file is needed');
  }

  /** Path of a blob file (by blob id; `<id>.blob.data`-style caches are not used). */
  path(blob: BlobInfo): string {
    if (this.blobFile !== undefined) return this.blobFile;
    return join(this.dir!, blob.blobId);
  }

  private open(blob: BlobInfo): { fd: number; size: number } {
    let f = this.fds.get(blob.index);
    if (!f) {
      const p = this.path(blob);
      if (!existsSync(p)) throw new FerryError('NOT_FOUND', `blob ${blob.blobId} not found (${p})`);
      const fd = openSync(p, 'r');
      f = { fd, size: fstatSync(fd).size };
      this.fds.set(blob.index, f);
    }
    return f;
  }

  /** Raw bytes `[off, off+len)` of a blob; DATA_LOSS when the blob is shorter. */
  read(blob: BlobInfo, off: number, len: number): Buffer {
    const f = this.open(blob);
    if (off + len > f.size) {
      throw new FerryError('DATA_LOSS', `blob ${blob.blobId}: range ${off}+${len} beyond its ${f.size} bytes`);
    }
    const out = Buffer.allocUnsafe(len);
    let got = 0;
    while (got < len) {
      const n = readSync(f.fd, out, got, len - got, off + got);
      if (n === 0) throw new FerryError('DATA_LOSS', `blob ${blob.blobId}: short read at ${off + got}`);
      got += n;
    }
    return out;
  }

  size(blob: BlobInfo): number {
    return this.open(blob).size;
  }

  /** Decompressed, digest-verified chunk data (a CI-table-only reference without a digest: unverified). */
  chunk(ref: ChunkRef): Buffer {
    const blob = this.bs.blobs[ref.blobIndex]!;
    return decodeChunk(blob, ref, this.read(blob, ref.compressedOffset, ref.compressedSize), { unknownDigest: 'skip' });
  }

  /** The file's content as buffers in order (zero-filled holes for v5 images with HAS_HOLE). */
  *fileData(ino: number): Generator<Buffer> {
    const size = this.bs.stat(ino).size;
    const chunks = [...this.bs.chunks(ino)].sort((a, b) => a.fileOffset - b.fileOffset);
    const plan = planFileRead(chunks, size, 0, size);
    const seg = plan.segments;
    for (let p = 0; p < plan.count * PLAN_STRIDE; p += PLAN_STRIDE) {
      const len = seg[p + 2]!;
      if (seg[p] === HOLE) {
        yield Buffer.alloc(len);
        continue;
      }
      const data = this.chunk(chunks[seg[p]!]!);
      const from = seg[p + 1]!;
      yield from === 0 && len === data.length ? data : data.subarray(from, from + len);
    }
  }

  fileStream(ino: number): Readable {
    return Readable.from(this.fileData(ino), { objectMode: false });
  }

  /** v6 without a chunk table: loads every blob's CI table and chunk digests (verified through its ToC). */
  async attachTables(): Promise<void> {
    await attachBlobTables(this.bs, async (b, off, len) => this.read(b, off, len));
  }

  /** v6: the blob's CI table, checked against the bootstrap's blob table. */
  ciTable(blob: BlobInfo): CiLocation[] {
    return loadCiTable(blob, (b, off, len) => this.read(b, off, len));
  }

  close(): void {
    for (const { fd } of this.fds.values()) closeSync(fd);
    this.fds.clear();
  }
}
