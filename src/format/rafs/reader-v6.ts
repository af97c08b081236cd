/**
 * @module format/rafs/reader-v6
 * The RAFS v6 reader: an EROFS image with the Nydus extended superblock (blob table, device slots,
 * chunk-based files whose 8-byte chunk indexes point into the 80-byte chunk table — or, in
 * bootstraps without a chunk table, into each blob's CI table), as nydus's `direct_v6` reads it.
 * Inode numbers are EROFS nids (root 128, hardlinks share one nid).
 */
import { FerryError } from '../../core/index.js';
import {
  alignUp,
  need,
  EROFS_FEATURE_COMPAT_RAFS_V6,
  EROFS_FEATURE_INCOMPAT_CHUNKED_FILE,
  EROFS_FEATURE_INCOMPAT_DEVICE_TABLE,
  EROFS_INODE_CHUNK_BASED,
  EROFS_INODE_FLAT_INLINE,
  EROFS_INODE_FLAT_PLAIN,
  EROFS_SUPER_OFFSET,
  EROFS_DEVT_SLOT_SIZE,
  S_IFBLK,
  S_IFCHR,
  S_IFDIR,
  S_IFLNK,
  S_IFMT,
  S_IFREG,
  erofsInodeDataLayout,
  decodeErofsDeviceSlot,
  decodeErofsDirBlock,
  decodeErofsInode,
  erofsInodeSize,
  erofsXattrIbodySize,
  decodeErofsSuperBlock,
  type ErofsSuperBlock,
  decodeErofsXattrs,
} from '../erofs/index.js';
import { fixedChunkSpan } from './read-plan.js';
import {
  BaseBootstrap,
  corrupt,
  isPow2,
  type BlobInfo,
  type BootstrapSummary,
  type ChunkLocation,
  type ChunkRef,
  type CiLocation,
  type DirEntry,
  type OpenBootstrapOptions,
  type RafsStat,
} from './reader-base.js';
import {
  COMPRESSOR_BY_CODE,
  ChunkFlags,
  DIGESTER_BY_CODE,
  RAFS_MAX_BLOBS,
  RAFS_MAX_CHUNK_SIZE,
  RAFS_MIN_CHUNK_SIZE,
  RAFS_SUPER_FLAGS_KNOWN,
  RAFS_V6_BLOB_ENTRY_SIZE,
  RAFS_V6_CHUNK_INFO_SIZE,
  compressorOfFlags,
  decodePrefetchTable,
  decodeRafsChunkInfo,
  decodeRafsV6BlobEntry,
  decodeRafsV6ChunkIndex,
  decodeRafsV6ExtSuperBlock,
  digesterOfFlags,
  type Compressor,
  type Digester,
  type RafsChunkInfo,
  type RafsV6ExtSuperBlock,
} from './v6.js';

