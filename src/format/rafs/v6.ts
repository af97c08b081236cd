/**
 * @module format/rafs/v6
 * RAFS v6 (Nydus) records that live inside an EROFS bootstrap: the extended superblock at byte
 * 1152, the blob table (256 bytes per blob), the prefetch table (u32 nids), the 80-byte chunk info
 * table entries, and the nydus meaning of EROFS chunk indexes (device id = blob index + 1, CI index
 * split over `advise` and the high byte of `device_id`). Flag and enum values are the format's.
 */
import { FerryError } from '../../core/index.js';
import { fixedString, need, putFixedString, putU64, putUint, u64 } from '../erofs/index.js';
import { type ErofsChunkIndex, decodeErofsChunkIndex, writeErofsChunkIndex } from '../erofs/index.js';

/** Byte offset of the RAFS v6 extended superblock. */
export const RAFS_V6_EXT_SUPER_OFFSET = 1152;
export const RAFS_V6_EXT_SUPERBLOCK_SIZE = 256;
/** Byte offset of the EROFS device table in nydus bootstraps (slot 11). */
export const RAFS_V6_DEVICE_TABLE_OFFSET = 1408;
export const RAFS_V6_BLOB_ENTRY_SIZE = 256;
export const RAFS_V6_CHUNK_INFO_SIZE = 80;
/** The root inode is placed 4096 bytes after meta_addr: nid 128. */
export const RAFS_V6_ROOT_NID = 128;
/** Most blobs one bootstrap may reference (blob index + 1 fits a byte, 255 reserved). */
export const RAFS_MAX_BLOBS = 254;
export const RAFS_MIN_CHUNK_SIZE = 0x1000;
export const RAFS_MAX_CHUNK_SIZE = 0x1000000;
export const RAFS_DEFAULT_CHUNK_SIZE = 0x100000;

/** `s_flags` bits (RafsSuperFlags, u64; all defined bits fit in 32). */
export const RafsSuperFlags = {
  COMPRESSION_NONE: 0x1,
  COMPRESSION_LZ4: 0x2,
  HASH_BLAKE3: 0x4,
  HASH_SHA256: 0x8,
  EXPLICIT_UID_GID: 0x10,
  HAS_XATTR: 0x20,
  COMPRESSION_GZIP: 0x40,
  COMPRESSION_ZSTD: 0x80,
  INLINED_CHUNK_DIGEST: 0x100,
  TARTFS_MODE: 0x200,
  ENCRYPTION_NONE: 0x0100_0000,
  ENCRYPTION_ASE_128_XTS: 0x0200_0000,
} as const;
/** Every bit a reader accepts in `s_flags` (the reserved compat bits 0x0400_0000..0x8000_0000 included). */
export const RAFS_SUPER_FLAGS_KNOWN = 0x3ff | 0xff00_0000;

/** Compression algorithms: names and the u32 codes of the blob table / CI header. */
export type Compressor = 'none' | 'lz4_block' | 'gzip' | 'zstd';
export const COMPRESSOR_CODES: Readonly<Record<Compressor, number>> = { none: 0, lz4_block: 1, gzip: 2, zstd: 3 };
export const COMPRESSOR_BY_CODE: readonly Compressor[] = ['none', 'lz4_block', 'gzip', 'zstd'];
/** Digest algorithms: names and the u32 codes of the blob table. */
export type Digester = 'blake3' | 'sha256';
export const DIGESTER_CODES: Readonly<Record<Digester, number>> = { blake3: 0, sha256: 1 };
export const DIGESTER_BY_CODE: readonly Digester[] = ['blake3', 'sha256'];

/** `s_flags` bit for a compressor. */
export function compressorFlag(c: Compressor): number {
  return {
    none: RafsSuperFlags.COMPRESSION_NONE,
    lz4_block: RafsSuperFlags.COMPRESSION_LZ4,
    gzip: RafsSuperFlags.COMPRESSION_GZIP,
    zstd: RafsSuperFlags.COMPRESSION_ZSTD,
  }[c];
}
/** `s_flags` bit for a digester. */
export function digesterFlag(d: Digester): number {
  return d === 'blake3' ? RafsSuperFlags.HASH_BLAKE3 : RafsSuperFlags.HASH_SHA256;
}
/** The compressor an `s_flags` value names; DATA_LOSS unless exactly one compression bit is set. */
export function compressorOfFlags(flags: number): Compressor {
  const found: Compressor[] = [];
  for (const c of COMPRESSOR_BY_CODE) if ((flags & compressorFlag(c)) !== 0) found.push(c);
  if (found.length !== 1)
    throw new FerryError('DATA_LOSS', `superblock flags 0x${flags.toString(16)}: expected exactly one compression bit`);
  return found[0]!;
}
/**
 * The digester an `s_flags` value names; DATA_LOSS unless exactly one digest bit is set — or none,
 * given `whenAbsent` (old v5 images carry no digest bit; nydus reads them as blake3).
 */
