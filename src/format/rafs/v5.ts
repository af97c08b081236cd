/**
 * @module format/rafs/v5
 * RAFS v5 bootstrap records: the 8192-byte superblock, the inode table (u32 offset >> 3 per inode
 * index), the string blob table, the 64-byte extended blob table entries, the 128-byte inode with
 * its trailing name / symlink target / xattr table / chunk records (each 8-byte aligned). Chunk
 * records are `RafsChunkInfo` (80 bytes, shared with v6). Flags are the v6 `RafsSuperFlags`.
 */
import { FerryError } from '../../core/index.js';
import { alignUp, need, putU64, putUint, u64 } from '../erofs/index.js';

export const RAFS_V5_SUPER_MAGIC = 0x52414653;
export const RAFS_V5_SUPER_VERSION = 0x500;
/** v4 images are readable as v5. */
export const RAFS_V4_SUPER_VERSION = 0x400;
export const RAFS_V5_SUPERBLOCK_SIZE = 8192;
export const RAFS_V5_INODE_SIZE = 128;
export const RAFS_V5_EXT_BLOB_ENTRY_SIZE = 64;
export const RAFS_V5_ALIGNMENT = 8;
/** Root inode number. */
export const RAFS_V5_ROOT_INO = 1;

/** v5 inode flags (u64). */
export const RafsV5InodeFlags = { SYMLINK: 0x1, HARDLINK: 0x2, XATTR: 0x4, HAS_HOLE: 0x8 } as const;

/** Aligns to the 8-byte RAFS v5 alignment. */
export function rafsV5Align(n: number): number {
  return alignUp(n, RAFS_V5_ALIGNMENT);
}

/** The v5 superblock (first 80 bytes of 8192 carry fields, the rest is reserved zero). */
export interface RafsV5SuperBlock {
  /** @0 u32 0x52414653. */ magic: number;
  /** @4 u32 0x500. */ version: number;
  /** @8 u32 8192. */ sbSize: number;
  /** @12 u32 chunk size ("block size"). */ blockSize: number;
  /** @16 u64 RafsSuperFlags. */ flags: number;
  /** @24 u64 unique inodes. */ inodesCount: number;
  /** @32 u64. */ inodeTableOffset: number;
  /** @40 u64. */ prefetchTableOffset: number;
  /** @48 u64. */ blobTableOffset: number;
  /** @56 u32. */ inodeTableEntries: number;
  /** @60 u32. */ prefetchTableEntries: number;
  /** @64 u32 bytes. */ blobTableSize: number;
  /** @68 u32. */ extendedBlobTableEntries: number;
  /** @72 u64. */ extendedBlobTableOffset: number;
}

export function decodeRafsV5SuperBlock(buf: Buffer, off = 0): RafsV5SuperBlock {
  need(buf, off, RAFS_V5_SUPERBLOCK_SIZE, 'rafs v5 superblock');
  return {
    magic: buf.readUInt32LE(off),
    version: buf.readUInt32LE(off + 4),
    sbSize: buf.readUInt32LE(off + 8),
    blockSize: buf.readUInt32LE(off + 12),
    flags: u64(buf, off + 16, 'v5 s_flags'),
    inodesCount: u64(buf, off + 24, 'v5 s_inodes_count'),
    inodeTableOffset: u64(buf, off + 32, 'v5 s_inode_table_offset'),
    prefetchTableOffset: u64(buf, off + 40, 'v5 s_prefetch_table_offset'),
    blobTableOffset: u64(buf, off + 48, 'v5 s_blob_table_offset'),
    inodeTableEntries: buf.readUInt32LE(off + 56),
    prefetchTableEntries: buf.readUInt32LE(off + 60),
    blobTableSize: buf.readUInt32LE(off + 64),
    extendedBlobTableEntries: buf.readUInt32LE(off + 68),
    extendedBlobTableOffset: u64(buf, off + 72, 'v5 s_extended_blob_table_offset'),
  };
}

export function writeRafsV5SuperBlock(buf: Buffer, off: number, rec: RafsV5SuperBlock): void {
  need(buf, off, RAFS_V5_SUPERBLOCK_SIZE, 'rafs v5 superblock (write)');
  buf.fill(0, off, off + RAFS_V5_SUPERBLOCK_SIZE);
  putUint(buf, off, rec.magic, 4, 'magic');
  putUint(buf, off + 4, rec.version, 4, 'version');
  putUint(buf, off + 8, rec.sbSize, 4, 'sb_size');
  putUint(buf, off + 12, rec.blockSize, 4, 'block_size');
  putU64(buf, off + 16, rec.flags, 'flags');
  putU64(buf, off + 24, rec.inodesCount, 'inodes_count');
  putU64(buf, off + 32, rec.inodeTableOffset, 'inode_table_offset');
  putU64(buf, off + 40, rec.prefetchTableOffset, 'prefetch_table_offset');
  putU64(buf, off + 48, rec.blobTableOffset, 'blob_table_offset');
  putUint(buf, off + 56, rec.inodeTableEntries, 4, 'inode_table_entries');
  putUint(buf, off + 60, rec.prefetchTableEntries, 4, 'prefetch_table_entries');
  putUint(buf, off + 64, rec.blobTableSize, 4, 'blob_table_size');
  putUint(buf, off + 68, rec.extendedBlobTableEntries, 4, 'extended_blob_table_entries');
  putU64(buf, off + 72, rec.extendedBlobTableOffset, 'extended_blob_table_offset');
}

