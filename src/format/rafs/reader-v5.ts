/**
 * @module format/rafs/reader-v5
 * The RAFS v5 reader: 8 KiB superblock, inode table, string + extended blob table, 128-byte inodes
 * with names, symlink targets, xattr tables and 80-byte chunk records inline (also the early v5
 * inode layout of nydus's own test bootstrap), as nydus's `direct_v5` reads it. Inode numbers are
 * inode-table indexes (root 1); `stat().ino` is the on-disk `i_ino`, which hardlinks share.
 */
import { FerryError } from '../../core/index.js';
import { need, S_IFBLK, S_IFCHR, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG } from '../erofs/index.js';
import {
  BaseBootstrap,
  corrupt,
  isPow2,
  type BlobInfo,
  type BootstrapSummary,
  type ChunkRef,
  type DirEntry,
  type OpenBootstrapOptions,
  type RafsStat,
} from './reader-base.js';
import {
  ChunkFlags,
  RAFS_MAX_BLOBS,
  RAFS_MAX_CHUNK_SIZE,
  RAFS_MIN_CHUNK_SIZE,
  RAFS_SUPER_FLAGS_KNOWN,
  RAFS_V6_CHUNK_INFO_SIZE,
  compressorOfFlags,
  decodePrefetchTable,
  decodeRafsChunkInfo,
  digesterOfFlags,
  type Compressor,
  type Digester,
} from './v6.js';
import {
  RAFS_V4_SUPER_VERSION,
  RAFS_V5_EXT_BLOB_ENTRY_SIZE,
  RAFS_V5_INODE_SIZE,
  RAFS_V5_SUPER_VERSION,
  RAFS_V5_SUPERBLOCK_SIZE,
  RafsV5InodeFlags,
  decodeRafsV5BlobTable,
  decodeRafsV5ExtBlobEntry,
  decodeRafsV5Inode,
  decodeRafsV5SuperBlock,
  decodeRafsV5Xattrs,
  decodeRafsV5InodeLegacy,
  rafsV5Align,
  type RafsV5Inode,
  type RafsV5SuperBlock,
} from './v5.js';

interface V5Record {
  index: number;
  off: number;
  inode: RafsV5Inode;
  name: string;
  symlink: string | undefined;
  xattrOff: number;
  chunksOff: number;
}

export class V5Bootstrap extends BaseBootstrap {
  readonly version = 5 as const;
  readonly blobs: BlobInfo[];
  readonly rootIno = 1;
  readonly prefetchInodes: number[];
  readonly chunkSize: number;
  readonly compressor: Compressor;
  readonly digester: Digester;
  readonly flags: number;
  private readonly sb: RafsV5SuperBlock;
  private readonly table: Uint32Array;
  private readonly cache = new Map<number, V5Record>();
  /** True for the early v5 inode layout (see decodeRafsV5InodeLegacy). */
  private legacy = false;

  constructor(buf: Buffer, opts: OpenBootstrapOptions) {
    super(buf, opts);
    const sb = decodeRafsV5SuperBlock(buf, 0);
    this.sb = sb;
    if (sb.version !== RAFS_V5_SUPER_VERSION && sb.version !== RAFS_V4_SUPER_VERSION)
      throw corrupt(`unsupported v5 version 0x${sb.version.toString(16)}`);
    if (sb.sbSize !== RAFS_V5_SUPERBLOCK_SIZE || buf.length <= RAFS_V5_SUPERBLOCK_SIZE) throw corrupt('invalid v5 superblock size');
    if (!isPow2(sb.blockSize) || sb.blockSize < RAFS_MIN_CHUNK_SIZE || (sb.blockSize > RAFS_MAX_CHUNK_SIZE && sb.blockSize !== 4 << 20)) {
      throw corrupt(`invalid v5 chunk size 0x${sb.blockSize.toString(16)}`);
    }
    if ((sb.flags & ~RAFS_SUPER_FLAGS_KNOWN) !== 0) throw corrupt(`unknown superblock flags 0x${sb.flags.toString(16)}`);
    this.flags = sb.flags;
    this.compressor = compressorOfFlags(sb.flags);
    this.digester = digesterOfFlags(sb.flags, { whenAbsent: 'blake3' });
    this.chunkSize = sb.blockSize;
    if (sb.inodeTableEntries === 0) throw corrupt('empty inode table');
    need(buf, sb.inodeTableOffset, sb.inodeTableEntries * 4, 'rafs v5 inode table');
    if (sb.inodesCount > sb.inodeTableEntries)
      throw corrupt(`inode count ${sb.inodesCount} exceeds the inode table (${sb.inodeTableEntries})`);
    this.table = new Uint32Array(
      buf.buffer.slice(buf.byteOffset + sb.inodeTableOffset, buf.byteOffset + sb.inodeTableOffset + sb.inodeTableEntries * 4),
    );
    if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) throw new FerryError('INTERNAL', 'big-endian hosts are not supported');

