/**
 * Shared by the convert/accel end-to-end tests: a small multi-layer test image exercising what a
 * conversion must keep (modes, owners, symlinks, hardlinks, xattrs, whiteouts, opaque dirs, a file
 * spanning several chunks, an empty file, a device-less special file), built as an OCI layout.
 */
import { execFileSync } from 'node:child_process';
import { chmod, chown, link, mkdir, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { busyboxRootfs, buildOciImage, whiteout, opaqueDir, type BuiltImage } from '../../src/bench/env/index.js';

/** Deterministic pseudo-random bytes (so layers are reproducible between runs). */
export function pseudoRandom(n: number, seed: string): Buffer {
  const out = Buffer.alloc(n);
  let block = createHash('sha256').update(seed).digest();
  for (let off = 0; off < n; off += block.length) {
    block.copy(out, off, 0, Math.min(block.length, n - off));
    block = createHash('sha256').update(block).digest();
  }
  return out;
}

/** Builds the three-layer test image under `dir`; `variant` changes the content of the top layer. */
export async function makeTestImage(dir: string, variant = 'a'): Promise<BuiltImage> {
  const l1 = join(dir, 'l1');
  const l2 = join(dir, 'l2');
  const l3 = join(dir, 'l3');
  await busyboxRootfs(l1);
  await mkdir(join(l1, 'data/keep'), { recursive: true });
  await mkdir(join(l1, 'opq'), { recursive: true });
  await writeFile(join(l1, 'opq/old'), 'hidden by the opaque dir above\n');
  await writeFile(join(l1, 'data/gone'), 'deleted by a whiteout in layer 2\n');
  await writeFile(join(l1, 'data/keep/file'), 'kept\n');
  await writeFile(join(l1, 'data/big'), pseudoRandom(3 * 1024 * 1024 + 123, 'big'));

  await mkdir(join(l2, 'data'), { recursive: true });
  await mkdir(join(l2, 'srv/app'), { recursive: true });
  await whiteout(l2, 'data/gone');
  await writeFile(join(l2, 'srv/app/run.sh'), '#!/bin/sh\necho hello from ferry\n');
  await chmod(join(l2, 'srv/app/run.sh'), 0o4750);
  await chown(join(l2, 'srv/app/run.sh'), 1000, 100);
  await writeFile(join(l2, 'srv/app/empty'), '');
  await link(join(l2, 'srv/app/run.sh'), join(l2, 'srv/app/hardlink'));
  await symlink('../app/run.sh', join(l2, 'srv/app/link'));
  await writeFile(join(l2, 'srv/app/xattr'), 'with xattrs\n');
  execFileSync('setfattr', ['-n', 'user.ferry', '-v', 'value1', join(l2, 'srv/app/xattr')]);
  execFileSync('mkfifo', [join(l2, 'srv/app/fifo')]);
  await writeFile(join(l2, 'data/big'), pseudoRandom(1024 * 1024, 'big2')); // replaces the lower file

  await opaqueDir(l3, 'opq');
  await writeFile(join(l3, 'opq/new'), `only this survives (${variant})\n`);
  await mkdir(join(l3, 'etc'), { recursive: true });
  await writeFile(join(l3, 'etc/motd'), `variant ${variant}\n`);
  return buildOciImage({ layers: [l1, l2, l3], outDir: join(dir, 'layout'), config: { Cmd: ['/srv/app/run.sh'], Env: ['A=1'] } });
}

import { createServer as createHttpServer, request as httpRequest, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export type FaultAction = 'pass' | 'fail503' | 'drop' | { delayMs: number } | { throttleBps: number };

/** An HTTP proxy in front of a registry whose behaviour a test changes at run time. */
export interface FaultProxy {
  host: string;
  url: string;
  /** Decides per request (method, path) what happens; default pass. */
  rule: (method: string, path: string) => FaultAction;
  requests: Array<{ method: string; path: string; action: string }>;
  close(): Promise<void>;
}

export async function startFaultProxy(upstream: string): Promise<FaultProxy> {
  const up = new URL(upstream);
  const proxy: FaultProxy = {
    host: '',
    url: '',
    rule: () => 'pass',
    requests: [],
    close: async () => {},
  };
  const forward = (req: IncomingMessage, res: ServerResponse, throttleBps?: number): void => {
    const headers = { ...req.headers, host: up.host };
    const u = httpRequest({ host: up.hostname, port: up.port, path: req.url, method: req.method, headers }, (ur) => {
      const h = { ...ur.headers };
      // Rewrite absolute Locations/realms pointing at the upstream to the proxy.
      for (const k of ['location', 'www-authenticate'] as const) {
        const v = h[k];
        if (typeof v === 'string') h[k] = v.split(up.host).join(proxy.host);
      }
      res.writeHead(ur.statusCode ?? 502, h);
      if (!throttleBps) {
        ur.pipe(res);
        return;
      }
      ur.on('data', (c: Buffer) => {
        ur.pause();
        res.write(c);
        setTimeout(() => ur.resume(), Math.ceil((c.length / throttleBps) * 1000));
      });
      ur.on('end', () => res.end());
    });
    u.on('error', () => {
      if (!res.headersSent) res.writeHead(502);
      res.end();
    });
    req.pipe(u);
  };
  const server = createHttpServer((req, res) => {
    const path = req.url ?? '/';
    const a = proxy.rule(req.method ?? 'GET', path);
    proxy.requests.push({ method: req.method ?? '', path, action: typeof a === 'string' ? a : JSON.stringify(a) });
    if (proxy.requests.length > 5000) proxy.requests.splice(0, 1000);
    if (a === 'fail503') {
      req.resume();
      res.writeHead(503, { 'content-type': 'application/json' });
      res.end('{"errors":[{"code":"UNAVAILABLE","message":"injected"}]}');
      return;
    }
    if (a === 'drop') {
      req.socket.destroy();
      return;
    }
    if (typeof a === 'object' && 'delayMs' in a) {
      setTimeout(() => forward(req, res), a.delayMs);
      return;
    }
    forward(req, res, typeof a === 'object' && 'throttleBps' in a ? a.throttleBps : undefined);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  proxy.host = `127.0.0.1:${port}`;
  proxy.url = `http://${proxy.host}`;
  proxy.close = () =>
    new Promise<void>((r) => {
      server.close(() => r());
      server.closeAllConnections();
    });
  return proxy;
}

/** Polls `fn` every `everyMs` until it returns a value (not undefined) or `timeoutMs` passes. */
export async function eventually<T>(what: string, fn: () => Promise<T | undefined>, timeoutMs = 60_000, everyMs = 200): Promise<T> {
  const end = Date.now() + timeoutMs;
  let last: unknown;
  while (Date.now() < end) {
    try {
      const v = await fn();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, everyMs));
  }
  throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
}
