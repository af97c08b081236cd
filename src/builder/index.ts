/**
 * @module builder
 * The RAFS builder (the role of `nydus-image create/merge`): layer tar or directory → data blob
 * (chunks, per-chunk compression, CI table, digests, ToC) + RAFS v6 bootstrap; layer bootstraps →
 * merged image bootstrap; and the way back: a bootstrap + its blobs → the file tree (directory or
 * tar), and the description of each entry `ferry rafs inspect` prints.
 */
export {
  buildLayer,
  mergeBootstraps,
  checkBuildOptions,
  DEFAULT_CHUNK_SIZE,
  type BuildLayerOptions,
  type BuildLayerResult,
  type MergeOptions,
} from './build.js';
export { BlobWriter, type BlobStats, type ChunkIndex } from './blob-writer.js';
export { writeBootstrapV6 } from './bootstrap-v6.js';
export { writeBootstrapV5 } from './bootstrap-v5.js';
export { loadBootstrap, indexChunks } from './from-bootstrap.js';
export { applyLayer, walkTree, type Inode, type BlobDesc, type ChunkRef, type Digester } from './tree.js';
export { blobView } from './blob-view.js';
export { unpackToDir, tarEntries, writeTarFile, type FileData, type UnpackOptions } from './unpack.js';
export { describeEntry, modeString, type InspectEntry } from './inspect.js';
