import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { COMPRESSORS, getCodec, compressorFromCode, COMPRESSOR_CODES, chunkDigest, decodeChunk } from './index.js';
import { DigestMismatchError, FerryError } from '../../core/index.js';

const text = Buffer.from('hello nydus chunk '.repeat(5000));

for (const name of COMPRESSORS) {
  test(`compress: ${name} round trip and raw fallback`, () => {
    const c = getCodec(name);
    const z = c.compress(text);
    if (name === 'none') assert.equal(z, null);
    else {
      assert.ok(z && z.length < text.length, 'compressible data shrinks');
      assert.deepEqual(c.decompress(z, text.length), text);
      assert.throws(
        () => c.decompress(z, text.length + 1),
        (e) => FerryError.hasCode(e, 'DATA_LOSS'),
      );
    }
    assert.equal(c.compress(randomBytes(4096)), null, 'random data does not shrink → stored raw');
    assert.equal(c.compress(Buffer.alloc(0)), null);
    assert.equal(compressorFromCode(COMPRESSOR_CODES[name]), name);
  });
}

test('compress: lz4_block output is a bare block (no size prefix)', () => {
  const z = getCodec('lz4_block').compress(Buffer.alloc(65536, 7))!;
  // a raw LZ4 block starts with a token byte; the lz4-napi size prefix would start with 00 00 01 00
  assert.notDeepEqual(z.subarray(0, 4), Buffer.from([0, 0, 1, 0]));
  assert.ok(z.length < 1000);
});

test('compress: zstd frame carries content size and no checksum', () => {
  const z = getCodec('zstd').compress(text)!;
  assert.equal(z.readUInt32LE(0), 0xfd2fb528);
  const fhd = z[4]!;
  assert.equal(fhd & 0x04, 0, 'no checksum flag');
  assert.notEqual(fhd >> 6, 0, 'frame content size present');
});

test('compress: corrupt input and unknown names give clear errors', () => {
  for (const name of ['lz4_block', 'zstd', 'gzip'] as const) {
    assert.throws(
      () => getCodec(name).decompress(Buffer.from([1, 2, 3, 4, 5, 6, 7, 8]), 100),
      (e) => FerryError.hasCode(e, 'DATA_LOSS'),
    );
  }
  assert.throws(() => getCodec('lz5'), /unknown compressor "lz5"/);
  assert.throws(
    () => getCodec('zstd').decompress(Buffer.alloc(8), 1 << 30),
    (e) => FerryError.hasCode(e, 'DATA_LOSS'),
  );
});

/** A minimal LZ4 block decoder written from the block format description (independent of lz4-napi). */
function lz4BlockDecode(src: Buffer, size: number): Buffer {
  const out = Buffer.alloc(size);
  let i = 0;
  let o = 0;
  while (i < src.length) {
    const token = src[i++]!;
    let lit = token >> 4;
    if (lit === 15) {
      let b: number;
      do {
        b = src[i++]!;
        lit += b;
      } while (b === 255);
    }
    src.copy(out, o, i, i + lit);
    i += lit;
    o += lit;
    if (i >= src.length) break;
    const off = src[i]! | (src[i + 1]! << 8);
    i += 2;
    let len = token & 15;
    if (len === 15) {
      let b: number;
      do {
        b = src[i++]!;
        len += b;
      } while (b === 255);
    }
    len += 4;
    for (let k = 0; k < len; k++) {
      out[o] = out[o - off]!;
      o++;
    }
  }
  assert.equal(o, size);
  return out;
}

test('compress: lz4_block chunks are bare LZ4 blocks an independent decoder reads', () => {
  const data = Buffer.concat([Buffer.from('nydus '.repeat(20000)), randomBytes(3000), Buffer.from('tail'.repeat(500))]);
  const z = getCodec('lz4_block').compress(data)!;
  assert.deepEqual(lz4BlockDecode(z, data.length), data);
});

test('compress: zstd and gzip chunks decode with the zstd and gzip command-line tools', async () => {
  const { execFileSync } = await import('node:child_process');
  const data = Buffer.concat([Buffer.from('chunk '.repeat(10000)), randomBytes(2000)]);
  assert.deepEqual(execFileSync('zstd', ['-d', '-c', '-q'], { input: getCodec('zstd').compress(data)! }), data);
  assert.deepEqual(execFileSync('gzip', ['-d', '-c'], { input: getCodec('gzip').compress(data)! }), data);
});

test('compress: levels — higher zstd levels shrink mixed data further and decode the same; out-of-range levels are refused', () => {
  // text with some entropy: level differences show (a pure repeat compresses alike at any level)
  const words = Array.from({ length: 400 }, (_, i) => `w${(i * 7919) % 1000}x${i % 13}`);
  const mixed = Buffer.from(Array.from({ length: 6000 }, (_, i) => words[(i * 31 + (i >> 3)) % words.length]).join(' '));
  const z = getCodec('zstd');
  const l3 = z.compress(mixed)!;
  const l19 = z.compress(mixed, 19)!;
  assert.ok(l19.length < l3.length, `level 19 ${l19.length} B < level 3 ${l3.length} B`);
  assert.deepEqual(z.compress(mixed, 3), l3, 'level 3 is the default');
  assert.deepEqual(z.decompress(l19, mixed.length), mixed);
  assert.deepEqual(getCodec('gzip').decompress(getCodec('gzip').compress(mixed, 9)!, mixed.length), mixed);
  for (const [name, level] of [
    ['zstd', 0],
    ['zstd', 20],
    ['gzip', 10],
    ['zstd', 2.5],
  ] as const) {
    assert.throws(
      () => getCodec(name).compress(mixed, level),
      (e) => FerryError.hasCode(e, 'INVALID_ARGUMENT') && /compression level/.test((e as Error).message),
    );
  }
});

test('decodeChunk: decompresses, verifies the digest, names the chunk on failure', () => {
  const blob = { blobId: 'b'.repeat(64), compressor: 'zstd', digester: 'blake3' } as const;
  const raw = getCodec('zstd').compress(text)!;
  const chunk = {
    chunkIndex: 7,
    compressedSize: raw.length,
    uncompressedSize: text.length,
    compressed: true,
    digest: chunkDigest('blake3', text),
  };
  assert.deepEqual(decodeChunk(blob, chunk, raw), text);
  // stored raw: no decompression, still verified
  const plain = { ...chunk, compressedSize: text.length, compressed: false };
  assert.deepEqual(decodeChunk(blob, plain, text), text);
  const flipped = Buffer.from(text);
  flipped[5]! ^= 1;
  assert.throws(
    () => decodeChunk(blob, plain, flipped),
    (e) => e instanceof DigestMismatchError && /chunk 7 of blob b{64}/.test((e as Error).message),
  );
  assert.throws(
    () => decodeChunk(blob, chunk, raw.subarray(1)),
    (e) => FerryError.hasCode(e, 'DATA_LOSS') && /chunk 7/.test((e as Error).message),
  );
  // unknown digest: refused unless the caller skips verification
  const unknown = { ...chunk, digest: Buffer.alloc(0) };
  assert.throws(
    () => decodeChunk(blob, unknown, raw),
    (e) => FerryError.hasCode(e, 'FAILED_PRECONDITION'),
  );
  assert.deepEqual(decodeChunk(blob, unknown, raw, { unknownDigest: 'skip' }), text);
});
