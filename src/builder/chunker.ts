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
  for await (const piece of body as AsyncIterable<Buffer>) {
    let p = 0;
    while (p < piece.length) {
      const want = Math.min(chunkSize, size - fileOffset);
      if (want <= 0) throw new FerryError('DATA_LOSS', `file body longer than its declared size ${size}`);
      if (!buf && piece.length - p >= want) {
        // the whole chunk is inside this piece: hand it over without copying
        add(piece.subarray(p, p + want));
        p += want;
        if (writer.needsFlush) await writer.flush();
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
        if (writer.needsFlush) await writer.flush();
      }
    }
  }
  if (buf) throw new FerryError('DATA_LOSS', `file body ended after ${fileOffset + fill} of ${size} bytes`);
  if (fileOffset !== size) throw new FerryError('DATA_LOSS', `file body ended after ${fileOffset} of ${size} bytes`);
  return refs;
}
