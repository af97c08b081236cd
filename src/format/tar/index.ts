/**
 * @module format/tar
 * OCI layer tars: a streaming reader (gzip/zstd/plain auto-detected, PAX/GNU, xattrs, hostile-path
 * refusal), whiteout classification (OCI and overlayfs conventions) and a PAX tar writer.
 */
export {
  readLayer,
  parseLayer,
  TarParser,
  whiteoutOf,
  overlayWhiteoutOf,
  classifyWhiteout,
  normalizeTarPath,
  detectCompression,
  parsePax,
  type TarEntry,
  type TarEntryType,
  type TarVisitor,
  type ReadLayerOptions,
  type LayerCompression,
} from './reader.js';
export { writeTar, encodeTarHeaders } from './writer.js';
