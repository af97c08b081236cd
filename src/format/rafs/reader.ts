/**
 * @module format/rafs/reader
 * Reads a RAFS v6 (EROFS) or v5 bootstrap held in memory: blobs, path lookup, stat, readdir,
 * readlink, xattrs, chunk lists and the mapping of a (file, offset, length) read to the chunks to
 * fetch (chunks are decoded by format/compress). Every offset and count read from the bootstrap is
 * checked against the buffer before it is used, so hostile input yields `FerryError('DATA_LOSS')`
 * naming the structure — never a RangeError or a huge allocation — and directory loops are
 * detected by `walk()`.
 *
 * Inode numbers: v6 uses EROFS nids (root 128, hardlinks share one nid); v5 uses inode-table
 * indexes (root 1) and `stat().ino` is the on-disk `i_ino`, which hardlinks share.
 */
import { FerryError } from '../../core/index.js';
import { decodeChunk } from '../compress/index.js';
import { alignUp, need } from '../erofs/index.js';
import { fixedChunkSpan } from './read-plan.js';
import {
  EROFS_FEATURE_COMPAT_RAFS_V6, EROFS_FEATURE_INCOMPAT_CHUNKED_FILE, EROFS_FEATURE_INCOMPAT_DEVICE_TABLE,
  EROFS_INODE_CHUNK_BASED, EROFS_INODE_FLAT_INLINE, EROFS_INODE_FLAT_PLAIN, EROFS_SUPER_MAGIC, EROFS_SUPER_OFFSET,
  EROFS_DEVT_SLOT_SIZE, S_IFBLK, S_IFCHR, S_IFDIR, S_IFLNK, S_IFMT, S_IFREG, erofsInodeDataLayout,
} from '../erofs/index.js';
import { decodeErofsDeviceSlot } from '../erofs/index.js';
import { decodeErofsDirBlock } from '../erofs/index.js';
import { decodeErofsInode, erofsInodeSize, erofsXattrIbodySize } from '../erofs/index.js';
import { decodeErofsSuperBlock, type ErofsSuperBlock } from '../erofs/index.js';
import { decodeErofsXattrs } from '../erofs/index.js';
import {
  COMPRESSOR_BY_CODE, ChunkFlags, DIGESTER_BY_CODE, RAFS_MAX_BLOBS, RAFS_MAX_CHUNK_SIZE, RAFS_MIN_CHUNK_SIZE,
  RAFS_SUPER_FLAGS_KNOWN, RAFS_V6_BLOB_ENTRY_SIZE, RAFS_V6_CHUNK_INFO_SIZE, RafsSuperFlags, compressorOfFlags,
  decodePrefetchTable, decodeRafsChunkInfo, decodeRafsV6BlobEntry, decodeRafsV6ChunkIndex, decodeRafsV6ExtSuperBlock,
  digesterOfFlags, type Compressor, type Digester, type RafsChunkInfo, type RafsV6ExtSuperBlock,
} from './v6.js';
import {
  RAFS_V4_SUPER_VERSION, RAFS_V5_EXT_BLOB_ENTRY_SIZE, RAFS_V5_INODE_SIZE, RAFS_V5_SUPER_MAGIC, RAFS_V5_SUPER_VERSION,
  RAFS_V5_SUPERBLOCK_SIZE, RafsV5InodeFlags, decodeRafsV5BlobTable, decodeRafsV5ExtBlobEntry, decodeRafsV5Inode,
  decodeRafsV5SuperBlock, decodeRafsV5Xattrs, decodeRafsV5InodeLegacy, rafsV5Align, type RafsV5Inode, type RafsV5SuperBlock,
} from './v5.js';

/** A data blob referenced by a bootstrap. */
export interface BlobInfo {
  index: number;
  blobId: string;
  compressor: Compressor;
  digester: Digester;
  chunkSize: number;
  chunkCount: number;
  compressedSize: number;
  uncompressedSize: number;
  features: number;
  /** v6: where the CI table lives in the blob (0 when unknown, e.g. v5). */
  ciOffset: number;
  ciCompressedSize: number;
  ciUncompressedSize: number;
  ciCompressor: Compressor;
  blobTocSize: number;
  blobTocDigest: Buffer;
  /** v6: EROFS device slot `blocks` and `mapped_blkaddr` (0 for v5). */
  deviceBlocks: number;
  mappedBlkaddr: number;
}

/** stat(2)-like attributes. */
export interface RafsStat {
  ino: number;
  /** Full st_mode (type + permission bits). */
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: number;
  mtimeNsec: number;
  nlink: number;
  /** Linux "new" dev_t encoding for char/block devices, else 0. */
  rdev: number;
  /** 512-byte blocks. */
  blocks: number;
}

/** One chunk of a file and where its bytes live. */
export interface ChunkRef {
  blobIndex: number;
  blobId: string;
  /** Index of the chunk within its blob (CI index). */
  chunkIndex: number;
  /** Offset of this chunk's first byte in the file. */
  fileOffset: number;
  compressedOffset: number;
  compressedSize: number;
  uncompressedOffset: number;
  uncompressedSize: number;
  compressed: boolean;
  digest: Buffer;
}

/** A chunk table record as a chunk location (`RafsBootstrap.chunkLocations`). */
export type ChunkLocation = Omit<ChunkRef, 'blobId' | 'fileOffset'>;

