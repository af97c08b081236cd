/**
 * @module storage/decode-worker
 * Worker thread of the decode pool: decompresses and verifies chunks (decodeChunkData) off the main
 * thread, which keeps serving FUSE requests meanwhile.
 */
import { parentPort } from 'node:worker_threads';
import { FerryError } from '../core/index.js';
import { decodeChunkData, type ChunkRef } from '../format/rafs/index.js';

interface Job {
  id: number;
  blob: { compressor: 'none' | 'lz4_block' | 'zstd' | 'gzip'; digester: 'sha256' | 'blake3'; blobId: string };
  chunk: Omit<ChunkRef, 'digest'> & { digest: Uint8Array };
  raw: Uint8Array;
}

parentPort!.on('message', (m: Job) => {
  try {
    const out = decodeChunkData(m.blob, { ...m.chunk, digest: Buffer.from(m.chunk.digest) }, Buffer.from(m.raw.buffer, m.raw.byteOffset, m.raw.byteLength));
    const u8 = new Uint8Array(out.length);
    u8.set(out);
    parentPort!.postMessage({ id: m.id, ok: true, data: u8 }, [u8.buffer]);
  } catch (err) {
    parentPort!.postMessage({ id: m.id, ok: false, code: FerryError.is(err) ? err.code : 'INTERNAL', message: (err as Error).message });
  }
});
