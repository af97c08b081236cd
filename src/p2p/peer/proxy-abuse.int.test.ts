/**
 * Abuse of a peer's proxy port (bounded, loopback): it is not an open forward proxy. Absolute-URI
 * requests, CONNECT, X-Dragonfly-Registry and ?ns= reach only the registries the node is
 * configured for (mirror, allowedHosts, hijack hosts); anything else is 403 and the other host
 * sees no request. Allowed registries keep working in every mode. And a task altered on disk
 * after it completed is never served as good: a piece failing its crc32 is dropped and refetched;
 * a blob failing its digest is not sent whole (the transfer is aborted) and is dropped.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import http, { createServer, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { mkdtempSync, openSync, readSync, rmSync, writeSync, closeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { metricValue } from '../../observe/index.js';
import { readAll } from '../common/http.js';
import { pieceDigest, taskId } from '../common/idgen.js';
import { randomBlob, startOrigin, type Origin } from '../testing/origin.js';
import { startPeer, type PeerHandle } from './peer.js';

const MiB = 1024 * 1024;
const sha = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;

interface Answer {
  status: number;
  body: Buffer;
  headers: IncomingMessage['headers'];
}

/** A request to the proxy: `path` absolute-URI or origin-form. */
function viaProxy(proxyUrl: string, path: string, headers: Record<string, string> = {}, method = 'GET'): Promise<Answer> {
  const pu = new URL(proxyUrl);
  return new Promise((resolve, reject) => {
    const r = http.request({ hostname: pu.hostname, port: pu.port, method, path, headers, agent: false }, (res) => {
      readAll(res).then((body) => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }), reject);
    });
    r.on('error', reject);
    r.end();
  });
}

/** CONNECT through the proxy: the status line, and the socket when it was established. */
function connect(proxyUrl: string, target: string): Promise<{ status: number; socket: Duplex; head: string }> {
  const pu = new URL(proxyUrl);
  return new Promise((resolve, reject) => {
    const r = http.request({ hostname: pu.hostname, port: pu.port, method: 'CONNECT', path: target, agent: false });
    r.on('connect', (res, socket) => resolve({ status: res.statusCode ?? 0, socket, head: '' }));
    r.on('response', (res) => {
      readAll(res).then((b) => resolve({ status: res.statusCode ?? 0, socket: res.socket, head: b.toString() }), reject);
    });
    r.on('error', reject);
    r.end();
  });
}

