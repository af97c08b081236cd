/**
 * @module format/rafs
 * Nydus RAFS bootstraps: on-disk records for v6 (with EROFS records in format/erofs) and v5.
 */
export * from './v6.js';
export * from './v5.js';
