/**
 * @module p2p/testing/origin
 * A small blob origin for P2P tests and benchmarks: serves registry-style blob URLs
 * (`/v2/<repo>/blobs/sha256:<hex>`) and manifests with HEAD and single Range support, counts body
 * bytes served, can be throttled, can require a bearer token, and can be paused mid-stream.
 */
import { createHash, randomBytes } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { drained } from '../common/index.js';

export interface OriginBlob {
  digest: string;
  data: Buffer;
  url: string;
}

export interface Origin {
  url: string;
  host: string;
  /** Body bytes sent for blob GETs (ranges included). */
  blobBytes(): number;
  /** TCP (or TLS) connections accepted so far (keep-alive reuse shows as fewer connections than requests). */
  connections(): number;
  /** Every request line seen: `METHOD path auth=<yes|no>`. */
  log: string[];
  addBlob(repo: string, data: Buffer): OriginBlob;
  /** Serves `data` under `digest` whatever its real digest (a registry whose storage is corrupt). */
  addBlobAs(repo: string, digest: string, data: Buffer): OriginBlob;
  addManifest(repo: string, tag: string, body: Buffer, mediaType: string): void;
  /** Throttle blob bodies to this many bytes/s (0 = off). */
  setRate(bytesPerSecond: number): void;
  /** While set, blob GET bodies are cut (connection destroyed) after this many bytes. */
  setCutAfter(bytes: number | undefined): void;
  close(): Promise<void>;
}

export function randomBlob(size: number): Buffer {
  // Cheap pseudo-random content: 1 MiB random block repeated with a counter stamped per block.
  const block = randomBytes(Math.min(size, 1 << 20));
  const out = Buffer.allocUnsafe(size);
  for (let off = 0, i = 0; off < size; off += block.length, i++) {
    block.copy(out, off, 0, Math.min(block.length, size - off));
    if (off + 8 <= size) out.writeUInt32BE(i, off);
  }
  return out;
}

export async function startOrigin(opts: { token?: string; tls?: { cert: string; key: string }; host?: string } = {}): Promise<Origin> {
  const blobs = new Map<string, Buffer>();
  const manifests = new Map<string, { body: Buffer; mediaType: string }>();
  let served = 0;
  let rate = 0;
  let cutAfter: number | undefined;
  const log: string[] = [];

  const handler = (req: IncomingMessage, res: ServerResponse): void => {
    void (async () => {
      const u = new URL(req.url ?? '/', 'http://x');
      const auth = req.headers.authorization;
      log.push(`${req.method} ${u.pathname} auth=${auth ? 'yes' : 'no'}`);
      if (opts.token && auth !== `Bearer ${opts.token}`) {
        res.writeHead(401, {
          'www-authenticate': `Bearer realm="http://${req.headers.host}/token",service="test"`,
          'content-type': 'application/json',
        });
        res.end(req.method === 'HEAD' ? undefined : '{"errors":[{"code":"UNAUTHORIZED"}]}');
        return;
      }
      if (u.pathname === '/v2/' || u.pathname === '/v2') {
        res.writeHead(200, { 'content-length': 2 });
        res.end('{}');
        return;
      }
      const mm = /^\/v2\/(.+)\/manifests\/([^/]+)$/.exec(u.pathname);
      if (mm) {
        const m = manifests.get(`${mm[1]}:${mm[2]}`);
        if (!m) {
          res.writeHead(404);
          res.end();
          return;
        }
        res.writeHead(200, {
          'content-type': m.mediaType,
          'content-length': m.body.length,
          'docker-content-digest': `sha256:${createHash('sha256').update(m.body).digest('hex')}`,
        });
        res.end(req.method === 'HEAD' ? undefined : m.body);
        return;
      }
      const bm = /^\/v2\/(.+)\/blobs\/(sha256:[a-f0-9]{64})$/.exec(u.pathname);
      const data = bm ? blobs.get(`${bm[1]}@${bm[2]}`) : undefined;
      if (!bm || !data) {
        res.writeHead(404, { 'content-type': 'application/json' });
        res.end('{"errors":[{"code":"BLOB_UNKNOWN"}]}');
        return;
      }
      let start = 0;
      let end = data.length - 1;
      let status = 200;
      const r = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
      if (r) {
        start = Number(r[1]);
        end = r[2] ? Math.min(Number(r[2]), data.length - 1) : data.length - 1;
        status = 206;
      }
      const headers: Record<string, string | number> = {
        'content-type': 'application/octet-stream',
        'content-length': end - start + 1,
        'docker-content-digest': bm[2]!,
        'accept-ranges': 'bytes',
      };
      if (status === 206) headers['content-range'] = `bytes ${start}-${end}/${data.length}`;
      res.writeHead(status, headers);
      if (req.method === 'HEAD') {
        res.end();
        return;
      }
      const step = 64 * 1024;
      for (let off = start; off <= end; off += step) {
        if (res.destroyed) return;
        if (cutAfter !== undefined && off - start >= cutAfter) {
          res.destroy();
          return;
        }
        const part = data.subarray(off, Math.min(end + 1, off + step));
        if (rate > 0) await sleep(Math.ceil((part.length / rate) * 1000));
        served += part.length;
        if (!res.write(part)) await drained(res);
      }
      res.end();
    })().catch(() => res.destroy());
  };
  const server: Server = opts.tls ? createHttpsServer({ cert: opts.tls.cert, key: opts.tls.key }, handler) : createServer(handler);
  let connections = 0;
  server.on('connection', () => {
    connections++;
  });
  await new Promise<void>((r) => server.listen(0, opts.host ?? '127.0.0.1', () => r()));
  const addr = server.address() as AddressInfo;
  const host = `${addr.address}:${addr.port}`;
  const url = `${opts.tls ? 'https' : 'http'}://${host}`;
  return {
    url,
    host,
    log,
    blobBytes: () => served,
    connections: () => connections,
    addBlob(repo, data) {
      const digest = `sha256:${createHash('sha256').update(data).digest('hex')}`;
      blobs.set(`${repo}@${digest}`, data);
      return { digest, data, url: `${url}/v2/${repo}/blobs/${digest}` };
    },
    addBlobAs(repo, digest, data) {
      blobs.set(`${repo}@${digest}`, data);
      return { digest, data, url: `${url}/v2/${repo}/blobs/${digest}` };
    },
    addManifest(repo, tag, body, mediaType) {
      manifests.set(`${repo}:${tag}`, { body, mediaType });
      manifests.set(`${repo}:sha256:${createHash('sha256').update(body).digest('hex')}`, { body, mediaType });
    },
    setRate(r) {
      rate = r;
    },
    setCutAfter(b) {
      cutAfter = b;
    },
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
