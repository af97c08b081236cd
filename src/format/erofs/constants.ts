/**
 * @module format/erofs/constants
 * EROFS on-disk constants used by RAFS v6 bootstraps (Linux `fs/erofs/erofs_fs.h`; values are facts
 * of the format). Block size is always 4096 for RAFS v6 native images (512 in tarfs mode).
 */

/** Byte offset of the EROFS superblock inside the image. */
export const EROFS_SUPER_OFFSET = 1024;
/** Superblock magic (`EROFS_SUPER_MAGIC_V1`). */
export const EROFS_SUPER_MAGIC = 0xe0f5e1e2;
/** log2 of the block size of native RAFS v6 images. */
export const EROFS_BLKSIZ_BITS = 12;
/** The block size of native RAFS v6 images. */
export const EROFS_BLOCK_SIZE = 4096;
/** Superblock size in bytes (the record; the block holding it is 4096). */
export const EROFS_SUPERBLOCK_SIZE = 128;
/** Inodes are addressed as `meta_blkaddr * blksz + nid * 32`. */
export const EROFS_ISLOTBITS = 5;
export const EROFS_INODE_SLOT_SIZE = 32;
/** EROFS null block address (a hole in a chunk index). */
export const EROFS_NULL_ADDR = 0xffffffff;

/** `feature_compat` bits. */
export const EROFS_FEATURE_COMPAT_SB_CHKSUM = 0x1;
export const EROFS_FEATURE_COMPAT_MTIME = 0x2;
/** Nydus private compat bit marking a RAFS v6 image. */
export const EROFS_FEATURE_COMPAT_RAFS_V6 = 0x40000000;

/** `feature_incompat` bits. */
export const EROFS_FEATURE_INCOMPAT_ZERO_PADDING = 0x1;
export const EROFS_FEATURE_INCOMPAT_COMPR_CFGS = 0x2;
export const EROFS_FEATURE_INCOMPAT_BIG_PCLUSTER = 0x2;
export const EROFS_FEATURE_INCOMPAT_CHUNKED_FILE = 0x4;
export const EROFS_FEATURE_INCOMPAT_DEVICE_TABLE = 0x8;
/** What nydus writes (and requires): chunked files + device table. */
export const RAFS_V6_FEATURE_INCOMPAT = EROFS_FEATURE_INCOMPAT_CHUNKED_FILE | EROFS_FEATURE_INCOMPAT_DEVICE_TABLE;

/** Inode versions (`i_format` bit 0). */
export const EROFS_INODE_LAYOUT_COMPACT = 0;
export const EROFS_INODE_LAYOUT_EXTENDED = 1;
export const EROFS_INODE_COMPACT_SIZE = 32;
export const EROFS_INODE_EXTENDED_SIZE = 64;

/** Data layouts (`i_format` bits 1..3). */
export const EROFS_INODE_FLAT_PLAIN = 0;
export const EROFS_INODE_COMPRESSED_FULL = 1;
export const EROFS_INODE_FLAT_INLINE = 2;
export const EROFS_INODE_COMPRESSED_COMPACT = 3;
export const EROFS_INODE_CHUNK_BASED = 4;

/** Builds `i_format` from a version and a data layout. */
export function erofsIFormat(version: number, layout: number): number {
  return (version & 1) | ((layout & 7) << 1);
}
/** Version (0 compact, 1 extended) of an `i_format`. */
export function erofsInodeVersion(iFormat: number): number {
  return iFormat & 1;
}
/** Data layout of an `i_format`. */
export function erofsInodeDataLayout(iFormat: number): number {
  return (iFormat >> 1) & 7;
}

/** Chunk header (`i_u` of chunk-based inodes). */
export const EROFS_CHUNK_FORMAT_BLKBITS_MASK = 0x1f;
export const EROFS_CHUNK_FORMAT_INDEXES = 0x20;
export const EROFS_CHUNK_INDEX_SIZE = 8;

/** Directory entry (`erofs_dirent`) size. */
export const EROFS_DIRENT_SIZE = 12;
/** Dirent file types. */
export const EROFS_FT_UNKNOWN = 0;
export const EROFS_FT_REG_FILE = 1;
export const EROFS_FT_DIR = 2;
export const EROFS_FT_CHRDEV = 3;
export const EROFS_FT_BLKDEV = 4;
export const EROFS_FT_FIFO = 5;
export const EROFS_FT_SOCK = 6;
export const EROFS_FT_SYMLINK = 7;

/** POSIX file-type bits of `st_mode` (defined in core, re-exported with the EROFS records). */
import { S_IFMT, S_IFSOCK, S_IFLNK, S_IFREG, S_IFBLK, S_IFDIR, S_IFCHR, S_IFIFO } from '../../core/index.js';
export { S_IFMT, S_IFSOCK, S_IFLNK, S_IFREG, S_IFBLK, S_IFDIR, S_IFCHR, S_IFIFO };

/** Dirent file type for an `st_mode`. */
export function fileTypeOfMode(mode: number): number {
  switch (mode & S_IFMT) {
    case S_IFREG:
      return EROFS_FT_REG_FILE;
    case S_IFDIR:
      return EROFS_FT_DIR;
    case S_IFCHR:
      return EROFS_FT_CHRDEV;
    case S_IFBLK:
      return EROFS_FT_BLKDEV;
    case S_IFIFO:
      return EROFS_FT_FIFO;
    case S_IFSOCK:
      return EROFS_FT_SOCK;
    case S_IFLNK:
      return EROFS_FT_SYMLINK;
    default:
      return EROFS_FT_UNKNOWN;
  }
}

/** Inline xattr body header size (`erofs_xattr_ibody_header`). */
export const EROFS_XATTR_IBODY_HEADER_SIZE = 12;
/** Xattr entry header size (`erofs_xattr_entry`, before name and value). */
export const EROFS_XATTR_ENTRY_SIZE = 4;
/** Xattr name prefix indexes. */
export const EROFS_XATTR_INDEX_USER = 1;
export const EROFS_XATTR_INDEX_POSIX_ACL_ACCESS = 2;
export const EROFS_XATTR_INDEX_POSIX_ACL_DEFAULT = 3;
export const EROFS_XATTR_INDEX_TRUSTED = 4;
export const EROFS_XATTR_INDEX_LUSTRE = 5;
export const EROFS_XATTR_INDEX_SECURITY = 6;
/** Prefix string for each xattr name index. */
export const EROFS_XATTR_PREFIXES: ReadonlyMap<number, string> = new Map([
  [EROFS_XATTR_INDEX_USER, 'user.'],
  [EROFS_XATTR_INDEX_POSIX_ACL_ACCESS, 'system.posix_acl_access'],
  [EROFS_XATTR_INDEX_POSIX_ACL_DEFAULT, 'system.posix_acl_default'],
  [EROFS_XATTR_INDEX_TRUSTED, 'trusted.'],
  [EROFS_XATTR_INDEX_LUSTRE, 'lustre.'],
  [EROFS_XATTR_INDEX_SECURITY, 'security.'],
]);

/** Device slot (`erofs_deviceslot`) size; the table starts at `devt_slotoff * 128`. */
export const EROFS_DEVT_SLOT_SIZE = 128;
/** Device table slot offset nydus writes (and requires): 11 → byte 1408. */
export const RAFS_V6_DEVT_SLOTOFF = 11;
