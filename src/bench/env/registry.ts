/**
 * @module bench/env/registry
 * The CNCF distribution registry (Debian `docker-registry` 2.8) as a reference server for tests and
 * benchmarks: our own config (filesystem storage, no access log, plain HTTP on an ephemeral port,
 * optionally inside a network namespace, optionally its Prometheus metrics on a debug address),
 * optionally with Docker token auth served by a small
 * in-process token server (ES256 JWTs whose x5c certificate is the registry's trusted root).
 */
import { spawn, execFileSync } from 'node:child_process';
import { createServer, type Server } from 'node:http';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { randomUUID, createPrivateKey, type KeyObject } from 'node:crypto';
import { SignJWT } from 'jose';
import { FerryError } from '../../core/index.js';
import { netnsWrap, sbinPath } from './exec.js';

export interface DistributionRegistryOptions {
  /** Work directory (config, storage); default a new temp dir, removed on close. */
  dir?: string;
  /** host:port; default 127.0.0.1:0. */
  listen?: string;
  /** Run inside this network namespace (`nsenter --net`). */
  netns?: string;
  /**
   * host:port of distribution's debug server with its Prometheus metrics at /metrics
   * (registry_http_requests_total, registry_http_response_size_bytes by handler); off by default.
   */
  debugAddr?: string;
  /** Require Docker token auth; tokens are granted to these users for any scope they ask for. */
  tokenAuth?: { users: Record<string, string>; expiresIn?: number };
  timeoutMs?: number;
}

export interface DistributionRegistry {
  url: string;
  host: string;
  pid: number;
  /** Token endpoint URL when token auth is on. */
  tokenUrl?: string;
  /** Number of tokens the token server issued. */
  tokensIssued(): number;
  close(): Promise<void>;
}

interface TokenServer {
  server: Server;
  url: string;
  certPath: string;
  issued: () => number;
}

async function startTokenServer(work: string, users: Record<string, string>, expiresIn: number): Promise<TokenServer> {
  const keyPath = join(work, 'token-key.pem');
  const certPath = join(work, 'token-cert.pem');
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-keyout',
      keyPath,
      '-out',
      certPath,
      '-days',
      '2',
      '-subj',
      '/CN=ferry-test-token',
    ],
    { stdio: 'ignore' },
  );
  const key: KeyObject = createPrivateKey(readFileSync(keyPath));
  const certDer = Buffer.from(
    readFileSync(certPath, 'utf8')
      .replace(/-----[^-]+-----/g, '')
      .replace(/\s+/g, ''),
    'base64',
  );
  let issued = 0;
  const server = createServer((req, res) => {
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
      // Anonymous callers get a token granting nothing.
      const access = subject
        ? u.searchParams.getAll('scope').flatMap((s) => {
            const first = s.indexOf(':');
            const last = s.lastIndexOf(':');
            if (first < 0 || last <= first) return [];
            return [{ type: s.slice(0, first), name: s.slice(first + 1, last), actions: s.slice(last + 1).split(',') }];
          })
        : [];
      const now = Math.floor(Date.now() / 1000);
      const token = await new SignJWT({ access })
        .setProtectedHeader({ alg: 'ES256', typ: 'JWT', x5c: [certDer.toString('base64')] })
        .setIssuer('ferry-test-issuer')
        .setSubject(subject)
        .setAudience(u.searchParams.get('service') ?? '')
        .setIssuedAt(now)
        .setNotBefore(now - 10)
        .setExpirationTime(now + expiresIn)
        .setJti(randomUUID())
        .sign(key);
      issued++;
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ token, expires_in: expiresIn, issued_at: new Date().toISOString() }));
    })().catch((err: unknown) => {
      res.writeHead(500);
      res.end(String(err));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/token`, certPath, issued: () => issued };
}

/** Starts `docker-registry serve`; resolves once it logs its listen address. */
export async function startDistributionRegistry(opts: DistributionRegistryOptions = {}): Promise<DistributionRegistry> {
  const ownDir = opts.dir === undefined;
  const dir = ownDir ? mkdtempSync(join(tmpdir(), 'ferry-docker-registry-')) : resolve(opts.dir!);
  await mkdir(join(dir, 'data'), { recursive: true });
  const token = opts.tokenAuth ? await startTokenServer(dir, opts.tokenAuth.users, opts.tokenAuth.expiresIn ?? 300) : undefined;
  const cleanup = async (): Promise<void> => {
    if (token) await new Promise<void>((r) => token.server.close(() => r()));
    if (ownDir) rmSync(dir, { recursive: true, force: true });
  };
  const cfg = [
    'version: 0.1',
    'log:',
    '  level: info',
    '  formatter: json',
    '  accesslog:',
    '    disabled: true',
    'storage:',
    '  filesystem:',
    `    rootdirectory: ${JSON.stringify(join(dir, 'data'))}`,
    '  delete:',
    '    enabled: true',
    'http:',
    `  addr: ${JSON.stringify(opts.listen ?? '127.0.0.1:0')}`,
    ...(opts.debugAddr
      ? ['  debug:', `    addr: ${JSON.stringify(opts.debugAddr)}`, '    prometheus:', '      enabled: true', '      path: /metrics']
      : []),
    ...(token
      ? [
          'auth:',
          '  token:',
          `    realm: ${token.url}`,
          '    service: ferry-test-registry',
          '    issuer: ferry-test-issuer',
          `    rootcertbundle: ${token.certPath}`,
        ]
      : []),
    '',
  ].join('\n');
  const cfgPath = join(dir, 'config.yml');
  await writeFile(cfgPath, cfg);
  const [cmd, args] = netnsWrap(opts.netns, 'docker-registry', ['serve', cfgPath]);
  const child = spawn(cmd, args, {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, PATH: sbinPath(), OTEL_TRACES_EXPORTER: 'none' },
  });
  let buf = '';
  let host: string;
  try {
    host = await new Promise<string>((res, rej) => {
      const timer = setTimeout(() => {
        child.kill('SIGKILL');
        rej(new FerryError('DEADLINE_EXCEEDED', `docker-registry did not start: ${buf.slice(-500)}`));
      }, opts.timeoutMs ?? 20_000);
      const onData = (d: Buffer): void => {
        buf = (buf + d.toString()).slice(-8000);
        const m = /listening on ([^\s"\\]+)/.exec(buf);
        if (m?.[1]) {
          clearTimeout(timer);
          res(m[1].replace(/^\[::\]/, '127.0.0.1'));
        }
      };
      child.stdout.on('data', onData);
      child.stderr.on('data', onData);
      child.on('exit', (code) => {
        clearTimeout(timer);
        rej(new FerryError('UNAVAILABLE', `docker-registry exited ${code}: ${buf.slice(-500)}`));
      });
    });
  } catch (err) {
    await cleanup();
    throw err;
  }
  child.stdout.resume();
  child.stderr.resume();
  const handle: DistributionRegistry = {
    url: `http://${host}`,
    host,
    pid: child.pid ?? -1,
    tokensIssued: () => token?.issued() ?? 0,
    close: async () => {
      if (child.exitCode === null && child.signalCode === null) {
        const done = new Promise<void>((r) => child.on('exit', () => r()));
        child.kill('SIGTERM');
        const t = setTimeout(() => child.kill('SIGKILL'), 5_000);
        await done;
        clearTimeout(t);
      }
      await cleanup();
    },
  };
  if (token) handle.tokenUrl = token.url;
  return handle;
}
