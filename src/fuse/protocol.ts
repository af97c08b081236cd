/**
 * @module fuse/protocol
 * Byte layouts of the Linux FUSE kernel protocol (include/uapi/linux/fuse.h) that a read-only
 * filesystem needs: the request/reply headers, opcodes, INIT flags and the reply structures.
 * All integers are host-endian; this module assumes a little-endian host (x86-64, arm64).
 */

/** Protocol version we speak. 7.31 has max_pages, cache_symlinks and the 64-byte init_out. */
export const FUSE_KERNEL_VERSION = 7;
export const FUSE_KERNEL_MINOR_VERSION = 31;
export const FUSE_ROOT_ID = 1;

export const IN_HEADER_SIZE = 40;
export const OUT_HEADER_SIZE = 16;

export const Op = {
  LOOKUP: 1,
  FORGET: 2,
  GETATTR: 3,
  SETATTR: 4,
  READLINK: 5,
  SYMLINK: 6,
  MKNOD: 8,
  MKDIR: 9,
  UNLINK: 10,
  RMDIR: 11,
  RENAME: 12,
  LINK: 13,
  OPEN: 14,
  READ: 15,
  WRITE: 16,
  STATFS: 17,
  RELEASE: 18,
  FSYNC: 20,
  SETXATTR: 21,
  GETXATTR: 22,
  LISTXATTR: 23,
  REMOVEXATTR: 24,
  FLUSH: 25,
  INIT: 26,
  OPENDIR: 27,
  READDIR: 28,
  RELEASEDIR: 29,
  FSYNCDIR: 30,
  GETLK: 31,
  SETLK: 32,
  SETLKW: 33,
  ACCESS: 34,
  CREATE: 35,
  INTERRUPT: 36,
  BMAP: 37,
  DESTROY: 38,
  IOCTL: 39,
  POLL: 40,
  NOTIFY_REPLY: 41,
  BATCH_FORGET: 42,
  FALLOCATE: 43,
  READDIRPLUS: 44,
  RENAME2: 45,
  LSEEK: 46,
  COPY_FILE_RANGE: 47,
  SETUPMAPPING: 48,
  REMOVEMAPPING: 49,
  SYNCFS: 50,
  TMPFILE: 51,
  STATX: 52,
} as const;

export const OP_NAMES: Record<number, string> = Object.fromEntries(Object.entries(Op).map(([k, v]) => [v, k]));

/** fuse_init_in.flags / fuse_init_out.flags bits. */
export const InitFlag = {
  ASYNC_READ: 1 << 0,
  POSIX_LOCKS: 1 << 1,
  ATOMIC_O_TRUNC: 1 << 3,
  EXPORT_SUPPORT: 1 << 4,
  BIG_WRITES: 1 << 5,
  DONT_MASK: 1 << 6,
  SPLICE_WRITE: 1 << 7,
  SPLICE_MOVE: 1 << 8,
  SPLICE_READ: 1 << 9,
  FLOCK_LOCKS: 1 << 10,
  AUTO_INVAL_DATA: 1 << 12,
  DO_READDIRPLUS: 1 << 13,
  READDIRPLUS_AUTO: 1 << 14,
  ASYNC_DIO: 1 << 15,
  WRITEBACK_CACHE: 1 << 16,
  NO_OPEN_SUPPORT: 1 << 17,
  PARALLEL_DIROPS: 1 << 18,
  MAX_PAGES: 1 << 22,
  CACHE_SYMLINKS: 1 << 23,
  NO_OPENDIR_SUPPORT: 1 << 24,
} as const;

/** fuse_open_out.open_flags. */
export const FOPEN_DIRECT_IO = 1 << 0;
export const FOPEN_KEEP_CACHE = 1 << 1;
export const FOPEN_CACHE_DIR = 1 << 3;

export interface InHeader {
  len: number;
  opcode: number;
  unique: bigint;
  nodeid: number;
  uid: number;
  gid: number;
  pid: number;
}

export function parseInHeader(b: Buffer): InHeader {
  return {
    len: b.readUInt32LE(0),
    opcode: b.readUInt32LE(4),
    unique: b.readBigUInt64LE(8),
    nodeid: Number(b.readBigUInt64LE(16)),
    uid: b.readUInt32LE(24),
    gid: b.readUInt32LE(28),
    pid: b.readUInt32LE(32),
  };
}

export function outHeader(len: number, error: number, unique: bigint): Buffer {
  const b = Buffer.allocUnsafe(OUT_HEADER_SIZE);
  b.writeUInt32LE(len, 0);
  b.writeInt32LE(error, 4);
  b.writeBigUInt64LE(unique, 8);
  return b;
}

