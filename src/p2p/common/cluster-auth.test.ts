import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sendError } from '../../httpx/index.js';
import { ClusterAuth, CLUSTER_AUTH_WINDOW_MS, isLoopbackHost, loadClusterSecret, readAuthenticated } from './cluster-auth.js';
import { jsonRequest, request } from './http.js';

const SECRET = 'cluster-secret-0123456789abcdef';

test('cluster auth: a signature verifies for exactly the signed method, target and body', () => {
  let now = 1_700_000_000_000;
  const a = new ClusterAuth(SECRET, { now: () => now });
  const target = '/api/v1/tasks/ab/pieces/3?url=http%3A%2F%2Fr%2Fv2%2Fx%2Fblobs%2Fsha256%3A00&have=-1';
  const h = a.sign('GET', `http://192.0.2.1:65002${target}`);
  assert.match(h, /^Ferry-Cluster t=1700000000000, n=[0-9a-f]{32}, sig=[0-9a-f]{64}$/);
  assert.ok(!h.includes(SECRET), 'the secret never goes on the wire');
  assert.deepEqual(a.verify('GET', target, h).ok, true);
  assert.equal(a.verify('get', target, h).ok, true, 'method case does not matter');
  for (const [m, t] of [
    ['POST', target],
    ['GET', target.replace('pieces/3', 'pieces/4')],
    ['GET', target.replace('have=-1', 'have=0')],
    ['GET', `${target}&x=1`],
  ] as const) {
    const r = a.verify(m, t, h);
    assert.equal(r.ok, false, `${m} ${t}`);
    assert.match(r.ok ? '' : r.reason, /bad cluster signature/);
  }
  const body = Buffer.from('{"url":"http://r/v2/x/blobs/sha256:00"}');
  const p = a.sign('POST', '/api/v1/tasks', body);
  assert.equal(a.verify('POST', '/api/v1/tasks', p, Buffer.from('{"url":"http://169.254.169.254/"}')).ok, false, 'another body');
  assert.equal(a.verify('POST', '/api/v1/tasks', p, body).ok, true);
  // Another secret, a forged signature, a changed timestamp or nonce: refused.
  const other = new ClusterAuth('another-secret-0123456789', { now: () => now });
  assert.equal(other.verify('GET', target, h).ok, false);
  const forged = h.replace(/sig=([0-9a-f])/, (_m, c: string) => `sig=${c === '0' ? '1' : '0'}`);
  assert.equal(a.verify('GET', target, forged).ok, false);
  assert.equal(
    a.verify(
      'GET',
      target,
      h.replace(/t=(\d+)/, (_m, t: string) => `t=${Number(t) + 1}`),
    ).ok,
    false,
  );
  assert.equal(
    a.verify(
      'GET',
      target,
      h.replace(/n=([0-9a-f])/, (_m, c: string) => `n=${c === '0' ? '1' : '0'}`),
    ).ok,
    false,
  );
  // Clock window ±5 min.
  now += CLUSTER_AUTH_WINDOW_MS;
  assert.equal(a.verify('GET', target, h).ok, true, 'at the edge of the window');
  now += 1;
  const late = a.verify('GET', target, h);
  assert.equal(late.ok, false);
  assert.match(late.ok ? '' : late.reason, /window/);
  now -= 2 * CLUSTER_AUTH_WINDOW_MS + 2;
  assert.equal(a.verify('GET', target, h).ok, false, 'from the future');
});

test('cluster auth: state-changing requests cannot be replayed; malformed headers are refused', () => {
  const a = new ClusterAuth(SECRET);
  const body = Buffer.from('{"events":[]}');
  const h = a.sign('POST', '/api/v1/peers/p/events', body);
  assert.equal(a.verify('POST', '/api/v1/peers/p/events', h, body).ok, true);
  const again = a.verify('POST', '/api/v1/peers/p/events', h, body);
  assert.equal(again.ok, false);
  assert.match(again.ok ? '' : again.reason, /replayed/);
  const g = a.sign('GET', '/api/v1/tasks');
  assert.equal(a.verify('GET', '/api/v1/tasks', g).ok, true);
  assert.equal(a.verify('GET', '/api/v1/tasks', g).ok, true, 'a read may repeat (its answer was on the wire already)');
  for (const bad of [
    undefined,
    '',
    'Bearer abc',
    `Ferry-Cluster t=1, sig=${'0'.repeat(64)}`,
    `Ferry-Cluster t=x, n=${'0'.repeat(32)}, sig=${'0'.repeat(64)}`,
    `Ferry-Cluster t=1, n=${'0'.repeat(32)}, sig=${'0'.repeat(63)}`,
    `Ferry-Cluster t=1, n=${'0'.repeat(32)}, sig=${'0'.repeat(64)}, extra=1`,
    SECRET,
  ]) {
    assert.equal(a.verify('GET', '/api/v1/tasks', bad).ok, false, String(bad));
  }
  assert.throws(() => new ClusterAuth('short'), /too short/);
});

