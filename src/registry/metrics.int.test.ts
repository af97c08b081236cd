/**
 * The registry's Prometheus surface: `/metrics` in text format, and the blob byte counters other
 * parts of Ferry (P2P benchmarks) read to see how many bytes the registry served.
 */
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { metricValue } from '../observe/index.js';
import { startTestRegistry } from './testing/client.js';

it('counts blob body bytes served, including ranges, and serves /metrics', async () => {
  const reg = await startTestRegistry();
  try {
    const data = randomBytes(100_000);
    const digest = await reg.pushBlob('library/m', data);
    assert.equal(await metricValue(reg.metrics, 'ferry_registry_blob_bytes_received_total'), data.length);
    const before = await metricValue(reg.metrics, 'ferry_registry_blob_bytes_served_total');
    assert.equal(before, 0);
    await (await reg.req(`/v2/library/m/blobs/${digest}`)).arrayBuffer();
    await (await reg.req(`/v2/library/m/blobs/${digest}`, { headers: { range: 'bytes=0-999' } })).arrayBuffer();
    await reg.req(`/v2/library/m/blobs/${digest}`, { method: 'HEAD' });
    assert.equal(await metricValue(reg.metrics, 'ferry_registry_blob_bytes_served_total'), data.length + 1000);
    const r = await reg.req('/metrics', { auth: '' });
    assert.equal(r.status, 200);
    const text = await r.text();
    assert.match(text, /^ferry_registry_blob_bytes_served_total 101000$/m);
    assert.match(text, /ferry_registry_requests_total\{route="blob",method="GET",status="206"\} 1/);
  } finally {
    await reg.destroy();
  }
});

it('runs on the in-memory blob store (the test fake) as well', async () => {
  const { MemoryBlobStore } = await import('../content/index.js');
  const reg = await startTestRegistry({ store: new MemoryBlobStore() });
  try {
    const data = randomBytes(5000);
    const digest = await reg.pushBlob('library/mem', data);
    const r = await reg.req(`/v2/library/mem/blobs/${digest}`, { headers: { range: 'bytes=10-19' } });
    assert.equal(r.status, 206);
    assert.deepEqual(Buffer.from(await r.arrayBuffer()), data.subarray(10, 20));
  } finally {
    await reg.destroy();
  }
});
