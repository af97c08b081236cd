/**
 * Registry and P2P-proxy backends against a real ferry registry on loopback: ranged reads, a
 * forward proxy in the path (absolute-URI GETs, as dfdaemon serves them), and the fallback to the
 * registry — counted — when the proxy is down.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { createServer, request, type Server } from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startRegistry, type RegistryHandle } from '../registry/index.js';
import { RegistryClient } from '../remote/index.js';
import { silentLogger } from '../observe/index.js';
import { ProxyBackend, RegistryBackend } from './index.js';

let dir: string;
let reg: RegistryHandle;
let blob: Buffer;
let id: string;
let proxy: Server;
let proxied = 0;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'ferry-proxy-'));
  reg = await startRegistry({ listen: '127.0.0.1:0', dataDir: join(dir, 'reg'), adminPassword: 'Proxy-test-1', log: silentLogger() });
  blob = randomBytes(300_000);
  id = createHash('sha256').update(blob).digest('hex');
  const c = new RegistryClient({ credentials: () => ({ username: 'admin', password: 'Proxy-test-1' }) });
  await c.pushBlob(reg.host, 'library/p', `sha256:${id}`, blob.length, blob);
  // A minimal HTTP forward proxy: absolute-URI requests are forwarded to their origin.
  proxy = createServer((req, res) => {
    proxied++;
    const u = new URL(req.url!);
    const up = request({ host: u.hostname, port: u.port, path: u.pathname + u.search, method: req.method, headers: req.headers }, (r) => {
      res.writeHead(r.statusCode!, r.headers);
      r.pipe(res);
    });
    up.on('error', () => { res.writeHead(502); res.end(); });
    req.pipe(up);
  });
  await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
});

after(async () => {
  proxy?.close();
  await reg?.close();
  rmSync(dir, { recursive: true, force: true });
});

test('registry backend: ranged reads', async () => {
  const b = new RegistryBackend({ host: reg.host, repo: 'library/p', insecure: true });
  const got = await b.read(id, 1000, 5000, new AbortController().signal);
  assert.ok(got.equals(blob.subarray(1000, 6000)));
});

test('proxy backend: through the proxy, and a counted fallback when it is down', async () => {
  const port = (proxy.address() as { port: number }).port;
  const reg1 = new RegistryBackend({ host: reg.host, repo: 'library/p', insecure: true });
  const viaProxy = new ProxyBackend({ proxyUrl: `http://127.0.0.1:${port}`, registry: reg1 });
  const before = proxied;
  assert.ok((await viaProxy.read(id, 7, 100_000, new AbortController().signal)).equals(blob.subarray(7, 100_007)));
  assert.ok(proxied > before, 'the request went through the proxy');
  assert.equal(viaProxy.fallbacks(), 0);

  const dead = createServer();
  await new Promise<void>((r) => dead.listen(0, '127.0.0.1', r));
  const deadPort = (dead.address() as { port: number }).port;
  await new Promise<void>((r) => dead.close(() => r()));
  const fb = new ProxyBackend({ proxyUrl: `http://127.0.0.1:${deadPort}`, registry: reg1 });
  assert.ok((await fb.read(id, 0, 4096, new AbortController().signal)).equals(blob.subarray(0, 4096)));
  assert.equal(fb.fallbacks(), 1);
  const noFallback = new ProxyBackend({ proxyUrl: `http://127.0.0.1:${deadPort}`, registry: reg1, fallback: false });
  await assert.rejects(noFallback.read(id, 0, 10, new AbortController().signal));
});
