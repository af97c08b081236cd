import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fixture } from '../../../test/support/paths.js';
import { FerryError } from '../../core/index.js';
import {
  decodeErofsSuperBlock,
  encodeErofsSuperBlock,
  decodeErofsDeviceSlot,
  encodeErofsDeviceSlot,
  decodeErofsInode,
  encodeErofsInode,
  decodeErofsDirBlock,
  encodeErofsDirData,
  erofsDirSize,
  encodeErofsXattrs,
  decodeErofsXattrs,
  encodeRdev,
  decodeRdev,
  EROFS_SUPER_MAGIC,
  RAFS_V6_FEATURE_INCOMPAT,
  erofsInodeDataLayout,
  EROFS_INODE_FLAT_INLINE,
} from '../erofs/index.js';
import {
  decodeRafsV6ExtSuperBlock,
  encodeRafsV6ExtSuperBlock,
  decodeRafsV6BlobEntry,
  encodeRafsV6BlobEntry,
  decodeRafsChunkInfo,
  encodeRafsChunkInfo,
  compressorOfFlags,
  digesterOfFlags,
  encodeRafsV6ChunkIndex,
  decodeRafsV6ChunkIndex,
  decodeRafsV5SuperBlock,
  encodeRafsV5SuperBlock,
  decodeRafsV5Inode,
  encodeRafsV5Inode,
  decodeRafsV5BlobTable,
  encodeRafsV5BlobTable,
  decodeRafsV5Xattrs,
  encodeRafsV5Xattrs,
  RAFS_V5_SUPER_MAGIC,
} from './records.js';

const v6 = readFileSync(fixture('nydus', 'rafs-v6-2.2.boot'));
const v5 = readFileSync(fixture('nydus', 'nydusd_daemon_test_bootstrap'));

test('records: v6 fixture superblocks decode and re-encode byte-identically', () => {
  const sb = decodeErofsSuperBlock(v6);
  assert.equal(sb.magic, EROFS_SUPER_MAGIC);
  assert.equal(sb.rootNid, 128);
  assert.equal(sb.metaBlkaddr, 2);
  assert.equal(sb.featureIncompat, RAFS_V6_FEATURE_INCOMPAT);
  assert.equal(sb.extraDevices, 1);
  assert.equal(sb.devtSlotoff, 11);
  assert.deepEqual(encodeErofsSuperBlock(sb), v6.subarray(1024, 1152));
  const ext = decodeRafsV6ExtSuperBlock(v6);
  assert.equal(ext.flags, 0x194);
  assert.equal(compressorOfFlags(ext.flags), 'zstd');
  assert.equal(digesterOfFlags(ext.flags), 'blake3');
  assert.equal(ext.blobTableOffset, 4096);
  assert.equal(ext.chunkSize, 0x100000);
  assert.deepEqual(encodeRafsV6ExtSuperBlock(ext), v6.subarray(1152, 1408));
  const slot = decodeErofsDeviceSlot(v6, 1408);
  assert.equal(slot.tag, 'be7d77eeb719f70884758d1aa800ed0fb09d701aaec469964e9d54325f0d5fef');
  assert.deepEqual(encodeErofsDeviceSlot(slot), v6.subarray(1408, 1536));
  const blob = decodeRafsV6BlobEntry(v6, ext.blobTableOffset);
  assert.equal(blob.blobId, slot.tag);
  assert.equal(blob.chunkCount, 2);
  assert.equal(blob.compressionAlgo, 3);
  assert.deepEqual(encodeRafsV6BlobEntry(blob), v6.subarray(4096, 4096 + 256));
  const root = decodeErofsInode(v6, sb.metaBlkaddr * 4096 + 32 * sb.rootNid);
  assert.equal(root.mode & 0o170000, 0o040000);
  assert.deepEqual(encodeErofsInode(root), v6.subarray(12288, 12288 + 64));
  assert.equal(erofsInodeDataLayout(root.format), EROFS_INODE_FLAT_INLINE);
  const dirents = decodeErofsDirBlock(v6, 12288 + 64, root.size);
  assert.deepEqual(dirents.map((d) => d.name.toString()).slice(0, 2), ['.', '..']);
  assert.deepEqual(encodeErofsDirData(dirents), v6.subarray(12288 + 64, 12288 + 64 + root.size));
  const ci = decodeRafsChunkInfo(v6, ext.chunkTableOffset);
  assert.deepEqual(encodeRafsChunkInfo(ci), v6.subarray(ext.chunkTableOffset, ext.chunkTableOffset + 80));
});