export function encodeRafsV5SuperBlock(rec: RafsV5SuperBlock): Buffer {
  const b = Buffer.alloc(RAFS_V5_SUPERBLOCK_SIZE);
  writeRafsV5SuperBlock(b, 0, rec);
  return b;
}

/** Inode table: entry `i` (inode index i + 1) = inode offset >> 3. */
export function decodeRafsV5InodeTable(buf: Buffer, off: number, entries: number): Uint32Array {
  need(buf, off, entries * 4, 'rafs v5 inode table');
  const out = new Uint32Array(entries);
  for (let i = 0; i < entries; i++) out[i] = buf.readUInt32LE(off + 4 * i);
  return out;
}

/** Encodes an inode table from byte offsets (each 8-aligned, > 8192), padded to 8 bytes. */
export function encodeRafsV5InodeTable(offsets: readonly number[]): Buffer {
  const b = Buffer.alloc(rafsV5Align(offsets.length * 4));
  offsets.forEach((o, i) => {
    if (o % 8 !== 0 || o <= RAFS_V5_SUPERBLOCK_SIZE) throw new FerryError('INVALID_ARGUMENT', `v5 inode offset ${o} invalid`);
    putUint(b, 4 * i, o / 8, 4, 'inode table entry');
  });
  return b;
}

/** One entry of the v5 string blob table. */
export interface RafsV5BlobTableEntry {
  readaheadOffset: number;
  readaheadSize: number;
  blobId: string;
}

/** Decodes the string blob table (`u32 ra_offset, u32 ra_size, id` separated by NUL). */
export function decodeRafsV5BlobTable(buf: Buffer, off: number, size: number): RafsV5BlobTableEntry[] {
  need(buf, off, size, 'rafs v5 blob table');
  const out: RafsV5BlobTableEntry[] = [];
  let p = off;
  const end = off + size;
  while (end - p > 8) {
    const readaheadOffset = buf.readUInt32LE(p);
    const readaheadSize = buf.readUInt32LE(p + 4);
    let q = p + 8;
    while (q < end && buf[q] !== 0) q++;
    const blobId = buf.toString('utf8', p + 8, q);
    out.push({ readaheadOffset, readaheadSize, blobId });
    p = q < end ? q + 1 : q;
    if (out.length > 0xffff) throw new FerryError('DATA_LOSS', 'rafs v5 blob table: too many entries');
  }
  return out;
}

/** Encodes the string blob table, padded to 8 bytes (empty buffer for no blobs). */
export function encodeRafsV5BlobTable(entries: readonly RafsV5BlobTableEntry[]): Buffer {
  const parts: Buffer[] = [];
  entries.forEach((e, i) => {
    const h = Buffer.alloc(8);
    putUint(h, 0, e.readaheadOffset, 4, 'readahead_offset');
    putUint(h, 4, e.readaheadSize, 4, 'readahead_size');
    parts.push(h, Buffer.from(e.blobId, 'utf8'));
    if (i !== entries.length - 1) parts.push(Buffer.from([0]));
  });
  const raw = Buffer.concat(parts);
  const out = Buffer.alloc(rafsV5Align(raw.length));
  raw.copy(out);
  return out;
}

/** Extended blob table entry (64 bytes): `@0 u32 chunk_count`, `@8 u64 uncompressed_size`, `@16 u64 compressed_size`. */
export interface RafsV5ExtBlobEntry {
  chunkCount: number;
  uncompressedSize: number;
  compressedSize: number;
}

export function decodeRafsV5ExtBlobEntry(buf: Buffer, off: number): RafsV5ExtBlobEntry {
  need(buf, off, RAFS_V5_EXT_BLOB_ENTRY_SIZE, 'rafs v5 extended blob entry');
  return {
    chunkCount: buf.readUInt32LE(off),
    uncompressedSize: u64(buf, off + 8, 'v5 ext blob uncompressed_size'),
    compressedSize: u64(buf, off + 16, 'v5 ext blob compressed_size'),
  };
}