/** Attributes of one node, as the filesystem reports them. Times in seconds (+ nsec). */
export interface FuseAttr {
  ino: number;
  size: number;
  blocks: number;
  mtime: number;
  mtimeNsec?: number;
  /** full st_mode (type + permission bits) */
  mode: number;
  nlink: number;
  uid: number;
  gid: number;
  rdev: number;
  blksize?: number;
}

export const ATTR_SIZE = 88;
export const ENTRY_OUT_SIZE = 40 + ATTR_SIZE;
export const ATTR_OUT_SIZE = 16 + ATTR_SIZE;

export function writeAttr(b: Buffer, off: number, a: FuseAttr): void {
  b.writeBigUInt64LE(BigInt(a.ino), off);
  b.writeBigUInt64LE(BigInt(a.size), off + 8);
  b.writeBigUInt64LE(BigInt(a.blocks), off + 16);
  const t = BigInt(Math.max(0, Math.floor(a.mtime)));
  b.writeBigUInt64LE(t, off + 24); // atime
  b.writeBigUInt64LE(t, off + 32); // mtime
  b.writeBigUInt64LE(t, off + 40); // ctime
  const ns = a.mtimeNsec ?? 0;
  b.writeUInt32LE(ns, off + 48);
  b.writeUInt32LE(ns, off + 52);
  b.writeUInt32LE(ns, off + 56);
  b.writeUInt32LE(a.mode >>> 0, off + 60);
  b.writeUInt32LE(a.nlink >>> 0, off + 64);
  b.writeUInt32LE(a.uid >>> 0, off + 68);
  b.writeUInt32LE(a.gid >>> 0, off + 72);
  b.writeUInt32LE(a.rdev >>> 0, off + 76);
  b.writeUInt32LE(a.blksize ?? 4096, off + 80);
  b.writeUInt32LE(0, off + 84);
}

/** Splits a timeout in seconds into the (u64 seconds, u32 nsec) pair FUSE uses. */
export function writeValid(b: Buffer, secOff: number, nsecOff: number, seconds: number): void {
  b.writeBigUInt64LE(BigInt(Math.floor(seconds)), secOff);
  b.writeUInt32LE(Math.round((seconds - Math.floor(seconds)) * 1e9), nsecOff);
}

export function entryOut(nodeid: number, attr: FuseAttr | null, entryValid: number, attrValid: number): Buffer {
  const b = Buffer.alloc(ENTRY_OUT_SIZE);
  b.writeBigUInt64LE(BigInt(nodeid), 0);
  b.writeBigUInt64LE(0n, 8); // generation
  writeValid(b, 16, 32, entryValid);
  writeValid(b, 24, 36, attrValid);
  if (attr) writeAttr(b, 40, attr);
  return b;
}

export function attrOut(attr: FuseAttr, attrValid: number): Buffer {
  const b = Buffer.alloc(ATTR_OUT_SIZE);
  writeValid(b, 0, 8, attrValid);
  writeAttr(b, 16, attr);
  return b;
}

/** d_type of a full st_mode: the file-type nibble is exactly the DT_* value. */
export function dtype(mode: number): number {
  return (mode >>> 12) & 0xf;
}

const align8 = (n: number): number => (n + 7) & ~7;

/** Size of one fuse_dirent record with a name of `nameLen` bytes. */
export function direntSize(nameLen: number): number {
  return align8(24 + nameLen);
}

export function writeDirent(b: Buffer, off: number, ino: number, nextOff: number, name: Buffer, type: number): number {
  b.writeBigUInt64LE(BigInt(ino), off);
  b.writeBigUInt64LE(BigInt(nextOff), off + 8);
  b.writeUInt32LE(name.length, off + 16);
  b.writeUInt32LE(type, off + 20);
  name.copy(b, off + 24);
  const end = off + direntSize(name.length);
  b.fill(0, off + 24 + name.length, end);
  return end;
}

export interface StatfsInfo {
  blocks: number;
  bfree: number;
  bavail: number;
  files: number;
  ffree: number;
  bsize: number;
  namelen: number;
  frsize: number;
}

export function statfsOut(s: StatfsInfo): Buffer {
  const b = Buffer.alloc(80);
  b.writeBigUInt64LE(BigInt(s.blocks), 0);
  b.writeBigUInt64LE(BigInt(s.bfree), 8);
  b.writeBigUInt64LE(BigInt(s.bavail), 16);
  b.writeBigUInt64LE(BigInt(s.files), 24);
  b.writeBigUInt64LE(BigInt(s.ffree), 32);
  b.writeUInt32LE(s.bsize, 40);
  b.writeUInt32LE(s.namelen, 44);
  b.writeUInt32LE(s.frsize, 48);
  return b;
}
