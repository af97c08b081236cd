/**
 * @module daemon/api
 * The daemon's HTTP API on a unix socket (api/daemon.openapi.yaml):
 *   GET /api/v1/daemon · GET/POST /api/v1/mounts · GET/DELETE /api/v1/mounts/{id} ·
 *   GET /api/v1/mounts/{id}/trace · GET /metrics
 * Errors are `{ "code": "<FerryError code>", "message": "…" }` with the status from one table.
 *
 * Whoever can connect can mount anything anywhere: the socket is the only access control. It is
 * created mode 0600 (owner only, whatever the umask) without a moment at a looser mode: bound in a
 * private directory beside its path, restricted, then renamed into place. A stale socket file is
 * replaced; a socket another process still serves, or a path that is not a socket, is refused.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { FerryError, asFerryError, type ErrorCode } from '../core/index.js';
import { metricsHandler, type Logger } from '../observe/index.js';
import { listenPrivate } from '../httpx/index.js';
import { rm } from 'node:fs/promises';
import type { Daemon } from './daemon.js';
import type { MountRequest } from './types.js';

/** Largest request body (a mount request with a prefetch trace). */
export const MAX_API_BODY = 4 * 1024 * 1024;

const STATUS: Record<ErrorCode, number> = {
  INVALID_ARGUMENT: 400, NOT_FOUND: 404, ALREADY_EXISTS: 409, FAILED_PRECONDITION: 412, UNAVAILABLE: 503,
  NOT_IMPLEMENTED: 501, DATA_LOSS: 500, CANCELED: 499, DEADLINE_EXCEEDED: 504, UNAUTHENTICATED: 401,
  PERMISSION_DENIED: 403, RESOURCE_EXHAUSTED: 429, ABORTED: 409, INTERNAL: 500,
};

function send(res: ServerResponse, status: number, body?: unknown): void {
  if (body === undefined) { res.writeHead(status).end(); return; }
  const b = Buffer.from(JSON.stringify(body));
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': b.length }).end(b);
}

async function jsonBody(req: IncomingMessage): Promise<unknown> {
  const tooBig = new FerryError('INVALID_ARGUMENT', `request body over ${MAX_API_BODY} bytes`);
  if (Number(req.headers['content-length'] ?? 0) > MAX_API_BODY) throw tooBig;
  const parts: Buffer[] = [];
  let n = 0;
  for await (const c of req) {
    n += (c as Buffer).length;
    if (n > MAX_API_BODY) throw tooBig;
    parts.push(c as Buffer);
  }
  try { return JSON.parse(Buffer.concat(parts).toString('utf8')); } catch { throw new FerryError('INVALID_ARGUMENT', 'request body is not JSON'); }
}

/** A mount id from the URL: percent-decoded, or INVALID_ARGUMENT. */
function idOf(segment: string): string {
  try { return decodeURIComponent(segment); } catch { throw new FerryError('INVALID_ARGUMENT', `mount id ${JSON.stringify(segment)} is not valid percent-encoding`); }
}

export interface ApiServer { server: Server; close(): Promise<void> }

/** Serves the API on a unix socket, owner-only (a stale socket file is replaced, a live one refused). */
export async function startApi(daemon: Daemon, sockPath: string, log: Logger, version = '0.1.0'): Promise<ApiServer> {
  const started = Date.now();
  const server = createServer((req, res) => {
    let p = '';
    (async () => {
      // a request target that is not a path (`GET //`) makes the URL parser throw
      let url: URL;
      try { url = new URL(req.url ?? '/', 'http://daemon'); } catch { throw new FerryError('INVALID_ARGUMENT', 'invalid request target'); }
      p = url.pathname;
      if (p === '/metrics' && req.method === 'GET') return metricsHandler(daemon.metrics, req, res);
      if (p === '/api/v1/daemon' && req.method === 'GET') {
        return send(res, 200, { version, state: 'RUNNING', pid: process.pid, uptimeSeconds: Math.round((Date.now() - started) / 1000), mounts: (await daemon.list()).length });
      }
      if (p === '/api/v1/mounts') {
        if (req.method === 'GET') return send(res, 200, await daemon.list());
        if (req.method === 'POST') return send(res, 201, await daemon.mount((await jsonBody(req)) as MountRequest));
      }
      const t = /^\/api\/v1\/mounts\/([^/]+)\/trace$/.exec(p);
      if (t && req.method === 'GET') return send(res, 200, await daemon.trace(idOf(t[1]!)));
      const m = /^\/api\/v1\/mounts\/([^/]+)$/.exec(p);
      if (m) {
        const id = idOf(m[1]!);
        if (req.method === 'GET') return send(res, 200, await daemon.get(id));
        if (req.method === 'DELETE') { await daemon.umount(id); return send(res, 204); }
      }
      throw new FerryError('NOT_FOUND', `no route ${req.method} ${p}`);
    })().catch((err: unknown) => {
      const e = asFerryError(err);
      if (STATUS[e.code] >= 500) log.error({ err, path: p }, 'api request failed');
      // a body left unread (refused, or too large) is not drained: close the connection
      if (!req.complete && !res.headersSent) res.setHeader('connection', 'close');
      if (!res.headersSent) send(res, STATUS[e.code] ?? 500, { code: e.code, message: e.message });
      else res.destroy();
    });
  });
  await listenPrivate(server, sockPath, '--apisock');
  log.info({ apisock: sockPath }, 'daemon api listening');
  return {
    server,
    close: () => new Promise<void>((resolve) => { server.close(() => resolve()); server.closeAllConnections(); }).then(() => rm(sockPath, { force: true })),
  };
}
