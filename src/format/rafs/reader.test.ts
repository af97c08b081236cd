import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createReadStream, readFileSync } from 'node:fs';
import { fixture } from '../../../test/support/paths.js';
import { DigestMismatchError, FerryError } from '../../core/index.js';
import { readLayer } from '../tar/index.js';
import { COMPRESSORS, chunkDigest, decodeChunk as decodeChunkData, getCodec } from '../compress/index.js'; // the decoder lives in format/compress
import { S_IFDIR, S_IFLNK, S_IFMT, S_IFREG } from '../erofs/index.js';
import {
  checkBootstrap,
  decodeDigestArray,
  loadCiTable,
  openBootstrap,
  walkReverseTar,
  type ChunkRef,
  type RafsBootstrap,
} from './index.js';

const NY = (...p: string[]): string => fixture('nydus', ...p);
const v6buf = readFileSync(NY('rafs-v6-2.2.boot'));
const v6blob = readFileSync(NY('blobs', 'be7d77eeb719f70884758d1aa800ed0fb09d701aaec469964e9d54325f0d5fef'));

function fileBytes(bs: RafsBootstrap, ino: number, blob: Buffer): Buffer {
  const parts: Buffer[] = [];
  let pos = 0;
  const size = bs.stat(ino).size;
  for (const c of [...bs.chunks(ino)].sort((a, b) => a.fileOffset - b.fileOffset)) {
    if (c.fileOffset < pos) continue;
    if (c.fileOffset > pos) parts.push(Buffer.alloc(c.fileOffset - pos));
    const d = bs.decodeChunk(bs.blobs[c.blobIndex]!, c, blob.subarray(c.compressedOffset, c.compressedOffset + c.compressedSize));
    parts.push(d);
    pos = c.fileOffset + d.length;
  }
  if (pos < size) parts.push(Buffer.alloc(size - pos));
  return Buffer.concat(parts).subarray(0, size);
}

function isFerry(err: unknown): boolean {
  if (!FerryError.is(err)) {
    console.error('non-FerryError:', err);
    return false;
  }
  return true;
}

