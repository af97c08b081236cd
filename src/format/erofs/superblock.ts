/**
 * @module format/erofs/superblock
 * The EROFS superblock (128 bytes at byte 1024 of the image).
 */
import { FerryError } from '../../core/index.js';
import { need, putU64, putUint, u64 } from './binary.js';
import { EROFS_SUPER_OFFSET, EROFS_SUPER_MAGIC, EROFS_SUPERBLOCK_SIZE } from './constants.js';

/** EROFS superblock fields (offsets relative to byte 1024). */
export interface ErofsSuperBlock {
  /** @0 u32 — `0xE0F5E1E2`. */
  magic: number;
  /** @4 u32 — crc32c when the SB_CHKSUM compat bit is set; nydus writes 0. */
  checksum: number;
  /** @8 u32. */
  featureCompat: number;
  /** @12 u8 — log2 block size (12, or 9 in tarfs mode). */
  blkszbits: number;
  /** @13 u8 — superblock extension slots; 0. */
  sbExtslots: number;
  /** @14 u16 — root directory nid. */
  rootNid: number;
  /** @16 u64 — number of inodes. */
  inos: number;
  /** @24 u64 — build time (s). */
  buildTime: number;
  /** @32 u32 — build time (ns). */
  buildTimeNsec: number;
  /** @36 u32 — block count. */
  blocks: number;
  /** @40 u32 — start block of inode metadata. */
  metaBlkaddr: number;
  /** @44 u32 — start block of shared xattrs; 0 for nydus. */
  xattrBlkaddr: number;
  /** @48 16 bytes. */
  uuid: Buffer;
  /** @64 16 bytes. */
  volumeName: Buffer;
  /** @80 u32. */
  featureIncompat: number;
  /** @84 u16 — available compression algorithms / lz4 max distance; 0. */
  u1: number;
  /** @86 u16 — number of extra devices (= number of blobs). */
  extraDevices: number;
  /** @88 u16 — device table position in 128-byte slots (11 → byte 1408). */
  devtSlotoff: number;
}

/** Decodes the superblock at `off` (default 1024). Checks bounds, not semantics. */
export function decodeErofsSuperBlock(buf: Buffer, off = EROFS_SUPER_OFFSET): ErofsSuperBlock {
  need(buf, off, EROFS_SUPERBLOCK_SIZE, 'erofs superblock');
  return {
    magic: buf.readUInt32LE(off),
    checksum: buf.readUInt32LE(off + 4),
    featureCompat: buf.readUInt32LE(off + 8),
    blkszbits: buf.readUInt8(off + 12),
    sbExtslots: buf.readUInt8(off + 13),
    rootNid: buf.readUInt16LE(off + 14),
    inos: u64(buf, off + 16, 'erofs superblock inos'),
    buildTime: u64(buf, off + 24, 'erofs superblock build_time'),
    buildTimeNsec: buf.readUInt32LE(off + 32),
    blocks: buf.readUInt32LE(off + 36),
    metaBlkaddr: buf.readUInt32LE(off + 40),
    xattrBlkaddr: buf.readUInt32LE(off + 44),
    uuid: Buffer.from(buf.subarray(off + 48, off + 64)),
    volumeName: Buffer.from(buf.subarray(off + 64, off + 80)),
    featureIncompat: buf.readUInt32LE(off + 80),
    u1: buf.readUInt16LE(off + 84),
    extraDevices: buf.readUInt16LE(off + 86),
    devtSlotoff: buf.readUInt16LE(off + 88),
  };
}

/** Writes the superblock at `off` (normally EROFS_SUPER_OFFSET = 1024) of `buf`. */
export function writeErofsSuperBlock(buf: Buffer, off: number, rec: ErofsSuperBlock): void {
  need(buf, off, EROFS_SUPERBLOCK_SIZE, 'erofs superblock (write)');
  buf.fill(0, off, off + EROFS_SUPERBLOCK_SIZE);
  putUint(buf, off, rec.magic, 4, 'magic');
  putUint(buf, off + 4, rec.checksum, 4, 'checksum');
  putUint(buf, off + 8, rec.featureCompat, 4, 'feature_compat');
  putUint(buf, off + 12, rec.blkszbits, 1, 'blkszbits');
  putUint(buf, off + 13, rec.sbExtslots, 1, 'sb_extslots');
  putUint(buf, off + 14, rec.rootNid, 2, 'root_nid');
  putU64(buf, off + 16, rec.inos, 'inos');
  putU64(buf, off + 24, rec.buildTime, 'build_time');
  putUint(buf, off + 32, rec.buildTimeNsec, 4, 'build_time_nsec');
  putUint(buf, off + 36, rec.blocks, 4, 'blocks');
  putUint(buf, off + 40, rec.metaBlkaddr, 4, 'meta_blkaddr');
  putUint(buf, off + 44, rec.xattrBlkaddr, 4, 'xattr_blkaddr');
  if (rec.uuid.length > 16 || rec.volumeName.length > 16) throw new FerryError('INVALID_ARGUMENT', 'uuid/volume_name longer than 16 bytes');
  rec.uuid.copy(buf, off + 48);
  rec.volumeName.copy(buf, off + 64);
  putUint(buf, off + 80, rec.featureIncompat, 4, 'feature_incompat');
  putUint(buf, off + 84, rec.u1, 2, 'u1');
  putUint(buf, off + 86, rec.extraDevices, 2, 'extra_devices');
  putUint(buf, off + 88, rec.devtSlotoff, 2, 'devt_slotoff');
}

/** Encodes the superblock as a 128-byte buffer. */
export function encodeErofsSuperBlock(rec: ErofsSuperBlock): Buffer {
  const b = Buffer.alloc(EROFS_SUPERBLOCK_SIZE);
  writeErofsSuperBlock(b, 0, rec);
  return b;
}

/** A superblock with every field zero except the magic (for builders to fill in). */
export function emptyErofsSuperBlock(): ErofsSuperBlock {
  return {
    magic: EROFS_SUPER_MAGIC,
    checksum: 0,
    featureCompat: 0,
    blkszbits: 12,
    sbExtslots: 0,
    rootNid: 0,
    inos: 0,
    buildTime: 0,
    buildTimeNsec: 0,
    blocks: 0,
    metaBlkaddr: 0,
    xattrBlkaddr: 0,
    uuid: Buffer.alloc(16),
    volumeName: Buffer.alloc(16),
    featureIncompat: 0,
    u1: 0,
    extraDevices: 0,
    devtSlotoff: 0,
  };
}