export interface DirEntry {
  name: string;
  ino: number;
  /** v6: the EROFS dirent file type (EROFS_FT_*). */
  fileType?: number;
}

/** An entry yielded by `walk()`. */
export interface WalkEntry {
  /** Path relative to the root ('' for the root), '/'-separated. */
  path: string;
  ino: number;
  stat: RafsStat;
  /** ino of the parent directory (the root's parent is itself). */
  parent: number;
}

/** Information for `inspect`. */
export interface BootstrapSummary {
  version: 5 | 6;
  flags: number;
  compressor: Compressor;
  digester: Digester;
  chunkSize: number;
  inodeCount: number;
  rootIno: number;
  blockSize: number;
  size: number;
  /** Raw superblock fields (EROFS + extended for v6; v5 superblock for v5). */
  superblock: Record<string, number | string>;
  chunkTableEntries: number;
}

/** Place of a chunk in the blob, for readers that load a blob's CI table themselves. */
export interface CiLocation {
  compressedOffset: number;
  compressedSize: number;
  uncompressedOffset: number;
  uncompressedSize: number;
  compressed: boolean;
}

/** A parsed bootstrap. */
export interface RafsBootstrap {
  readonly version: 5 | 6;
  readonly blobs: readonly BlobInfo[];
  readonly rootIno: number;
  readonly prefetchInodes: readonly number[];
  readonly chunkSize: number;
  readonly compressor: Compressor;
  readonly digester: Digester;
  readonly flags: number;
  summary(): BootstrapSummary;
  lookup(path: string): number | undefined;
  stat(ino: number): RafsStat;
  /** Children of a directory, without `.` and `..`, in on-disk (v6: byte-sorted) order. */
  readdir(ino: number): DirEntry[];
  /** The raw directory entries (v6: including `.` and `..`). */
  dirents(ino: number): DirEntry[];
  /** One child of a directory by name (FUSE lookup), via a per-directory index. */
  lookupChild(dirIno: number, name: string): number | undefined;
  readlink(ino: number): string;
  xattrs(ino: number): Map<string, Buffer>;
  chunks(ino: number): ChunkRef[];
  mapRead(ino: number, offset: number, length: number): ChunkRef[];
  /** Depth-first walk from the root (directories before their children, children sorted by name). */
  walk(): Generator<WalkEntry>;
  /** v5: the inode digest stored on disk (hash of chunk digests / target / child digests); undefined for v6. */
  inodeDigest(ino: number): Buffer | undefined;
  /** v6: the 80-byte chunk info table records (empty for v5, whose chunk records live in inodes). */
  chunkTable(): RafsChunkInfo[];
  /**
   * v6: the chunk table as the daemon needs it, decoded in one tight pass (a mount's critical
   * path: 28 000 records in a few ms): `digest` is a view into the bootstrap, not a copy.
   */
  chunkLocations(): ChunkLocation[];
  /**
   * v6: supply a blob's CI table (and optionally its `blob.digest` array) for chunks the bootstrap's
   * chunk table does not list. Without digests such chunks cannot be verified by `decodeChunk`.
   */
  setCiTable(blobIndex: number, entries: readonly CiLocation[], digests?: readonly Buffer[]): void;
  /**
   * Whether file chunks can be mapped: always for v5 and for v6 with a chunk table; a v6 bootstrap
   * without one needs every blob's CI table first (`setCiTable`, see format/rafs/blob-tables).
   */
  canMapChunks(): boolean;
  /** Decompresses and verifies one chunk of this image: `decodeChunk` of format/compress. */
  decodeChunk(blob: BlobInfo, chunk: ChunkRef, raw: Buffer): Buffer;
}

/** Options for `openBootstrap`. */
export interface OpenBootstrapOptions {
  /** Upper bound on entries `walk()` yields (default: derived from the bootstrap size). */
  maxEntries?: number;
}

function corrupt(msg: string): FerryError {
  return new FerryError('DATA_LOSS', `rafs bootstrap: ${msg}`);
}

/** Parses a v5 or v6 bootstrap (detected by magic). */
export function openBootstrap(buf: Buffer, opts: OpenBootstrapOptions = {}): RafsBootstrap {
  if (!Buffer.isBuffer(buf)) throw new FerryError('INVALID_ARGUMENT', 'openBootstrap expects a Buffer');
  if (buf.length >= 8 && buf.readUInt32LE(0) === RAFS_V5_SUPER_MAGIC) return new V5Bootstrap(buf, opts);
  if (buf.length >= EROFS_SUPER_OFFSET + 4 && buf.readUInt32LE(EROFS_SUPER_OFFSET) === EROFS_SUPER_MAGIC) return new V6Bootstrap(buf, opts);
  throw corrupt(`not a RAFS bootstrap (${buf.length} bytes, no v5 or v6 magic)`);
}

/** Which RAFS version a buffer holds (by magic), or undefined. */
export function detectBootstrapVersion(buf: Buffer): 5 | 6 | undefined {
  if (buf.length >= 8 && buf.readUInt32LE(0) === RAFS_V5_SUPER_MAGIC) return 5;
  if (buf.length >= EROFS_SUPER_OFFSET + 4 && buf.readUInt32LE(EROFS_SUPER_OFFSET) === EROFS_SUPER_MAGIC) return 6;
  return undefined;
}

