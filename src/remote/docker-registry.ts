/**
 * @module remote/docker-registry
 * Runs Debian's `docker-registry` (CNCF distribution 2.8) as a reference server for tests and
 * benchmarks: filesystem storage in a temp dir, plain HTTP on 127.0.0.1, optionally Docker token auth
 * with a small in-process token server (ES256 JWTs whose x5c certificate is the registry's trusted root).
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createNetServer, type AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID, createPrivateKey } from 'node:crypto';
import { SignJWT } from 'jose';
import { FerryError } from '../core/index.js';

export interface DockerRegistryOptions {
  /** Require Docker token auth; tokens are granted to these users (any scope they ask for). */
  tokenAuth?: { users: Record<string, string>; expiresIn?: number };
  /** Storage directory (default: a new temp dir, removed on close). */
  dataDir?: string;
}

export interface DockerRegistryHandle {
  url: string;
  host: string;
  /** Token endpoint URL when token auth is on. */
  tokenUrl?: string;
  /** Number of tokens the token server issued. */
  tokensIssued(): number;
  close(): Promise<void>;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createNetServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

function b64url(buf: Buffer): string {
  return buf.toString('base64url');
}

/** Starts docker-registry; resolves once `/v2/` answers. */
export async function startDockerRegistry(opts: DockerRegistryOptions = {}): Promise<DockerRegistryHandle> {
  const work = mkdtempSync(join(tmpdir(), 'ferry-docker-registry-'));
  const dataDir = opts.dataDir ?? join(work, 'data');
  let tokenServer: Server | undefined;
  let tokenUrl: string | undefined;
  let issued = 0;
  let authYaml = '';
  if (opts.tokenAuth) {
    const keyPath = join(work, 'key.pem');
    const certPath = join(work, 'cert.pem');
    execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
      '-keyout', keyPath, '-out', certPath, '-days', '2', '-subj', '/CN=ferry-test-token'], { stdio: 'ignore' });
    const key = createPrivateKey(readFileSync(keyPath));
    const certDer = Buffer.from(readFileSync(certPath, 'utf8').replace(/-----[^-]+-----/g, '').replace(/\s+/g, ''), 'base64');
    const users = opts.tokenAuth.users;
    const expiresIn = opts.tokenAuth.expiresIn ?? 300;
    tokenServer = createServer((req, res) => {
      void (async () => {
        const u = new URL(req.url ?? '/', 'http://x');
        const h = req.headers.authorization ?? '';
        let subject = '';
        if (h.startsWith('Basic ')) {
          const dec = Buffer.from(h.slice(6), 'base64').toString();
          const i = dec.indexOf(':');
          const user = dec.slice(0, i);
          if (users[user] === undefined || users[user] !== dec.slice(i + 1)) {
            res.writeHead(401, { 'content-type': 'application/json' });
            res.end('{"errors":[{"code":"UNAUTHORIZED","message":"bad credentials"}]}');
            return;
          }
          subject = user;
        }
        const access = u.searchParams.getAll('scope').flatMap((s) => {
          const last = s.lastIndexOf(':');
          const first = s.indexOf(':');
          if (first < 0 || last <= first) return [];
          // anonymous callers get nothing
          return subject ? [{ type: s.slice(0, first), name: s.slice(first + 1, last), actions: s.slice(last + 1).split(',') }] : [];
        });
        const now = Math.floor(Date.now() / 1000);
        const token = await new SignJWT({ access })
          .setProtectedHeader({ alg: 'ES256', typ: 'JWT', x5c: [certDer.toString('base64')] })
          .setIssuer('ferry-test-issuer').setSubject(subject).setAudience(u.searchParams.get('service') ?? '')
          .setIssuedAt(now).setNotBefore(now - 10).setExpirationTime(now + expiresIn).setJti(randomUUID())
          .sign(key);
        issued++;
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ token, expires_in: expiresIn, issued_at: new Date().toISOString() }));
      })().catch((err: unknown) => { res.writeHead(500); res.end(String(err)); });
    });
    await new Promise<void>((r) => tokenServer!.listen(0, '127.0.0.1', r));
    tokenUrl = `http://127.0.0.1:${(tokenServer.address() as AddressInfo).port}/token`;
    authYaml = `auth:\n  token:\n    realm: ${tokenUrl}\n    service: ferry-test-registry\n    issuer: ferry-test-issuer\n    rootcertbundle: ${certPath}\n`;
    void b64url;
  }
  let child: ChildProcess | undefined;
  let lastErr = '';
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = await freePort();
    const cfgPath = join(work, 'config.yml');
    writeFileSync(cfgPath, `version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: ${dataDir}\n  delete:\n    enabled: true\n` +
      `http:\n  addr: 127.0.0.1:${port}\n${authYaml}`);
    const proc = spawn('docker-registry', ['serve', cfgPath], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    proc.stderr!.on('data', (d: Buffer) => { stderr = (stderr + d.toString()).slice(-4000); });
    const exited = new Promise<number>((r) => proc.once('exit', (code) => r(code ?? -1)));
    const url = `http://127.0.0.1:${port}`;
    let up = false;
    for (let i = 0; i < 100 && proc.exitCode === null; i++) {
      try {
        const res = await fetch(`${url}/v2/`);
        await res.body?.cancel();
        if (res.status === 200 || res.status === 401) { up = true; break; }
      } catch { /* not yet */ }
      await new Promise((r) => setTimeout(r, 50));
    }
    if (up) {
      child = proc;
      const handle: DockerRegistryHandle = {
        url, host: `127.0.0.1:${port}`,
        tokensIssued: () => issued,
        close: async () => {
          if (child && child.exitCode === null) { child.kill('SIGTERM'); await Promise.race([exited, new Promise((r) => setTimeout(r, 3000))]); if (child.exitCode === null) child.kill('SIGKILL'); }
          if (tokenServer) await new Promise<void>((r) => tokenServer!.close(() => r()));
          rmSync(work, { recursive: true, force: true });
        },
      };
      if (tokenUrl) handle.tokenUrl = tokenUrl;
      return handle;
    }
    lastErr = stderr;
    proc.kill('SIGKILL');
    await exited;
  }
  if (tokenServer) await new Promise<void>((r) => tokenServer!.close(() => r()));
  rmSync(work, { recursive: true, force: true });
  throw new FerryError('UNAVAILABLE', `docker-registry did not start: ${lastErr.trim()}`);
}
