/**
 * A registry that acknowledges a referrers tag-schema index but does not keep it: an HTTP proxy on
 * loopback in front of `upstream` that answers every PUT of a `sha256-<hex>` manifest tag with 201
 * (and the digest of the body) and drops it; everything else is passed through. For the checks that
 * a pushed referrer is really listed (`ferry trace push`, conversion attestations).
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { sha256Digest } from '../../src/core/index.js';

/** Headers not passed on (fetch sets its own). */
const HOP = new Set(['host', 'connection', 'content-length', 'transfer-encoding', 'expect', 'keep-alive']);

export interface DroppingProxy {
  /** `127.0.0.1:PORT`, to use in place of the upstream's host in references */
  host: string;
  close(): Promise<void>;
}

export async function startIndexDroppingProxy(upstream: string): Promise<DroppingProxy> {
  const proxy: Server = createServer((req, res) => {
    void (async () => {
      const chunks: Buffer[] = [];
      for await (const c of req) chunks.push(c as Buffer);
      if (req.method === 'PUT' && /\/manifests\/sha256-[0-9a-f]{64}$/.test(req.url ?? '')) {
        res.writeHead(201, { 'docker-content-digest': sha256Digest(Buffer.concat(chunks)) }).end();
        return;
      }
      const headers: Record<string, string> = {};
      for (const [k, v] of Object.entries(req.headers)) if (typeof v === 'string' && !HOP.has(k)) headers[k] = v;
      const up = await fetch(`${upstream}${req.url}`, {
        method: req.method ?? 'GET',
        headers,
        ...(chunks.length ? { body: Buffer.concat(chunks) } : {}),
        redirect: 'manual',
      });
      const out: Record<string, string> = {};
      up.headers.forEach((v, k) => {
        if (!HOP.has(k) && k !== 'content-encoding') out[k] = v;
      });
      res.writeHead(up.status, out).end(Buffer.from(await up.arrayBuffer()));
    })().catch((err: unknown) => res.writeHead(502).end(String(err)));
  });
  await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
  return {
    host: `127.0.0.1:${(proxy.address() as AddressInfo).port}`,
    close: () => new Promise<void>((r) => proxy.close(() => r())),
  };
}
