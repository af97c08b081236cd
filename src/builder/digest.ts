/**
 * @module builder/digest
 * Chunk digesters: the format's one implementation (`chunkDigest` of format/compress: sha256 through
 * node:crypto, blake3 through hash-wasm's WebAssembly BLAKE3), shared with the chunk decoder.
 */
import { FerryError } from '../core/index.js';
import type { Digester } from './tree.js';

export { chunkDigest } from '../format/compress/index.js';

export function parseDigester(s: string): Digester {
  if (s === 'sha256' || s === 'blake3') return s;
  throw new FerryError('INVALID_ARGUMENT', `unknown digester ${JSON.stringify(s)} (expected sha256 or blake3)`);
}
