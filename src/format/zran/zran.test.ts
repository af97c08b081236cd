import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { GzipIndexer, contextsOf, decodeZranIndex, encodeZranIndex, inflateAt, spanOf, type GzipIndex, type ZranBlob } from './index.js';

/** Compressible but not trivial data: words from a small seeded generator, with random runs. */
function sample(size: number, seed = 1): Buffer {
  const out = Buffer.alloc(size);
  let x = seed;
  const next = (): number => {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    return x >>> 8;
  };
  for (let i = 0; i < size; i++) out[i] = next() % 7 === 0 ? next() & 0xff : 97 + (next() % 12);
  return out;
}

function index(gz: Buffer, spacing: number, piece = 7777): { idx: GzipIndex; plain: Buffer } {
  const parts: Buffer[] = [];
  let expect = 0;
  const ix = new GzipIndexer(spacing, (b, off) => {
    assert.equal(off, expect);
    expect += b.length;
    parts.push(b);
  });
  for (let p = 0; p < gz.length; p += piece) ix.push(gz.subarray(p, p + piece));
  return { idx: ix.finish(), plain: Buffer.concat(parts) };
}

const data = sample(3 << 20);
const gz = gzipSync(data, { level: 6 });

test('indexing inflates the whole member and places checkpoints at the spacing', () => {
  const { idx, plain } = index(gz, 64 * 1024);
  assert.ok(plain.equals(data));
  assert.equal(idx.uncompressedSize, data.length);
  assert.equal(idx.compressedSize, gz.length);
  assert.equal(idx.checkpoints[0]!.outOffset, 0);
  for (let i = 1; i < idx.checkpoints.length; i++) {
    const c = idx.checkpoints[i]!;
    assert.ok(c.outOffset - idx.checkpoints[i - 1]!.outOffset >= 64 * 1024);
    assert.equal(c.window.length, 32 * 1024);
    assert.ok(c.window.equals(data.subarray(c.outOffset - 32 * 1024, c.outOffset)));
  }
  assert.ok(idx.checkpoints.length > 10, `${idx.checkpoints.length} checkpoints`);
});

test('random ranges inflated from their checkpoint equal the full inflate, non-byte-aligned checkpoints included', () => {
  const { idx } = index(gz, 64 * 1024);
  const ctx = contextsOf(idx.checkpoints, idx.compressedSize, idx.uncompressedSize);
  const blob: ZranBlob = { blobId: 'a'.repeat(64), layerDigest: `sha256:${'b'.repeat(64)}`, ...idx, contexts: ctx, chunks: [] };
  assert.ok(
    ctx.some((c) => c.bits !== 0),
    'some checkpoint starts mid-byte',
  );
  let seed = 7;
  for (let i = 0; i < 60; i++) {
    seed = (Math.imul(seed, 48271) + 11) >>> 0;
    const start = seed % (data.length - 1);
    const len = Math.min(data.length - start, 1 + (seed % 300_000));
    const first = ctx.findLastIndex((c) => c.outOffset <= start);
    const span = spanOf(blob, first, start + len);
    const got = inflateAt(span.context, gz.subarray(span.inOffset, span.inOffset + span.inLength), start - span.context.outOffset, len);
    assert.ok(got.equals(data.subarray(start, start + len)), `range ${start}+${len} from context ${first} (bits ${ctx[first]!.bits})`);
  }
});

test('a wrong dictionary or bit offset gives other bytes or an error, never the right ones silently', () => {
  const { idx } = index(gz, 64 * 1024);
  const c = idx.checkpoints.find((x) => x.bits !== 0 && x.outOffset > 0)!;
  const want = data.subarray(c.outOffset, c.outOffset + 100_000);
  const tail = gz.subarray(c.inOffset);
  assert.ok(inflateAt(c, tail, 0, want.length).equals(want));
  const badWindow = Buffer.from(c.window);
  badWindow.fill(0x20, 0, 32 * 1024);
  const digest = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
  const tries = [
    () => inflateAt({ ...c, window: badWindow }, tail, 0, want.length),
    () => inflateAt({ ...c, bits: (c.bits + 1) % 8 }, tail, 0, want.length),
    () => inflateAt(c, gz.subarray(c.inOffset + 1), 0, want.length),
  ];
  for (const t of tries) {
    let out: Buffer | undefined;
    try {
      out = t();
    } catch (err) {
      assert.equal((err as { code?: string }).code, 'DATA_LOSS');
    }
    if (out) assert.notEqual(digest(out), digest(want));
  }
});

test('the index file round-trips and refuses damage', () => {
  const { idx } = index(gz, 256 * 1024);
  const contexts = contextsOf(idx.checkpoints, idx.compressedSize, idx.uncompressedSize);
  const blob: ZranBlob = {
    blobId: 'c'.repeat(64),
    layerDigest: `sha256:${'d'.repeat(64)}`,
    compressedSize: idx.compressedSize,
    uncompressedSize: idx.uncompressedSize,
    contexts,
    chunks: [
      { offset: 0, size: 4096, context: 0, contextOffset: 10 },
      { offset: 4096, size: 1000, context: 2, contextOffset: 5 },
    ],
  };
  const enc = encodeZranIndex([blob]);
  const [back] = decodeZranIndex(enc);
  assert.deepEqual(back, blob);
  assert.throws(() => decodeZranIndex(enc.subarray(0, enc.length - 1)), /zran index/);
  const bad = Buffer.from(enc);
  bad.writeUInt32LE(contexts.length + 5, 16 + 96 + contexts.length * 40 + 24 + 12); // second chunk's context
  assert.throws(() => decodeZranIndex(bad), /chunk 1 lies outside/);
  assert.throws(() => decodeZranIndex(Buffer.alloc(16)), /bad magic/);
});

test('multi-member gzip and truncated streams are refused', () => {
  const two = Buffer.concat([gzipSync(Buffer.from('a')), gzipSync(Buffer.from('b'))]);
  assert.throws(() => index(two, 64 * 1024), /multi-member/);
  assert.throws(() => index(gz.subarray(0, gz.length - 100), 64 * 1024), /ends before/);
});

test('spans with stored blocks (incompressible data) after a mid-byte checkpoint keep their byte alignment', () => {
  const mixed = Buffer.concat([sample(400_000, 3), randomBytes(300_000), sample(500_000, 5), randomBytes(200_000), sample(300_000, 9)]);
  const mgz = gzipSync(mixed, { level: 6 });
  const { idx, plain } = index(mgz, 40 * 1024);
  assert.ok(plain.equals(mixed));
  const ctx = contextsOf(idx.checkpoints, idx.compressedSize, idx.uncompressedSize);
  const odd = new Set(ctx.filter((c) => c.bits !== 0).map((c) => c.bits));
  assert.ok(odd.size >= 3, `mid-byte checkpoints with bit counts ${[...odd]}`);
  const blob: ZranBlob = { blobId: 'a'.repeat(64), layerDigest: `sha256:${'b'.repeat(64)}`, ...idx, contexts: ctx, chunks: [] };
  for (const [i, c] of ctx.entries()) {
    // from each checkpoint to well past the next one: through the stored blocks of the random parts
    const len = Math.min(mixed.length - c.outOffset, 350_000);
    const span = spanOf(blob, i, c.outOffset + len);
    const got = inflateAt(c, mgz.subarray(span.inOffset, span.inOffset + span.inLength), 0, len);
    assert.ok(got.equals(mixed.subarray(c.outOffset, c.outOffset + len)), `from checkpoint ${i} (bits ${c.bits})`);
  }
});
