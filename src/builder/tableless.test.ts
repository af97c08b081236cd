/**
 * Bootstraps without a chunk table: the builder leaves the table out only when every blob carries
 * its own tables; readers map chunks through the blob's CI table and digest array, which are
 * verified through the blob's ToC (tampering with any of them is DATA_LOSS, not wrong data).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, writeFileSync, readFileSync, rmSync } from 'node:fs';
import { createHash, randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { FerryError } from '../core/index.js';
import {
  openBootstrap,
  attachBlobTables,
  ciFromMetaFile,
  decodeBlobTail,
  loadBlobTables,
  tailRange,
  BlobFeatures,
  type BlobInfo,
  type RafsBootstrap,
} from '../format/rafs/index.js';
import { buildLayer, mergeBootstraps } from './index.js';
import { loadBootstrap } from './from-bootstrap.js';

let work: string;
let layer: Awaited<ReturnType<typeof buildLayer>>;
let blobFile: Buffer;

before(async () => {
  work = mkdtempSync(join(tmpdir(), 'ferry-tableless-'));
  const src = join(work, 'src');
  mkdirSync(join(src, 'etc'), { recursive: true });
  writeFileSync(join(src, 'etc/hostname'), 'ferry\n');
  writeFileSync(join(src, 'random.bin'), randomBytes(300_000));
  writeFileSync(join(src, 'text.txt'), Buffer.alloc(200_000, 'lazy '));
  layer = await buildLayer({ source: { dir: src }, blobDir: join(work, 'blobs'), chunkSize: 0x8000, compressor: 'zstd' });
  blobFile = readFileSync(layer.blobPath);
});
after(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

const read = async (_b: BlobInfo, off: number, len: number): Promise<Buffer> => blobFile.subarray(off, off + len);

function fileDigests(bs: RafsBootstrap): Map<string, string> {
  const out = new Map<string, string>();
  for (const e of bs.walk()) {
    if ((e.stat.mode & 0o170000) !== 0o100000) continue;
    out.set(
      e.path,
      bs
        .chunks(e.ino)
        .map((c) => `${c.chunkIndex}:${c.compressedOffset}+${c.compressedSize}:${c.digest.toString('hex')}`)
        .join(','),
    );
  }
  return out;
}

test('omitChunkTable: no table, same chunks once the blob tables are attached', async () => {
  const full = openBootstrap(mergeBootstraps([layer.bootstrap]));
  const lean = openBootstrap(mergeBootstraps([layer.bootstrap], { omitChunkTable: true }));
  assert.ok(full.summary().chunkTableEntries > 0);
  assert.equal(lean.summary().chunkTableEntries, 0);
  assert.ok(lean.summary().size < full.summary().size);
  assert.equal(lean.canMapChunks(), false);
  const ino = lean.lookup('random.bin')!;
  assert.throws(
    () => lean.chunks(ino),
    (e: unknown) => FerryError.hasCode(e, 'DATA_LOSS'),
  );
  await attachBlobTables(lean, read);
  assert.equal(lean.canMapChunks(), true);
  assert.deepEqual(fileDigests(lean), fileDigests(full));
  // chunks decode and verify against the digests from the blob
  for (const c of lean.chunks(ino))
    lean.decodeChunk(lean.blobs[0]!, c, blobFile.subarray(c.compressedOffset, c.compressedOffset + c.compressedSize));
  // the builder's loader needs the tables too, and takes them
  assert.throws(() => loadBootstrap(mergeBootstraps([layer.bootstrap], { omitChunkTable: true })), /no chunk table/);
  const tables = new Map([[layer.blobId, await loadBlobTables(lean.blobs[0]!, read)]]);
  const loaded = loadBootstrap(mergeBootstraps([layer.bootstrap], { omitChunkTable: true }), undefined, undefined, tables);
  assert.equal(loaded.root.children?.get('random.bin')?.chunks?.length, full.chunks(full.lookup('random.bin')!).length);
});

test('blob.meta file gives the same CI table as the blob; digests come from the tail alone', async () => {
  const lean = openBootstrap(mergeBootstraps([layer.bootstrap], { omitChunkTable: true }));
  const b = lean.blobs[0]!;
  const fromBlob = await loadBlobTables(b, read);
  assert.deepEqual(ciFromMetaFile(b, layer.blobMeta), fromBlob.entries);
  const r = tailRange(b, { withCi: false });
  assert.equal(r.offset, b.ciOffset + b.ciCompressedSize);
  assert.equal(r.offset + r.length, blobFile.length);
  const t = decodeBlobTail(b, blobFile.subarray(r.offset), r.offset);
  assert.equal(t.entries, undefined);
  assert.deepEqual(t.digests, fromBlob.digests);
  assert.equal(t.digests.length, b.chunkCount);
});

test('a tampered digest array, CI table, ToC or blob.meta is DATA_LOSS', async () => {
  const lean = openBootstrap(mergeBootstraps([layer.bootstrap], { omitChunkTable: true }));
  const b = lean.blobs[0]!;
  const full = tailRange(b, { withCi: true });
  const tail = Buffer.from(blobFile.subarray(full.offset));
  const flip = (at: number): Buffer => {
    const t = Buffer.from(tail);
    t[at] = t[at]! ^ 0xff;
    return t;
  };
  const digestAt = b.ciCompressedSize + 4096 + 512; // Ferry's layout: CI, header, tar header, digests
  assert.throws(() => decodeBlobTail(b, flip(digestAt + 5), full.offset), /digest array does not match/);
  assert.throws(() => decodeBlobTail(b, flip(3), full.offset), /CI table|DATA_LOSS|corrupt|decompress/i);
  assert.throws(() => decodeBlobTail(b, flip(tail.length - b.blobTocSize + 30), full.offset), /ToC digest/);
  assert.throws(() => decodeBlobTail(b, tail.subarray(0, tail.length - 1), full.offset), /does not end at/);
  assert.throws(
    () => decodeBlobTail(b, tail.subarray(b.ciCompressedSize + 4096 + 600), full.offset + b.ciCompressedSize + 4096 + 600),
    /outside the fetched tail/,
  );
  assert.throws(() => decodeBlobTail({ ...b, blobTocDigest: createHash('sha256').update('x').digest() }, tail, full.offset), /ToC digest/);
  const meta = Buffer.from(layer.blobMeta);
  meta.writeUInt32LE(meta.readUInt32LE(meta.length - 4096 + 12) + 1, meta.length - 4096 + 12); // CI entry count
  assert.throws(() => ciFromMetaFile(b, meta), /disagrees with the bootstrap/);
});

test('the table stays when a blob carries no digest array', () => {
  assert.equal(
    openBootstrap(mergeBootstraps([layer.bootstrap], { omitChunkTable: true })).summary().chunkTableEntries,
    0,
    'Ferry blobs carry their tables',
  );
  // the same layer with INLINED_CHUNK_DIGEST cleared in its blob entry (as blobs built without a digest array)
  const cleared = Buffer.from(layer.bootstrap);
  const featOff = Number(openBootstrap(cleared).summary().superblock.blobTableOffset) + 84; // v6 blob entry: features
  cleared.writeUInt32LE(cleared.readUInt32LE(featOff) & ~BlobFeatures.INLINED_CHUNK_DIGEST, featOff);
  assert.equal(openBootstrap(cleared).blobs[0]!.features & BlobFeatures.INLINED_CHUNK_DIGEST, 0);
  assert.ok(openBootstrap(mergeBootstraps([cleared], { omitChunkTable: true })).summary().chunkTableEntries > 0);
});