function isPow2(n: number): boolean {
  return Number.isInteger(n) && n > 0 && (n & (n - 1)) === 0;
}

function splitPath(path: string): string[] | undefined {
  const parts: string[] = [];
  for (const p of path.split('/')) {
    if (p === '' || p === '.') continue;
    if (p === '..') return undefined;
    parts.push(p);
  }
  return parts;
}

abstract class BaseBootstrap implements RafsBootstrap {
  abstract readonly version: 5 | 6;
  abstract readonly blobs: readonly BlobInfo[];
  abstract readonly rootIno: number;
  abstract readonly prefetchInodes: readonly number[];
  abstract readonly chunkSize: number;
  abstract readonly compressor: Compressor;
  abstract readonly digester: Digester;
  abstract readonly flags: number;
  protected readonly dirCache = new Map<number, DirEntry[]>();
  private readonly childIndex = new Map<number, Map<string, number>>();
  protected readonly maxEntries: number;

  constructor(protected readonly buf: Buffer, opts: OpenBootstrapOptions) {
    // every entry needs at least a 12-byte dirent (v6) or a 4-byte table slot (v5)
    this.maxEntries = opts.maxEntries ?? Math.max(16, Math.ceil(buf.length / 4));
  }

  abstract summary(): BootstrapSummary;
  abstract stat(ino: number): RafsStat;
  protected abstract listDir(ino: number): DirEntry[];
  abstract readlink(ino: number): string;
  abstract xattrs(ino: number): Map<string, Buffer>;
  abstract chunks(ino: number): ChunkRef[];
  abstract mapRead(ino: number, offset: number, length: number): ChunkRef[];

  chunkTable(): RafsChunkInfo[] {
    return [];
  }

  chunkLocations(): ChunkLocation[] {
    return [];
  }

  inodeDigest(_ino: number): Buffer | undefined {
    return undefined;
  }

  setCiTable(_blobIndex: number, _entries: readonly CiLocation[], _digests?: readonly Buffer[]): void {
    /* v5 chunk records are complete */
  }

  canMapChunks(): boolean {
    return true;
  }

  dirents(ino: number): DirEntry[] {
    let d = this.dirCache.get(ino);
    if (!d) {
      d = this.listDir(ino);
      this.dirCache.set(ino, d);
    }
    return d;
  }

  readdir(ino: number): DirEntry[] {
    return this.dirents(ino).filter((k) => k.name !== '.' && k.name !== '..');
  }

  lookupChild(dirIno: number, name: string): number | undefined {
    let idx = this.childIndex.get(dirIno);
    if (!idx) {
      if ((this.stat(dirIno).mode & S_IFMT) !== S_IFDIR) return undefined;
      idx = new Map(this.readdir(dirIno).map((d) => [d.name, d.ino]));
      if (this.childIndex.size > 100_000) this.childIndex.clear();
      this.childIndex.set(dirIno, idx);
    }
    return idx.get(name);
  }

  lookup(path: string): number | undefined {
    const parts = splitPath(path);
    if (!parts) return undefined;
    let cur = this.rootIno;
    for (const name of parts) {
      const next = this.lookupChild(cur, name);
      if (next === undefined) return undefined;
      cur = next;
    }
    return cur;
  }

  *walk(): Generator<WalkEntry> {
    const seenDirs = new Set<number>();
    let count = 0;
    const rootStat = this.stat(this.rootIno);
    if ((rootStat.mode & S_IFMT) !== S_IFDIR) throw corrupt('root inode is not a directory');
    const stack: WalkEntry[] = [{ path: '', ino: this.rootIno, stat: rootStat, parent: this.rootIno }];
    while (stack.length > 0) {
      const e = stack.pop()!;
      if (++count > this.maxEntries) throw corrupt(`more than ${this.maxEntries} entries: directory loop or absurd counts`);
      yield e;
      if ((e.stat.mode & S_IFMT) !== S_IFDIR) continue;
      if (seenDirs.has(e.ino)) throw corrupt(`directory loop at ${e.path || '/'} (inode ${e.ino} reached twice)`);
      seenDirs.add(e.ino);
      const kids = this.readdir(e.ino);
      for (let i = kids.length - 1; i >= 0; i--) {
        const k = kids[i]!;
        if (k.name.includes('/') || k.name === '') throw corrupt(`invalid name ${JSON.stringify(k.name)} in ${e.path || '/'}`);
        stack.push({ path: e.path ? `${e.path}/${k.name}` : k.name, ino: k.ino, stat: this.stat(k.ino), parent: e.ino });
      }
    }
  }

  decodeChunk(blob: BlobInfo, chunk: ChunkRef, raw: Buffer): Buffer {
    return decodeChunk(blob, chunk, raw);
  }
}

interface V6Inode {
  nid: number;
  off: number;
  format: number;
  layout: number;
  mode: number;
  size: number;
  u: number;
  uid: number;
  gid: number;
  mtime: number;
  mtimeNsec: number;
  nlink: number;
  /** Offset of the inline xattr area and its size. */
  xattrOff: number;
  xattrSize: number;
  /** Offset right after inode + xattrs (inline tail / chunk indexes start here, chunks 8-aligned). */
  bodyOff: number;
}

