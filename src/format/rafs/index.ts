/**
 * @module format/rafs
 * Nydus RAFS bootstraps: on-disk records for v6 (with EROFS records in format/erofs) and v5, a
 * bounds-checked reader (`openBootstrap`) for both, and the read planner (file range → chunk
 * ranges and holes, `planFileRead`). Blob-side records (CI table, blob meta header,
 * digest array, ToC) are in blob-meta.ts / toc.ts.
 */
export * from './v6.js';
export * from './v5.js';
export {
  openBootstrap,
  detectBootstrapVersion,
  hasExplicitUidGid,
  type RafsBootstrap,
  type BlobInfo,
  type RafsStat,
  type ChunkRef,
  type ChunkLocation,
  type DirEntry,
  type WalkEntry,
  type BootstrapSummary,
  type CiLocation,
  type OpenBootstrapOptions,
} from './reader.js';
export { FileReadPlan, planFileRead, fixedChunkSpan, tilingProblem, HOLE, PLAN_STRIDE, type FileExtent } from './read-plan.js';
export * from './blob-meta.js';
export * from './toc.js';
export { checkBootstrap, loadCiTable, type CheckOptions, type CheckReport, type BlobReader } from './check.js';
export {
  attachBlobTables,
  blobsCarryTables,
  ciFromMetaFile,
  decodeBlobTail,
  loadBlobTables,
  tailRange,
  type AsyncBlobReader,
  type BlobTables,
} from './blob-tables.js';
export {
  packBootstrapLayer,
  unpackBootstrapLayer,
  unpackBootstrapLayerFiles,
  MAX_BOOTSTRAP_BYTES,
  type BootstrapLayerFiles,
} from './layer.js';
