/**
 * @module format/erofs
 * EROFS constants and on-disk records shared by RAFS v6 (superblock, inodes, dirents, inline
 * xattrs, chunk indexes, device slots). Each record has `decodeX(buf, off)`, `writeX(buf, off, rec)`
 * and `encodeX(rec)`; decoders throw `FerryError('DATA_LOSS')` on truncated input.
 */
export * from './constants.js';
export * from './binary.js';
export * from './superblock.js';
export * from './inode.js';
export * from './dirent.js';
export * from './xattr.js';
export * from './chunk.js';
export * from './device.js';
