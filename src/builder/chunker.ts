/**
 * @module builder/chunker
 * Cuts file data into fixed-size chunks and hands each to the blob writer, one chunk buffer at a
 * time (a file is never held in memory as a whole).
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
  let buf = Buffer.allocUnsafe(Math.min(chunkSize, size));
  let fill = 0;
  let fileOffset = 0;
  const emit = async (): Promise<void> => {
    const ref = await writer.add(buf.subarray(0, fill));
    refs.push({ ...ref, fileOffset });
    fileOffset += fill;
    onBytes?.(fill);
    fill = 0;
    const left = size - fileOffset;
    if (left > 0 && left < buf.length) buf = Buffer.allocUnsafe(left);
  };
  for await (const piece of body as AsyncIterable<Buffer>) {
    let p = 0;
    while (p < piece.length) {
      if (fileOffset + fill >= size) throw new FerryError('DATA_LOSS', `file body longer than its declared size ${size}`);
      const n = Math.min(piece.length - p, buf.length - fill);
      piece.copy(buf, fill, p, p + n);
      fill += n;
      p += n;
      if (fill === buf.length) await emit();
    }
  }
  if (fill > 0) await emit();
  if (fileOffset !== size) throw new FerryError('DATA_LOSS', `file body ended after ${fileOffset} of ${size} bytes`);
  return refs;
}

/** Reads a regular file through its handle, chunk by chunk. */
export async function chunkFile(fh: FileHandle, size: number, writer: BlobWriter, chunkSize: number, onBytes?: (n: number) => void): Promise<ChunkRef[]> {
  const refs: ChunkRef[] = [];
  const buf = Buffer.allocUnsafe(Math.min(chunkSize, Math.max(size, 1)));
  let off = 0;
  while (off < size) {
    const want = Math.min(chunkSize, size - off);
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
