/**
 * @module format/erofs/inode
 * EROFS on-disk inodes: compact (32 bytes) and extended (64 bytes). Nydus writes extended inodes
 * only; the reader accepts both.
 */
import { FerryError } from '../../core/index.js';
import { need, putU64, putUint, u64 } from './binary.js';
import {
  EROFS_INODE_COMPACT_SIZE,
  EROFS_INODE_EXTENDED_SIZE,
  EROFS_INODE_LAYOUT_EXTENDED,
  EROFS_XATTR_IBODY_HEADER_SIZE,
  erofsInodeVersion,
} from './constants.js';

/**
 * An inode. Extended layout offsets: `@0 u16 i_format`, `@2 u16 i_xattr_icount`, `@4 u16 i_mode`,
 * `@6 u16 reserved`, `@8 u64 i_size`, `@16 u32 i_u`, `@20 u32 i_ino`, `@24 u32 i_uid`, `@28 u32 i_gid`,
 * `@32 u64 i_mtime`, `@40 u32 i_mtime_nsec`, `@44 u32 i_nlink`, `@48 16 reserved`.
 * Compact layout: `@0 u16 i_format`, `@2 u16 i_xattr_icount`, `@4 u16 i_mode`, `@6 u16 i_nlink`,
 * `@8 u32 i_size`, `@12 u32 reserved (mtime on kernels >= 6.15)`, `@16 u32 i_u`, `@20 u32 i_ino`,
 * `@24 u16 i_uid`, `@26 u16 i_gid`, `@28 u32 reserved`.
 */
export interface ErofsInode {
  /** `i_format`: bit 0 version (0 compact, 1 extended), bits 1..3 data layout. */
  format: number;
  /** `i_xattr_icount`: 0 = no xattrs; else xattr area = 12 + 4 × (icount − 1) bytes. */
  xattrIcount: number;
  /** `i_mode`: file type and permission bits. */
  mode: number;
  size: number;
  /** `i_u`: raw block address (dir/symlink), chunk header (file), rdev (char/block), 0 otherwise. */
  u: number;
  ino: number;
  uid: number;
  gid: number;
  /** Seconds; compact inodes carry none (0). */
  mtime: number;
  mtimeNsec: number;
  nlink: number;
}

/** On-disk size of an inode with this `i_format`. */
export function erofsInodeSize(format: number): number {
  return erofsInodeVersion(format) === EROFS_INODE_LAYOUT_EXTENDED ? EROFS_INODE_EXTENDED_SIZE : EROFS_INODE_COMPACT_SIZE;
}

/** Byte size of the inline xattr area for an `i_xattr_icount`. */
export function erofsXattrIbodySize(icount: number): number {
  return icount === 0 ? 0 : EROFS_XATTR_IBODY_HEADER_SIZE + 4 * (icount - 1);
}

/** Decodes the inode at `off` (compact or extended, chosen by `i_format` bit 0). */
export function decodeErofsInode(buf: Buffer, off: number): ErofsInode {
  need(buf, off, 2, 'erofs inode');
  const format = buf.readUInt16LE(off);
  if (erofsInodeVersion(format) === EROFS_INODE_LAYOUT_EXTENDED) {
    need(buf, off, EROFS_INODE_EXTENDED_SIZE, 'erofs extended inode');
    return {
      format,
      xattrIcount: buf.readUInt16LE(off + 2),
      mode: buf.readUInt16LE(off + 4),
      size: u64(buf, off + 8, 'erofs inode i_size'),
      u: buf.readUInt32LE(off + 16),
      ino: buf.readUInt32LE(off + 20),
      uid: buf.readUInt32LE(off + 24),
      gid: buf.readUInt32LE(off + 28),
      mtime: u64(buf, off + 32, 'erofs inode i_mtime'),
      mtimeNsec: buf.readUInt32LE(off + 40),
      nlink: buf.readUInt32LE(off + 44),
    };
  }
  need(buf, off, EROFS_INODE_COMPACT_SIZE, 'erofs compact inode');
  return {
    format,
    xattrIcount: buf.readUInt16LE(off + 2),
    mode: buf.readUInt16LE(off + 4),
    nlink: buf.readUInt16LE(off + 6),
    size: buf.readUInt32LE(off + 8),
    u: buf.readUInt32LE(off + 16),
    ino: buf.readUInt32LE(off + 20),
    uid: buf.readUInt16LE(off + 24),
    gid: buf.readUInt16LE(off + 26),
    mtime: 0,
    mtimeNsec: 0,
  };
}

/** Writes an inode at `off` in the layout its `format` selects; returns bytes written (32 or 64). */
export function writeErofsInode(buf: Buffer, off: number, rec: ErofsInode): number {
  const size = erofsInodeSize(rec.format);
  need(buf, off, size, 'erofs inode (write)');
  buf.fill(0, off, off + size);
  putUint(buf, off, rec.format, 2, 'i_format');
  putUint(buf, off + 2, rec.xattrIcount, 2, 'i_xattr_icount');
  putUint(buf, off + 4, rec.mode, 2, 'i_mode');
  putUint(buf, off + 16, rec.u, 4, 'i_u');
  putUint(buf, off + 20, rec.ino, 4, 'i_ino');
  if (size === EROFS_INODE_EXTENDED_SIZE) {
    putU64(buf, off + 8, rec.size, 'i_size');
    putUint(buf, off + 24, rec.uid, 4, 'i_uid');
    putUint(buf, off + 28, rec.gid, 4, 'i_gid');
    putU64(buf, off + 32, rec.mtime, 'i_mtime');
    putUint(buf, off + 40, rec.mtimeNsec, 4, 'i_mtime_nsec');
    putUint(buf, off + 44, rec.nlink, 4, 'i_nlink');
  } else {
    if (rec.mtime !== 0) throw new FerryError('INVALID_ARGUMENT', 'compact inodes carry no mtime');
    putUint(buf, off + 6, rec.nlink, 2, 'i_nlink (compact)');
    putUint(buf, off + 8, rec.size, 4, 'i_size (compact)');
    putUint(buf, off + 24, rec.uid, 2, 'i_uid (compact)');
    putUint(buf, off + 26, rec.gid, 2, 'i_gid (compact)');
  }
  return size;
}

/** Encodes an inode as a 32- or 64-byte buffer. */
export function encodeErofsInode(rec: ErofsInode): Buffer {
  const b = Buffer.alloc(erofsInodeSize(rec.format));
  writeErofsInode(b, 0, rec);
  return b;
}

/** Linux "new" dev_t encoding used in `i_u` of device inodes. */
export function encodeRdev(major: number, minor: number): number {
  return ((minor & 0xff) | ((major & 0xfff) << 8) | ((minor & ~0xff) << 12)) >>> 0;
}

/** Splits a "new" dev_t encoding into major and minor. */
export function decodeRdev(rdev: number): { major: number; minor: number } {
  return { major: (rdev >>> 8) & 0xfff, minor: (rdev & 0xff) | ((rdev >>> 12) & 0xfff00) };
}
