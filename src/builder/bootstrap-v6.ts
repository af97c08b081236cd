/**
 * @module builder/bootstrap-v6
 * Writes a RAFS v6 bootstrap (an EROFS image with the Nydus extended superblock, device/blob tables,
 * chunk-based files and the 80-byte chunk table) from an in-memory tree. Layout (as nydus-image lays
 * out a RAFS v6 bootstrap): block 0 holds the superblocks and device slots, then the blob table and
 * prefetch table, then one zero block so the root gets nid 128, then inodes placed depth-first (a
 * directory, its non-directory children, then its sub-directories), then the chunk table. Placement
 * obeys the Linux EROFS driver's rules: 32-byte aligned inodes, an inode with its xattrs never
 * crosses a block, inline tails and dirents stay in one block, total size a multiple of 4096.
 * (nydus-image's packing of inodes into free fragments of earlier blocks is not reproduced: the
 * result is readable by every reader but not byte-identical to nydus-image's.)
 */
import { FerryError, MODE_OF_TYPE } from '../core/index.js';
import {
  EROFS_SUPER_OFFSET,
  EROFS_SUPER_MAGIC,
  EROFS_BLOCK_SIZE,
  EROFS_INODE_EXTENDED_SIZE,
  EROFS_INODE_CHUNK_BASED,
  EROFS_INODE_FLAT_INLINE,
  EROFS_INODE_FLAT_PLAIN,
  EROFS_FEATURE_COMPAT_RAFS_V6,
  RAFS_V6_FEATURE_INCOMPAT,
  RAFS_V6_DEVT_SLOTOFF,
  EROFS_DEVT_SLOT_SIZE,
  EROFS_FT_DIR,
  erofsIFormat,
  fileTypeOfMode,
  encodeErofsXattrs,
  erofsDirSize,
  encodeErofsDirData,
  encodeErofsChunkFormat,
  encodeRdev,
  writeErofsSuperBlock,
  emptyErofsSuperBlock,
  writeErofsInode,
  writeErofsDeviceSlot,
  type ErofsNamedDirent,
} from '../format/erofs/index.js';
import {
  RAFS_V6_EXT_SUPER_OFFSET,
  RAFS_V6_DEVICE_TABLE_OFFSET,
  RAFS_V6_BLOB_ENTRY_SIZE,
  RAFS_V6_CHUNK_INFO_SIZE,
  RAFS_MAX_BLOBS,
  RafsSuperFlags,
  BlobFeatures,
  ChunkFlags,
  COMPRESSOR_CODES,
  DIGESTER_CODES,
  compressorFlag,
  digesterFlag,
  writeRafsV6ExtSuperBlock,
  writeRafsV6BlobEntry,
  rafsV6BlobEntry,
  writeRafsChunkInfo,
  writeRafsV6ChunkIndex,
  blobsCarryTables,
} from '../format/rafs/index.js';
import type { BlobDesc, ChunkRef, Digester, Inode } from './tree.js';
import type { CompressorName } from '../format/compress/index.js';

const BLK = EROFS_BLOCK_SIZE;
const DOT = Buffer.from('.');
const DOTDOT = Buffer.from('..');
const NO_XATTRS = { body: Buffer.alloc(0), icount: 0 };
const alignUp = (v: number, a: number): number => Math.ceil(v / a) * a;

export interface BootstrapOptions {
  chunkSize: number;
  compressor: CompressorName;
  digester: Digester;
  /** blobs in blob-table order; blobs referenced by chunks but missing here are appended */
  blobs?: BlobDesc[];
  /** inodes whose nids form the prefetch table, in order */
  prefetch?: Inode[];
  /** keep INLINED_FS_META in blob entries (the bootstrap embedded in its own blob); cleared otherwise */
  keepInlineMeta?: boolean;
  /**
   * v6: leave the chunk table out when every blob carries its own CI table, digest array and ToC
   * (readers then map chunks through those, as nydusd does for INLINED_CHUNK_DIGEST images); the
   * table is written otherwise. Default false: upstream `nydus-image check/merge` need the table.
   */
  omitChunkTable?: boolean;
}

