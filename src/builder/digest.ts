/**
 * @module builder/digest
 * Chunk digesters: sha256 (node:crypto) and blake3 (@noble/hashes), shared with the RAFS reader.
 */
import { FerryError } from '../core/index.js';
import { chunkDigest } from '../format/rafs/index.js';
import type { Digester } from './tree.js';

export { chunkDigest };

export function parseDigester(s: string): Digester {
  if (s === 'sha256' || s === 'blake3') return s;
  throw new FerryError('INVALID_ARGUMENT', `unknown digester ${JSON.stringify(s)} (expected sha256 or blake3)`);
}