class V6Bootstrap extends BaseBootstrap {
  readonly version = 6 as const;
  readonly blobs: BlobInfo[];
  readonly rootIno: number;
  readonly prefetchInodes: number[];
  readonly chunkSize: number;
  readonly compressor: Compressor;
  readonly digester: Digester;
  readonly flags: number;
  private readonly sb: ErofsSuperBlock;
  private readonly ext: RafsV6ExtSuperBlock;
  private readonly blockSize: number;
  private readonly metaBase: number;
  private readonly inodeCache = new Map<number, V6Inode>();
  private ctIndex: Map<number, number> | undefined;
  private readonly ciTables = new Map<number, { entries: readonly CiLocation[]; digests: readonly Buffer[] | undefined }>();

  constructor(buf: Buffer, opts: OpenBootstrapOptions) {
    super(buf, opts);
    const sb = decodeErofsSuperBlock(buf, EROFS_SUPER_OFFSET);
    this.sb = sb;
    if (sb.blkszbits !== 12 && sb.blkszbits !== 9) throw corrupt(`unsupported block size bits ${sb.blkszbits}`);
    this.blockSize = 1 << sb.blkszbits;
    if (buf.length < 4096 || buf.length % this.blockSize !== 0) {
      throw corrupt(`size ${buf.length} is not a positive multiple of the ${this.blockSize}-byte block size (truncated?)`);
    }
    if (sb.checksum !== 0) throw corrupt('superblock checksum is set (not a RAFS v6 image)');
    if (sb.sbExtslots !== 0) throw corrupt(`superblock extension slots ${sb.sbExtslots} not supported`);
    if (sb.xattrBlkaddr !== 0) throw corrupt('shared xattr area is not supported in RAFS v6');
    if (sb.inos === 0) throw corrupt('inode count is 0');
    if ((sb.featureIncompat & ~(EROFS_FEATURE_INCOMPAT_CHUNKED_FILE | EROFS_FEATURE_INCOMPAT_DEVICE_TABLE)) !== 0) {
      throw corrupt(`unsupported EROFS incompat features 0x${sb.featureIncompat.toString(16)}`);
    }
    if ((sb.featureCompat & EROFS_FEATURE_COMPAT_RAFS_V6) === 0) throw corrupt('EROFS image without the RAFS v6 compat bit');
    this.metaBase = sb.metaBlkaddr * this.blockSize;
    if (this.metaBase > buf.length) throw corrupt(`meta_blkaddr ${sb.metaBlkaddr} beyond the end of the bootstrap`);
    this.rootIno = sb.rootNid;

    const ext = decodeRafsV6ExtSuperBlock(buf);
    this.ext = ext;
    if ((ext.flags & ~RAFS_SUPER_FLAGS_KNOWN) !== 0) throw corrupt(`unknown superblock flags 0x${ext.flags.toString(16)}`);
    this.flags = ext.flags;
    this.compressor = compressorOfFlags(ext.flags);
    this.digester = digesterOfFlags(ext.flags);
    if (!isPow2(ext.chunkSize) || ext.chunkSize < RAFS_MIN_CHUNK_SIZE || ext.chunkSize > RAFS_MAX_CHUNK_SIZE) {
      throw corrupt(`invalid chunk size 0x${ext.chunkSize.toString(16)}`);
    }
    this.chunkSize = ext.chunkSize;

    // blob table
    if (ext.blobTableSize % RAFS_V6_BLOB_ENTRY_SIZE !== 0) throw corrupt(`blob table size ${ext.blobTableSize} not a multiple of 256`);
    const nBlobs = ext.blobTableSize / RAFS_V6_BLOB_ENTRY_SIZE;
    if (nBlobs > RAFS_MAX_BLOBS) throw corrupt(`${nBlobs} blobs exceed the limit of ${RAFS_MAX_BLOBS}`);
    if (nBlobs > 0) {
      if (ext.blobTableOffset < 4096 || ext.blobTableOffset % this.blockSize !== 0) throw corrupt(`invalid blob table offset ${ext.blobTableOffset}`);
      need(buf, ext.blobTableOffset, ext.blobTableSize, 'rafs v6 blob table');
    }
    if (sb.extraDevices !== nBlobs) throw corrupt(`superblock lists ${sb.extraDevices} devices but the blob table has ${nBlobs} blobs`);
    const slotBase = sb.devtSlotoff * EROFS_DEVT_SLOT_SIZE;
    if (nBlobs > 0 && sb.devtSlotoff === 0) throw corrupt('device table offset is 0');
    this.blobs = [];
    const ids = new Set<string>();
    for (let i = 0; i < nBlobs; i++) {
      const e = decodeRafsV6BlobEntry(buf, ext.blobTableOffset + i * RAFS_V6_BLOB_ENTRY_SIZE);
      const slot = decodeErofsDeviceSlot(buf, slotBase + i * EROFS_DEVT_SLOT_SIZE);
      if (e.blobIndex !== i) throw corrupt(`blob table entry ${i} has index ${e.blobIndex}`);
      if (e.chunkSize !== ext.chunkSize) throw corrupt(`blob ${i} chunk size 0x${e.chunkSize.toString(16)} differs from the superblock's`);
      const compressor = COMPRESSOR_BY_CODE[e.compressionAlgo];
      const ciCompressor = COMPRESSOR_BY_CODE[e.ciCompressor];
      const digester = DIGESTER_BY_CODE[e.digestAlgo];
      if (!compressor || !ciCompressor || !digester) throw corrupt(`blob ${i} has invalid algorithm codes`);
      if (e.blobId.length === 0) throw corrupt(`blob ${i} has an empty id`);
      if (slot.blocks === 0) throw corrupt(`device slot ${i} has 0 blocks`);
      if (ids.has(e.blobId) && !/^x{64}$/.test(e.blobId)) throw corrupt(`blob id ${e.blobId} listed twice`);
      ids.add(e.blobId);
      this.blobs.push({
        index: i, blobId: e.blobId, compressor, digester, chunkSize: e.chunkSize, chunkCount: e.chunkCount,
        compressedSize: e.compressedSize, uncompressedSize: e.uncompressedSize, features: e.features, ciOffset: e.ciOffset,
        ciCompressedSize: e.ciCompressedSize, ciUncompressedSize: e.ciUncompressedSize, ciCompressor,
        blobTocSize: e.blobTocSize, blobTocDigest: e.blobTocDigest, deviceBlocks: slot.blocks, mappedBlkaddr: slot.mappedBlkaddr,
      });
    }

    // chunk table
    if (ext.chunkTableSize % RAFS_V6_CHUNK_INFO_SIZE !== 0) throw corrupt(`chunk table size ${ext.chunkTableSize} not a multiple of 80`);
    if (ext.chunkTableSize > 0) {
      need(buf, ext.chunkTableOffset, ext.chunkTableSize, 'rafs v6 chunk table');
      if (ext.chunkTableOffset < 4096) throw corrupt(`invalid chunk table offset ${ext.chunkTableOffset}`);
    }

    // prefetch table
    this.prefetchInodes = [];
    if (ext.prefetchTableOffset !== 0 && ext.prefetchTableSize > 0) {
      this.prefetchInodes = decodePrefetchTable(buf, ext.prefetchTableOffset, ext.prefetchTableSize);
    }
    // the root must be a directory
    const root = this.inode(this.rootIno);
    if ((root.mode & S_IFMT) !== S_IFDIR) throw corrupt(`root nid ${this.rootIno} is not a directory`);
  }