    const entries = sb.blobTableSize > 0 ? decodeRafsV5BlobTable(buf, sb.blobTableOffset, sb.blobTableSize) : [];
    if (entries.length > RAFS_MAX_BLOBS) throw corrupt(`${entries.length} blobs exceed the limit`);
    const nExt = sb.extendedBlobTableEntries;
    if (nExt > 0) need(buf, sb.extendedBlobTableOffset, nExt * RAFS_V5_EXT_BLOB_ENTRY_SIZE, 'rafs v5 extended blob table');
    if (nExt > 0 && nExt < entries.length) throw corrupt(`extended blob table (${nExt}) shorter than the blob table (${entries.length})`);
    this.blobs = entries.map((e, i) => {
      const x = nExt > 0 ? decodeRafsV5ExtBlobEntry(buf, sb.extendedBlobTableOffset + i * RAFS_V5_EXT_BLOB_ENTRY_SIZE) : undefined;
      return {
        index: i,
        blobId: e.blobId,
        compressor: this.compressor,
        digester: this.digester,
        chunkSize: sb.blockSize,
        chunkCount: x?.chunkCount ?? 0,
        compressedSize: x?.compressedSize ?? 0,
        uncompressedSize: x?.uncompressedSize ?? 0,
        features: 0,
        ciOffset: 0,
        ciCompressedSize: 0,
        ciUncompressedSize: 0,
        ciCompressor: 'none' as Compressor,
        blobTocSize: 0,
        blobTocDigest: Buffer.alloc(32),
        deviceBlocks: 0,
        mappedBlkaddr: 0,
      };
    });
    this.prefetchInodes =
      sb.prefetchTableEntries > 0 && sb.prefetchTableOffset !== 0
        ? decodePrefetchTable(buf, sb.prefetchTableOffset, sb.prefetchTableEntries * 4)
        : [];
    if (this.table[0] === undefined) throw corrupt('empty inode table');
    const rootOff = this.table[0] * 8;
    need(buf, rootOff, RAFS_V5_INODE_SIZE, 'rafs v5 root inode');
    if ((buf.readUInt32LE(rootOff + 60) & S_IFMT) !== S_IFDIR && (buf.readUInt32LE(rootOff + 52) & S_IFMT) === S_IFDIR) this.legacy = true;
    const root = this.record(1);
    if ((root.inode.mode & S_IFMT) !== S_IFDIR) throw corrupt('root inode is not a directory');
  }

  summary(): BootstrapSummary {
    const sb = this.sb;
    return {
      version: 5,
      flags: this.flags,
      compressor: this.compressor,
      digester: this.digester,
      chunkSize: this.chunkSize,
      inodeCount: sb.inodesCount,
      rootIno: 1,
      blockSize: 4096,
      size: this.buf.length,
      chunkTableEntries: 0,
      superblock: {
        magic: `0x${sb.magic.toString(16)}`,
        version: `0x${sb.version.toString(16)}`,
        sbSize: sb.sbSize,
        blockSize: sb.blockSize,
        flags: `0x${sb.flags.toString(16)}`,
        inodesCount: sb.inodesCount,
        inodeTableOffset: sb.inodeTableOffset,
        inodeTableEntries: sb.inodeTableEntries,
        prefetchTableOffset: sb.prefetchTableOffset,
        prefetchTableEntries: sb.prefetchTableEntries,
        blobTableOffset: sb.blobTableOffset,
        blobTableSize: sb.blobTableSize,
        extendedBlobTableOffset: sb.extendedBlobTableOffset,
        extendedBlobTableEntries: sb.extendedBlobTableEntries,
      },
    };
  }

  private record(index: number): V5Record {
    let r = this.cache.get(index);
    if (r) return r;
    if (!Number.isInteger(index) || index < 1 || index > this.table.length) throw corrupt(`inode index ${index} outside the inode table`);
    const off = this.table[index - 1]! * 8;
    if (off <= RAFS_V5_SUPERBLOCK_SIZE) throw corrupt(`inode ${index} has invalid offset ${off}`);
    const inode = this.legacy ? decodeRafsV5InodeLegacy(this.buf, off) : decodeRafsV5Inode(this.buf, off);
    let p = off + RAFS_V5_INODE_SIZE;
    need(this.buf, p, inode.nameSize, `name of inode ${index}`);
    const nameEnd = this.buf.subarray(p, p + inode.nameSize).indexOf(0);
    const name = this.buf.toString('utf8', p, nameEnd < 0 ? p + inode.nameSize : p + nameEnd);
    p += rafsV5Align(inode.nameSize);
    let symlink: string | undefined;
    if ((inode.mode & S_IFMT) === S_IFLNK) {
      need(this.buf, p, inode.symlinkSize, `symlink target of inode ${index}`);
      const symEnd = this.buf.subarray(p, p + inode.symlinkSize).indexOf(0);
      symlink = this.buf.toString('utf8', p, symEnd < 0 ? p + inode.symlinkSize : p + symEnd);
      p += rafsV5Align(inode.symlinkSize);
    }
    const xattrOff = (inode.flags & RafsV5InodeFlags.XATTR) !== 0 ? p : -1;
    if (xattrOff >= 0) {
      need(this.buf, p, 8, `xattrs of inode ${index}`);
      p += decodeRafsV5Xattrs(this.buf, p).length;
    }
    r = { index, off, inode, name, symlink, xattrOff, chunksOff: p };
    if (this.cache.size < 1_000_000) this.cache.set(index, r);
    return r;
  }

  stat(ino: number): RafsStat {
    const { inode } = this.record(ino);
    const t = inode.mode & S_IFMT;
    return {
      ino: inode.ino,
      mode: inode.mode,
      uid: inode.uid,
      gid: inode.gid,
      size: inode.size,
      mtime: inode.mtime,
      mtimeNsec: inode.mtimeNsec,
      nlink: inode.nlink,
      rdev: t === S_IFCHR || t === S_IFBLK ? inode.rdev : 0,
      blocks: inode.blocks,
    };
  }

  protected listDir(ino: number): DirEntry[] {
    const { inode } = this.record(ino);
    if ((inode.mode & S_IFMT) !== S_IFDIR) throw new FerryError('INVALID_ARGUMENT', `inode ${ino} is not a directory`);
    if (inode.childCount === 0) return [];
    const first = inode.childIndex;
    if (first < 1 || first + inode.childCount - 1 > this.table.length) {
      throw corrupt(`directory ${ino}: children ${first}..${first + inode.childCount - 1} outside the inode table`);
    }
    const out: DirEntry[] = [];
    for (let i = first; i < first + inode.childCount; i++) {
      const r = this.record(i);
      out.push({ name: r.name, ino: i });
    }
    return out;
  }

  override inodeDigest(ino: number): Buffer | undefined {
    return this.record(ino).inode.digest;
  }

  readlink(ino: number): string {
    const r = this.record(ino);
    if (r.symlink === undefined) throw new FerryError('INVALID_ARGUMENT', `inode ${ino} is not a symlink`);
    return r.symlink;
  }

  xattrs(ino: number): Map<string, Buffer> {
    const r = this.record(ino);
    if (r.xattrOff < 0) return new Map();
    return decodeRafsV5Xattrs(this.buf, r.xattrOff).xattrs;
  }

  chunks(ino: number): ChunkRef[] {
    const r = this.record(ino);
    if ((r.inode.mode & S_IFMT) !== S_IFREG) throw new FerryError('INVALID_ARGUMENT', `inode ${ino} is not a regular file`);
    const count = r.inode.childCount;
    need(this.buf, r.chunksOff, count * RAFS_V6_CHUNK_INFO_SIZE, `chunk records of inode ${ino}`);
    const out: ChunkRef[] = [];
    for (let k = 0; k < count; k++) {
      const c = decodeRafsChunkInfo(this.buf, r.chunksOff + k * RAFS_V6_CHUNK_INFO_SIZE);
      const blob = this.blobs[c.blobIndex];
      if (!blob) throw corrupt(`inode ${ino} chunk ${k} references blob ${c.blobIndex} of ${this.blobs.length}`);
      if (c.uncompressedSize > RAFS_MAX_CHUNK_SIZE || c.fileOffset + c.uncompressedSize > r.inode.size) {
        throw corrupt(`inode ${ino} chunk ${k} lies outside the file`);
      }
      out.push({
        blobIndex: c.blobIndex,
        blobId: blob.blobId,
        chunkIndex: c.index,
        fileOffset: c.fileOffset,
        compressedOffset: c.compressedOffset,
        compressedSize: c.compressedSize,
        uncompressedOffset: c.uncompressedOffset,
        uncompressedSize: c.uncompressedSize,
        compressed: (c.flags & ChunkFlags.COMPRESSED) !== 0,
        digest: c.blockId,
      });
    }
    return out;
  }

  override mapRead(ino: number, offset: number, length: number): ChunkRef[] {
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) {
      throw new FerryError('INVALID_ARGUMENT', `invalid read range ${offset}+${length}`);
    }
    const end = offset + length;
    return this.chunks(ino).filter((c) => c.fileOffset < end && c.fileOffset + c.uncompressedSize > offset);
  }
}