describe('proxy port abuse', () => {
  let mirror: Origin;
  let extra: Origin;
  let peer: PeerHandle;
  let dir: string;
  /** A host the proxy must not reach (stands for an internal service or any site). */
  let forbidden: Server;
  let forbiddenHits = 0;
  let forbiddenHost = '';

  before(async () => {
    mirror = await startOrigin();
    extra = await startOrigin();
    forbidden = createServer((_req, res) => {
      forbiddenHits++;
      res.end('internal');
    });
    await new Promise<void>((r) => forbidden.listen(0, '127.0.0.1', () => r()));
    forbiddenHost = `127.0.0.1:${(forbidden.address() as AddressInfo).port}`;
    dir = mkdtempSync(join(tmpdir(), 'ferry-proxy-abuse-'));
    peer = await startPeer({
      dataDir: dir,
      proxyListen: '127.0.0.1:0',
      uploadListen: '127.0.0.1:0',
      config: {
        proxy: { registryMirror: { url: mirror.url, nsScheme: 'http' }, allowedHosts: [extra.host] },
        download: { directBelow: 0 },
        // no memory cache: every piece read comes from disk (the tampering tests alter the files)
        storage: { memoryCache: 0 },
      },
    });
  });
  after(async () => {
    await peer.close();
    await mirror.close();
    await extra.close();
    forbidden.closeAllConnections();
    await new Promise<void>((r) => forbidden.close(() => r()));
    rmSync(dir, { recursive: true, force: true });
  });

  test('absolute URIs, CONNECT, X-Dragonfly-Registry and ?ns= to a host that is not an allowed registry: 403, nothing sent there', async () => {
    const blobPath = `/v2/library/x/blobs/sha256:${'a'.repeat(64)}`;
    const refused: Answer[] = [
      await viaProxy(peer.proxyUrl, `http://${forbiddenHost}/latest/meta-data/`),
      await viaProxy(peer.proxyUrl, `http://${forbiddenHost}${blobPath}`),
      await viaProxy(peer.proxyUrl, `http://${forbiddenHost}${blobPath}`, { 'x-dragonfly-use-p2p': 'true' }),
      await viaProxy(peer.proxyUrl, `http://${forbiddenHost}/x`, {}, 'POST'),
      await viaProxy(peer.proxyUrl, `http://${forbiddenHost}/x`, {}, 'HEAD'),
      await viaProxy(peer.proxyUrl, `http://localhost:${forbiddenHost.split(':')[1]}/x`),
      await viaProxy(peer.proxyUrl, `http://${mirror.host.split(':')[0]}:${forbiddenHost.split(':')[1]}/x`, {}, 'GET'),
      await viaProxy(peer.proxyUrl, blobPath, { 'x-dragonfly-registry': `http://${forbiddenHost}` }),
      await viaProxy(peer.proxyUrl, '/v2/library/x/manifests/v1', { 'x-dragonfly-registry': `http://${forbiddenHost}` }),
      await viaProxy(peer.proxyUrl, blobPath, { 'x-dragonfly-registry': `http://${mirror.host}@${forbiddenHost}` }),
      await viaProxy(peer.proxyUrl, `${blobPath}?ns=${forbiddenHost}`),
      await viaProxy(peer.proxyUrl, `/v2/?ns=${forbiddenHost}`),
    ];
    for (const [i, r] of refused.entries()) {
      assert.equal(r.status, 403, `request ${i}: ${r.status} ${r.body.toString().slice(0, 200)}`);
      assert.equal(r.headers['x-dragonfly-error-type'], 'proxy');
    }
    assert.match(refused[0]!.body.toString(), /not a registry this peer serves.*allowedHosts/);
    for (const t of [
      forbiddenHost,
      `localhost:${forbiddenHost.split(':')[1]}`,
      `127.0.0.1.:${forbiddenHost.split(':')[1]}`,
      'metadata.internal:80',
      `[::1]:${forbiddenHost.split(':')[1]}`,
      '127.0.0.1:22',
    ]) {
      const c = await connect(peer.proxyUrl, t);
      assert.equal(c.status, 403, `CONNECT ${t}`);
      c.socket.destroy();
    }
    assert.equal(forbiddenHits, 0, 'the forbidden host saw no request');
    assert.ok((await metricValue(peer.metrics, 'ferry_peer_proxy_request_denied_total')) >= refused.length + 6);
    assert.equal(await metricValue(peer.metrics, 'ferry_peer_download_task_total'), 0, 'no task was created');
  });

  test('the allowed registries work: mirror, allowedHosts by absolute URI and ?ns=, CONNECT tunnel', async () => {
    const a = mirror.addBlob('library/ok', randomBlob(5 * MiB));
    const viaMirror = await viaProxy(peer.proxyUrl, new URL(a.url).pathname);
    assert.equal(viaMirror.status, 200);
    assert.equal(sha(viaMirror.body), a.digest);
    const b = extra.addBlob('library/ok', randomBlob(5 * MiB));
    const abs = await viaProxy(peer.proxyUrl, b.url, { 'x-dragonfly-use-p2p': 'true' });
    assert.equal(abs.status, 200);
    assert.equal(sha(abs.body), b.digest);
    const ns = await viaProxy(peer.proxyUrl, `${new URL(b.url).pathname}?ns=${extra.host}`);
    assert.equal(ns.status, 200);
    assert.equal(sha(ns.body), b.digest);
    const hdr = await viaProxy(peer.proxyUrl, new URL(b.url).pathname, { 'x-dragonfly-registry': extra.url });
    assert.equal(sha(hdr.body), b.digest);
    // CONNECT to an allowed host:port is a tunnel.
    const c = await connect(peer.proxyUrl, extra.host);
    assert.equal(c.status, 200);
    const reply = await new Promise<string>((resolve) => {
      let got = '';
      c.socket.on('data', (d: Buffer) => {
        got += d.toString('latin1');
        if (got.includes('\r\n\r\n')) {
          c.socket.destroy();
          resolve(got);
        }
      });
      c.socket.write(`GET /v2/ HTTP/1.1\r\nhost: ${extra.host}\r\nconnection: close\r\n\r\n`);
    });
    assert.match(reply, /^HTTP\/1\.1 200/);
    assert.equal(forbiddenHits, 0);
  });

  /** Flips byte `at` of the task's data file; returns the new bytes of piece `n`. */
  const tamper = (dataPath: string, at: number): void => {
    const fd = openSync(dataPath, 'r+');
    try {
      const b = Buffer.alloc(1);
      readSync(fd, b, 0, 1, at);
      b[0] = b[0]! ^ 0xff;
      writeSync(fd, b, 0, 1, at);
    } finally {
      closeSync(fd);
    }
  };

  test('a piece altered on disk after the task completed is dropped and refetched, never served', async () => {
    const blob = mirror.addBlob('library/tamper', randomBlob(12 * MiB + 5));
    const path = new URL(blob.url).pathname;
    const first = await viaProxy(peer.proxyUrl, path);
    assert.equal(sha(first.body), blob.digest);
    const tid = taskId({ blobDigest: true, url: blob.url });
    for (let i = 0; i < 200 && !peer.store.get(tid)?.meta.done; i++) await new Promise((r) => setTimeout(r, 20));
    const entry = peer.store.get(tid)!;
    assert.ok(entry.meta.done);
    tamper(entry.dataPath, 4 * MiB + 100); // piece 1
    const before = mirror.blobBytes();
    // A whole read: piece 1 fails its crc32, is dropped, refetched from the origin, then sent.
    const again = await viaProxy(peer.proxyUrl, path);
    assert.equal(again.status, 200);
    assert.equal(sha(again.body), blob.digest, 'the altered byte never reached the client');
    assert.ok((await metricValue(peer.metrics, 'ferry_peer_piece_failure_total', { reason: 'disk' })) >= 1);
    assert.equal(mirror.blobBytes() - before, 4 * MiB, 'exactly the dropped piece came again');
    // A range read of an altered piece, and a child peer's read of one: refetched / refused.
    for (let i = 0; i < 200 && !peer.store.get(tid)?.complete; i++) await new Promise((r) => setTimeout(r, 20));
    tamper(entry.dataPath, 8 * MiB + 7); // piece 2
    const pu = new URL(peer.proxyUrl);
    const ranged = await new Promise<Answer>((resolve, reject) => {
      http
        .get(
          { hostname: pu.hostname, port: pu.port, path, headers: { range: `bytes=${8 * MiB}-${8 * MiB + 99}` }, agent: false },
          (res) => {
            readAll(res).then((body) => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }), reject);
          },
        )
        .on('error', reject);
    });
    assert.equal(ranged.status, 206);
    assert.deepEqual(ranged.body, blob.data.subarray(8 * MiB, 8 * MiB + 100));
    for (let i = 0; i < 200 && !peer.store.get(tid)?.complete; i++) await new Promise((r) => setTimeout(r, 20));
    tamper(entry.dataPath, 1); // piece 0
    const child = await new Promise<number>((resolve, reject) => {
      http
        .get(`${peer.uploadUrl}/api/v1/tasks/${tid}/pieces/0?url=${encodeURIComponent(blob.url)}`, { agent: false }, (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        })
        .on('error', reject);
    });
    assert.notEqual(child, 200, 'a child peer does not get the altered piece');
    assert.equal(peer.store.get(tid)?.has(0), false, 'and it was dropped');
  });

  test('a blob whose stored bytes and crc32s were both altered: not sent whole, dropped; the next request is good', async () => {
    const blob = mirror.addBlob('library/tamper2', randomBlob(9 * MiB));
    const path = new URL(blob.url).pathname;
    assert.equal(sha((await viaProxy(peer.proxyUrl, path)).body), blob.digest);
    const tid = taskId({ blobDigest: true, url: blob.url });
    for (let i = 0; i < 200 && !peer.store.get(tid)?.meta.done; i++) await new Promise((r) => setTimeout(r, 20));
    const entry = peer.store.get(tid)!;
    // Alter piece 1 and its recorded crc32 alike: only the whole-blob digest can tell.
    tamper(entry.dataPath, 4 * MiB + 3);
    const fd = openSync(entry.dataPath, 'r');
    const p1 = Buffer.alloc(4 * MiB);
    readSync(fd, p1, 0, p1.length, 4 * MiB);
    closeSync(fd);
    entry.meta.pieces[1] = pieceDigest(p1);
    const bad = await new Promise<{ status: number; got: number; aborted: boolean; length: number }>((resolve, reject) => {
      const pu = new URL(peer.proxyUrl);
      http
        .get({ hostname: pu.hostname, port: pu.port, path, agent: false }, (res) => {
          let got = 0;
          res.on('data', (c: Buffer) => {
            got += c.length;
          });
          res.on('end', () => resolve({ status: res.statusCode ?? 0, got, aborted: false, length: Number(res.headers['content-length']) }));
          res.on('error', () =>
            resolve({ status: res.statusCode ?? 0, got, aborted: true, length: Number(res.headers['content-length']) }),
          );
        })
        .on('error', reject);
    });
    assert.equal(bad.status, 200);
    assert.ok(bad.aborted || bad.got < bad.length, `the transfer was cut short (${bad.got} of ${bad.length} bytes)`);
    assert.ok(bad.got <= 8 * MiB, 'the last piece was held back');
    for (let i = 0; i < 200 && peer.store.get(tid) === entry; i++) await new Promise((r) => setTimeout(r, 20));
    assert.notEqual(peer.store.get(tid), entry, 'the bad copy was dropped');
    const good = await viaProxy(peer.proxyUrl, path);
    assert.equal(sha(good.body), blob.digest);
  });

  test('allow-list entries are validated: a bad entry stops the peer before it listens', async () => {
    const d = mkdtempSync(join(tmpdir(), 'ferry-proxy-allow-'));
    try {
      await assert.rejects(
        startPeer({
          dataDir: d,
          proxyListen: '127.0.0.1:0',
          uploadListen: '127.0.0.1:0',
          config: { proxy: { allowedHosts: ['http://x/'] } },
        }),
        /allowedHosts: "http:\/\/x\/" is not host/,
      );
      await assert.rejects(
        startPeer({ dataDir: d, proxyListen: '127.0.0.1:0', uploadListen: '127.0.0.1:0', config: { proxy: { allowedHosts: ['^(x'] } } }),
        /invalid regex/,
      );
    } finally {
      rmSync(d, { recursive: true, force: true });
    }
  });
});
