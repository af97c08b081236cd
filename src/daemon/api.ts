/**
 * @module daemon/api
 * The daemon's HTTP API on a unix socket (api/daemon.openapi.yaml):
 *   GET /api/v1/daemon · GET/POST /api/v1/mounts · GET/DELETE /api/v1/mounts/{id} ·
 *   GET /api/v1/mounts/{id}/trace · GET /metrics
 * Errors are `{ "code": "<FerryError code>", "message": "…" }` with the status from one table.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { mkdir, rm } from 'node:fs/promises';
import { dirname } from 'node:path';
import { FerryError, asFerryError, type ErrorCode } from '../core/index.js';
import { metricsHandler, type Logger } from '../observe/index.js';
import type { Daemon } from './daemon.js';
import type { MountRequest } from './types.js';

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
  const parts: Buffer[] = [];
  let n = 0;
  for await (const c of req) {
    n += (c as Buffer).length;
    if (n > 4 * 1024 * 1024) throw new FerryError('INVALID_ARGUMENT', 'request body over 4 MiB');
    parts.push(c as Buffer);
  }
  try { return JSON.parse(Buffer.concat(parts).toString('utf8')); } catch { throw new FerryError('INVALID_ARGUMENT', 'request body is not JSON'); }
}

export interface ApiServer { server: Server; close(): Promise<void> }

/** Serves the API on a unix socket (a stale socket file is replaced). */
export async function startApi(daemon: Daemon, sockPath: string, log: Logger, version = '0.1.0'): Promise<ApiServer> {
  const started = Date.now();
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://daemon');
    const p = url.pathname;
    (async () => {
      if (p === '/metrics' && req.method === 'GET') return metricsHandler(daemon.metrics, req, res);
      if (p === '/api/v1/daemon' && req.method === 'GET') {
        return send(res, 200, { version, state: 'RUNNING', pid: process.pid, uptimeSeconds: Math.round((Date.now() - started) / 1000), mounts: (await daemon.list()).length });
      }
      if (p === '/api/v1/mounts') {
        if (req.method === 'GET') return send(res, 200, await daemon.list());
        if (req.method === 'POST') return send(res, 201, await daemon.mount((await jsonBody(req)) as MountRequest));
      }
      const t = /^\/api\/v1\/mounts\/([^/]+)\/trace$/.exec(p);
      if (t && req.method === 'GET') return send(res, 200, await daemon.trace(decodeURIComponent(t[1]!)));
      const m = /^\/api\/v1\/mounts\/([^/]+)$/.exec(p);
      if (m) {
        const id = decodeURIComponent(m[1]!);
        if (req.method === 'GET') return send(res, 200, await daemon.get(id));
        if (req.method === 'DELETE') { await daemon.umount(id); return send(res, 204); }
      }
      throw new FerryError('NOT_FOUND', `no route ${req.method} ${p}`);
    })().catch((err: unknown) => {
      const e = asFerryError(err);
      if (STATUS[e.code] >= 500) log.error({ err, path: p }, 'api request failed');
      if (!res.headersSent) send(res, STATUS[e.code] ?? 500, { code: e.code, message: e.message });
      else res.destroy();
    });
  });
  await mkdir(dirname(sockPath), { recursive: true });
  await rm(sockPath, { force: true });
  await new Promise<void>((resolve, reject) => { server.once('error', reject); server.listen(sockPath, () => resolve()); });
  log.info({ apisock: sockPath }, 'daemon api listening');
  return {
    server,
    close: () => new Promise<void>((resolve) => { server.close(() => resolve()); server.closeAllConnections(); }).then(() => rm(sockPath, { force: true })),
  };
}
