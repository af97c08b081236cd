/**
 * @module builder/bootstrap-v5
 * Writes a RAFS v5 bootstrap (nydus-image's v5 layout): 8192-byte superblock, inode table (u32
 * offset >> 3 per inode index), prefetch table, string blob table and 64-byte extended blob table,
 * then one 128-byte inode record per path in breadth-first order (the children of a directory are
 * consecutive and sorted by name, found by `child_index`/`child_count`), each followed by its name,
 * symlink target, xattr table and 80-byte chunk records, all 8-byte aligned. Hardlinks get one
 * record per path sharing `i_ino` (the first link's index) with the HARDLINK flag.
 */
import { FerryError, MODE_OF_TYPE } from '../core/index.js';
import { encodeRdev } from '../format/erofs/index.js';
import {
  RAFS_V5_SUPER_MAGIC,
  RAFS_V5_SUPER_VERSION,
  RAFS_V5_SUPERBLOCK_SIZE,
  RAFS_V5_INODE_SIZE,
  RAFS_V5_EXT_BLOB_ENTRY_SIZE,
  RAFS_V6_CHUNK_INFO_SIZE,
  RAFS_MAX_BLOBS,
  RafsV5InodeFlags,
  RafsSuperFlags,
  ChunkFlags,
  compressorFlag,
  digesterFlag,
  rafsV5Align,
  writeRafsV5SuperBlock,
  encodeRafsV5BlobTable,
  writeRafsV5ExtBlobEntry,
  writeRafsV5Inode,
  encodeRafsV5Xattrs,
  writeRafsChunkInfo,
} from '../format/rafs/index.js';
import { chunkDigest } from './digest.js';
import { collectBlobs, type BootstrapOptions } from './bootstrap-v6.js';
import type { Inode } from './tree.js';

interface Rec {
  node: Inode;
  name: Buffer;
  index: number;
  parent: number;
  childIndex: number;
  childCount: number;
  xattrs: Buffer;
  offset: number;
}

