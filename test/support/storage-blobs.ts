/**
 * Test blobs for the storage layer: raw (uncompressed) chunks with their sha256 digests, laid out
 * 4 KiB-aligned in the uncompressed view, as a DeviceBlob and its expected view.
 */
import { createHash } from 'node:crypto';
import type { DeviceBlob, DeviceChunk } from '../../src/storage/index.js';

export const CHUNK = 64 * 1024;

/** A blob of n raw (uncompressed) chunks of varying sizes, 4 KiB-aligned uncompressed layout. */
export function makeBlob(n: number): { id: string; bytes: Buffer; blob: DeviceBlob; view: Buffer } {
  const parts: Buffer[] = [];
  for (let i = 0; i < n; i++) {
    const data = Buffer.alloc(i === n - 1 ? 5000 : CHUNK, i + 1);
    data.write(`chunk-${i}`);
    parts.push(data);
  }
  return blobOf(parts);
}

/** A blob of these raw chunks (sha256 digests), 4 KiB-aligned uncompressed layout. */
export function blobOf(parts: readonly Buffer[]): { id: string; bytes: Buffer; blob: DeviceBlob; view: Buffer } {
  const chunks: DeviceChunk[] = [];
  let co = 0;
  let uo = 0;
  parts.forEach((data, i) => {
    const size = data.length;
    chunks.push({
      chunkIndex: i,
      compressedOffset: co,
      compressedSize: size,
      uncompressedOffset: uo,
      uncompressedSize: size,
      compressed: false,
      digest: createHash('sha256').update(data).digest(),
    });
    co += size;
    uo += Math.ceil(size / 4096) * 4096;
  });
  const bytes = Buffer.concat(parts);
  const id = createHash('sha256').update(bytes).digest('hex');
  const view = Buffer.alloc(uo);
  chunks.forEach((c, i) => {
    parts[i]!.copy(view, c.uncompressedOffset);
  });
  const blob: DeviceBlob = {
    blobId: id,
    uncompressedSize: uo,
    chunkCount: parts.length,
    chunks,
    codec: { compressor: 'none', digester: 'sha256' },
  };
  return { id, bytes, blob, view };
}