test('records: v5 fixture superblock, blob table and root inode', () => {
  const sb = decodeRafsV5SuperBlock(v5);
  assert.equal(sb.magic, RAFS_V5_SUPER_MAGIC);
  assert.equal(sb.version, 0x500);
  assert.deepEqual(encodeRafsV5SuperBlock(sb), v5.subarray(0, 8192));
  const blobs = decodeRafsV5BlobTable(v5, sb.blobTableOffset, sb.blobTableSize);
  assert.ok(blobs.length >= 1);
  assert.deepEqual(encodeRafsV5BlobTable(blobs), v5.subarray(sb.blobTableOffset, sb.blobTableOffset + sb.blobTableSize));
  const rootOff = v5.readUInt32LE(sb.inodeTableOffset) * 8;
  const root = decodeRafsV5Inode(v5, rootOff);
  assert.equal(root.ino, 1);
  assert.deepEqual(encodeRafsV5Inode(root), v5.subarray(rootOff, rootOff + 128));
});

test('records: small codecs round trip', () => {
  const x = new Map([
    ['user.a', Buffer.from('1')],
    ['security.capability', Buffer.alloc(20, 7)],
    ['trusted.overlay.opaque', Buffer.from('y')],
  ]);
  const { body, icount } = encodeErofsXattrs(x);
  assert.equal(body.length, 12 + 4 * (icount - 1));
  assert.deepEqual(decodeErofsXattrs(body, 0, body.length), new Map([...x.entries()].sort()));
  assert.throws(
    () => encodeErofsXattrs({ 'bogus.x': Buffer.alloc(1) }),
    (e) => FerryError.hasCode(e, 'INVALID_ARGUMENT'),
  );
  assert.deepEqual(decodeRdev(encodeRdev(259, 70000)), { major: 259, minor: 70000 });
  for (const c of [
    { blobIndex: 0, ciIndex: 0, blkaddr: 0 },
    { blobIndex: 253, ciIndex: 0xabcdef, blkaddr: 0xfffffffe },
  ]) {
    assert.deepEqual(decodeRafsV6ChunkIndex(encodeRafsV6ChunkIndex(c), 0), c);
  }
  const x5 = encodeRafsV5Xattrs(x);
  assert.deepEqual(decodeRafsV5Xattrs(x5, 0).xattrs, new Map([...x.entries()].sort()));
  const names = Array.from({ length: 400 }, (_, i) => Buffer.from(`name-${String(i).padStart(4, '0')}`));
  const data = encodeErofsDirData(names.map((name, i) => ({ name, nid: 200 + i, fileType: 1 })));
  assert.equal(data.length, erofsDirSize(names));
  const back = [];
  for (let off = 0; off < data.length; off += 4096) back.push(...decodeErofsDirBlock(data, off, Math.min(4096, data.length - off)));
  assert.deepEqual(
    back.map((d) => d.name.toString()),
    names.map((n) => n.toString()),
  );
  assert.throws(
    () => decodeErofsSuperBlock(Buffer.alloc(1100)),
    (e) => FerryError.hasCode(e, 'DATA_LOSS'),
  );
  // compact inodes: 16-bit ids, 32-bit size, no mtime
  const compact = {
    format: 0 | (2 << 1),
    xattrIcount: 0,
    mode: 0o40755,
    size: 70000,
    u: 5,
    ino: 9,
    uid: 65535,
    gid: 7,
    mtime: 0,
    mtimeNsec: 0,
    nlink: 3,
  };
  const cb = encodeErofsInode(compact);
  assert.equal(cb.length, 32);
  assert.deepEqual(decodeErofsInode(cb, 0), compact);
  assert.throws(
    () => encodeErofsInode({ ...compact, uid: 70000 }),
    (e) => FerryError.hasCode(e, 'INVALID_ARGUMENT'),
  );
  const ext = { ...compact, format: 1 | (4 << 1), size: 2 ** 40, uid: 100000, mtime: 1_700_000_000, mtimeNsec: 5 };
  assert.deepEqual(decodeErofsInode(encodeErofsInode(ext), 0), ext);
});