interface Placed {
  node: Inode;
  parent: Placed | null;
  nid: number;
  ino: number;
  offset: number; // relative to meta_addr
  format: number;
  xattrBody: Buffer;
  xattrIcount: number;
  /** directories: `.`, `..` and children, sorted by name bytes (child null = `.`/`..`) */
  dirents?: { name: Buffer; child: Inode | null }[];
  dataStart: number; // relative to meta_addr; -1 when none
  inlineTail: number; // bytes of data stored after the inode
  nlink: number;
  entries: number; // directory entries referring to it
}

/**
 * Collects the blob list: `preferred` first, then blobs referenced by chunks in tree order. Blobs
 * with the same id (e.g. an identical layer built on top of itself) collapse into one entry, since
 * nydusd requires unique device ids. Returns the list and the index of every BlobDesc object.
 */
export function collectBlobs(root: Inode, preferred: BlobDesc[] = []): { blobs: BlobDesc[]; index: Map<BlobDesc, number> } {
  const blobs: BlobDesc[] = [];
  const index = new Map<BlobDesc, number>();
  const byId = new Map<string, number>();
  const add = (b: BlobDesc): void => {
    if (index.has(b)) return;
    const same = byId.get(b.blobId);
    if (same !== undefined) {
      index.set(b, same);
      return;
    }
    byId.set(b.blobId, blobs.length);
    index.set(b, blobs.length);
    blobs.push(b);
  };
  preferred.forEach(add);
  const visit = (n: Inode): void => {
    if (n.chunks) for (const c of n.chunks) add(c.blob);
    if (n.children) for (const c of n.children.values()) visit(c);
  };
  visit(root);
  return { blobs, index };
}

/**
 * `i_u` of a regular file. When a multi-chunk file's chunks lie back to back in one blob's
 * uncompressed space, the header announces one chunk of `next_power_of_two(size)` (what current
 * nydus-image does): the kernel then maps the file as a single extent. All chunk indexes are still
 * written; nydusd and Ferry's reader use the superblock chunk size.
 */
function fileChunkFormat(n: Inode, chunkSize: number, normal: number): number {
  const chunks = n.chunks ?? [];
  if (chunks.length < 2) return normal;
  for (let i = 1; i < chunks.length; i++) {
    const a = chunks[i - 1]!;
    const b = chunks[i]!;
    if (b.blob !== a.blob || b.uncompressedOffset !== a.uncompressedOffset + chunkSize) return normal;
  }
  let pow = chunkSize;
  while (pow < n.size) pow *= 2;
  return encodeErofsChunkFormat(pow);
}

