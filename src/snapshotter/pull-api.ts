/**
 * @module snapshotter/pull-api
 * `ferry pull` served by the running snapshotter: `POST /api/v1/pull` on a root-only unix socket
 * (`<root>/api.sock`, api/snapshotter.openapi.yaml). The snapshotter has its modules, its gRPC
 * connection to containerd and its daemon warm, and it starts an image's lazy mount the moment
 * the manifest is known — ahead of containerd's Prepare calls. A `ferry pull` process then only
 * parses its options and relays this request: on a cold start that skipped ~0.3 s of module
 * loading and connection set-up per pull.
 *
 * The answer streams NDJSON: `{"progress": line}` per step, then `{"result": PullResult}` or
 * `{"error": {code, message}}`. A malformed request is a 400 with `{code, message}` before any
 * streaming starts.
 * The client side (`requestPull`, used by `ferry pull`) is pull-api-client.ts, which loads no
 * schema library.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { rm } from 'node:fs/promises';
import { listenPrivate } from '../httpx/index.js';

import { z } from 'zod';
import { FerryError, type ErrorCode } from '../core/index.js';
import { issuesText } from '../config/parse.js';
import type { PullRequestBody } from './pull-api-client.js';
import type { PullResult } from './pull.js';
import type { PrefetchTrace } from '../daemon/protocol.js';

const MAX_BODY = 64 * 1024;
const STATUS: Partial<Record<ErrorCode, number>> = {
  INVALID_ARGUMENT: 400, NOT_FOUND: 404, FAILED_PRECONDITION: 412, UNAVAILABLE: 503, DEADLINE_EXCEEDED: 504,
};

const nonEmpty = z.string().min(1);
const PullRequestSchema = z.strictObject({
  ref: nonEmpty,
  address: nonEmpty.refine((a) => a.startsWith('/'), 'must be an absolute unix socket path'),
  namespace: nonEmpty.optional(),
  snapshotter: nonEmpty.optional(),
  plainHttp: z.boolean().optional(),
  user: nonEmpty.optional(),
  platform: nonEmpty.optional(),
});

/** Checks a decoded request body; INVALID_ARGUMENT names every problem. */
export function parsePullRequest(v: unknown): PullRequestBody {
  const r = PullRequestSchema.safeParse(v);
  if (!r.success) throw new FerryError('INVALID_ARGUMENT', `invalid pull request: ${issuesText(r.error)}`);
  const out: PullRequestBody = { ref: r.data.ref, address: r.data.address };
  for (const k of ['namespace', 'snapshotter', 'user', 'platform', 'plainHttp'] as const) {
    if (r.data[k] !== undefined) (out as unknown as Record<string, unknown>)[k] = r.data[k];
  }
  return out;
}

export interface PullApiOptions {
  /** unix socket path (created 0600; a stale file is replaced) */
  path: string;
  pull(body: PullRequestBody, progress: (line: string) => void): Promise<PullResult>;
  /** `GET /api/v1/traces/{manifest digest}`: the access trace of that image's lazy mount */
  trace?(manifestDigest: string): Promise<PrefetchTrace>;
  /** called with errors of requests, for the log */
  onError?: (err: unknown, body: PullRequestBody | undefined) => void;
}

export interface PullApiServer { path: string; close(): Promise<void> }

function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    let n = 0;
    req.on('data', (c: Buffer) => {
      n += c.length;
      if (n > MAX_BODY) { reject(new FerryError('INVALID_ARGUMENT', `pull request: body over ${MAX_BODY} bytes`)); req.destroy(); return; }
      parts.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(parts)));
    req.on('error', reject);
  });
}

function errorBody(err: unknown): { code: ErrorCode; message: string } {
  return FerryError.is(err) ? { code: err.code, message: err.message } : { code: 'INTERNAL', message: (err as Error).message ?? String(err) };
}

async function handle(o: PullApiOptions, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const path = (req.url ?? '').replace(/\?.*$/, '');
  const t = /^\/api\/v1\/traces\/(sha256:[0-9a-f]{64})$/.exec(path);
  if (t && req.method === 'GET') {
    try {
      if (!o.trace) throw new FerryError('FAILED_PRECONDITION', 'this snapshotter mounts no lazy images');
      const body = JSON.stringify(await o.trace(t[1]!));
      res.writeHead(200, { 'content-type': 'application/json' }).end(body);
    } catch (err) {
      const e = errorBody(err);
      res.writeHead(STATUS[e.code] ?? 500, { 'content-type': 'application/json' }).end(JSON.stringify(e));
    }
    return;
  }
  if (path !== '/api/v1/pull') {
    res.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify({ code: 'NOT_FOUND', message: `no route ${req.method} ${path}` }));
    return;
  }
  if (req.method !== 'POST') {
    res.writeHead(405, { 'content-type': 'application/json', allow: 'POST' }).end(JSON.stringify({ code: 'INVALID_ARGUMENT', message: 'use POST' }));
    return;
  }
  let body: PullRequestBody;
  try {
    const raw = await readBody(req);
    let json: unknown;
    try { json = JSON.parse(raw.toString('utf8')); } catch { throw new FerryError('INVALID_ARGUMENT', 'pull request: body is not JSON'); }
    body = parsePullRequest(json);
  } catch (err) {
    o.onError?.(err, undefined);
    const e = errorBody(err);
    res.writeHead(STATUS[e.code] ?? 500, { 'content-type': 'application/json' }).end(JSON.stringify(e));
    return;
  }
  res.writeHead(200, { 'content-type': 'application/x-ndjson' });
  const line = (v: unknown): void => { if (!res.destroyed) res.write(`${JSON.stringify(v)}\n`); };
  try {
    const result = await o.pull(body, (p) => line({ progress: p }));
    line({ result });
  } catch (err) {
    o.onError?.(err, body);
    line({ error: errorBody(err) });
  }
  res.end();
}

/** Serves `POST /api/v1/pull` on a unix socket only the owner (root) may connect to. */
export async function servePullApi(o: PullApiOptions): Promise<PullApiServer> {
  const server: Server = createServer((req, res) => {
    handle(o, req, res).catch((err: unknown) => { o.onError?.(err, undefined); if (!res.headersSent) res.writeHead(500); res.end(); });
  });
  await listenPrivate(server, o.path, 'the pull API address');
  return {
    path: o.path,
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => { rm(o.path, { force: true }).finally(resolve); });
    }),
  };
}