  summary(): BootstrapSummary {
    const sb = this.sb;
    const ext = this.ext;
    return {
      version: 6, flags: this.flags, compressor: this.compressor, digester: this.digester, chunkSize: this.chunkSize,
      inodeCount: sb.inos, rootIno: this.rootIno, blockSize: this.blockSize, size: this.buf.length,
      chunkTableEntries: ext.chunkTableSize / RAFS_V6_CHUNK_INFO_SIZE,
      superblock: {
        magic: `0x${sb.magic.toString(16)}`, featureCompat: `0x${sb.featureCompat.toString(16)}`, blkszbits: sb.blkszbits,
        rootNid: sb.rootNid, inos: sb.inos, blocks: sb.blocks, metaBlkaddr: sb.metaBlkaddr,
        featureIncompat: `0x${sb.featureIncompat.toString(16)}`, extraDevices: sb.extraDevices, devtSlotoff: sb.devtSlotoff,
        flags: `0x${ext.flags.toString(16)}`, blobTableOffset: ext.blobTableOffset, blobTableSize: ext.blobTableSize,
        chunkSize: ext.chunkSize, chunkTableOffset: ext.chunkTableOffset, chunkTableSize: ext.chunkTableSize,
        prefetchTableOffset: ext.prefetchTableOffset, prefetchTableSize: ext.prefetchTableSize,
      },
    };
  }

  private inode(nid: number): V6Inode {
    let n = this.inodeCache.get(nid);
    if (n) return n;
    if (!Number.isSafeInteger(nid) || nid < 0) throw corrupt(`invalid nid ${nid}`);
    const off = this.metaBase + 32 * nid;
    if (!Number.isSafeInteger(off) || off + 32 > this.buf.length) throw corrupt(`nid ${nid} points past the end of the bootstrap`);
    const raw = decodeErofsInode(this.buf, off);
    const isz = erofsInodeSize(raw.format);
    const xattrSize = erofsXattrIbodySize(raw.xattrIcount);
    need(this.buf, off, isz + xattrSize, `inode ${nid} and its xattrs`);
    n = {
      nid, off, format: raw.format, layout: erofsInodeDataLayout(raw.format), mode: raw.mode, size: raw.size, u: raw.u,
      uid: raw.uid, gid: raw.gid, mtime: raw.mtime, mtimeNsec: raw.mtimeNsec, nlink: raw.nlink,
      xattrOff: off + isz, xattrSize, bodyOff: off + isz + xattrSize,
    };
    if (this.inodeCache.size < 1_000_000) this.inodeCache.set(nid, n);
    return n;
  }

  stat(ino: number): RafsStat {
    const n = this.inode(ino);
    const t = n.mode & S_IFMT;
    return {
      ino, mode: n.mode, uid: n.uid, gid: n.gid, size: t === S_IFCHR || t === S_IFBLK ? 0 : n.size, mtime: n.mtime,
      mtimeNsec: n.mtimeNsec, nlink: n.nlink, rdev: t === S_IFCHR || t === S_IFBLK ? n.u : 0,
      blocks: Math.ceil(n.size / 512),
    };
  }

