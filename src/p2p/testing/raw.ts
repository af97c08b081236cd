/**
 * @module p2p/testing/raw
 * Raw HTTP requests for the abuse tests: any method, headers and body (or a large body streamed
 * until the server answers), resolving with status, headers and body; never throws on a status.
 */
import http, { type IncomingHttpHeaders } from 'node:http';

export interface RawResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

export function rawRequest(
  url: string,
  opts: { method?: string; headers?: Record<string, string>; body?: Buffer | string } = {},
): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const req = http.request(
      {
        hostname: u.hostname.replace(/^\[|\]$/g, ''),
        port: u.port,
        path: `${u.pathname}${u.search}`,
        method: opts.method ?? 'GET',
        headers: {
          ...(opts.headers ?? {}),
          ...(opts.body !== undefined ? { 'content-length': String(Buffer.byteLength(opts.body)) } : {}),
        },
        agent: false,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(opts.body);
  });
}

/**
 * Announces a body of `declared` bytes (Content-Length, or chunked when undefined) and streams
 * zeros, at most `declared ?? max` bytes, until the server answers. Resolves with the answer and
 * how many body bytes were written before it came.
 */
export function hugeRequest(
  url: string,
  opts: { method?: string; headers?: Record<string, string>; declared?: number; max: number },
): Promise<RawResponse & { sent: number }> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    let sent = 0;
    let answered = false;
    const req = http.request(
      {
        hostname: u.hostname.replace(/^\[|\]$/g, ''),
        port: u.port,
        path: `${u.pathname}${u.search}`,
        method: opts.method ?? 'POST',
        headers: { ...(opts.headers ?? {}), ...(opts.declared !== undefined ? { 'content-length': String(opts.declared) } : {}) },
        agent: false,
      },
      (res) => {
        answered = true;
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          req.destroy();
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks), sent });
        });
        res.on('error', reject);
      },
    );
    req.on('error', (err) => {
      if (!answered) reject(err);
    });
    const chunk = Buffer.alloc(64 * 1024);
    const limit = opts.declared ?? opts.max;
    const pump = (): void => {
      while (!answered && sent < limit && !req.destroyed) {
        const n = Math.min(chunk.length, limit - sent);
        sent += n;
        if (!req.write(chunk.subarray(0, n))) {
          req.once('drain', pump);
          return;
        }
      }
      if (!answered && sent >= limit && opts.declared === undefined) req.end();
    };
    pump();
  });
}
