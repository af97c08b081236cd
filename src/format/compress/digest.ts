/**
 * @module format/compress/digest
 * The one chunk/inode digest implementation shared by the chunk decoder (verification on every cold
 * read), the RAFS checks and the builder: sha256 through node:crypto (OpenSSL, SHA-NI) and blake3
 * through hash-wasm's WebAssembly BLAKE3 — several times faster than a pure-JS BLAKE3, whose
 * ~11 MB/s made cold lazy reads CPU-bound. The WebAssembly instance is created once, at module load
 * (top-level await), and used synchronously, so it is never shared between two digests in flight.
 */
import { createHash } from 'node:crypto';
import { createBLAKE3 } from 'hash-wasm';

/** Chunk digesters as nydus-image spells them. */
export const DIGESTERS = ['sha256', 'blake3'] as const;
export type DigesterName = (typeof DIGESTERS)[number];

const blake3 = await createBLAKE3();

/** Digest of `data` with the image's digester (32 bytes, a copy — never WebAssembly memory). */
export function chunkDigest(digester: DigesterName, data: Uint8Array): Buffer {
  if (digester === 'sha256') return createHash('sha256').update(data).digest();
  blake3.init();
  blake3.update(data);
  return Buffer.from(blake3.digest('binary'));
}