  /** Location of the data block range `[i*bs, ...)` of a dir/symlink: returns [offset, length]. */
  private dataBlock(n: V6Inode, i: number): [number, number] {
    const bs = this.blockSize;
    const start = i * bs;
    const len = Math.min(bs, n.size - start);
    const tail = n.size % bs;
    if (n.layout === EROFS_INODE_FLAT_INLINE && tail !== 0 && start + len === n.size && len === tail) {
      if ((n.bodyOff % bs) + tail > bs) throw corrupt(`inline data of inode ${n.nid} crosses a block boundary`);
      need(this.buf, n.bodyOff, tail, `inline data of inode ${n.nid}`);
      return [n.bodyOff, tail];
    }
    if (n.layout !== EROFS_INODE_FLAT_INLINE && n.layout !== EROFS_INODE_FLAT_PLAIN) {
      throw corrupt(`inode ${n.nid}: data layout ${n.layout} not supported for directories/symlinks`);
    }
    const off = (n.u + i) * bs;
    need(this.buf, off, len, `data block ${i} of inode ${n.nid}`);
    return [off, len];
  }

  private checkDataSize(n: V6Inode): void {
    if (n.size > this.buf.length) throw corrupt(`inode ${n.nid} size ${n.size} exceeds the bootstrap`);
  }

  protected listDir(ino: number): DirEntry[] {
    const n = this.inode(ino);
    if ((n.mode & S_IFMT) !== S_IFDIR) throw new FerryError('INVALID_ARGUMENT', `inode ${ino} is not a directory`);
    this.checkDataSize(n);
    const out: DirEntry[] = [];
    const blocks = Math.ceil(n.size / this.blockSize);
    for (let i = 0; i < blocks; i++) {
      const [off, len] = this.dataBlock(n, i);
      for (const d of decodeErofsDirBlock(this.buf, off, len)) {
        out.push({ name: d.name.toString('utf8'), ino: d.nid, fileType: d.fileType });
      }
    }
    return out;
  }

  readlink(ino: number): string {
    const n = this.inode(ino);
    if ((n.mode & S_IFMT) !== S_IFLNK) throw new FerryError('INVALID_ARGUMENT', `inode ${ino} is not a symlink`);
    this.checkDataSize(n);
    const parts: Buffer[] = [];
    for (let i = 0; i * this.blockSize < n.size; i++) {
      const [off, len] = this.dataBlock(n, i);
      parts.push(this.buf.subarray(off, off + len));
    }
    return Buffer.concat(parts).toString('utf8');
  }

  xattrs(ino: number): Map<string, Buffer> {
    const n = this.inode(ino);
    return decodeErofsXattrs(this.buf, n.xattrOff, n.xattrSize);
  }

  private chunkCount(n: V6Inode): number {
    if ((n.mode & S_IFMT) !== S_IFREG) throw new FerryError('INVALID_ARGUMENT', `inode ${n.nid} is not a regular file`);
    if (n.size === 0) return 0;
    if (n.layout !== EROFS_INODE_CHUNK_BASED) throw corrupt(`regular file inode ${n.nid} is not chunk-based (layout ${n.layout})`);
    const count = Math.ceil(n.size / this.chunkSize);
    need(this.buf, alignUp(n.bodyOff, 8), count * 8, `chunk indexes of inode ${n.nid}`);
    return count;
  }

  private chunkTableIndex(): Map<number, number> {
    if (this.ctIndex) return this.ctIndex;
    const m = new Map<number, number>();
    const base = this.ext.chunkTableOffset;
    const count = this.ext.chunkTableSize / RAFS_V6_CHUNK_INFO_SIZE;
    for (let i = 0; i < count; i++) {
      const off = base + i * RAFS_V6_CHUNK_INFO_SIZE;
      const blobIndex = this.buf.readUInt32LE(off + 32);
      const ci = this.buf.readUInt32LE(off + 72);
      m.set(blobIndex * 0x1000000 + ci, off);
    }
    this.ctIndex = m;
    return m;
  }

  /**
   * The chunk table record at `o` as a location (the fields of RafsChunkInfo a read needs; the
   * digest a view into the bootstrap): shared by chunkLocations and chunkAt, both on hot paths.
   */
  private locationAt(o: number): ChunkLocation {
    const b = this.buf;
    const u64 = (at: number): number => {
      const hi = b.readUInt32LE(at + 4);
      if (hi > 0x1fffff) throw corrupt(`chunk table: offset at ${at} beyond 2^53`);
      return hi * 0x100000000 + b.readUInt32LE(at);
    };
    return {
      blobIndex: b.readUInt32LE(o + 32), chunkIndex: b.readUInt32LE(o + 72),
      compressedOffset: u64(o + 48), compressedSize: b.readUInt32LE(o + 40),
      uncompressedOffset: u64(o + 56), uncompressedSize: b.readUInt32LE(o + 44),
      compressed: (b.readUInt32LE(o + 36) & ChunkFlags.COMPRESSED) !== 0, digest: b.subarray(o, o + 32),
    };
  }