export function digesterOfFlags(flags: number, opts?: { whenAbsent?: Digester }): Digester {
  const b = (flags & RafsSuperFlags.HASH_BLAKE3) !== 0;
  const s = (flags & RafsSuperFlags.HASH_SHA256) !== 0;
  if (!b && !s && opts?.whenAbsent) return opts.whenAbsent;
  if (b === s) throw new FerryError('DATA_LOSS', `superblock flags 0x${flags.toString(16)}: expected exactly one digest bit`);
  return b ? 'blake3' : 'sha256';
}

/** Blob feature bits (u32). */
export const BlobFeatures = {
  ALIGNED: 0x1,
  INLINED_FS_META: 0x2,
  CHUNK_INFO_V2: 0x4,
  ZRAN: 0x8,
  SEPARATE: 0x10,
  INLINED_CHUNK_DIGEST: 0x20,
  TARFS: 0x40,
  BATCH: 0x80,
  ENCRYPTED: 0x100,
  IS_CHUNKDICT_GENERATED: 0x200,
  IS_SEPARATED_WITH_PREFETCH_FILES: 0x400,
  EXTERNAL: 0x800,
  HAS_TAR_HEADER: 0x1000_0000,
  HAS_TOC: 0x2000_0000,
  CAP_TAR_TOC: 0x4000_0000,
  V5_NO_EXT_BLOB_TABLE: 0x8000_0000,
} as const;
/** Low 16 bits nydusd knows; any other low bit makes it reject a blob. */
export const BLOB_FEATURES_KNOWN_LOW = 0x0fff;

/** Chunk flags (chunk info table `flags`, CI V2 flags). */
export const ChunkFlags = {
  COMPRESSED: 0x1,
  HOLECHUNK: 0x2,
  ENCRYPTED: 0x4,
  BATCH: 0x8,
  HAS_CRC32: 0x10,
} as const;

/** The RAFS v6 extended superblock (256 bytes at 1152). */
export interface RafsV6ExtSuperBlock {
  /** @0 u64 RafsSuperFlags. */
  flags: number;
  /** @8 u64 absolute offset of the blob table. */
  blobTableOffset: number;
  /** @16 u32 blob table bytes (256 × N). */
  blobTableSize: number;
  /** @20 u32 filesystem chunk size. */
  chunkSize: number;
  /** @24 u64 absolute offset of the chunk info table. */
  chunkTableOffset: number;
  /** @32 u64 chunk info table bytes (80 × M). */
  chunkTableSize: number;
  /** @40 u64 absolute offset of the prefetch table, 0 if none. */
  prefetchTableOffset: number;
  /** @48 u32 prefetch table bytes (4 × K). */
  prefetchTableSize: number;
  /* @52 u32 padding, @56 200 reserved */
}

export function decodeRafsV6ExtSuperBlock(buf: Buffer, off = RAFS_V6_EXT_SUPER_OFFSET): RafsV6ExtSuperBlock {
  need(buf, off, RAFS_V6_EXT_SUPERBLOCK_SIZE, 'rafs v6 extended superblock');
  return {
    flags: u64(buf, off, 's_flags'),
    blobTableOffset: u64(buf, off + 8, 's_blob_table_offset'),
    blobTableSize: buf.readUInt32LE(off + 16),
    chunkSize: buf.readUInt32LE(off + 20),
    chunkTableOffset: u64(buf, off + 24, 's_chunk_table_offset'),
    chunkTableSize: u64(buf, off + 32, 's_chunk_table_size'),
    prefetchTableOffset: u64(buf, off + 40, 's_prefetch_table_offset'),
    prefetchTableSize: buf.readUInt32LE(off + 48),
  };
}

export function writeRafsV6ExtSuperBlock(buf: Buffer, off: number, rec: RafsV6ExtSuperBlock): void {
  need(buf, off, RAFS_V6_EXT_SUPERBLOCK_SIZE, 'rafs v6 extended superblock (write)');
  buf.fill(0, off, off + RAFS_V6_EXT_SUPERBLOCK_SIZE);
  putU64(buf, off, rec.flags, 's_flags');
  putU64(buf, off + 8, rec.blobTableOffset, 's_blob_table_offset');
  putUint(buf, off + 16, rec.blobTableSize, 4, 's_blob_table_size');
  putUint(buf, off + 20, rec.chunkSize, 4, 's_chunk_size');
  putU64(buf, off + 24, rec.chunkTableOffset, 's_chunk_table_offset');
  putU64(buf, off + 32, rec.chunkTableSize, 's_chunk_table_size');
  putU64(buf, off + 40, rec.prefetchTableOffset, 's_prefetch_table_offset');
  putUint(buf, off + 48, rec.prefetchTableSize, 4, 's_prefetch_table_size');
}

