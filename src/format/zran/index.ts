/**
 * @module format/zran
 * Lazy reads out of ordinary gzip layers (upstream Nydus' zran / OCI-ref): a one-pass indexer that
 * records deflate checkpoints (checkpoints.ts), an inflate that resumes at one (inflate-at.ts), and
 * the index Ferry ships beside an OCI-ref bootstrap (index-file.ts).
 */
export { DEFAULT_SPACING, GzipIndexer, WINDOW_SIZE, type Checkpoint, type GzipIndex } from './checkpoints.js';
export { inflateAt, resumeStream, inflateFrom, type ResumePoint } from './inflate-at.js';
export {
  ZRAN_INDEX_MAGIC,
  contextsOf,
  decodeZranIndex,
  encodeZranIndex,
  spanOf,
  type ZranBlob,
  type ZranChunk,
  type ZranContext,
  type ZranSpan,
} from './index-file.js';
