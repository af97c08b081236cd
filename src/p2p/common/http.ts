/**
 * @module p2p/common/http
 * Small HTTP(S) client on node:http with keep-alive agents, an optional extra CA, manual redirect
 * following (credentials stripped when the redirect leaves the original host) and timeouts.
 * Used for origin (back-to-source) requests, parent piece fetches and scheduler RPC; `jsonRequest`
 * decodes a Ferry server's error envelope with httpx's `decodeError`.
 */
import http, { type IncomingMessage, type OutgoingHttpHeaders } from 'node:http';
import https from 'node:https';
import { FerryError } from '../../core/index.js';
import { decodeError } from '../../httpx/index.js';
import type { ClusterAuth } from './cluster-auth.js';

export interface RequestOptions {
  method?: string;
  headers?: OutgoingHttpHeaders;
  body?: Buffer | string;
  /** Extra trusted CA certificates (PEM) for https. */
  ca?: string | Buffer | undefined;
  insecure?: boolean | undefined;
  timeoutMs?: number;
  signal?: AbortSignal | undefined;
  maxRedirects?: number;
  /** Keep-alive agent to use (default: shared ones). */
  agent?: http.Agent;
  /**
   * Cluster credentials: the request is signed (Authorization: Ferry-Cluster …) for its first
   * URL only; a redirect to another host drops the header with the other credentials.
   */
  auth?: ClusterAuth | undefined;
}

export interface Response {
  status: number;
  headers: IncomingMessage['headers'];
  body: IncomingMessage;
  url: string;
}

const httpAgent = new http.Agent({ keepAlive: true, maxSockets: 64 });
const httpsAgents = new Map<string, https.Agent>();
function httpsAgent(ca: string | Buffer | undefined, insecure: boolean): https.Agent {
  const key = `${insecure}:${ca ? `${ca.toString().length}:${ca.toString().slice(-64)}` : ''}`;
  let a = httpsAgents.get(key);
  if (!a) {
    a = new https.Agent({ keepAlive: true, maxSockets: 64, rejectUnauthorized: !insecure, ...(ca ? { ca: [ca] } : {}) });
    httpsAgents.set(key, a);
  }
  return a;
}

const SENSITIVE = ['authorization', 'cookie', 'proxy-authorization'];

/** One request; follows redirects for GET/HEAD. The caller must consume or destroy `body`. */
export async function request(url: string, opts: RequestOptions = {}): Promise<Response> {
  let current = url;
  let headers: OutgoingHttpHeaders = { ...(opts.headers ?? {}) };
  const method = opts.method ?? 'GET';
  if (opts.auth) headers.authorization = opts.auth.sign(method, url, opts.body);
  const originHost = new URL(url).host;
  for (let hop = 0; hop <= (opts.maxRedirects ?? 5); hop++) {
    const res = await once(current, method, headers, opts);
    if ([301, 302, 303, 307, 308].includes(res.status) && res.headers.location && (method === 'GET' || method === 'HEAD')) {
      res.body.resume();
      const next = new URL(res.headers.location, current);
      if (next.host !== originHost) {
        headers = Object.fromEntries(Object.entries(headers).filter(([k]) => !SENSITIVE.includes(k.toLowerCase())));
      }
      current = next.toString();
      continue;
    }
    return res;
  }
  throw new FerryError('UNAVAILABLE', `too many redirects fetching ${url}`);
}

function once(url: string, method: string, headers: OutgoingHttpHeaders, opts: RequestOptions): Promise<Response> {
  return new Promise((resolve, reject) => {
    let u: URL;
    try {
      u = new URL(url);
    } catch (err) {
      reject(new FerryError('INVALID_ARGUMENT', `invalid URL ${url}`, { cause: err }));
      return;
    }
    const isHttps = u.protocol === 'https:';
    const mod = isHttps ? https : http;
    const h: OutgoingHttpHeaders = { ...headers, host: u.host };
    if (opts.body !== undefined) h['content-length'] = Buffer.byteLength(opts.body);
    const req = mod.request(u, {
      method,
      headers: h,
      agent: opts.agent ?? (isHttps ? httpsAgent(opts.ca, !!opts.insecure) : httpAgent),
      ...(opts.signal ? { signal: opts.signal } : {}),
    });
    const timeout = opts.timeoutMs ?? 30_000;
    req.setTimeout(timeout, () =>
      req.destroy(new FerryError('DEADLINE_EXCEEDED', `${method} ${u.host}${u.pathname}: no answer in ${timeout} ms`)),
    );
    req.on('response', (res) => {
      req.setTimeout(0);
      resolve({ status: res.statusCode ?? 0, headers: res.headers, body: res, url });
    });
    req.on('error', (err) =>
      reject(FerryError.is(err) ? err : new FerryError('UNAVAILABLE', `${method} ${u.host}${u.pathname}: ${err.message}`, { cause: err })),
    );
    req.end(opts.body);
  });
}

/** Reads a whole body (bounded). */
export async function readAll(body: NodeJS.ReadableStream, limit = 64 * 1024 * 1024): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const c of body as AsyncIterable<Buffer>) {
    n += c.length;
    if (n > limit) throw new FerryError('RESOURCE_EXHAUSTED', `response larger than ${limit} bytes`);
    chunks.push(c);
  }
  return Buffer.concat(chunks);
}

/** POST/GET JSON, throwing a FerryError on non-2xx. */
export async function jsonRequest<T>(url: string, opts: RequestOptions & { json?: unknown } = {}): Promise<T> {
  const body = opts.json === undefined ? opts.body : JSON.stringify(opts.json);
  const res = await request(url, {
    ...opts,
    ...(body !== undefined ? { body } : {}),
    headers: {
      accept: 'application/json',
      ...(opts.json !== undefined ? { 'content-type': 'application/json' } : {}),
      ...(opts.headers ?? {}),
    },
  });
  const buf = await readAll(res.body, 16 * 1024 * 1024);
  // the server's `{code, message}` envelope back into its FerryError
  if (res.status < 200 || res.status >= 300) {
    throw decodeError(res.status, buf, { prefix: `${opts.method ?? 'GET'} ${url}: ${res.status} ` });
  }
  return (buf.length ? JSON.parse(buf.toString('utf8')) : undefined) as T;
}

/** Resolves when a writable drains or closes (listeners removed either way). */
export function drained(
  w: NodeJS.WritableStream & { once(ev: string, f: () => void): unknown; off(ev: string, f: () => void): unknown },
): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      w.off('drain', done);
      w.off('close', done);
      resolve();
    };
    w.once('drain', done);
    w.once('close', done);
  });
}