export function encodeRafsV6ExtSuperBlock(rec: RafsV6ExtSuperBlock): Buffer {
  const b = Buffer.alloc(RAFS_V6_EXT_SUPERBLOCK_SIZE);
  writeRafsV6ExtSuperBlock(b, 0, rec);
  return b;
}

/** One blob table entry (256 bytes). */
export interface RafsV6BlobEntry {
  /** @0 64 ASCII blob id. */
  blobId: string;
  /** @64 u32. */
  blobIndex: number;
  /** @68 u32. */
  chunkSize: number;
  /** @72 u32. */
  chunkCount: number;
  /** @76 u32 compression code (COMPRESSOR_CODES). */
  compressionAlgo: number;
  /** @80 u32 digest code (DIGESTER_CODES). */
  digestAlgo: number;
  /** @84 u32 BlobFeatures. */
  features: number;
  /** @88 u64. */
  compressedSize: number;
  /** @96 u64 4 KiB-aligned uncompressed address space. */
  uncompressedSize: number;
  /** @104 u32 ToC payload + 512-byte header, 0 if none. */
  blobTocSize: number;
  /** @108 u32 compression code of the CI table. */
  ciCompressor: number;
  /** @112 u64. */
  ciOffset: number;
  /** @120 u64. */
  ciCompressedSize: number;
  /** @128 u64. */
  ciUncompressedSize: number;
  /** @136 32 sha256 of ToC payload ‖ ToC tar header. */
  blobTocDigest: Buffer;
  /** @168 32 separate meta digest / AES key. */
  blobMetaDigest: Buffer;
  /** @200 u64 separate meta size / IV 0..8. */
  blobMetaSize: number;
  /** @208 8 IV 8..16. */
  cipherIv: Buffer;
  /** @216 u32 0 none, 1 aes-128-xts. */
  cipherAlgo: number;
  /* @220 36 reserved */
}

export function decodeRafsV6BlobEntry(buf: Buffer, off: number): RafsV6BlobEntry {
  need(buf, off, RAFS_V6_BLOB_ENTRY_SIZE, 'rafs v6 blob table entry');
  return {
    blobId: fixedString(buf, off, 64),
    blobIndex: buf.readUInt32LE(off + 64),
    chunkSize: buf.readUInt32LE(off + 68),
    chunkCount: buf.readUInt32LE(off + 72),
    compressionAlgo: buf.readUInt32LE(off + 76),
    digestAlgo: buf.readUInt32LE(off + 80),
    features: buf.readUInt32LE(off + 84),
    compressedSize: u64(buf, off + 88, 'blob compressed_size'),
    uncompressedSize: u64(buf, off + 96, 'blob uncompressed_size'),
    blobTocSize: buf.readUInt32LE(off + 104),
    ciCompressor: buf.readUInt32LE(off + 108),
    ciOffset: u64(buf, off + 112, 'blob ci_offset'),
    ciCompressedSize: u64(buf, off + 120, 'blob ci_compressed_size'),
    ciUncompressedSize: u64(buf, off + 128, 'blob ci_uncompressed_size'),
    blobTocDigest: Buffer.from(buf.subarray(off + 136, off + 168)),
    blobMetaDigest: Buffer.from(buf.subarray(off + 168, off + 200)),
    blobMetaSize: u64(buf, off + 200, 'blob meta size'),
    cipherIv: Buffer.from(buf.subarray(off + 208, off + 216)),
    cipherAlgo: buf.readUInt32LE(off + 216),
  };
}