  override chunkLocations(): ChunkLocation[] {
    const count = this.ext.chunkTableSize / RAFS_V6_CHUNK_INFO_SIZE;
    const out: ChunkLocation[] = new Array(count);
    for (let i = 0; i < count; i++) out[i] = this.locationAt(this.ext.chunkTableOffset + i * RAFS_V6_CHUNK_INFO_SIZE);
    return out;
  }

  override chunkTable(): RafsChunkInfo[] {
    const out: RafsChunkInfo[] = [];
    const count = this.ext.chunkTableSize / RAFS_V6_CHUNK_INFO_SIZE;
    for (let i = 0; i < count; i++) out.push(decodeRafsChunkInfo(this.buf, this.ext.chunkTableOffset + i * RAFS_V6_CHUNK_INFO_SIZE));
    return out;
  }

  override setCiTable(blobIndex: number, entries: readonly CiLocation[], digests?: readonly Buffer[]): void {
    if (!this.blobs[blobIndex]) throw new FerryError('INVALID_ARGUMENT', `no blob ${blobIndex}`);
    if (digests && digests.length < entries.length) throw new FerryError('INVALID_ARGUMENT', 'fewer digests than CI entries');
    this.ciTables.set(blobIndex, { entries, digests });
  }

  override canMapChunks(): boolean {
    return this.ext.chunkTableSize > 0 || this.blobs.every((b) => b.chunkCount === 0 || this.ciTables.has(b.index));
  }

  private chunkAt(n: V6Inode, k: number): ChunkRef {
    const idx = decodeRafsV6ChunkIndex(this.buf, alignUp(n.bodyOff, 8) + 8 * k);
    const blob = this.blobs[idx.blobIndex];
    if (!blob) throw corrupt(`inode ${n.nid} chunk ${k} references blob ${idx.blobIndex} of ${this.blobs.length}`);
    const fileOffset = k * this.chunkSize;
    const expectSize = Math.min(this.chunkSize, n.size - fileOffset);
    const uncompressedOffset = idx.blkaddr * this.blockSize;
    const ctOff = this.chunkTableIndex().get(idx.blobIndex * 0x1000000 + idx.ciIndex);
    let ref: ChunkRef;
    if (ctOff !== undefined) {
      // the table index is keyed by (blob, CI index), so the record's own fields name this chunk
      ref = { ...this.locationAt(ctOff), blobId: blob.blobId, fileOffset };
    } else {
      const t = this.ciTables.get(idx.blobIndex);
      const ci = t?.entries[idx.ciIndex];
      if (!ci) throw corrupt(`chunk ${idx.ciIndex} of blob ${idx.blobIndex} (inode ${n.nid}) is not in the chunk table`);
      ref = {
        blobIndex: idx.blobIndex, blobId: blob.blobId, chunkIndex: idx.ciIndex, fileOffset, compressedOffset: ci.compressedOffset,
        compressedSize: ci.compressedSize, uncompressedOffset: ci.uncompressedOffset, uncompressedSize: ci.uncompressedSize,
        compressed: ci.compressed, digest: t?.digests?.[idx.ciIndex] ?? Buffer.alloc(0),
      };
    }
    if (ref.uncompressedOffset !== uncompressedOffset) {
      throw corrupt(`inode ${n.nid} chunk ${k}: block address ${idx.blkaddr} disagrees with uncompressed offset ${ref.uncompressedOffset}`);
    }
    if (ref.uncompressedSize !== expectSize) {
      throw corrupt(`inode ${n.nid} chunk ${k}: uncompressed size ${ref.uncompressedSize}, expected ${expectSize}`);
    }
    if (ref.compressedSize === 0 || ref.compressedSize > RAFS_MAX_CHUNK_SIZE * 2) {
      throw corrupt(`inode ${n.nid} chunk ${k}: invalid compressed size ${ref.compressedSize}`);
    }
    return ref;
  }

  chunks(ino: number): ChunkRef[] {
    const n = this.inode(ino);
    const count = this.chunkCount(n);
    const out: ChunkRef[] = new Array(count);
    for (let k = 0; k < count; k++) out[k] = this.chunkAt(n, k);
    return out;
  }

  mapRead(ino: number, offset: number, length: number): ChunkRef[] {
    const n = this.inode(ino);
    const count = this.chunkCount(n);
    if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0) {
      throw new FerryError('INVALID_ARGUMENT', `invalid read range ${offset}+${length}`);
    }
    const span = fixedChunkSpan(n.size, this.chunkSize, offset, length);
    const out: ChunkRef[] = [];
    const last = Math.min(span.end, count);
    for (let k = span.first; k < last; k++) out.push(this.chunkAt(n, k));
    return out;
  }
}

interface V5Record {
  index: number;
  off: number;
  inode: RafsV5Inode;
  name: string;
  symlink: string | undefined;
  xattrOff: number;
  chunksOff: number;
}

