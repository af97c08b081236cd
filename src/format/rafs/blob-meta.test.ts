import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { fixture } from '../../../test/support/paths.js';
import { chunkDigest, getCodec, compressorFromCode } from '../compress/index.js';
import { decodeBlobMetaHeader, encodeBlobMetaHeader, decodeCiTable, encodeCiTable, decodeDigestArray } from './blob-meta.js';
import { BlobFeatures } from './v6.js';
import { walkReverseTar, decodeToc, encodeToc, encodeTarHeader, parseTarHeader, TAR_BLOCK } from './toc.js';

const BLOBS = {
  be7d: fixture('nydus', 'blobs', 'be7d77eeb719f70884758d1aa800ed0fb09d701aaec469964e9d54325f0d5fef'),
  toc: fixture('nydus', 'blobs', '2fa78cad554b75ac91a4a125ed148d0ddeb25efa4aaa8bd80e5dc292690a4dca.toc'),
};

function sections(blob: Buffer) {
  return walkReverseTar((o, l) => blob.subarray(o, o + l), blob.length);
}

test('blob-meta: upstream blob be7d77 decodes: tar tail, ToC, CI header + table, digests, chunks', () => {
  const blob = readFileSync(BLOBS.be7d);
  const secs = sections(blob);
  assert.deepEqual(
    secs.map((s) => s.name),
    ['rafs.blob.toc', 'blob.digest', 'blob.meta', 'image.blob'],
  );
  // tar headers re-encode byte-identically
  for (const s of secs)
    assert.deepEqual(encodeTarHeader(s.name, s.size), blob.subarray(s.headerOffset, s.headerOffset + TAR_BLOCK), s.name);
  const tocSec = secs[0]!;
  const tocBuf = blob.subarray(tocSec.offset, tocSec.offset + tocSec.size);
  const toc = decodeToc(tocBuf);
  // re-encoding keeps every defined field (upstream leaves some reserved bytes non-zero)
  assert.deepEqual(decodeToc(encodeToc(toc)), toc);
  assert.equal(toc.length, 4);
  const byName = new Map(toc.map((e) => [e.name, e]));
  for (const name of ['blob.meta', 'blob.meta.header', 'blob.digest']) {
    const e = byName.get(name)!;
    assert.deepEqual(
      createHash('sha256')
        .update(blob.subarray(e.compressedOffset, e.compressedOffset + e.compressedSize))
        .digest(),
      e.digest,
      name,
    );
  }
  // image.blob digest covers the chunk data and its tar header
  const dataSec = secs[3]!;
  assert.deepEqual(
    createHash('sha256')
      .update(blob.subarray(0, dataSec.headerOffset + TAR_BLOCK))
      .digest(),
    byName.get('image.blob')!.digest,
  );

  const hdrEntry = byName.get('blob.meta.header')!;
  const hdrBuf = blob.subarray(hdrEntry.compressedOffset, hdrEntry.compressedOffset + 4096);
  const hdr = decodeBlobMetaHeader(hdrBuf);
  assert.deepEqual(encodeBlobMetaHeader(hdr), hdrBuf);
  assert.equal(hdr.features, 0x70000021);
  assert.ok(hdr.features & BlobFeatures.INLINED_CHUNK_DIGEST);
  assert.equal(hdr.ciCompressor, 0);
  const ciBuf = blob.subarray(hdr.ciOffset, hdr.ciOffset + hdr.ciUncompressedSize);
  const ci = decodeCiTable(ciBuf, hdr.ciEntries, hdr.features);
  assert.deepEqual(encodeCiTable(ci), ciBuf);
  const digestSec = secs[1]!;
  const digests = decodeDigestArray(blob.subarray(digestSec.offset, digestSec.offset + digestSec.size), hdr.ciEntries);
  // rafs-v6-2.2.boot: zstd + blake3
  const codec = getCodec(compressorFromCode(3));
  let expectUoff = 0;
  ci.forEach((e, i) => {
    assert.equal(e.uncompressedOffset, expectUoff);
    expectUoff += Math.ceil(e.uncompressedSize / 4096) * 4096;
    const raw = blob.subarray(e.compressedOffset, e.compressedOffset + e.compressedSize);
    const data = e.compressed ? codec.decompress(raw, e.uncompressedSize) : raw;
    assert.deepEqual(chunkDigest('blake3', data), digests[i]);
  });
  assert.equal(byName.get('image.blob')!.uncompressedSize, expectUoff);
});

test('blob-meta: upstream ToC blob 2fa78c: sections, ToC digests, zstd bootstrap payload', () => {
  const blob = readFileSync(BLOBS.toc);
  assert.equal(createHash('sha256').update(blob).digest('hex'), '2fa78cad554b75ac91a4a125ed148d0ddeb25efa4aaa8bd80e5dc292690a4dca');
  const secs = sections(blob);
  assert.deepEqual(
    secs.map((s) => s.name),
    ['rafs.blob.toc', 'image.boot', 'blob.meta', 'image.blob'],
  );
  const toc = decodeToc(blob.subarray(secs[0]!.offset, secs[0]!.offset + secs[0]!.size));
  const boot = toc.find((e) => e.name === 'image.boot')!;
  assert.equal(boot.flags, 0x2);
  const bootData = getCodec('zstd').decompress(
    blob.subarray(boot.compressedOffset, boot.compressedOffset + boot.compressedSize),
    boot.uncompressedSize,
  );
  assert.deepEqual(createHash('sha256').update(bootData).digest(), boot.digest);
  assert.equal(bootData.readUInt32LE(1024), 0xe0f5e1e2);
  const hdrE = toc.find((e) => e.name === 'blob.meta.header')!;
  const hdr = decodeBlobMetaHeader(blob, hdrE.compressedOffset);
  const ci = decodeCiTable(blob.subarray(hdr.ciOffset, hdr.ciOffset + hdr.ciUncompressedSize), hdr.ciEntries, hdr.features);
  assert.equal(ci.length, 3);
  for (const e of ci) {
    const data = getCodec('zstd').decompress(blob.subarray(e.compressedOffset, e.compressedOffset + e.compressedSize), e.uncompressedSize);
    assert.equal(data.length, e.uncompressedSize);
  }
});

test('blob-meta: hostile input gives DATA_LOSS errors', () => {
  assert.throws(() => decodeBlobMetaHeader(Buffer.alloc(100)), /truncated/);
  assert.throws(() => decodeBlobMetaHeader(Buffer.alloc(4096)), /magic/);
  assert.throws(() => decodeCiTable(Buffer.alloc(32), 3, 0), /cannot hold/);
  assert.throws(() => decodeToc(Buffer.alloc(100)), /multiple/);
  const h = encodeTarHeader('image.blob', 1000);
  assert.deepEqual(parseTarHeader(h), { name: 'image.blob', size: 1000 });
  assert.throws(() => walkReverseTar((o, l) => Buffer.concat([Buffer.alloc(10), h]).subarray(o, o + l), 522), /past the start/);
  const big = encodeTarHeader('x', 9 * 2 ** 30);
  assert.equal(parseTarHeader(big)!.size, 9 * 2 ** 30);
});
