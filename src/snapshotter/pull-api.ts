/**
 * @module snapshotter/pull-api
 * `ferry pull` served by the running snapshotter: `POST /api/v1/pull` on a root-only unix socket
 * (`<root>/api.sock`, api/snapshotter.openapi.yaml), and `POST /api/v1/cache/gc` (`ferry snapshotter gc`). The snapshotter has its modules, its gRPC
 * connection to containerd and its daemon warm, and it starts an image's lazy mount the moment
 * the manifest is known — ahead of containerd's Prepare calls. A `ferry pull` process then only
 * parses its options and relays this request: on a cold start that skipped ~0.3 s of module
 * loading and connection set-up per pull.
 *
 * The answer streams NDJSON: `{"progress": line}` per step, then `{"result": PullResult}` or
 * `{"error": {code, message}}`. A malformed request is a 400 with `{code, message}` before any
 * streaming starts (routes, bodies and errors through the httpx kit; wire types in protocol.ts).
 * The client side (`requestPull`, used by `ferry pull`) is pull-api-client.ts, which loads no
 * schema library.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { rm } from 'node:fs/promises';
import { FerryError, asFerryError } from '../core/index.js';
import { Router, listenPrivate, readJson, requestUrl, sendError, sendJson } from '../httpx/index.js';
import type { CacheGcReport, PrefetchTrace } from '../daemon/protocol.js';
import { parsePullRequest, type PullLine, type PullRequestBody, type PullResult } from './protocol.js';

const MAX_BODY = 64 * 1024;

export interface PullApiOptions {
  /** unix socket path (created 0600; a stale file is replaced) */
  path: string;
  pull(body: PullRequestBody, progress: (line: string) => void): Promise<PullResult>;
  /** `GET /api/v1/traces/{manifest digest}`: the access trace of that image's lazy mount */
  trace?(manifestDigest: string): Promise<PrefetchTrace>;
  /** `POST /api/v1/cache/gc`: one node cache GC round of the daemon, now */
  gc?(): Promise<CacheGcReport>;
  /** called with errors of requests, for the log */
  onError?: (err: unknown, body: PullRequestBody | undefined) => void;
}

export interface PullApiServer {
  path: string;
  close(): Promise<void>;
}

interface Ctx {
  req: IncomingMessage;
  res: ServerResponse;
}

function routes(o: PullApiOptions): Router<Ctx> {
  return new Router<Ctx>()
    .get('/api/v1/traces/:digest(sha256:[0-9a-f]{64})', async ({ res }, p) => {
      if (!o.trace) throw new FerryError('FAILED_PRECONDITION', 'this snapshotter mounts no lazy images');
      sendJson(res, 200, await o.trace(p.digest!));
    })
    .post('/api/v1/cache/gc', async ({ res }) => {
      if (!o.gc) throw new FerryError('FAILED_PRECONDITION', 'this snapshotter mounts no lazy images');
      sendJson(res, 200, await o.gc());
    })
    .post('/api/v1/pull', async ({ req, res }) => {
      let body: PullRequestBody;
      try {
        body = parsePullRequest(await readJson(req, MAX_BODY, { what: 'pull request' }));
      } catch (err) {
        o.onError?.(err, undefined);
        throw err;
      }
      res.writeHead(200, { 'content-type': 'application/x-ndjson' });
      const line = (v: PullLine): void => {
        if (!res.destroyed) res.write(`${JSON.stringify(v)}\n`);
      };
      try {
        const result = await o.pull(body, (p) => line({ progress: p }));
        line({ result });
      } catch (err) {
        o.onError?.(err, body);
        const e = asFerryError(err);
        line({ error: { code: e.code, message: e.message } });
      }
      res.end();
    });
}

/** Serves `POST /api/v1/pull` on a unix socket only the owner (root) may connect to. */
export async function servePullApi(o: PullApiOptions): Promise<PullApiServer> {
  const table = routes(o);
  const server: Server = createServer((req, res) => {
    (async () => table.dispatch(req.method ?? 'GET', requestUrl(req).pathname, { req, res }))().catch((err: unknown) => {
      const { status } = sendError(res, err);
      if (status >= 500) o.onError?.(err, undefined);
    });
  });
  await listenPrivate(server, o.path, 'the pull API address');
  return {
    path: o.path,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => {
          rm(o.path, { force: true }).finally(resolve);
        });
      }),
  };
}
