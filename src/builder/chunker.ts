/**
 * @module builder/chunker
 * Cuts file data into fixed-size chunks and hands each to the blob writer (a file is never held in
 * memory as a whole; chunks wholly inside a stream piece are passed on without copying).
 */
import type { Readable } from 'node:stream';
import type { FileHandle } from 'node:fs/promises';
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
  const add = async (data: Buffer): Promise<void> => {
    const ref = await writer.add(data);
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
        await add(piece.subarray(p, p + want));
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
        await add(full);
      }
    }
  }
  if (buf) throw new FerryError('DATA_LOSS', `file body ended after ${fileOffset + fill} of ${size} bytes`);
  if (fileOffset !== size) throw new FerryError('DATA_LOSS', `file body ended after ${fileOffset} of ${size} bytes`);
  return refs;
}

/** Reads a regular file through its handle, chunk by chunk. */
export async function chunkFile(fh: FileHandle, size: number, writer: BlobWriter, chunkSize: number, onBytes?: (n: number) => void): Promise<ChunkRef[]> {
  const refs: ChunkRef[] = [];
  let off = 0;
  while (off < size) {
    const want = Math.min(chunkSize, size - off);
    const buf = Buffer.allocUnsafe(want); // kept by the blob writer until flushed
    let got = 0;
    while (got < want) {
      const { bytesRead } = await fh.read(buf, got, want - got, off + got);
      if (bytesRead === 0) throw new FerryError('DATA_LOSS', `file shrank while reading (${off + got} of ${size} bytes)`);
      got += bytesRead;
    }
    const ref = await writer.add(buf.subarray(0, want));
    refs.push({ ...ref, fileOffset: off });
    off += want;
    onBytes?.(want);
  }
  return refs;
}
