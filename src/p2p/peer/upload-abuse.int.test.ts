/**
 * Abuse of a peer's upload port by strangers (bounded, loopback): without a valid cluster
 * signature nothing is served — no piece lists, no piece bytes, no task listing — and no download
 * can be commanded (the old fetch-anything hole: `POST /api/v1/tasks {"url": <internal service>}`
 * then reading the pieces back). Members must still name the task's exact URL. A peer whose
 * upload port is reachable from the network refuses to start without a cluster secret.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ClusterAuth, CLUSTER_AUTH_WINDOW_MS } from '../common/cluster-auth.js';
import { readAll } from '../common/http.js';
import { taskId } from '../common/idgen.js';
import { hugeRequest, rawRequest } from '../testing/raw.js';
import { randomBlob, startOrigin, type Origin } from '../testing/origin.js';
import { PeerClient } from './client.js';
import { startPeer, type PeerHandle } from './peer.js';

const SECRET = 'upload-abuse-cluster-secret';
const auth = new ClusterAuth(SECRET);
const stranger = new ClusterAuth('not-the-cluster-secret!');

describe('upload port abuse', () => {
  let origin: Origin;
  let peer: PeerHandle;
  let dir: string;
  /** A service only the node can reach (stands for a metadata endpoint or an internal API). */
  let internal: Server;
  let internalHits = 0;
  let internalUrl = '';
  let blobUrl = '';
  let tid = '';

  before(async () => {
    origin = await startOrigin();
    internal = createServer((_req, res) => {
      internalHits++;
      res.writeHead(200, { 'content-length': 6 });
      res.end('secret');
    });
    await new Promise<void>((r) => internal.listen(0, '127.0.0.1', () => r()));
    internalUrl = `http://127.0.0.1:${(internal.address() as AddressInfo).port}/latest/meta-data/iam`;
    dir = mkdtempSync(join(tmpdir(), 'ferry-upload-abuse-'));
    peer = await startPeer({
      dataDir: dir,
      proxyListen: '127.0.0.1:0',
      uploadListen: '127.0.0.1:0',
      config: { cluster: { token: SECRET }, proxy: { registryMirror: { url: origin.url } }, download: { directBelow: 0 } },
    });
    const blob = origin.addBlob('library/abuse', randomBlob(5 * 1024 * 1024));
    blobUrl = blob.url;
    tid = taskId({ blobDigest: true, url: blob.url });
    const res = await new PeerClient(peer.proxyUrl).download(blob.url);
    await readAll(res, 64 * 1024 * 1024);
  });
  after(async () => {
    await peer.close();
    await origin.close();
    internal.closeAllConnections();
    await new Promise<void>((r) => internal.close(() => r()));
    rmSync(dir, { recursive: true, force: true });
  });

  const paths = (): [string, string, string | undefined][] => {
    const q = `url=${encodeURIComponent(blobUrl)}`;
    return [
      ['GET', `/api/v1/tasks/${tid}/pieces?${q}`, undefined],
      ['GET', `/api/v1/tasks/${tid}/pieces?${q}&have=-1&wait=1000`, undefined],
      ['GET', `/api/v1/tasks/${tid}/pieces/0?${q}`, undefined],
      ['GET', '/api/v1/tasks', undefined],
      ['POST', '/api/v1/tasks', JSON.stringify({ url: internalUrl, wait: true })],
      ['POST', '/api/v1/tasks', JSON.stringify({ url: blobUrl })],
    ];
  };

  test('strangers get nothing: unsigned, forged, stale, or signed for another request → 401', async () => {
    for (const [method, path, body] of paths()) {
      const opt = { method, ...(body !== undefined ? { body } : {}) };
      const none = await rawRequest(`${peer.uploadUrl}${path}`, opt);
      assert.equal(none.status, 401, `unsigned ${method} ${path}: ${none.body.toString().slice(0, 200)}`);
      assert.equal(none.headers['www-authenticate'], 'Ferry-Cluster');
      assert.ok(none.body.length < 500 && !none.body.includes('"pieces"'), 'no piece data or list in the refusal');
      const forged = await rawRequest(`${peer.uploadUrl}${path}`, {
        ...opt,
        headers: { authorization: stranger.sign(method, path, body) },
      });
      assert.equal(forged.status, 401, `forged ${method} ${path}`);
      const stale = await rawRequest(`${peer.uploadUrl}${path}`, {
        ...opt,
        headers: { authorization: auth.sign(method, path, body, Date.now() - CLUSTER_AUTH_WINDOW_MS - 1000) },
      });
      assert.equal(stale.status, 401, `stale ${method} ${path}`);
      const bearer = await rawRequest(`${peer.uploadUrl}${path}`, { ...opt, headers: { authorization: `Bearer ${SECRET}` } });
      assert.equal(bearer.status, 401, 'the raw secret is not a credential');
    }
    // A member's signature for piece 0 does not fetch piece 1, nor the piece list.
    const q = `url=${encodeURIComponent(blobUrl)}`;
    const h = auth.sign('GET', `/api/v1/tasks/${tid}/pieces/0?${q}`);
    assert.equal((await rawRequest(`${peer.uploadUrl}/api/v1/tasks/${tid}/pieces/1?${q}`, { headers: { authorization: h } })).status, 401);
    assert.equal((await rawRequest(`${peer.uploadUrl}/api/v1/tasks/${tid}/pieces?${q}`, { headers: { authorization: h } })).status, 401);
    // A download command signed for one URL cannot be reused with another body.
    const cmd = JSON.stringify({ url: blobUrl });
    const ch = auth.sign('POST', '/api/v1/tasks', cmd);
    assert.equal(
      (
        await rawRequest(`${peer.uploadUrl}/api/v1/tasks`, {
          method: 'POST',
          body: JSON.stringify({ url: internalUrl, wait: true }),
          headers: { authorization: ch },
        })
      ).status,
      401,
    );
    assert.equal(internalHits, 0, 'the internal service was never fetched');
    assert.equal(peer.store.list().length, 1, 'no task was created by a stranger');
    // A stranger's huge body is refused at once, unread.
    const big = await hugeRequest(`${peer.uploadUrl}/api/v1/tasks`, { declared: 1024 * 1024 * 1024, max: 1024 * 1024 * 1024 });
    assert.equal(big.status, 401);
    assert.ok(big.sent < 64 * 1024 * 1024, `sent ${big.sent} bytes before the answer`);
    // Health and metrics stay open (probes, Prometheus).
    assert.equal((await rawRequest(`${peer.uploadUrl}/healthy`)).status, 200);
    assert.equal((await rawRequest(`${peer.uploadUrl}/metrics`)).status, 200);
  });

  test("members: signed requests work, but must name the task's exact URL; a replayed command is refused", async () => {
    const signed = (method: string, path: string, body?: string): Promise<Awaited<ReturnType<typeof rawRequest>>> =>
      rawRequest(`${peer.uploadUrl}${path}`, {
        method,
        ...(body !== undefined ? { body } : {}),
        headers: { authorization: auth.sign(method, path, body) },
      });
    const q = `url=${encodeURIComponent(blobUrl)}`;
    const list = await signed('GET', `/api/v1/tasks/${tid}/pieces?${q}`);
    assert.equal(list.status, 200);
    assert.equal((JSON.parse(list.body.toString()) as { done: boolean }).done, true);
    const piece = await signed('GET', `/api/v1/tasks/${tid}/pieces/0?${q}`);
    assert.equal(piece.status, 200);
    assert.equal(piece.body.length, 4 * 1024 * 1024);
    assert.equal((await signed('GET', '/api/v1/tasks')).status, 200);
    // The URL must match the task id: another URL, a URL with a changed digest, none at all.
    for (const bad of [
      `?url=${encodeURIComponent(`${blobUrl}x`)}`,
      `?url=${encodeURIComponent(blobUrl.replace(/sha256:(.)/, (_m, c: string) => `sha256:${c === '0' ? '1' : '0'}`))}`,
      `?url=${encodeURIComponent(internalUrl)}`,
      '',
    ]) {
      const r = await signed('GET', `/api/v1/tasks/${tid}/pieces/0${bad}`);
      assert.equal(r.status, 403, bad);
      assert.doesNotMatch(r.body.toString(), /secret/);
      assert.equal((await signed('GET', `/api/v1/tasks/${tid}/pieces${bad}`)).status, 403, bad);
    }
    // Malformed commands: 400.
    for (const body of [
      '{"url":',
      '[]',
      'null',
      '{"url":5}',
      '{"url":"not a url"}',
      '{"url":"http://x/","range":7}',
      '{"url":"http://x/","headers":[1]}',
      '{"url":"http://x/","headers":{"a":1}}',
      '{"url":"file:///etc/passwd"}',
      '{"url":"gopher://127.0.0.1:6379/_x"}',
    ]) {
      assert.equal((await signed('POST', '/api/v1/tasks', body)).status, 400, body);
    }
    // A member's command, replayed by someone who saw it on the wire: refused.
    const cmd = JSON.stringify({ url: blobUrl, wait: true });
    const h = auth.sign('POST', '/api/v1/tasks', cmd);
    const first = await rawRequest(`${peer.uploadUrl}/api/v1/tasks`, { method: 'POST', body: cmd, headers: { authorization: h } });
    assert.equal(first.status, 200, first.body.toString());
    const replay = await rawRequest(`${peer.uploadUrl}/api/v1/tasks`, { method: 'POST', body: cmd, headers: { authorization: h } });
    assert.equal(replay.status, 401);
    assert.match(replay.body.toString(), /replayed/);
    assert.equal(internalHits, 0);
  });
});

test('a peer whose upload port is reachable from the network refuses to start without a cluster secret', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ferry-upload-nosecret-'));
  try {
    await assert.rejects(startPeer({ dataDir: dir, proxyListen: '127.0.0.1:0', uploadListen: '0.0.0.0:0' }), (err: Error) => {
      assert.match(err.message, /no cluster secret/);
      assert.match(err.message, /cluster\.tokenFile/);
      assert.match(err.message, /FERRY_CLUSTER_TOKEN/);
      assert.match(err.message, /--cluster-token-file/);
      assert.match(err.message, /--upload-listen 127\.0\.0\.1:0/);
      return true;
    });
    // The default upload address (0.0.0.0:65002) is reachable too.
    await assert.rejects(startPeer({ dataDir: dir, proxyListen: '127.0.0.1:0' }), /no cluster secret/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