export function writeRafsV6BlobEntry(buf: Buffer, off: number, rec: RafsV6BlobEntry): void {
  need(buf, off, RAFS_V6_BLOB_ENTRY_SIZE, 'rafs v6 blob table entry (write)');
  buf.fill(0, off, off + RAFS_V6_BLOB_ENTRY_SIZE);
  putFixedString(buf, off, 64, rec.blobId, 'blob id');
  putUint(buf, off + 64, rec.blobIndex, 4, 'blob_index');
  putUint(buf, off + 68, rec.chunkSize, 4, 'chunk_size');
  putUint(buf, off + 72, rec.chunkCount, 4, 'chunk_count');
  putUint(buf, off + 76, rec.compressionAlgo, 4, 'compression_algo');
  putUint(buf, off + 80, rec.digestAlgo, 4, 'digest_algo');
  putUint(buf, off + 84, rec.features >>> 0, 4, 'features');
  putU64(buf, off + 88, rec.compressedSize, 'compressed_size');
  putU64(buf, off + 96, rec.uncompressedSize, 'uncompressed_size');
  putUint(buf, off + 104, rec.blobTocSize, 4, 'blob_toc_size');
  putUint(buf, off + 108, rec.ciCompressor, 4, 'ci_compressor');
  putU64(buf, off + 112, rec.ciOffset, 'ci_offset');
  putU64(buf, off + 120, rec.ciCompressedSize, 'ci_compressed_size');
  putU64(buf, off + 128, rec.ciUncompressedSize, 'ci_uncompressed_size');
  copyFixed(buf, off + 136, 32, rec.blobTocDigest, 'blob_toc_digest');
  copyFixed(buf, off + 168, 32, rec.blobMetaDigest, 'blob_meta_digest');
  putU64(buf, off + 200, rec.blobMetaSize, 'blob_meta_size');
  copyFixed(buf, off + 208, 8, rec.cipherIv, 'cipher_iv');
  putUint(buf, off + 216, rec.cipherAlgo, 4, 'cipher_algo');
}

export function encodeRafsV6BlobEntry(rec: RafsV6BlobEntry): Buffer {
  const b = Buffer.alloc(RAFS_V6_BLOB_ENTRY_SIZE);
  writeRafsV6BlobEntry(b, 0, rec);
  return b;
}

/** A blob table entry with zero/empty defaults for the optional fields. */
export function rafsV6BlobEntry(
  fields: Partial<RafsV6BlobEntry> & Pick<RafsV6BlobEntry, 'blobId' | 'blobIndex' | 'chunkSize'>,
): RafsV6BlobEntry {
  return {
    chunkCount: 0,
    compressionAlgo: 0,
    digestAlgo: 0,
    features: BlobFeatures.ALIGNED,
    compressedSize: 0,
    uncompressedSize: 0,
    blobTocSize: 0,
    ciCompressor: 0,
    ciOffset: 0,
    ciCompressedSize: 0,
    ciUncompressedSize: 0,
    blobTocDigest: Buffer.alloc(32),
    blobMetaDigest: Buffer.alloc(32),
    blobMetaSize: 0,
    cipherIv: Buffer.alloc(8),
    cipherAlgo: 0,
    ...fields,
  };
}

function copyFixed(buf: Buffer, off: number, width: number, src: Buffer, what: string): void {
  if (src.length > width) throw new FerryError('INVALID_ARGUMENT', `${what}: longer than ${width} bytes`);
  src.copy(buf, off);
}

/** Prefetch table: packed u32 nids (v6) or inode numbers (v5); a 0 entry terminates the list. */
export function decodePrefetchTable(buf: Buffer, off: number, size: number): number[] {
  if (size % 4 !== 0) throw new FerryError('DATA_LOSS', `prefetch table size ${size} is not a multiple of 4`);
  need(buf, off, size, 'prefetch table');
  const out: number[] = [];
  for (let p = off; p < off + size; p += 4) {
    const v = buf.readUInt32LE(p);
    if (v === 0) break;
    out.push(v);
  }
  return out;
}

export function encodePrefetchTable(ids: readonly number[]): Buffer {
  const b = Buffer.alloc(4 * ids.length);
  ids.forEach((v, i) => {
    putUint(b, 4 * i, v, 4, 'prefetch entry');
  });
  return b;
}

/**
 * Chunk info table entry (legacy `RafsV5ChunkInfo`, 80 bytes) — the v6 chunk table and the v5
 * per-file chunk records share it.
 */
export interface RafsChunkInfo {
  /** @0 32 digest of the uncompressed chunk. */
  blockId: Buffer;
  /** @32 u32 0-based blob index. */
  blobIndex: number;
  /** @36 u32 ChunkFlags. */
  flags: number;
  /** @40 u32. */
  compressedSize: number;
  /** @44 u32. */
  uncompressedSize: number;
  /** @48 u64. */
  compressedOffset: number;
  /** @56 u64. */
  uncompressedOffset: number;
  /** @64 u64 offset within (one) referencing file. */
  fileOffset: number;
  /** @72 u32 CI index within the blob. */
  index: number;
  /** @76 u32 CRC-32C of the uncompressed data when flags has HAS_CRC32, else reserved 0. */
  crc32: number;
}

