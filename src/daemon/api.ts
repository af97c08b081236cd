/**
 * @module daemon/api
 * The daemon's HTTP API on a unix socket (api/daemon.openapi.yaml):
 *   GET /api/v1/daemon · GET/POST /api/v1/mounts · GET/DELETE /api/v1/mounts/{id} ·
 *   GET /api/v1/mounts/{id}/trace · PUT /api/v1/mounts/{id}/auth · GET /api/v1/cache ·
 *   POST /api/v1/cache/gc · GET /metrics
 * Wire types in protocol.ts; routes, bodies and errors (`{ "code": "<FerryError code>", "message": "…" }`,
 * the status from httpx's one table) through the httpx kit.
 *
 * Whoever can connect can mount anything anywhere: the socket is the only access control. It is
 * created mode 0600 (owner only, whatever the umask) without a moment at a looser mode: bound in a
 * private directory beside its path, restricted, then renamed into place. A stale socket file is
 * replaced; a socket another process still serves, or a path that is not a socket, is refused.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { rm } from 'node:fs/promises';
import { metricsHandler, type Logger } from '../observe/index.js';
import { Router, listenPrivate, readJson, requestUrl, sendError, sendJson } from '../httpx/index.js';
import type { Daemon } from './daemon.js';
import { setAuthSchema, type DaemonInfo, type MountRequest } from './protocol.js';
import { FerryError } from '../core/index.js';

/** Largest request body (a mount request with a prefetch trace). */
export const MAX_API_BODY = 4 * 1024 * 1024;

interface Ctx {
  req: IncomingMessage;
  res: ServerResponse;
}

export interface ApiServer {
  server: Server;
  close(): Promise<void>;
}

/** Serves the API on a unix socket, owner-only (a stale socket file is replaced, a live one refused). */
export async function startApi(daemon: Daemon, sockPath: string, log: Logger, version = '0.1.0'): Promise<ApiServer> {
  const started = Date.now();
  const routes = new Router<Ctx>()
    .get('/metrics', ({ req, res }) => metricsHandler(daemon.metrics, req, res))
    .get('/api/v1/daemon', async ({ res }) => {
      const uptimeSeconds = Math.round((Date.now() - started) / 1000);
      const info: DaemonInfo = { version, state: 'RUNNING', pid: process.pid, uptimeSeconds, mounts: (await daemon.list()).length };
      sendJson(res, 200, info);
    })
    .get('/api/v1/cache', async ({ res }) => sendJson(res, 200, await daemon.cache()))
    .post('/api/v1/cache/gc', async ({ res }) => sendJson(res, 200, await daemon.gc()))
    .get('/api/v1/mounts', async ({ res }) => sendJson(res, 200, await daemon.list()))
    .post('/api/v1/mounts', async ({ req, res }) => sendJson(res, 201, await daemon.mount(await readJson<MountRequest>(req, MAX_API_BODY))))
    .get('/api/v1/mounts/:id/trace', async ({ res }, p) => sendJson(res, 200, await daemon.trace(p.id!)))
    .put('/api/v1/mounts/:id/auth', async ({ req, res }, p) => {
      const r = setAuthSchema.safeParse(await readJson(req, 64 * 1024, { what: 'credentials' }));
      if (!r.success) throw new FerryError('INVALID_ARGUMENT', 'credentials: {"auth": "<base64 user:password>"} or {}');
      await daemon.setAuth(p.id!, r.data.auth);
      sendJson(res, 204, undefined);
    })
    .get('/api/v1/mounts/:id', async ({ res }, p) => sendJson(res, 200, await daemon.get(p.id!)))
    .delete('/api/v1/mounts/:id', async ({ res }, p) => {
      await daemon.umount(p.id!);
      sendJson(res, 204, undefined);
    });
  const server = createServer((req, res) => {
    let path = '';
    (async () => {
      path = requestUrl(req).pathname;
      await routes.dispatch(req.method ?? 'GET', path, { req, res });
    })().catch((err: unknown) => {
      const { status } = sendError(res, err);
      if (status >= 500) log.error({ err, path }, 'api request failed');
    });
  });
  await listenPrivate(server, sockPath, '--apisock');
  log.info({ apisock: sockPath }, 'daemon api listening');
  return {
    server,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }).then(() => rm(sockPath, { force: true })),
  };
}
