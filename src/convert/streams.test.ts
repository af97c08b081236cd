import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { compress as zstdCompress } from 'zstd-napi';
import { decompressed, collect } from './streams.js';
import { layerCacheKey } from './cache.js';

test('decompressed() undoes gzip and zstd by magic, passes plain data and tiny streams through', async () => {
  const data = Buffer.from(`${'x'.repeat(100_000)}tail`);
  const chunks = (b: Buffer): Readable => Readable.from([b.subarray(0, 1), b.subarray(1, 3), b.subarray(3)]);
  assert.deepEqual(await collect(decompressed(chunks(gzipSync(data)))), data);
  assert.deepEqual(await collect(decompressed(chunks(Buffer.from(zstdCompress(data))))), data);
  assert.deepEqual(await collect(decompressed(chunks(data))), data);
  assert.deepEqual(await collect(decompressed(Readable.from([Buffer.from('ab')]))), Buffer.from('ab'));
  assert.deepEqual(await collect(decompressed(Readable.from([]))), Buffer.alloc(0));
  await assert.rejects(collect(decompressed(Readable.from([Buffer.from([0x1f, 0x8b, 8, 0, 1, 2, 3, 4, 5])]))));
});

test('layer cache keys change with every build option', () => {
  const base = { fsVersion: 6 as const, compressor: 'zstd', chunkSize: 0x100000, digester: 'blake3' };
  const d = `sha256:${'a'.repeat(64)}`;
  const k = layerCacheKey(d, base);
  assert.equal(layerCacheKey(d, { ...base }), k);
  for (const o of [
    { fsVersion: 5 as const },
    { compressor: 'lz4_block' },
    { chunkSize: 0x10000 },
    { digester: 'sha256' },
    { chunkDict: d },
    { prefetchPatterns: ['/bin'] },
  ]) {
    assert.notEqual(layerCacheKey(d, { ...base, ...o }), k, JSON.stringify(o));
  }
  assert.notEqual(layerCacheKey(`sha256:${'b'.repeat(64)}`, base), k);
});