class V5Bootstrap extends BaseBootstrap {
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
    if (sb.version !== RAFS_V5_SUPER_VERSION && sb.version !== RAFS_V4_SUPER_VERSION) throw corrupt(`unsupported v5 version 0x${sb.version.toString(16)}`);
    if (sb.sbSize !== RAFS_V5_SUPERBLOCK_SIZE || buf.length <= RAFS_V5_SUPERBLOCK_SIZE) throw corrupt('invalid v5 superblock size');
    if (!isPow2(sb.blockSize) || sb.blockSize < RAFS_MIN_CHUNK_SIZE || (sb.blockSize > RAFS_MAX_CHUNK_SIZE && sb.blockSize !== 4 << 20)) {
      throw corrupt(`invalid v5 chunk size 0x${sb.blockSize.toString(16)}`);
    }
    if ((sb.flags & ~RAFS_SUPER_FLAGS_KNOWN) !== 0) throw corrupt(`unknown superblock flags 0x${sb.flags.toString(16)}`);
    this.flags = sb.flags;
    this.compressor = compressorOfFlags(sb.flags);
    this.digester = digesterOfFlags(sb.flags, true);
    this.chunkSize = sb.blockSize;
    if (sb.inodeTableEntries === 0) throw corrupt('empty inode table');
    need(buf, sb.inodeTableOffset, sb.inodeTableEntries * 4, 'rafs v5 inode table');
    if (sb.inodesCount > sb.inodeTableEntries) throw corrupt(`inode count ${sb.inodesCount} exceeds the inode table (${sb.inodeTableEntries})`);
    this.table = new Uint32Array(buf.buffer.slice(buf.byteOffset + sb.inodeTableOffset, buf.byteOffset + sb.inodeTableOffset + sb.inodeTableEntries * 4));
    if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) throw new FerryError('INTERNAL', 'big-endian hosts are not supported');

    const entries = sb.blobTableSize > 0 ? decodeRafsV5BlobTable(buf, sb.blobTableOffset, sb.blobTableSize) : [];
    if (entries.length > RAFS_MAX_BLOBS) throw corrupt(`${entries.length} blobs exceed the limit`);
    const nExt = sb.extendedBlobTableEntries;
    if (nExt > 0) need(buf, sb.extendedBlobTableOffset, nExt * RAFS_V5_EXT_BLOB_ENTRY_SIZE, 'rafs v5 extended blob table');
    if (nExt > 0 && nExt < entries.length) throw corrupt(`extended blob table (${nExt}) shorter than the blob table (${entries.length})`);
    this.blobs = entries.map((e, i) => {
      const x = nExt > 0 ? decodeRafsV5ExtBlobEntry(buf, sb.extendedBlobTableOffset + i * RAFS_V5_EXT_BLOB_ENTRY_SIZE) : undefined;
      return {
        index: i, blobId: e.blobId, compressor: this.compressor, digester: this.digester, chunkSize: sb.blockSize,
        chunkCount: x?.chunkCount ?? 0, compressedSize: x?.compressedSize ?? 0, uncompressedSize: x?.uncompressedSize ?? 0,
        features: 0, ciOffset: 0, ciCompressedSize: 0, ciUncompressedSize: 0, ciCompressor: 'none' as Compressor, blobTocSize: 0,
        blobTocDigest: Buffer.alloc(32), deviceBlocks: 0, mappedBlkaddr: 0,
      };
    });
    this.prefetchInodes = sb.prefetchTableEntries > 0 && sb.prefetchTableOffset !== 0
      ? decodePrefetchTable(buf, sb.prefetchTableOffset, sb.prefetchTableEntries * 4) : [];
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
      version: 5, flags: this.flags, compressor: this.compressor, digester: this.digester, chunkSize: this.chunkSize,
      inodeCount: sb.inodesCount, rootIno: 1, blockSize: 4096, size: this.buf.length, chunkTableEntries: 0,
      superblock: {
        magic: `0x${sb.magic.toString(16)}`, version: `0x${sb.version.toString(16)}`, sbSize: sb.sbSize, blockSize: sb.blockSize,
        flags: `0x${sb.flags.toString(16)}`, inodesCount: sb.inodesCount, inodeTableOffset: sb.inodeTableOffset,
        inodeTableEntries: sb.inodeTableEntries, prefetchTableOffset: sb.prefetchTableOffset,
        prefetchTableEntries: sb.prefetchTableEntries, blobTableOffset: sb.blobTableOffset, blobTableSize: sb.blobTableSize,
        extendedBlobTableOffset: sb.extendedBlobTableOffset, extendedBlobTableEntries: sb.extendedBlobTableEntries,
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
      ino: inode.ino, mode: inode.mode, uid: inode.uid, gid: inode.gid, size: inode.size, mtime: inode.mtime,
      mtimeNsec: inode.mtimeNsec, nlink: inode.nlink, rdev: t === S_IFCHR || t === S_IFBLK ? inode.rdev : 0, blocks: inode.blocks,
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
        blobIndex: c.blobIndex, blobId: blob.blobId, chunkIndex: c.index, fileOffset: c.fileOffset,
        compressedOffset: c.compressedOffset, compressedSize: c.compressedSize, uncompressedOffset: c.uncompressedOffset,
        uncompressedSize: c.uncompressedSize, compressed: (c.flags & ChunkFlags.COMPRESSED) !== 0, digest: c.blockId,
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

/** True when the superblock flags say uid/gid are stored explicitly. */
export function hasExplicitUidGid(flags: number): boolean {
  return (flags & RafsSuperFlags.EXPLICIT_UID_GID) !== 0;
}