test('reader: upstream v6 bootstrap (nydus 2.2) lists, maps reads and verifies chunks', () => {
  const bs = openBootstrap(v6buf);
  assert.equal(bs.version, 6);
  assert.equal(bs.rootIno, 128);
  assert.equal(bs.compressor, 'zstd');
  assert.equal(bs.digester, 'blake3');
  assert.equal(bs.blobs.length, 1);
  assert.equal(bs.blobs[0]!.blobId, 'be7d77eeb719f70884758d1aa800ed0fb09d701aaec469964e9d54325f0d5fef');
  const paths = [...bs.walk()].map((e) => e.path);
  assert.deepEqual(paths, ['', 'lib.rs', 'sync_io.rs']);
  const ino = bs.lookup('/lib.rs')!;
  assert.equal(bs.lookup('lib.rs'), ino);
  assert.equal(bs.lookup('/nope'), undefined);
  assert.equal(bs.lookup('/lib.rs/x'), undefined);
  const st = bs.stat(ino);
  assert.equal(st.mode & S_IFMT, S_IFREG);
  assert.equal(st.size, 16931);
  const data = fileBytes(bs, ino, v6blob);
  assert.equal(data.length, 16931);
  assert.match(data.toString('utf8', 0, 200), /Copyright|use |\/\//);
  const m = bs.mapRead(ino, 100, 50);
  assert.equal(m.length, 1);
  assert.equal(m[0]!.fileOffset, 0);
  assert.deepEqual(bs.mapRead(ino, 16931, 10), []);
  assert.deepEqual(bs.mapRead(ino, 0, 0), []);
  assert.throws(
    () => bs.readlink(ino),
    (e) => FerryError.hasCode(e, 'INVALID_ARGUMENT'),
  );
  // a flipped byte in the chunk data is detected
  const c = bs.chunks(ino)[0]!;
  const raw = Buffer.from(v6blob.subarray(c.compressedOffset, c.compressedOffset + c.compressedSize));
  raw[raw.length >> 1] = raw[raw.length >> 1]! ^ 0x55;
  assert.throws(
    () => bs.decodeChunk(bs.blobs[0]!, c, raw),
    (e) => e instanceof DigestMismatchError || FerryError.hasCode(e, 'DATA_LOSS'),
  );
  const rep = checkBootstrap(bs, { readBlob: (_b, off, len) => v6blob.subarray(off, off + len) });
  assert.equal(rep.chunksVerified, 2);
});

interface TreeNode {
  type: string;
  name: string;
  target?: string;
  contents?: TreeNode[];
}

test('reader: upstream v5 bootstraps list the expected trees, and file digests match', () => {
  for (const name of ['sha256-nocompress-repeatable', 'blake3-lz4_block-non_repeatable']) {
    const bs = openBootstrap(readFileSync(NY('more', 'repeatable', name)));
    assert.equal(bs.version, 5);
    const text = readFileSync(NY('more', 'repeatable', `${name}.result`), 'utf8');
    const jsonEnd = text.indexOf('\n]\n') + 3;
    const expected = JSON.parse(text.slice(0, jsonEnd)) as TreeNode[];
    const build = (ino: number, nm: string): TreeNode => {
      const st = bs.stat(ino);
      const t = st.mode & S_IFMT;
      if (t === S_IFDIR) {
        const kids = bs.readdir(ino).sort((a, b) => (a.name < b.name ? -1 : 1));
        return { type: 'directory', name: nm, contents: kids.map((k) => build(k.ino, k.name)) };
      }
      if (t === S_IFLNK) return { type: 'link', name: nm, target: bs.readlink(ino), contents: [] };
      return { type: 'file', name: nm };
    };
    assert.deepEqual(build(bs.rootIno, ''), expected[0]);
    const blob = readFileSync(NY('more', 'repeatable', 'blobs', bs.blobs[0]!.blobId));
    const md5s = text
      .slice(jsonEnd)
      .trim()
      .split('\n')
      .map((l) => l.split(/\s+/));
    assert.ok(md5s.length > 20);
    for (const [sum, path] of md5s) {
      const ino = bs.lookup(path!);
      assert.ok(ino !== undefined, path);
      assert.equal(
        createHash('md5')
          .update(fileBytes(bs, ino, blob))
          .digest('hex'),
        sum,
        path,
      );
    }
  }
});

test('reader: the early-layout v5 bootstrap of nydusd tests', () => {
  const bs = openBootstrap(readFileSync(NY('nydusd_daemon_test_bootstrap')));
  let n = 0;
  for (const e of bs.walk()) n += e.path === '' ? 0 : 1;
  assert.equal(n, 16831);
  const bash = bs.lookup('/bin/bash')!;
  assert.equal(bs.stat(bash).size, 1021112);
  assert.equal(bs.chunks(bash).length, 1);
  assert.equal(bs.readlink(bs.lookup('/bin/bzcmp')!), 'bzdiff');
  assert.equal(bs.stat(bs.lookup('/bin/bzcat')!).ino, bs.stat(bs.lookup('/bin/bunzip2')!).ino);
});

async function extractBoot(tgz: string): Promise<Buffer | undefined> {
  for await (const { entry, body } of readLayer(createReadStream(tgz))) {
    const parts: Buffer[] = [];
    for await (const c of body) parts.push(c as Buffer);
    if (entry.path === 'image/image.boot') return Buffer.concat(parts);
  }
  return undefined;
}

test('reader: nydus-snapshotter testdata — valid v5/v6 parse, invalid ones give typed errors', async () => {
  const dir = (f: string): string => NY('more', 'snapshotter-testdata', f);
  for (const [f, version] of [
    ['v5-bootstrap-file-size-736032.tar.gz', 5],
    ['v6-bootstrap-chunk-pos-438272.tar.gz', 6],
  ] as const) {
    const buf = (await extractBoot(dir(f)))!;
    const bs = openBootstrap(buf);
    assert.equal(bs.version, version);
    const rep = checkBootstrap(bs);
    assert.equal(rep.entries, 3517);
    assert.ok(bs.lookup('/usr/bin/perl') !== undefined);
  }
  const invalid = (await extractBoot(dir('invalid-bootstrap-file-size-133513.tar.gz')))!;
  assert.throws(
    () => openBootstrap(invalid),
    (e) => FerryError.hasCode(e, 'DATA_LOSS'),
  );
  let readme: Buffer | undefined;
  for await (const { entry, body } of readLayer(createReadStream(dir('invalid.tar.gz')))) {
    const parts: Buffer[] = [];
    for await (const c of body) parts.push(c as Buffer);
    if (entry.path === 'README.md') readme = Buffer.concat(parts);
  }
  assert.throws(
    () => openBootstrap(readme!),
    (e) => FerryError.hasCode(e, 'DATA_LOSS'),
  );
});

test('reader: truncated bootstraps fail with typed errors at every cut point', () => {
  for (let cut = 0; cut < v6buf.length; cut += 256) {
    assert.throws(
      () => checkBootstrap(openBootstrap(v6buf.subarray(0, cut))),
      (e) => isFerry(e) && FerryError.hasCode(e, 'DATA_LOSS'),
      `v6 cut ${cut}`,
    );
  }
  const v5 = readFileSync(NY('more', 'repeatable', 'sha256-nocompress-repeatable'));
  for (let cut = 0; cut < v5.length; cut += 97) {
    try {
      checkBootstrap(openBootstrap(v5.subarray(0, cut)));
      assert.fail(`v5 cut ${cut} accepted`);
    } catch (e) {
      assert.ok(isFerry(e), `v5 cut ${cut}`);
    }
  }
});

test('reader: directory loops, offsets past the end and absurd counts are refused', () => {
  // v6: point the root's "lib.rs" dirent at the root itself → loop
  const loop = Buffer.from(v6buf);
  const rootOff = 2 * 4096 + 128 * 32;
  const data = rootOff + 64;
  const names = openBootstrap(v6buf)
    .dirents(128)
    .map((d) => d.name);
  const i = names.indexOf('lib.rs');
  loop.writeBigUInt64LE(128n, data + 12 * i);
  assert.throws(
    () => [...openBootstrap(loop).walk()],
    (e) => FerryError.hasCode(e, 'DATA_LOSS') && /loop/.test((e as Error).message),
  );
  // v6: nid past the end
  const far = Buffer.from(v6buf);
  far.writeBigUInt64LE(BigInt(2) ** 50n, data + 12 * i);
  assert.throws(
    () => [...openBootstrap(far).walk()],
    (e) => FerryError.hasCode(e, 'DATA_LOSS'),
  );
  // v6: absurd file size (huge chunk count) and absurd table sizes
  const big = Buffer.from(v6buf);
  const libNid = openBootstrap(v6buf).lookup('lib.rs')!;
  big.writeBigUInt64LE(2n ** 52n, 2 * 4096 + libNid * 32 + 8);
  assert.throws(
    () => openBootstrap(big).chunks(libNid),
    (e) => FerryError.hasCode(e, 'DATA_LOSS'),
  );
  const tbl = Buffer.from(v6buf);
  tbl.writeUInt32LE(0xffffff00, 1152 + 16);
  assert.throws(
    () => openBootstrap(tbl),
    (e) => FerryError.hasCode(e, 'DATA_LOSS'),
  );
  const ct = Buffer.from(v6buf);
  ct.writeBigUInt64LE(80n * 2n ** 40n, 1152 + 32);
  assert.throws(
    () => openBootstrap(ct),
    (e) => FerryError.hasCode(e, 'DATA_LOSS'),
  );
  const inos = Buffer.from(v6buf);
  inos.writeBigUInt64LE(2n ** 63n, 1024 + 16);
  assert.throws(
    () => openBootstrap(inos),
    (e) => FerryError.hasCode(e, 'DATA_LOSS'),
  );
  // v5: inode table entries absurd, and a directory whose children include the root → loop
  const v5 = readFileSync(NY('more', 'repeatable', 'sha256-nocompress-repeatable'));
  const absurd = Buffer.from(v5);
  absurd.writeUInt32LE(0xffffffff, 56);
  assert.throws(
    () => openBootstrap(absurd),
    (e) => FerryError.hasCode(e, 'DATA_LOSS'),
  );
  const v5loop = Buffer.from(v5);
  const bs5 = openBootstrap(v5);
  const sub = bs5.lookup('/hardlink-test')!;
  const subOff = v5.readUInt32LE(v5.readUInt32LE(32) + 4 * (sub - 1)) * 8;
  v5loop.writeUInt32LE(1, subOff + 92); // child_index → root
  assert.throws(
    () => [...openBootstrap(v5loop).walk()],
    (e) => FerryError.hasCode(e, 'DATA_LOSS'),
  );
});

test('reader: mutated bootstraps never raise anything but FerryError', () => {
  let seed = 0x12345678;
  const rnd = (n: number): number => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return seed % n;
  };
  const v5 = readFileSync(NY('more', 'repeatable', 'sha256-nocompress-repeatable'));
  const interesting = [0, 1, 0x7f, 0x80, 0xff, 0xffff, 0xffffffff, 0x80000000, 4096, 8192];
  let ok = 0;
  let refused = 0;
  for (const [base, iterations] of [
    [v6buf, 1500],
    [v5, 700],
  ] as const) {
    for (let it = 0; it < iterations; it++) {
      const m = Buffer.from(base);
      const edits = 1 + rnd(4);
      for (let k = 0; k < edits; k++) {
        const pos = rnd(m.length - 4);
        if (rnd(2) === 0) m[pos] = rnd(256);
        else m.writeUInt32LE(interesting[rnd(interesting.length)]!, pos);
      }
      try {
        const bs = openBootstrap(m);
        checkBootstrap(bs);
        for (const e of bs.walk()) {
          if ((e.stat.mode & S_IFMT) === S_IFREG) bs.mapRead(e.ino, 0, 1 << 20);
        }
        ok++;
      } catch (e) {
        assert.ok(isFerry(e), `iteration ${it}`);
        refused++;
      }
    }
  }
  assert.ok(refused > 0 && ok > 0, `ok ${ok} refused ${refused}`);
});

