/**
 * @module format/rafs
 * Nydus RAFS bootstraps: on-disk records for v6 (with EROFS records in format/erofs) and v5.
 */
export * from './v6.js';
export * from './v5.js';
// data-blob records (CI table/header, digest array, ToC, reverse tar headers) — rafs-builder
export * from './blob-meta.js';
export * from './toc.js';
