/**
 * @module format/erofs/chunk
 * Chunk-based file layout: the chunk header in `i_u` and the 8-byte chunk index entries
 * (`erofs_inode_chunk_index`: `@0 u16 advise`, `@2 u16 device_id`, `@4 u32 blkaddr`) placed after
 * the inode and its inline xattrs, rounded up to 8 bytes.
 */
import { FerryError } from '../../core/index.js';
import { need, putUint } from './binary.js';
import { EROFS_CHUNK_FORMAT_BLKBITS_MASK, EROFS_CHUNK_FORMAT_INDEXES, EROFS_CHUNK_INDEX_SIZE } from './constants.js';

export interface ErofsChunkIndex {
  advise: number;
  deviceId: number;
  blkaddr: number;
}

export function decodeErofsChunkIndex(buf: Buffer, off: number): ErofsChunkIndex {
  need(buf, off, EROFS_CHUNK_INDEX_SIZE, 'erofs chunk index');
  return { advise: buf.readUInt16LE(off), deviceId: buf.readUInt16LE(off + 2), blkaddr: buf.readUInt32LE(off + 4) };
}

export function writeErofsChunkIndex(buf: Buffer, off: number, rec: ErofsChunkIndex): void {
  need(buf, off, EROFS_CHUNK_INDEX_SIZE, 'erofs chunk index (write)');
  putUint(buf, off, rec.advise, 2, 'chunk advise');
  putUint(buf, off + 2, rec.deviceId, 2, 'chunk device_id');
  putUint(buf, off + 4, rec.blkaddr, 4, 'chunk blkaddr');
}

export function encodeErofsChunkIndex(rec: ErofsChunkIndex): Buffer {
  const b = Buffer.alloc(EROFS_CHUNK_INDEX_SIZE);
  writeErofsChunkIndex(b, 0, rec);
  return b;
}

/** `i_u` of a chunk-based inode for a chunk size (power of two ≥ 4096): `0x20 | (log2(size) − 12)`. */
export function encodeErofsChunkFormat(chunkSize: number, blockBits = 12): number {
  const bits = Math.log2(chunkSize);
  if (!Number.isInteger(bits) || bits < blockBits || bits - blockBits > EROFS_CHUNK_FORMAT_BLKBITS_MASK) {
    throw new FerryError('INVALID_ARGUMENT', `chunk size ${chunkSize} is not a valid power of two`);
  }
  return EROFS_CHUNK_FORMAT_INDEXES | (bits - blockBits);
}

/** Decodes a chunk header: whether 8-byte indexes are used and the chunk size it encodes. */
export function decodeErofsChunkFormat(u: number, blockBits = 12): { indexes: boolean; chunkSize: number } {
  return { indexes: (u & EROFS_CHUNK_FORMAT_INDEXES) !== 0, chunkSize: 2 ** ((u & EROFS_CHUNK_FORMAT_BLKBITS_MASK) + blockBits) };
}