export function writeBootstrapV6(root: Inode, opts: BootstrapOptions): Buffer {
  if (root.type !== 'dir') throw new FerryError('INVALID_ARGUMENT', 'bootstrap root must be a directory');
  const { blobs, index: blobIndex } = collectBlobs(root, opts.blobs);
  if (blobs.length > RAFS_MAX_BLOBS) throw new FerryError('RESOURCE_EXHAUSTED', `too many blobs (${blobs.length} > ${RAFS_MAX_BLOBS})`);
  for (const b of blobs) {
    if (b.chunkSize !== opts.chunkSize) {
      throw new FerryError(
        'INVALID_ARGUMENT',
        `blob ${b.blobId}: chunk size 0x${b.chunkSize.toString(16)} differs from the image chunk size 0x${opts.chunkSize.toString(16)}`,
      );
    }
    if (!/^[0-9a-f]{64}$/.test(b.blobId) && !(opts.keepInlineMeta && b.blobId === 'x'.repeat(64)))
      throw new FerryError('INVALID_ARGUMENT', `blob id ${JSON.stringify(b.blobId)} is not 64 hex digits`);
  }
  const chunkFormat = encodeErofsChunkFormat(opts.chunkSize);
  const N = blobs.length;
  const prefetchNodes = N > 0 ? (opts.prefetch ?? []) : [];
  const K = prefetchNodes.length;
  // nydusd requires blob_table_offset ≥ 1408 + blob_table_size (it measures the device-table end
  // with the 256-byte blob-entry size), which is stricter than the 128-byte device slots need
  const blobTableOffset = Math.max(
    BLK,
    alignUp(RAFS_V6_DEVICE_TABLE_OFFSET + Math.max(EROFS_DEVT_SLOT_SIZE, RAFS_V6_BLOB_ENTRY_SIZE) * N, BLK),
  );
  const prefetchOffset = blobTableOffset + RAFS_V6_BLOB_ENTRY_SIZE * N;
  const metaAddr = N === 0 ? 0 : alignUp(prefetchOffset + 4 * K, BLK);

  // ---- layout ----
  const placed = new Map<Inode, Placed>();
  const order: Placed[] = [];
  let pos = BLK; // relative to metaAddr: root at metaAddr + 4096 → nid 128
  let nextIno = 1;
  let entries = 0;
  let hasXattr = false;

  const reserve = (len: number): number => {
    if (len <= BLK && (pos % BLK) + len > BLK) pos = alignUp(pos, BLK);
    const at = pos;
    pos = alignUp(pos + len, 32);
    return at;
  };

  const place = (node: Inode, parent: Placed | null): Placed => {
    const { body, icount } = node.xattrs.size ? encodeErofsXattrs(node.xattrs) : NO_XATTRS;
    if (icount) hasXattr = true;
    const ibody = EROFS_INODE_EXTENDED_SIZE + body.length;
    if (ibody > BLK) throw new FerryError('INVALID_ARGUMENT', `xattrs too large for one inode (${body.length} bytes)`);
    const p: Placed = {
      node,
      parent,
      nid: 0,
      ino: nextIno++,
      offset: 0,
      format: 0,
      xattrBody: body,
      xattrIcount: icount,
      dataStart: -1,
      inlineTail: 0,
      nlink: 1,
      entries: 1,
    };
    if (node.type === 'file') {
      const n = node.chunks?.length ?? 0;
      const expect = Math.ceil(node.size / opts.chunkSize);
      if (n !== expect) throw new FerryError('INTERNAL', `file of ${node.size} bytes has ${n} chunks, expected ${expect}`);
      p.format = erofsIFormat(1, EROFS_INODE_CHUNK_BASED);
      p.offset = reserve(alignUp(ibody, 8) + 8 * n);
    } else if (node.type === 'dir' || node.type === 'symlink') {
      let d: number;
      if (node.type === 'dir') {
        const ents: { name: Buffer; child: Inode | null }[] = [
          { name: DOT, child: null },
          { name: DOTDOT, child: null },
        ];
        for (const [k, c] of node.children!) ents.push({ name: Buffer.from(k, 'utf8'), child: c });
        ents.sort((a, b) => Buffer.compare(a.name, b.name));
        p.dirents = ents;
        d = erofsDirSize(ents.map((e) => e.name));
      } else {
        d = node.target!.length;
        if (d === 0 || d >= BLK) throw new FerryError('INVALID_ARGUMENT', `symlink target of ${d} bytes (must be 1..4095)`);
      }
      const tail = d % BLK;
      if (tail !== 0 && ibody + tail <= BLK) {
        p.format = erofsIFormat(1, EROFS_INODE_FLAT_INLINE);
        p.offset = reserve(ibody + tail);
        p.inlineTail = tail;
        if (d > tail) {
          pos = alignUp(pos, BLK);
          p.dataStart = pos;
          pos += d - tail;
        }
      } else {
        p.format = erofsIFormat(1, EROFS_INODE_FLAT_PLAIN);
        p.offset = reserve(ibody);
        pos = alignUp(pos, BLK);
        p.dataStart = pos;
        pos += alignUp(d, BLK);
      }
    } else {
      p.format = erofsIFormat(1, EROFS_INODE_FLAT_PLAIN);
      p.offset = reserve(ibody);
    }
    p.nid = p.offset / 32;
    placed.set(node, p);
    order.push(p);
    return p;
  };

  const layoutDir = (dirP: Placed): void => {
    const subdirs: Placed[] = [];
    for (const { child } of dirP.dirents!) {
      if (!child) continue;
      entries++;
      const seen = placed.get(child);
      if (seen) {
        if (child.type === 'dir') throw new FerryError('INVALID_ARGUMENT', 'a directory appears twice in the tree');
        seen.entries++;
        continue;
      }
      if (child.type === 'dir') subdirs.push(place(child, dirP));
      else place(child, dirP);
    }
    for (const s of subdirs) layoutDir(s);
  };

  entries = 1;
  const rootP = place(root, null);
  if (rootP.nid !== 128 && metaAddr !== 0) throw new FerryError('INTERNAL', `root nid ${rootP.nid}`);
  layoutDir(rootP);

  for (const p of order) {
    if (p.node.type === 'dir') {
      let sub = 0;
      for (const c of p.node.children!.values()) if (c.type === 'dir') sub++;
      p.nlink = 2 + sub;
    } else {
      p.nlink = p.entries;
    }
  }

  // ---- chunk table (unique per digest+blob, sorted by digest then blob index + 1) ----
  const all: { ref: ChunkRef; bi: number }[] = [];
  for (const p of order) for (const c of p.node.chunks ?? []) all.push({ ref: c, bi: blobIndex.get(c.blob)! });
  all.sort((a, b) => Buffer.compare(a.ref.digest, b.ref.digest) || a.bi - b.bi);
  const omit = opts.omitChunkTable === true && blobsCarryTables(blobs.map((b) => ({ ...b, blobTocSize: b.tocSize })));
  const chunkList = omit ? [] : all.filter((x, i) => i === 0 || x.bi !== all[i - 1]!.bi || !x.ref.digest.equals(all[i - 1]!.ref.digest));

  const inodeEnd = metaAddr + alignUp(pos, BLK);
  const chunkTableOffset = chunkList.length ? inodeEnd : 0;
  const chunkTableSize = RAFS_V6_CHUNK_INFO_SIZE * chunkList.length;
  const fileSize = alignUp(inodeEnd + chunkTableSize, BLK);
  const out = Buffer.alloc(fileSize);

  // ---- inodes and their data ----
  for (const p of order) {
    const n = p.node;
    const abs = metaAddr + p.offset;
    let size = 0;
    let u = 0;
    if (n.type === 'file') {
      size = n.size;
      u = fileChunkFormat(n, opts.chunkSize, chunkFormat);
    } else if (n.type === 'symlink') size = n.target!.length;
    else if (n.type === 'char' || n.type === 'block') u = encodeRdev(n.rdevMajor ?? 0, n.rdevMinor ?? 0);
    let data: Buffer | undefined;
    if (n.type === 'dir') {
      const ents: ErofsNamedDirent[] = p.dirents!.map(({ name, child }) =>
        child
          ? { name, nid: placed.get(child)!.nid, fileType: fileTypeOfMode(MODE_OF_TYPE[child.type]) }
          : { name, nid: name.length === 1 || !p.parent ? p.nid : p.parent.nid, fileType: EROFS_FT_DIR },
      );
      data = encodeErofsDirData(ents);
      size = data.length;
    } else if (n.type === 'symlink') {
      data = n.target!;
    }
    if (p.dataStart >= 0) u = (metaAddr + p.dataStart) / BLK;
    writeErofsInode(out, abs, {
      format: p.format,
      xattrIcount: p.xattrIcount,
      mode: MODE_OF_TYPE[n.type] | (n.perm & 0o7777),
      size,
      u,
      ino: p.ino,
      uid: n.uid,
      gid: n.gid,
      mtime: n.mtime,
      mtimeNsec: n.mtimeNsec,
      nlink: p.nlink,
    });
    p.xattrBody.copy(out, abs + EROFS_INODE_EXTENDED_SIZE);
    const ibody = EROFS_INODE_EXTENDED_SIZE + p.xattrBody.length;
    if (n.type === 'file') {
      let e = abs + alignUp(ibody, 8);
      for (const c of n.chunks ?? []) {
        writeRafsV6ChunkIndex(out, e, { blobIndex: blobIndex.get(c.blob)!, ciIndex: c.chunkIndex, blkaddr: c.uncompressedOffset / BLK });
        e += 8;
      }
    } else if (data) {
      const full = data.length - p.inlineTail;
      if (p.dataStart >= 0) data.copy(out, metaAddr + p.dataStart, 0, full);
      if (p.inlineTail) data.copy(out, abs + ibody, full);
    }
  }

  // ---- chunk table ----
  chunkList.forEach(({ ref, bi }, i) => {
    writeRafsChunkInfo(out, chunkTableOffset + i * RAFS_V6_CHUNK_INFO_SIZE, {
      blockId: ref.digest,
      blobIndex: bi,
      flags: ref.compressed ? ChunkFlags.COMPRESSED : 0,
      compressedSize: ref.compressedSize,
      uncompressedSize: ref.uncompressedSize,
      compressedOffset: ref.compressedOffset,
      uncompressedOffset: ref.uncompressedOffset,
      fileOffset: ref.fileOffset,
      index: ref.chunkIndex,
      crc32: 0,
    });
  });

  // ---- superblocks, device slots, blob table, prefetch table ----
  const sb = emptyErofsSuperBlock();
  Object.assign(sb, {
    magic: EROFS_SUPER_MAGIC,
    featureCompat: EROFS_FEATURE_COMPAT_RAFS_V6,
    blkszbits: 12,
    rootNid: rootP.nid,
    inos: entries,
    blocks: blobs.reduce((s, b) => s + b.uncompressedSize / BLK, 0),
    metaBlkaddr: metaAddr / BLK,
    featureIncompat: RAFS_V6_FEATURE_INCOMPAT,
    extraDevices: N,
    devtSlotoff: RAFS_V6_DEVT_SLOTOFF,
  });
  writeErofsSuperBlock(out, EROFS_SUPER_OFFSET, sb);
  const allDigests = N > 0 && blobs.every((b) => (b.features & BlobFeatures.INLINED_CHUNK_DIGEST) !== 0);
  const flags =
    compressorFlag(opts.compressor) |
    digesterFlag(opts.digester) |
    RafsSuperFlags.EXPLICIT_UID_GID |
    (hasXattr ? RafsSuperFlags.HAS_XATTR : 0) |
    (allDigests ? RafsSuperFlags.INLINED_CHUNK_DIGEST : 0) |
    RafsSuperFlags.ENCRYPTION_NONE;
  writeRafsV6ExtSuperBlock(out, RAFS_V6_EXT_SUPER_OFFSET, {
    flags: flags >>> 0,
    blobTableOffset,
    blobTableSize: RAFS_V6_BLOB_ENTRY_SIZE * N,
    chunkSize: opts.chunkSize,
    chunkTableOffset,
    chunkTableSize,
    prefetchTableOffset: K ? prefetchOffset : 0,
    prefetchTableSize: 4 * K,
  });
  let mapped = alignUp(fileSize, 0x80000);
  blobs.forEach((b, i) => {
    const blocks = b.uncompressedSize / BLK;
    if (!Number.isInteger(blocks) || blocks < 1)
      throw new FerryError(
        'INVALID_ARGUMENT',
        `blob ${b.blobId}: uncompressed size ${b.uncompressedSize} is not a positive multiple of 4096`,
      );
    writeErofsDeviceSlot(out, RAFS_V6_DEVICE_TABLE_OFFSET + i * EROFS_DEVT_SLOT_SIZE, {
      tag: b.blobId,
      blocks,
      mappedBlkaddr: mapped / BLK,
    });
    mapped = alignUp(mapped + b.uncompressedSize, 0x80000);
    writeRafsV6BlobEntry(
      out,
      blobTableOffset + i * RAFS_V6_BLOB_ENTRY_SIZE,
      rafsV6BlobEntry({
        blobId: b.blobId,
        blobIndex: i,
        chunkSize: b.chunkSize,
        chunkCount: b.chunkCount,
        compressionAlgo: COMPRESSOR_CODES[b.compressor],
        digestAlgo: DIGESTER_CODES[b.digester],
        features: (opts.keepInlineMeta ? b.features : b.features & ~BlobFeatures.INLINED_FS_META) >>> 0,
        compressedSize: b.compressedSize,
        uncompressedSize: b.uncompressedSize,
        blobTocSize: b.tocSize,
        ciCompressor: b.ciCompressor,
        ciOffset: b.ciOffset,
        ciCompressedSize: b.ciCompressedSize,
        ciUncompressedSize: b.ciUncompressedSize,
        blobTocDigest: b.tocDigest,
        blobMetaDigest: b.metaDigest ?? Buffer.alloc(32),
        blobMetaSize: b.metaSize ?? 0,
      }),
    );
  });
  prefetchNodes.forEach((node, i) => {
    const p = placed.get(node);
    if (!p) throw new FerryError('INTERNAL', 'prefetch node not in tree');
    out.writeUInt32LE(p.nid, prefetchOffset + 4 * i);
  });
  return out;
}
