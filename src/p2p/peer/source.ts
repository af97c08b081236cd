/**
 * @module p2p/peer/source
 * Origin ("back-to-source") requests: the access/size check (HEAD with the client's own headers,
 * falling back to `GET Range: bytes=0-0`) and per-piece range GETs under the back-to-source rate
 * limit. Redirects are followed with credentials dropped when the host changes.
 */
import type { IncomingHttpHeaders } from 'node:http';
import { FerryError } from '../../core/index.js';
import { readAll, request } from '../common/index.js';
import type { TokenBucket } from '../common/index.js';

export interface OriginOptions {
  ca?: string | undefined;
  insecure?: boolean | undefined;
  timeoutMs?: number;
}

export type StatResult =
  | { ok: true; contentLength: number; headers: Record<string, string> }
  | { ok: false; status: number; headers: IncomingHttpHeaders; body: Buffer };

const REPLAY = ['content-type', 'docker-content-digest', 'etag', 'last-modified', 'cache-control', 'docker-distribution-api-version'];

/** Headers forwarded to origins and parents: everything but hop-by-hop, Host, Range and our own. */
export function forwardableHeaders(h: IncomingHttpHeaders): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(h)) {
    const key = k.toLowerCase();
    if (v === undefined) continue;
    if (
      [
        'host',
        'range',
        'connection',
        'keep-alive',
        'proxy-connection',
        'proxy-authorization',
        'te',
        'trailer',
        'transfer-encoding',
        'upgrade',
        'content-length',
        'if-range',
      ].includes(key)
    )
      continue;
    if (key.startsWith('x-dragonfly-')) continue;
    out[key] = Array.isArray(v) ? v.join(', ') : v;
  }
  return out;
}

export async function statOrigin(
  url: string,
  headers: Record<string, string>,
  o: OriginOptions,
  signal?: AbortSignal,
): Promise<StatResult> {
  const res = await request(url, { method: 'HEAD', headers, ca: o.ca, insecure: o.insecure, timeoutMs: o.timeoutMs ?? 30_000, signal });
  res.body.resume();
  const replay = (h: IncomingHttpHeaders): Record<string, string> => {
    const out: Record<string, string> = {};
    for (const k of REPLAY) {
      const v = h[k];
      if (typeof v === 'string') out[k] = v;
    }
    return out;
  };
  const len = Number(res.headers['content-length']);
  if (res.status >= 200 && res.status < 300 && res.headers['content-length'] !== undefined && Number.isSafeInteger(len)) {
    return { ok: true, contentLength: len, headers: replay(res.headers) };
  }
  if (res.status !== 405 && res.status !== 501 && !(res.status >= 200 && res.status < 300)) {
    return { ok: false, status: res.status, headers: res.headers, body: Buffer.alloc(0) };
  }
  // HEAD unsupported or without a length: one byte of GET.
  const g = await request(url, {
    headers: { ...headers, range: 'bytes=0-0' },
    ca: o.ca,
    insecure: o.insecure,
    timeoutMs: o.timeoutMs ?? 30_000,
    signal,
  });
  const body = await readAll(g.body, 1024 * 1024);
  if (g.status === 206) {
    const m = /\/(\d+)$/.exec(String(g.headers['content-range'] ?? ''));
    if (m) return { ok: true, contentLength: Number(m[1]), headers: replay(g.headers) };
  }
  if (g.status === 200 && g.headers['content-length'] !== undefined)
    return { ok: true, contentLength: Number(g.headers['content-length']), headers: replay(g.headers) };
  if (g.status === 416) return { ok: true, contentLength: 0, headers: replay(g.headers) };
  return { ok: false, status: g.status, headers: g.headers, body };
}

/** Bytes [offset, offset+length) of the origin object. */
export async function fetchOriginRange(
  url: string,
  headers: Record<string, string>,
  offset: number,
  length: number,
  o: OriginOptions,
  buckets: TokenBucket[],
  signal?: AbortSignal,
): Promise<Buffer> {
  const res = await request(url, {
    headers: { ...headers, range: `bytes=${offset}-${offset + length - 1}` },
    ca: o.ca,
    insecure: o.insecure,
    timeoutMs: o.timeoutMs ?? 30_000,
    signal,
  });
  if (res.status !== 206 && !(res.status === 200 && offset === 0)) {
    res.body.resume();
    throw new FerryError(
      res.status === 401 ? 'UNAUTHENTICATED' : res.status === 403 ? 'PERMISSION_DENIED' : res.status === 404 ? 'NOT_FOUND' : 'UNAVAILABLE',
      `origin answered ${res.status} for bytes ${offset}-${offset + length - 1}`,
    );
  }
  const buf = Buffer.allocUnsafe(length);
  let got = 0;
  // Read to the body's end, so the keep-alive connection is reused for the next range (leaving the
  // loop early destroys the socket: a new TCP connection per range read). Only an origin sending
  // more than asked (a 200 for the whole object) is cut off.
  for await (const chunk of res.body as AsyncIterable<Buffer>) {
    for (const b of buckets) await b.take(chunk.length);
    const n = Math.min(chunk.length, length - got);
    chunk.copy(buf, got, 0, n);
    got += n;
    if (got >= length && n < chunk.length) {
      res.body.destroy();
      break;
    }
  }
  if (got < length) throw new FerryError('UNAVAILABLE', `origin sent ${got} of ${length} bytes at offset ${offset}`);
  return buf;
}