export function writeBootstrapV5(root: Inode, opts: BootstrapOptions): Buffer {
  if (root.type !== 'dir') throw new FerryError('INVALID_ARGUMENT', 'bootstrap root must be a directory');
  const { blobs, index: blobIndex } = collectBlobs(root, opts.blobs);
  if (blobs.length > RAFS_MAX_BLOBS) throw new FerryError('RESOURCE_EXHAUSTED', `too many blobs (${blobs.length} > ${RAFS_MAX_BLOBS})`);

  // ---- breadth-first records ----
  const recs: Rec[] = [];
  const firstIndex = new Map<Inode, number>();
  const linkCount = new Map<Inode, number>();
  const mk = (node: Inode, name: Buffer, parent: number): Rec => {
    const r: Rec = {
      node,
      name,
      index: recs.length + 1,
      parent,
      childIndex: 0,
      childCount: 0,
      xattrs: encodeRafsV5Xattrs(node.xattrs),
      offset: 0,
    };
    recs.push(r);
    if (!firstIndex.has(node)) firstIndex.set(node, r.index);
    linkCount.set(node, (linkCount.get(node) ?? 0) + 1);
    return r;
  };
  const queue: Rec[] = [mk(root, Buffer.from('/'), 0)];
  for (let q = 0; q < queue.length; q++) {
    const dir = queue[q]!;
    const kids = [...dir.node.children!.entries()]
      .map(([n, c]) => [Buffer.from(n, 'utf8'), c] as [Buffer, Inode])
      .sort((a, b) => Buffer.compare(a[0], b[0]));
    dir.childIndex = kids.length ? recs.length + 1 : 0;
    dir.childCount = kids.length;
    for (const [name, child] of kids) {
      if (name.length > 0xffff) throw new FerryError('INVALID_ARGUMENT', 'file name too long');
      const r = mk(child, name, dir.index);
      if (child.type === 'dir') {
        if (firstIndex.get(child) !== r.index) throw new FerryError('INVALID_ARGUMENT', 'a directory appears twice in the tree');
        queue.push(r);
      }
    }
  }

  // ---- digests (files: of chunk digests; symlinks: of the target; dirs: of children; others: of nothing) ----
  const digests = new Map<Inode, Buffer>();
  const digestOf = (n: Inode): Buffer => {
    let d = digests.get(n);
    if (d) return d;
    if (n.type === 'file') d = chunkDigest(opts.digester, Buffer.concat((n.chunks ?? []).map((c) => c.digest)));
    else if (n.type === 'symlink') d = chunkDigest(opts.digester, n.target!);
    else if (n.type === 'dir') {
      const names = [...n.children!.keys()].sort((a, b) => Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8')));
      d = chunkDigest(opts.digester, Buffer.concat(names.map((k) => digestOf(n.children!.get(k)!))));
    } else d = chunkDigest(opts.digester, Buffer.alloc(0));
    digests.set(n, d);
    return d;
  };

  // ---- layout ----
  const N = blobs.length;
  const prefetch = N > 0 ? (opts.prefetch ?? []).map((n) => firstIndex.get(n)).filter((x): x is number => x !== undefined) : [];
  const inodeTableOffset = RAFS_V5_SUPERBLOCK_SIZE;
  const inodeTableSize = rafsV5Align(4 * recs.length);
  const prefetchOffset = inodeTableOffset + inodeTableSize;
  const prefetchSize = rafsV5Align(4 * prefetch.length);
  const blobTable = encodeRafsV5BlobTable(blobs.map((b) => ({ readaheadOffset: 0, readaheadSize: 0, blobId: b.blobId })));
  const blobTableOffset = prefetchOffset + prefetchSize;
  const extOffset = blobTableOffset + blobTable.length;
  let pos = extOffset + RAFS_V5_EXT_BLOB_ENTRY_SIZE * N;
  for (const r of recs) {
    r.offset = pos;
    pos += RAFS_V5_INODE_SIZE + rafsV5Align(r.name.length);
    if (r.node.type === 'symlink') pos += rafsV5Align(r.node.target!.length);
    pos += r.xattrs.length;
    if (r.node.type === 'file') pos += RAFS_V6_CHUNK_INFO_SIZE * (r.node.chunks?.length ?? 0);
  }
  if (pos / 8 > 0xffffffff) throw new FerryError('RESOURCE_EXHAUSTED', 'v5 bootstrap larger than 32 GiB');
  const out = Buffer.alloc(pos);

  let hasXattr = false;
  for (const r of recs) {
    const n = r.node;
    out.writeUInt32LE(r.offset / 8, inodeTableOffset + 4 * (r.index - 1));
    const links = n.type === 'dir' ? 0 : linkCount.get(n)!;
    let nlink = links;
    if (n.type === 'dir') nlink = 2 + [...n.children!.values()].filter((c) => c.type === 'dir').length;
    const flags =
      (n.type === 'symlink' ? RafsV5InodeFlags.SYMLINK : 0) |
      (n.type === 'file' && links > 1 ? RafsV5InodeFlags.HARDLINK : 0) |
      (r.xattrs.length ? RafsV5InodeFlags.XATTR : 0);
    if (r.xattrs.length) hasXattr = true;
    const size = n.type === 'file' ? n.size : n.type === 'symlink' ? n.target!.length : n.type === 'dir' ? 4096 : 0;
    writeRafsV5Inode(out, r.offset, {
      digest: digestOf(n),
      parent: r.parent,
      ino: n.type === 'dir' ? r.index : firstIndex.get(n)!,
      uid: n.uid,
      gid: n.gid,
      projid: 0,
      mode: MODE_OF_TYPE[n.type] | (n.perm & 0o7777),
      size,
      blocks: Math.ceil(size / 512),
      flags,
      nlink,
      childIndex: r.childIndex,
      childCount: n.type === 'file' ? (n.chunks?.length ?? 0) : r.childCount,
      nameSize: r.name.length,
      symlinkSize: n.type === 'symlink' ? n.target!.length : 0,
      rdev: n.type === 'char' || n.type === 'block' ? encodeRdev(n.rdevMajor ?? 0, n.rdevMinor ?? 0) : 0,
      mtimeNsec: n.mtimeNsec,
      mtime: n.mtime,
    });
    let p = r.offset + RAFS_V5_INODE_SIZE;
    r.name.copy(out, p);
    p += rafsV5Align(r.name.length);
    if (n.type === 'symlink') {
      n.target!.copy(out, p);
      p += rafsV5Align(n.target!.length);
    }
    r.xattrs.copy(out, p);
    p += r.xattrs.length;
    if (n.type === 'file') {
      for (const c of n.chunks ?? []) {
        writeRafsChunkInfo(out, p, {
          blockId: c.digest,
          blobIndex: blobIndex.get(c.blob)!,
          flags: c.compressed ? ChunkFlags.COMPRESSED : 0,
          compressedSize: c.compressedSize,
          uncompressedSize: c.uncompressedSize,
          compressedOffset: c.compressedOffset,
          uncompressedOffset: c.uncompressedOffset,
          fileOffset: c.fileOffset,
          index: c.chunkIndex,
          crc32: 0,
        });
        p += RAFS_V6_CHUNK_INFO_SIZE;
      }
    }
  }
  prefetch.forEach((ino, i) => {
    out.writeUInt32LE(ino, prefetchOffset + 4 * i);
  });
  blobTable.copy(out, blobTableOffset);
  blobs.forEach((b, i) => {
    writeRafsV5ExtBlobEntry(out, extOffset + i * RAFS_V5_EXT_BLOB_ENTRY_SIZE, {
      chunkCount: b.chunkCount,
      uncompressedSize: b.uncompressedSize,
      compressedSize: b.compressedSize,
    });
  });
  const sflags =
    compressorFlag(opts.compressor) |
    digesterFlag(opts.digester) |
    RafsSuperFlags.EXPLICIT_UID_GID |
    (hasXattr ? RafsSuperFlags.HAS_XATTR : 0);
  writeRafsV5SuperBlock(out, 0, {
    magic: RAFS_V5_SUPER_MAGIC,
    version: RAFS_V5_SUPER_VERSION,
    sbSize: RAFS_V5_SUPERBLOCK_SIZE,
    blockSize: opts.chunkSize,
    flags: sflags,
    inodesCount: recs.length,
    inodeTableOffset,
    prefetchTableOffset: prefetch.length ? prefetchOffset : 0,
    blobTableOffset,
    inodeTableEntries: recs.length,
    prefetchTableEntries: prefetch.length,
    blobTableSize: blobTable.length,
    extendedBlobTableEntries: N,
    extendedBlobTableOffset: N ? extOffset : 0,
  });
  return out;
}
