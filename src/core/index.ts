/**
 * @module core
 * Foundations every other folder may import: the error class and its closed set of codes, digests,
 * and small shared helpers (durations, sizes). Imports nothing from the rest of Ferry.
 */
export { FerryError, DigestMismatchError, asFerryError, ERROR_CODES, type ErrorCode } from './errors.js';
export {
  parseDigest, isDigest, sha256Digest, digester, DIGEST_GRAMMAR, DIGEST_ALGORITHMS,
  type DigestAlgorithm, type ParsedDigest,
} from './digest.js';
export { parseDuration, parseSize, formatBytes } from './units.js';
export { systemClock, type Clock } from './clock.js';
