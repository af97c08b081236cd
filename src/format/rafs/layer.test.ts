import { test } from 'node:test';
import assert from 'node:assert/strict';
import { gzipSync } from 'node:zlib';
import { writeTar } from '../tar/index.js';
import { packBootstrapLayer, unpackBootstrapLayer, unpackBootstrapLayerFiles } from './layer.js';

async function collect(s: AsyncIterable<unknown>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of s) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

test('bootstrap layer packs image/image.boot and unpacks it again, reproducibly', async () => {
  const boot = Buffer.alloc(8192, 7);
  const a = await packBootstrapLayer(boot);
  const b = await packBootstrapLayer(boot);
  assert.deepEqual(a.blob, b.blob);
  assert.match(a.diffId, /^sha256:[a-f0-9]{64}$/);
  assert.deepEqual(await unpackBootstrapLayer(a.blob), boot);
});

test('bootstrap layer carries blob.meta files by blob id; a layer without image.boot is refused', async () => {
  const id = 'c'.repeat(64);
  const packed = await packBootstrapLayer(Buffer.from('boot'), [{ name: `${id}.blob.meta`, data: Buffer.from('meta') }]);
  const files = await unpackBootstrapLayerFiles(packed.blob);
  assert.deepEqual(files.bootstrap, Buffer.from('boot'));
  assert.deepEqual([...files.blobMeta], [[id, Buffer.from('meta')]]);
  const base = { uid: 0, gid: 0, mtime: 0, xattrs: {}, mode: 0o644 };
  const other = gzipSync(await collect(writeTar([{ entry: { ...base, path: 'other', type: 'file', size: 1 }, body: Buffer.from('x') }])));
  await assert.rejects(unpackBootstrapLayerFiles(other), { code: 'INVALID_ARGUMENT' });
});
