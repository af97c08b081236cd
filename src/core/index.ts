/**
 * @module core
 * Foundations every other folder may import: the error class and its closed set of codes, digests,
 * small shared helpers (durations, sizes) and the POSIX file-type bits. Imports nothing from the rest of Ferry.
 */
export { FerryError, DigestMismatchError, asFerryError, ERROR_CODES, type ErrorCode } from './errors.js';
export {
  parseDigest,
  isDigest,
  sha256Digest,
  digester,
  DIGEST_GRAMMAR,
  DIGEST_ALGORITHMS,
  type DigestAlgorithm,
  type ParsedDigest,
} from './digest.js';
export { parseDuration, parseSize, formatBytes } from './units.js';
export { systemClock, type Clock } from './clock.js';
export { TokenBucket } from './token-bucket.js';
export { defaultDockerConfigPath } from './docker-config.js';
export {
  S_IFMT,
  S_IFSOCK,
  S_IFLNK,
  S_IFREG,
  S_IFBLK,
  S_IFDIR,
  S_IFCHR,
  S_IFIFO,
  S_IPERM,
  MODE_OF_TYPE,
  typeOfMode,
  type FileType,
} from './file-mode.js';