test('cluster auth over HTTP: request() signs what Node sends; readAuthenticated checks it; redirects to another host drop it', async () => {
  const auth = new ClusterAuth(SECRET);
  const seen: string[] = [];
  const server = createServer((req, res) => {
    seen.push(String(req.headers.authorization ?? ''));
    if (req.url === '/elsewhere') {
      res.writeHead(302, { location: `http://localhost:${(server.address() as AddressInfo).port}/landed` });
      res.end();
      return;
    }
    readAuthenticated(req, auth, 1024).then(
      (b) => {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ len: b.length }));
      },
      (err: unknown) => {
        sendError(res, err);
      },
    );
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  try {
    // A query with characters the URL parser re-encodes: the signature covers the target as sent.
    const q = `${base}/api/v1/tasks/x/pieces?url=${encodeURIComponent('http://r.example/v2/a b/blobs/sha256:00?ns=r')}&have=-1`;
    assert.deepEqual(await jsonRequest(q, { auth }), { len: 0 });
    assert.deepEqual(await jsonRequest(`${base}/api/v1/tasks`, { method: 'POST', json: { url: 'http://x/é' }, auth }), { len: 21 });
    await assert.rejects(jsonRequest(`${base}/api/v1/tasks`), /401 no cluster credentials/);
    await assert.rejects(
      jsonRequest(`${base}/api/v1/tasks`, { method: 'POST', json: { big: 'x'.repeat(2000) }, auth }),
      /413 request body over 1024 bytes: Content-Length \d+ exceeds the limit/,
    );
    seen.length = 0;
    const r = await request(`${base}/elsewhere`, { auth });
    r.body.resume();
    assert.equal(seen.length, 2);
    assert.match(seen[0]!, /^Ferry-Cluster /);
    assert.equal(seen[1], '', 'the redirect to another host carries no signature');
  } finally {
    server.closeAllConnections();
    server.close();
  }
});

test('cluster secret loading and loopback detection', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ferry-cluster-'));
  try {
    const f = join(dir, 'token');
    writeFileSync(f, `${SECRET}\n`, { mode: 0o600 });
    assert.equal(loadClusterSecret({ tokenFile: f }), SECRET, 'trailing newline trimmed');
    assert.equal(loadClusterSecret({ token: SECRET }), SECRET);
    assert.equal(loadClusterSecret({}), undefined);
    assert.throws(() => loadClusterSecret({ token: SECRET, tokenFile: f }), /exclusive/);
    assert.throws(() => loadClusterSecret({ tokenFile: join(dir, 'missing') }), /cluster token file .*missing/);
    writeFileSync(f, 'short\n');
    assert.throws(() => loadClusterSecret({ tokenFile: f }), /too short/);
    writeFileSync(f, SECRET);
    chmodSync(f, 0o644);
    const warnings: string[] = [];
    const log = {
      warn: (_o: unknown, msg: string) => {
        warnings.push(msg);
      },
    } as unknown as Parameters<typeof loadClusterSecret>[1];
    assert.equal(loadClusterSecret({ tokenFile: f }, log), SECRET);
    assert.match(warnings.join('\n'), /chmod 600/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  for (const h of ['127.0.0.1', '127.1.2.3', '::1', '[::1]', 'localhost', '::ffff:127.0.0.1']) assert.equal(isLoopbackHost(h), true, h);
  for (const h of ['0.0.0.0', '', '::', '192.0.2.1', '10.0.0.1', 'example.com', '128.0.0.1']) assert.equal(isLoopbackHost(h), false, h);
});
