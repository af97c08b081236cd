/**
 * @module format/rafs/records
 * All bootstrap record codecs in one import (RAFS v6 extended records and v5 records).
 */
export * from './v6.js';
export * from './v5.js';
