/**
 * @module format/estargz
 * eStargz layers (stargz-snapshotter's lazily pullable gzip tar): the TOC JSON and its annotation
 * keys, the 51-byte footer, the writer (one gzip member per file payload or chunk, TOC, footer) and
 * the prioritized-file order behind the prefetch landmark. Pure: no files, no sockets.
 */
export {
  TOC_TAR_NAME,
  PREFETCH_LANDMARK,
  NO_PREFETCH_LANDMARK,
  LANDMARK_CONTENTS,
  DEFAULT_ESTARGZ_CHUNK_SIZE,
  EstargzAnnotation,
  encodeToc,
  parseToc,
  tocModtime,
  type Toc,
  type TocEntry,
  type TocEntryType,
} from './toc.js';
export { FOOTER_SIZE, encodeFooter, parseFooter } from './footer.js';
export {
  EstargzWriter,
  landmarkEntry,
  isReservedEstargzName,
  type EstargzWriterOptions,
  type EstargzResult,
  type BodyReader,
} from './writer.js';
export { orderEntries, type EntryOrder } from './order.js';