export function writeRafsV5ExtBlobEntry(buf: Buffer, off: number, rec: RafsV5ExtBlobEntry): void {
  need(buf, off, RAFS_V5_EXT_BLOB_ENTRY_SIZE, 'rafs v5 extended blob entry (write)');
  buf.fill(0, off, off + RAFS_V5_EXT_BLOB_ENTRY_SIZE);
  putUint(buf, off, rec.chunkCount, 4, 'chunk_count');
  putU64(buf, off + 8, rec.uncompressedSize, 'uncompressed_size');
  putU64(buf, off + 16, rec.compressedSize, 'compressed_size');
}

export function encodeRafsV5ExtBlobEntry(rec: RafsV5ExtBlobEntry): Buffer {
  const b = Buffer.alloc(RAFS_V5_EXT_BLOB_ENTRY_SIZE);
  writeRafsV5ExtBlobEntry(b, 0, rec);
  return b;
}

/** The 128-byte v5 inode. */
export interface RafsV5Inode {
  /** @0 32 digest: of chunk digests (file), of target (symlink), of child digests (dir). */ digest: Buffer;
  /** @32 u64. */ parent: number;
  /** @40 u64. */ ino: number;
  /** @48 u32. */ uid: number;
  /** @52 u32. */ gid: number;
  /** @56 u32. */ projid: number;
  /** @60 u32 st_mode. */ mode: number;
  /** @64 u64. */ size: number;
  /** @72 u64 512-byte blocks. */ blocks: number;
  /** @80 u64 RafsV5InodeFlags. */ flags: number;
  /** @88 u32. */ nlink: number;
  /** @92 u32 dirs: first child's inode index. */ childIndex: number;
  /** @96 u32 dirs: child count; files: chunk count. */ childCount: number;
  /** @100 u16. */ nameSize: number;
  /** @102 u16. */ symlinkSize: number;
  /** @104 u32. */ rdev: number;
  /** @108 u32. */ mtimeNsec: number;
  /** @112 u64. */ mtime: number;
}

export function decodeRafsV5Inode(buf: Buffer, off: number): RafsV5Inode {
  need(buf, off, RAFS_V5_INODE_SIZE, 'rafs v5 inode');
  return {
    digest: Buffer.from(buf.subarray(off, off + 32)),
    parent: u64(buf, off + 32, 'v5 i_parent'),
    ino: u64(buf, off + 40, 'v5 i_ino'),
    uid: buf.readUInt32LE(off + 48),
    gid: buf.readUInt32LE(off + 52),
    projid: buf.readUInt32LE(off + 56),
    mode: buf.readUInt32LE(off + 60),
    size: u64(buf, off + 64, 'v5 i_size'),
    blocks: u64(buf, off + 72, 'v5 i_blocks'),
    flags: u64(buf, off + 80, 'v5 i_flags'),
    nlink: buf.readUInt32LE(off + 88),
    childIndex: buf.readUInt32LE(off + 92),
    childCount: buf.readUInt32LE(off + 96),
    nameSize: buf.readUInt16LE(off + 100),
    symlinkSize: buf.readUInt16LE(off + 102),
    rdev: buf.readUInt32LE(off + 104),
    mtimeNsec: buf.readUInt32LE(off + 108),
    mtime: u64(buf, off + 112, 'v5 i_mtime'),
  };
}

export function writeRafsV5Inode(buf: Buffer, off: number, rec: RafsV5Inode): void {
  need(buf, off, RAFS_V5_INODE_SIZE, 'rafs v5 inode (write)');
  buf.fill(0, off, off + RAFS_V5_INODE_SIZE);
  if (rec.digest.length > 32) throw new FerryError('INVALID_ARGUMENT', 'v5 inode digest longer than 32 bytes');
  rec.digest.copy(buf, off);
  putU64(buf, off + 32, rec.parent, 'i_parent');
  putU64(buf, off + 40, rec.ino, 'i_ino');
  putUint(buf, off + 48, rec.uid, 4, 'i_uid');
  putUint(buf, off + 52, rec.gid, 4, 'i_gid');
  putUint(buf, off + 56, rec.projid, 4, 'i_projid');
  putUint(buf, off + 60, rec.mode, 4, 'i_mode');
  putU64(buf, off + 64, rec.size, 'i_size');
  putU64(buf, off + 72, rec.blocks, 'i_blocks');
  putU64(buf, off + 80, rec.flags, 'i_flags');
  putUint(buf, off + 88, rec.nlink, 4, 'i_nlink');
  putUint(buf, off + 92, rec.childIndex, 4, 'i_child_index');
  putUint(buf, off + 96, rec.childCount, 4, 'i_child_count');
  putUint(buf, off + 100, rec.nameSize, 2, 'i_name_size');
  putUint(buf, off + 102, rec.symlinkSize, 2, 'i_symlink_size');
  putUint(buf, off + 104, rec.rdev >>> 0, 4, 'i_rdev');
  putUint(buf, off + 108, rec.mtimeNsec, 4, 'i_mtime_nsec');
  putU64(buf, off + 112, rec.mtime, 'i_mtime');
}