export function decodeRafsChunkInfo(buf: Buffer, off: number): RafsChunkInfo {
  need(buf, off, RAFS_V6_CHUNK_INFO_SIZE, 'rafs chunk info');
  return {
    blockId: Buffer.from(buf.subarray(off, off + 32)),
    blobIndex: buf.readUInt32LE(off + 32),
    flags: buf.readUInt32LE(off + 36),
    compressedSize: buf.readUInt32LE(off + 40),
    uncompressedSize: buf.readUInt32LE(off + 44),
    compressedOffset: u64(buf, off + 48, 'chunk compressed_offset'),
    uncompressedOffset: u64(buf, off + 56, 'chunk uncompressed_offset'),
    fileOffset: u64(buf, off + 64, 'chunk file_offset'),
    index: buf.readUInt32LE(off + 72),
    crc32: buf.readUInt32LE(off + 76),
  };
}

export function writeRafsChunkInfo(buf: Buffer, off: number, rec: RafsChunkInfo): void {
  need(buf, off, RAFS_V6_CHUNK_INFO_SIZE, 'rafs chunk info (write)');
  buf.fill(0, off, off + RAFS_V6_CHUNK_INFO_SIZE);
  copyFixed(buf, off, 32, rec.blockId, 'chunk block_id');
  putUint(buf, off + 32, rec.blobIndex, 4, 'chunk blob_index');
  putUint(buf, off + 36, rec.flags, 4, 'chunk flags');
  putUint(buf, off + 40, rec.compressedSize, 4, 'chunk compressed_size');
  putUint(buf, off + 44, rec.uncompressedSize, 4, 'chunk uncompressed_size');
  putU64(buf, off + 48, rec.compressedOffset, 'chunk compressed_offset');
  putU64(buf, off + 56, rec.uncompressedOffset, 'chunk uncompressed_offset');
  putU64(buf, off + 64, rec.fileOffset, 'chunk file_offset');
  putUint(buf, off + 72, rec.index, 4, 'chunk index');
  putUint(buf, off + 76, rec.crc32 >>> 0, 4, 'chunk crc32');
}

export function encodeRafsChunkInfo(rec: RafsChunkInfo): Buffer {
  const b = Buffer.alloc(RAFS_V6_CHUNK_INFO_SIZE);
  writeRafsChunkInfo(b, 0, rec);
  return b;
}

/** A nydus chunk reference stored in an EROFS chunk index. */
export interface RafsV6ChunkIndex {
  /** 0-based blob index (EROFS device id − 1). */
  blobIndex: number;
  /** 24-bit CI index within the blob. */
  ciIndex: number;
  /** Uncompressed offset / 4096. */
  blkaddr: number;
}

/** EROFS chunk index fields for a nydus chunk reference. */
export function toErofsChunkIndex(rec: RafsV6ChunkIndex): ErofsChunkIndex {
  if (rec.blobIndex < 0 || rec.blobIndex >= RAFS_MAX_BLOBS)
    throw new FerryError('INVALID_ARGUMENT', `blob index ${rec.blobIndex} out of range`);
  if (rec.ciIndex < 0 || rec.ciIndex >= 1 << 24) throw new FerryError('INVALID_ARGUMENT', `CI index ${rec.ciIndex} exceeds 24 bits`);
  return { advise: rec.ciIndex & 0xffff, deviceId: ((rec.ciIndex >>> 16) << 8) | (rec.blobIndex + 1), blkaddr: rec.blkaddr };
}

/** Nydus chunk reference from EROFS chunk index fields; DATA_LOSS for device id 0 (a hole nydus never writes). */
export function fromErofsChunkIndex(e: ErofsChunkIndex): RafsV6ChunkIndex {
  const dev = e.deviceId & 0xff;
  if (dev === 0) throw new FerryError('DATA_LOSS', 'chunk index with device id 0');
  return { blobIndex: dev - 1, ciIndex: ((e.deviceId >>> 8) << 16) | e.advise, blkaddr: e.blkaddr };
}

export function decodeRafsV6ChunkIndex(buf: Buffer, off: number): RafsV6ChunkIndex {
  return fromErofsChunkIndex(decodeErofsChunkIndex(buf, off));
}

export function writeRafsV6ChunkIndex(buf: Buffer, off: number, rec: RafsV6ChunkIndex): void {
  writeErofsChunkIndex(buf, off, toErofsChunkIndex(rec));
}

export function encodeRafsV6ChunkIndex(rec: RafsV6ChunkIndex): Buffer {
  const b = Buffer.alloc(8);
  writeRafsV6ChunkIndex(b, 0, rec);
  return b;
}