test('check: v5 inode digests are verified', () => {
  const v5 = readFileSync(NY('more', 'repeatable', 'sha256-nocompress-repeatable'));
  assert.equal(checkBootstrap(v5).entries, 54);
  const bs = openBootstrap(v5);
  const ino = bs.lookup('/symlink-test/root')!;
  const off = v5.readUInt32LE(v5.readUInt32LE(32) + 4 * (ino - 1)) * 8;
  const bad = Buffer.from(v5);
  bad[off + 5] = bad[off + 5]! ^ 1;
  assert.throws(
    () => checkBootstrap(bad),
    (e) => FerryError.hasCode(e, 'DATA_LOSS') && /digest/.test((e as Error).message),
  );
});

test('reader: a v6 bootstrap without chunk table maps reads through the blob CI table and digest array', () => {
  const noTable = Buffer.from(v6buf);
  noTable.writeBigUInt64LE(0n, 1152 + 32); // s_chunk_table_size = 0
  const bs = openBootstrap(noTable);
  const ino = bs.lookup('/sync_io.rs')!;
  assert.throws(
    () => bs.chunks(ino),
    (e) => FerryError.hasCode(e, 'DATA_LOSS') && /chunk table/.test((e as Error).message),
  );
  const blob = bs.blobs[0]!;
  const read = (_b: unknown, off: number, len: number): Buffer => v6blob.subarray(off, off + len);
  const ci = loadCiTable(blob, read);
  assert.equal(ci.length, 2);
  bs.setCiTable(0, ci);
  const c0 = bs.chunks(ino)[0]!;
  assert.throws(
    () => bs.decodeChunk(blob, c0, v6blob.subarray(c0.compressedOffset, c0.compressedOffset + c0.compressedSize)),
    (e) => FerryError.hasCode(e, 'FAILED_PRECONDITION'),
  );
  const sections = walkReverseTar((off, len) => v6blob.subarray(off, off + len), v6blob.length);
  const dig = sections.find((x) => x.name === 'blob.digest')!;
  bs.setCiTable(0, ci, decodeDigestArray(v6blob.subarray(dig.offset, dig.offset + dig.size), ci.length));
  const ref = openBootstrap(v6buf);
  assert.deepEqual(fileBytes(bs, ino, v6blob), fileBytes(ref, ref.lookup('/sync_io.rs')!, v6blob));
  assert.deepEqual(bs.chunks(ino), ref.chunks(ref.lookup('/sync_io.rs')!));
});

