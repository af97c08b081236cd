/**
 * @module storage/decode-worker
 * Worker thread of the decode pool: decompresses and verifies chunks (`decodeChunk` of
 * format/compress) off the main thread, which keeps serving FUSE requests meanwhile.
 */
import { parentPort } from 'node:worker_threads';
import { FerryError } from '../core/index.js';
import { decodeChunk, type ChunkCodec, type EncodedChunk } from '../format/compress/index.js';

/** One job of the decode pool (see DecodePool.decode). */
export interface DecodeJob {
  id: number;
  blob: ChunkCodec & { blobId: string };
  chunk: EncodedChunk;
  raw: Uint8Array;
}

parentPort!.on('message', (m: DecodeJob) => {
  try {
    const out = decodeChunk(m.blob, m.chunk, Buffer.from(m.raw.buffer, m.raw.byteOffset, m.raw.byteLength));
    const u8 = new Uint8Array(out.length);
    u8.set(out);
    parentPort!.postMessage({ id: m.id, ok: true, data: u8 }, [u8.buffer]);
  } catch (err) {
    parentPort!.postMessage({ id: m.id, ok: false, code: FerryError.is(err) ? err.code : 'INTERNAL', message: (err as Error).message });
  }
});
