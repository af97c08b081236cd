/**
 * The metrics door: Prometheus text over TCP on loopback, over an owner-only unix socket, a bearer
 * token when one is set, and a non-loopback address refused without one.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:http';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Counter, createMetricsRegistry } from '../observe/index.js';
import { serveMetrics } from './index.js';

function registryWithCounter() {
  const registry = createMetricsRegistry();
  const c = new Counter({ name: 'ferry_test_scrapes_total', help: 'test counter', registers: [registry] });
  c.inc(3);
  return registry;
}

test('TCP on loopback (a bare port is 127.0.0.1): GET /metrics is Prometheus text; other paths and methods are refused', async () => {
  const m = await serveMetrics({ registry: registryWithCounter(), address: '0', what: '--metrics-address' });
  try {
    assert.match(m.address, /^127\.0\.0\.1:\d+$/);
    const r = await fetch(`http://${m.address}/metrics`);
    assert.equal(r.status, 200);
    assert.match(r.headers.get('content-type') ?? '', /^text\/plain/);
    const text = await r.text();
    assert.match(text, /# TYPE ferry_test_scrapes_total counter\nferry_test_scrapes_total 3\n/);
    assert.equal((await fetch(`http://${m.address}/metrics`, { method: 'POST' })).status, 405);
    assert.equal((await fetch(`http://${m.address}/api/v1/mounts`)).status, 404);
  } finally {
    await m.close();
  }
});

test('with a token every scrape needs `Authorization: Bearer <token>` (401 naming Bearer otherwise)', async () => {
  const token = 'scrape-token-0123456789';
  const m = await serveMetrics({ registry: registryWithCounter(), address: '127.0.0.1:0', token, what: '--metrics-address' });
  try {
    const none = await fetch(`http://${m.address}/metrics`);
    assert.equal(none.status, 401);
    assert.equal(none.headers.get('www-authenticate'), 'Bearer');
    assert.doesNotMatch(await none.text(), /ferry_test_scrapes_total/);
    assert.equal((await fetch(`http://${m.address}/metrics`, { headers: { authorization: 'Bearer wrong' } })).status, 401);
    const ok = await fetch(`http://${m.address}/metrics`, { headers: { authorization: `Bearer ${token}` } });
    assert.equal(ok.status, 200);
    assert.match(await ok.text(), /ferry_test_scrapes_total 3/);
  } finally {
    await m.close();
  }
});

test('a non-loopback address without a token is refused before anything listens; bad addresses are named', async () => {
  await assert.rejects(
    serveMetrics({ registry: registryWithCounter(), address: '0.0.0.0:0', what: '--metrics-address' }),
    /--metrics-address 0\.0\.0\.0:0 is not a loopback address/,
  );
  await assert.rejects(serveMetrics({ registry: registryWithCounter(), address: 'host:port', what: '--metrics-address' }), /host:port/);
});

test('a unix socket path: owner-only, scraped over the socket, removed on close', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'ferry-metrics-'));
  const path = join(dir, 'metrics.sock');
  try {
    const m = await serveMetrics({ registry: registryWithCounter(), address: path, what: '--metrics-address' });
    assert.equal((await stat(path)).mode & 0o777, 0o600);
    const text = await new Promise<string>((resolve, reject) => {
      request({ socketPath: path, path: '/metrics' }, (res) => {
        let b = '';
        res.on('data', (d: Buffer) => {
          b += d;
        });
        res.on('end', () => resolve(b));
      })
        .on('error', reject)
        .end();
    });
    assert.match(text, /ferry_test_scrapes_total 3/);
    await m.close();
    await assert.rejects(stat(path), /ENOENT/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