// Corrupt chunk bytes that still decompress cleanly: nothing but the digest comparison can tell
// (a flipped byte in a zstd frame is usually caught by the decoder already).
test('reader: a chunk that decompresses cleanly to other bytes fails its digest (DigestMismatchError naming both digests)', () => {
  const bs = openBootstrap(v6buf);
  const blob = bs.blobs[0]!;
  const c = bs.chunks(bs.lookup('/lib.rs')!)[0]!;
  const zstd = getCodec('zstd');
  const plain = zstd.decompress(v6blob.subarray(c.compressedOffset, c.compressedOffset + c.compressedSize), c.uncompressedSize);
  const altered = Buffer.from(plain);
  altered[100] = altered[100]! ^ 0x20;
  const expected = `blake3:${c.digest.toString('hex')}`;
  const mismatch = (e: unknown): boolean =>
    e instanceof DigestMismatchError &&
    e.expected === expected &&
    e.actual === `blake3:${chunkDigest('blake3', altered).toString('hex')}` &&
    /chunk \d+ of blob be7d77ee/.test(e.message);
  // compressed: a well-formed zstd frame of the altered bytes (the record's sizes adjusted to it)
  const bad = zstd.compress(altered)!;
  assert.ok(zstd.decompress(bad, altered.length).equals(altered), 'the corrupt frame decompresses cleanly');
  assert.throws(() => bs.decodeChunk(blob, { ...c, compressedSize: bad.length }, bad), mismatch);
  // the same record with the right bytes recompressed decodes: only the digest tells the two apart
  const good = zstd.compress(plain)!;
  assert.ok(bs.decodeChunk(blob, { ...c, compressedSize: good.length }, good).equals(plain));
  // stored uncompressed
  assert.throws(() => bs.decodeChunk(blob, { ...c, compressed: false, compressedSize: altered.length }, altered), mismatch);
  assert.ok(bs.decodeChunk(blob, { ...c, compressed: false, compressedSize: plain.length }, plain).equals(plain));
});

