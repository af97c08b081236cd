/**
 * @module builder/chunker
 * Cuts file data into fixed-size chunks and hands each to the blob writer (a file is never held in
 * memory as a whole; chunks wholly inside a stream piece are passed on without copying).
 */
import type { Readable } from 'node:stream';
import { FerryError } from '../core/index.js';
import type { BlobWriter } from './blob-writer.js';
import type { ChunkRef } from './tree.js';

/** Reads exactly `size` bytes of `body` and returns the chunk references of the file. */
export async function chunkStream(body: Readable, size: number, writer: BlobWriter, chunkSize: number, onBytes?: (n: number) => void): Promise<ChunkRef[]> {
  const refs: ChunkRef[] = [];
  if (size === 0) { body.resume(); return refs; }
  let fileOffset = 0;
  let buf: Buffer | undefined;
  let fill = 0;
  const add = (data: Buffer): void => {
    const ref = writer.addSync(data);
    refs.push({ ...ref, fileOffset });
    fileOffset += data.length;
    onBytes?.(data.length);
  };
  // 'data' events rather than an async iterator per file: a rootfs has thousands of small files
  const onPiece = (piece: Buffer): boolean => {
    let p = 0;
    while (p < piece.length) {
      const want = Math.min(chunkSize, size - fileOffset);
      if (want <= 0) throw new FerryError('DATA_LOSS', `file body longer than its declared size ${size}`);
      if (!buf && piece.length - p >= want) {
        // the whole chunk is inside this piece: hand it over without copying
        add(piece.subarray(p, p + want));
        p += want;
        continue;
      }
      buf ??= Buffer.allocUnsafe(want);
      const n = Math.min(piece.length - p, want - fill);
      piece.copy(buf, fill, p, p + n);
      fill += n;
      p += n;
      if (fill === want) {
        const full = buf;
        buf = undefined;
        fill = 0;
        add(full);
      }
    }
    return writer.needsFlush;
  };
  await new Promise<void>((resolve, reject) => {
    let failed = false;
    const fail = (err: unknown): void => { if (!failed) { failed = true; body.off('data', onData); body.resume(); reject(err); } };
    const onData = (piece: Buffer): void => {
      if (failed) return;
      try {
        if (onPiece(piece)) {
          body.pause();
          writer.flush().then(() => { if (!failed) body.resume(); }, fail);
        }
      } catch (err) { fail(err); }
    };
    body.on('data', onData);
    body.once('end', () => { if (!failed) resolve(); });
    body.once('error', fail);
  });
  if (buf) throw new FerryError('DATA_LOSS', `file body ended after ${fileOffset + fill} of ${size} bytes`);
  if (fileOffset !== size) throw new FerryError('DATA_LOSS', `file body ended after ${fileOffset} of ${size} bytes`);
  return refs;
}