/** Chunk table index key of (blob, CI index): CI indexes stay below 2^24 (nydus: RAFS_MAX_CHUNKS_PER_BLOB). */
const CI_INDEX_RANGE = 0x1000000;
function chunkKey(blobIndex: number, ciIndex: number): number {
  return blobIndex * CI_INDEX_RANGE + ciIndex;
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

export class V6Bootstrap extends BaseBootstrap {
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
      if (ext.blobTableOffset < 4096 || ext.blobTableOffset % this.blockSize !== 0)
        throw corrupt(`invalid blob table offset ${ext.blobTableOffset}`);
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
        index: i,
        blobId: e.blobId,
        compressor,
        digester,
        chunkSize: e.chunkSize,
        chunkCount: e.chunkCount,
        compressedSize: e.compressedSize,
        uncompressedSize: e.uncompressedSize,
        features: e.features,
        ciOffset: e.ciOffset,
        ciCompressedSize: e.ciCompressedSize,
        ciUncompressedSize: e.ciUncompressedSize,
        ciCompressor,
        blobTocSize: e.blobTocSize,
        blobTocDigest: e.blobTocDigest,
        deviceBlocks: slot.blocks,
        mappedBlkaddr: slot.mappedBlkaddr,
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
      version: 6,
      flags: this.flags,
      compressor: this.compressor,
      digester: this.digester,
      chunkSize: this.chunkSize,
      inodeCount: sb.inos,
      rootIno: this.rootIno,
      blockSize: this.blockSize,
      size: this.buf.length,
      chunkTableEntries: ext.chunkTableSize / RAFS_V6_CHUNK_INFO_SIZE,
      superblock: {
        magic: `0x${sb.magic.toString(16)}`,
        featureCompat: `0x${sb.featureCompat.toString(16)}`,
        blkszbits: sb.blkszbits,
        rootNid: sb.rootNid,
        inos: sb.inos,
        blocks: sb.blocks,
        metaBlkaddr: sb.metaBlkaddr,
        featureIncompat: `0x${sb.featureIncompat.toString(16)}`,
        extraDevices: sb.extraDevices,
        devtSlotoff: sb.devtSlotoff,
        flags: `0x${ext.flags.toString(16)}`,
        blobTableOffset: ext.blobTableOffset,
        blobTableSize: ext.blobTableSize,
        chunkSize: ext.chunkSize,
        chunkTableOffset: ext.chunkTableOffset,
        chunkTableSize: ext.chunkTableSize,
        prefetchTableOffset: ext.prefetchTableOffset,
        prefetchTableSize: ext.prefetchTableSize,
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
      nid,
      off,
      format: raw.format,
      layout: erofsInodeDataLayout(raw.format),
      mode: raw.mode,
      size: raw.size,
      u: raw.u,
      uid: raw.uid,
      gid: raw.gid,
      mtime: raw.mtime,
      mtimeNsec: raw.mtimeNsec,
      nlink: raw.nlink,
      xattrOff: off + isz,
      xattrSize,
      bodyOff: off + isz + xattrSize,
    };
    if (this.inodeCache.size < 1_000_000) this.inodeCache.set(nid, n);
    return n;
  }

  stat(ino: number): RafsStat {
    const n = this.inode(ino);
    const t = n.mode & S_IFMT;
    return {
      ino,
      mode: n.mode,
      uid: n.uid,
      gid: n.gid,
      size: t === S_IFCHR || t === S_IFBLK ? 0 : n.size,
      mtime: n.mtime,
      mtimeNsec: n.mtimeNsec,
      nlink: n.nlink,
      rdev: t === S_IFCHR || t === S_IFBLK ? n.u : 0,
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
      m.set(chunkKey(blobIndex, ci), off);
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
      blobIndex: b.readUInt32LE(o + 32),
      chunkIndex: b.readUInt32LE(o + 72),
      compressedOffset: u64(o + 48),
      compressedSize: b.readUInt32LE(o + 40),
      uncompressedOffset: u64(o + 56),
      uncompressedSize: b.readUInt32LE(o + 44),
      compressed: (b.readUInt32LE(o + 36) & ChunkFlags.COMPRESSED) !== 0,
      digest: b.subarray(o, o + 32),
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
    const ctOff = this.chunkTableIndex().get(chunkKey(idx.blobIndex, idx.ciIndex));
    let ref: ChunkRef;
    if (ctOff !== undefined) {
      // the table index is keyed by (blob, CI index), so the record's own fields name this chunk
      ref = { ...this.locationAt(ctOff), blobId: blob.blobId, fileOffset };
    } else {
      const t = this.ciTables.get(idx.blobIndex);
      const ci = t?.entries[idx.ciIndex];
      if (!ci) throw corrupt(`chunk ${idx.ciIndex} of blob ${idx.blobIndex} (inode ${n.nid}) is not in the chunk table`);
      ref = {
        blobIndex: idx.blobIndex,
        blobId: blob.blobId,
        chunkIndex: idx.ciIndex,
        fileOffset,
        compressedOffset: ci.compressedOffset,
        compressedSize: ci.compressedSize,
        uncompressedOffset: ci.uncompressedOffset,
        uncompressedSize: ci.uncompressedSize,
        compressed: ci.compressed,
        digest: t?.digests?.[idx.ciIndex] ?? Buffer.alloc(0),
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