test('decodeChunkData: every compressor and digester verifies the decompressed bytes', () => {
  const data = Buffer.alloc(40_000);
  for (let i = 0; i < data.length; i++) data[i] = (i * 7 + (i >> 9)) & 0xff;
  const altered = Buffer.from(data);
  altered[12_345] = altered[12_345]! ^ 0x01;
  for (const digester of ['sha256', 'blake3'] as const) {
    for (const compressor of COMPRESSORS) {
      const codec = getCodec(compressor);
      const pack = (b: Buffer): Buffer => (compressor === 'none' ? b : codec.compress(b)!);
      const blob = { compressor, digester, blobId: 'b'.repeat(64) };
      const ref = (raw: Buffer): ChunkRef => ({
        blobIndex: 0,
        blobId: blob.blobId,
        chunkIndex: 3,
        fileOffset: 0,
        compressedOffset: 0,
        compressedSize: raw.length,
        uncompressedOffset: 0,
        uncompressedSize: data.length,
        compressed: compressor !== 'none',
        digest: chunkDigest(digester, data),
      });
      const ok = pack(data);
      assert.ok(decodeChunkData(blob, ref(ok), ok).equals(data), `${compressor}/${digester}: good chunk`);
      const bad = pack(altered);
      assert.throws(
        () => decodeChunkData(blob, ref(bad), bad),
        (e) =>
          e instanceof DigestMismatchError &&
          e.expected === `${digester}:${chunkDigest(digester, data).toString('hex')}` &&
          e.actual === `${digester}:${chunkDigest(digester, altered).toString('hex')}`,
        `${compressor}/${digester}: altered chunk`,
      );
    }
  }
});