export function encodeRafsV5Inode(rec: RafsV5Inode): Buffer {
  const b = Buffer.alloc(RAFS_V5_INODE_SIZE);
  writeRafsV5Inode(b, 0, rec);
  return b;
}

/**
 * v5 xattr table: `u64 size` (bytes of the pairs), then pairs `u32 pair_size, name, NUL, value`
 * (pair_size = name + 1 + value), padded to 8. Returns the map and the padded length consumed.
 */
export function decodeRafsV5Xattrs(buf: Buffer, off: number): { xattrs: Map<string, Buffer>; length: number } {
  need(buf, off, 8, 'rafs v5 xattr table');
  const size = u64(buf, off, 'v5 xattr table size');
  need(buf, off + 8, size, 'rafs v5 xattr pairs');
  const out = new Map<string, Buffer>();
  let p = off + 8;
  const end = p + size;
  while (p < end) {
    if (end - p < 4) throw new FerryError('DATA_LOSS', 'rafs v5 xattr pair header truncated');
    const pairSize = buf.readUInt32LE(p);
    p += 4;
    if (pairSize > end - p) throw new FerryError('DATA_LOSS', 'rafs v5 xattr pair exceeds table');
    const nul = buf.indexOf(0, p);
    if (nul < 0 || nul >= p + pairSize) throw new FerryError('DATA_LOSS', 'rafs v5 xattr name not terminated');
    out.set(buf.toString('utf8', p, nul), Buffer.from(buf.subarray(nul + 1, p + pairSize)));
    p += pairSize;
  }
  return { xattrs: out, length: rafsV5Align(8 + size) };
}

/** Encodes a v5 xattr table (sorted by name), padded to 8 bytes; empty map → empty buffer. */
export function encodeRafsV5Xattrs(xattrs: ReadonlyMap<string, Buffer> | Record<string, Buffer>): Buffer {
  const list = (xattrs instanceof Map ? [...xattrs.entries()] : Object.entries(xattrs)) as [string, Buffer][];
  if (list.length === 0) return Buffer.alloc(0);
  list.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  const parts: Buffer[] = [];
  for (const [k, v] of list) {
    const name = Buffer.from(k, 'utf8');
    const h = Buffer.alloc(4);
    h.writeUInt32LE(name.length + 1 + v.length);
    parts.push(h, name, Buffer.from([0]), v);
  }
  const pairs = Buffer.concat(parts);
  const out = Buffer.alloc(rafsV5Align(8 + pairs.length));
  putU64(out, 0, pairs.length);
  pairs.copy(out, 8);
  return out;
}

/**
 * Decodes an inode in the early (2020) v5 layout some old bootstraps carry (superblock still says
 * 0x500): `@32 u64 parent`, `@40 u64 ino`, `@48 u32 reserved/projid`, `@52 u32 mode`, `@56 u64 size`,
 * `@64 u64 nlink`, `@72 u64 blocks`, `@80 u64 flags`, `@88 u32 child_index`, `@92 u32 child_count`,
 * `@96 u16 name_size` (NUL-padded to 8), `@98 u16 symlink_size`; no uid/gid/mtime/rdev (reported 0).
 * Inferred from nydus's own test bootstrap (`nydusd_daemon_test_bootstrap`).
 */
export function decodeRafsV5InodeLegacy(buf: Buffer, off: number): RafsV5Inode {
  need(buf, off, RAFS_V5_INODE_SIZE, 'rafs v5 (legacy) inode');
  const nlink = u64(buf, off + 64, 'legacy v5 i_nlink');
  return {
    digest: Buffer.from(buf.subarray(off, off + 32)),
    parent: u64(buf, off + 32, 'v5 i_parent'),
    ino: u64(buf, off + 40, 'v5 i_ino'),
    uid: 0,
    gid: 0,
    projid: buf.readUInt32LE(off + 48),
    mode: buf.readUInt32LE(off + 52),
    size: u64(buf, off + 56, 'legacy v5 i_size'),
    blocks: u64(buf, off + 72, 'legacy v5 i_blocks'),
    flags: u64(buf, off + 80, 'legacy v5 i_flags'),
    nlink: Math.min(nlink, 0xffffffff),
    childIndex: buf.readUInt32LE(off + 88),
    childCount: buf.readUInt32LE(off + 92),
    nameSize: buf.readUInt16LE(off + 96),
    symlinkSize: buf.readUInt16LE(off + 98),
    rdev: 0,
    mtimeNsec: 0,
    mtime: 0,
  };
}
