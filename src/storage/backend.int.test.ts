/**
 * The chunk backends against the Backend contract (storage/testsuite.ts): a local directory of blob
 * files, a real ferry registry on loopback (ranged GETs), and the P2P-proxy backend through a
 * forward proxy in front of that registry (absolute-URI GETs, as dfdaemon serves them). Then the
 * proxy backend's own promise: the fallback to the registry — counted — when the proxy is down.
 */
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { createServer, request, type Server } from 'node:http';
import { mkdtempSync, rmSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startRegistry, type RegistryHandle } from '../registry/index.js';
import { RegistryClient } from '../remote/index.js';
import { silentLogger } from '../observe/index.js';
import { LocalFsBackend, ProxyBackend, RegistryBackend } from './index.js';
import { backendSuite, type BlobSet } from './testsuite.js';

const PASSWORD = 'Proxy-test-1';
let dir: string;
let reg: RegistryHandle;
let proxy: Server;
let proxied = 0;
let repos = 0;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'ferry-backend-'));
  reg = await startRegistry({ listen: '127.0.0.1:0', dataDir: join(dir, 'reg'), adminPassword: PASSWORD, log: silentLogger() });
  // A minimal HTTP forward proxy: absolute-URI requests are forwarded to their origin.
  proxy = createServer((req, res) => {
    proxied++;
    const u = new URL(req.url!);
    const up = request({ host: u.hostname, port: u.port, path: u.pathname + u.search, method: req.method, headers: req.headers }, (r) => {
      res.writeHead(r.statusCode!, r.headers);
      r.pipe(res);
    });
    up.on('error', () => {
      res.writeHead(502);
      res.end();
    });
    req.pipe(up);
  });
  await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
});

after(async () => {
  proxy?.close();
  await reg?.close();
  rmSync(dir, { recursive: true, force: true });
});

/** Pushes the blobs into a fresh repository of the registry; returns its name. */
async function pushed(blobs: BlobSet): Promise<string> {
  const repo = `library/backend-${++repos}`;
  const c = new RegistryClient({ credentials: () => ({ username: 'admin', password: PASSWORD }) });
  for (const [id, data] of blobs) await c.pushBlob(reg.host, repo, `sha256:${id}`, data.length, data);
  return repo;
}

const registryBackend = (repo: string): RegistryBackend =>
  new RegistryBackend({
    host: reg.host,
    repo,
    insecure: true,
    auth: Buffer.from(`admin:${PASSWORD}`).toString('base64'),
  });

describe('Backend contract', () => {
  backendSuite('localfs', async (blobs) => {
    const d = await mkdtemp(join(tmpdir(), 'ferry-localfs-'));
    let n = 0;
    // both file names the daemon meets: the bare blob id and the `sha256:`-prefixed one
    for (const [id, data] of blobs) await writeFile(join(d, n++ % 2 ? id : `sha256:${id}`), data);
    return { backend: new LocalFsBackend(d), cleanup: () => rm(d, { recursive: true, force: true }) };
  });

  backendSuite('registry', async (blobs) => ({ backend: registryBackend(await pushed(blobs)), cleanup: async () => undefined }));

  backendSuite('proxy', async (blobs) => {
    const port = (proxy.address() as { port: number }).port;
    const backend = new ProxyBackend({ proxyUrl: `http://127.0.0.1:${port}`, registry: registryBackend(await pushed(blobs)) });
    const before = proxied;
    return {
      backend,
      cleanup: async () => assert.ok(proxied > before, 'the reads went through the proxy'),
    };
  });
});

test('proxy backend: a counted fallback to the registry when the proxy is down, none when fallback is off', async () => {
  const blob = randomBytes(300_000);
  const id = createHash('sha256').update(blob).digest('hex');
  const repo = await pushed(new Map([[id, blob]]));
  const dead = createServer();
  await new Promise<void>((r) => dead.listen(0, '127.0.0.1', r));
  const deadPort = (dead.address() as { port: number }).port;
  await new Promise<void>((r) => dead.close(() => r()));
  const fb = new ProxyBackend({ proxyUrl: `http://127.0.0.1:${deadPort}`, registry: registryBackend(repo) });
  assert.ok((await fb.read(id, 0, 4096, new AbortController().signal)).equals(blob.subarray(0, 4096)));
  assert.equal(fb.fallbacks(), 1);
  const noFallback = new ProxyBackend({ proxyUrl: `http://127.0.0.1:${deadPort}`, registry: registryBackend(repo), fallback: false });
  await assert.rejects(noFallback.read(id, 0, 10, new AbortController().signal));
  assert.equal(noFallback.fallbacks(), 0);
});
