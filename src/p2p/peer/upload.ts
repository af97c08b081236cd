/**
 * @module p2p/peer/upload
 * The peer's upload server (api/p2p/peer.openapi.yaml): piece lists (long-polled, so children
 * learn of pieces while this peer still downloads), piece bytes under the upload rate limit, and
 * the download command the scheduler (seed trigger) and preheat jobs send. With a cluster secret
 * every /api/v1 request must carry a valid cluster signature (401 before anything else, the body
 * unread); a task-scoped request must also name the task's exact URL: the task id is recomputed
 * from it and must match (403). A piece list, a piece or a download command of an object the
 * requester may not pull is refused (403, p2p/peer/access).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { FerryError } from '../../core/index.js';
import { Router, parseJson, requestUrl, sendJson } from '../../httpx/index.js';
import type { Logger } from '../../observe/index.js';
import { drained, readAuthenticated, redactUrl, type ClusterAuth } from '../common/index.js';
import { taskId } from '../common/index.js';
import type { TokenBucket } from '../common/index.js';
import type { DownloadTaskRequest, DownloadTaskResponse, PieceListResponse } from '../common/index.js';
import { H } from '../common/index.js';
import { type AccessCheck, authorizationOf } from './access.js';
import type { Agent } from './agent.js';
import type { PeerMetrics } from './metrics.js';
import type { PieceStore, TaskEntry } from './store.js';
import { hostPortOf, type UpstreamPolicy } from './upstreams.js';

/**
 * Waits up to `ms` for piece `n` of `entry` (a child asking for a one-piece task's piece directly);
 * returns early when the task fails, stops, or the child goes away — the caller then answers 404.
 */
async function waitForPiece(entry: TaskEntry, n: number, ms: number, res: ServerResponse): Promise<void> {
  const ac = new AbortController();
  const onClose = (): void => ac.abort();
  res.on('close', onClose);
  const timer = setTimeout(() => ac.abort(), ms);
  try {
    // bounded: each wait ends on progress, failure, stop, the timer or the child leaving
    for (let i = 0; i < 10_000 && !entry.has(n) && entry.downloading && !ac.signal.aborted; i++)
      await entry.waitProgress(entry.finishedCount, ms, ac.signal);
  } finally {
    clearTimeout(timer);
    res.off('close', onClose);
  }
}

/** Largest body of an upload API request (the download command). */
const MAX_BODY = 1024 * 1024;

interface Ctx {
  req: IncomingMessage;
  res: ServerResponse;
  url: URL;
  raw: Buffer;
}

export function uploadRoutes(deps: {
  store: PieceStore;
  agent: Agent;
  metrics: PeerMetrics;
  bucket: TokenBucket;
  log: Logger;
  disableShared: boolean;
  /** Cluster credentials; without them (loopback only) the API is open. */
  auth: ClusterAuth | undefined;
  /** Who may have a task's bytes (undefined: every member, `access.verify: false`). */
  access: AccessCheck | undefined;
  /** The registries this peer serves: a requester may name a task's blob on one of these. */
  upstreams?: UpstreamPolicy | undefined;
}) {
  /** The task held here whose id is `id`, checked against the URL the request names. */
  const heldTask = (id: string, u: URL): TaskEntry | undefined => {
    const entry = deps.disableShared ? undefined : deps.store.get(id);
    if (!entry) return undefined;
    const url = u.searchParams.get('url');
    if (!url || taskId({ url, ...entry.meta.idOptions }) !== id) {
      throw new FerryError('PERMISSION_DENIED', "request does not name the task's URL");
    }
    // A task keyed by blob digest matches that digest on any host: the requester's access is
    // checked against its own URL, so that URL must be on the registry the bytes came from or on
    // one this peer is configured for (else naming a registry of its own would pass the check for
    // a private blob whose digest it knows).
    const asked = new URL(url);
    if (asked.origin !== new URL(entry.meta.url).origin && !deps.upstreams?.allows(hostPortOf(asked))) {
      throw new FerryError('PERMISSION_DENIED', `task ${id}: ${asked.origin} is not a registry this peer serves`);
    }
    return entry;
  };

  /**
   * The task of a piece list or piece request, after the requester's access check. A range task not
   * held here is served from the task `from` names when that one holds its range (the scheduler
   * named this peer through it): `range` must make the requested id from `from`'s options.
   */
  const taskFor = async (id: string, u: URL, req: IncomingMessage): Promise<TaskEntry> => {
    const entry = heldTask(id, u);
    if (entry) {
      await allowed(u, req);
      return entry;
    }
    const fromId = u.searchParams.get('from');
    const range = u.searchParams.get('range');
    const from = fromId && range && /^[a-f0-9]{64}$/.test(fromId) ? heldTask(fromId, u) : undefined;
    if (!from) throw new FerryError('NOT_FOUND', `task ${id} not on this peer`);
    if (taskId({ url: from.meta.url, ...from.meta.idOptions, range: range! }) !== id)
      throw new FerryError('PERMISSION_DENIED', `task ${id} is not range ${range} of task ${from.id}`);
    await allowed(u, req);
    return deps.agent.deriveRange(from, range!);
  };

  /**
   * The requester of a piece list or piece must be allowed the object at the URL it names
   * (p2p/peer/access) — its own repository's: a task keyed by blob digest may have been fetched
   * here through another repository, whose access says nothing about the requester's.
   */
  const allowed = async (u: URL, req: IncomingMessage): Promise<void> => {
    const a = req.headers[H.originAuthorization];
    await deps.access?.check(u.searchParams.get('url')!, typeof a === 'string' ? a : undefined);
  };

  const routes = new Router<Ctx>()
    .get('/api/v1/tasks/:task([a-f0-9]{64})/pieces', async ({ req, res, url: u }, p) => {
      const entry = await taskFor(p.task!, u, req);
      const have = Number(u.searchParams.get('have') ?? '-1');
      const wait = Math.min(10_000, Math.max(0, Number(u.searchParams.get('wait') ?? '0')));
      if (wait > 0) {
        const ac = new AbortController();
        res.on('close', () => ac.abort());
        await entry.waitProgress(have, wait, ac.signal);
      }
      const pieces: PieceListResponse['pieces'] = [];
      for (let n = 0; n < entry.meta.pieceCount; n++) {
        const d = entry.digestOf(n);
        if (d) pieces.push({ number: n, digest: d });
      }
      sendJson(res, 200, {
        taskId: entry.id,
        contentLength: entry.meta.contentLength,
        pieceLength: entry.meta.pieceLength,
        pieceCount: entry.meta.pieceCount,
        pieces,
        done: entry.complete,
        failed: !entry.complete && !entry.downloading,
      } satisfies PieceListResponse);
    })
    .get('/api/v1/tasks/:task([a-f0-9]{64})/pieces/:n(\\d+)', async ({ req, res, url: u }, p) => {
      const entry = await taskFor(p.task!, u, req);
      const n = Number(p.n);
      if (n >= entry.meta.pieceCount) throw new FerryError('INVALID_ARGUMENT', `piece ${n} out of range`);
      const wait = Math.min(10_000, Math.max(0, Number(u.searchParams.get('wait') ?? '0') || 0));
      if (!entry.has(n) && wait > 0) await waitForPiece(entry, n, wait, res);
      if (!entry.has(n)) throw new FerryError('NOT_FOUND', `piece ${n} not here yet`);
      entry.refs++;
      try {
        const buf = await entry.readPiece(n);
        res.writeHead(200, {
          'content-type': 'application/octet-stream',
          'content-length': buf.length,
          'x-ferry-piece-digest': entry.digestOf(n)!,
        });
        if (deps.bucket.unlimited) {
          if (!res.write(buf)) await drained(res);
          deps.metrics.upload.inc(buf.length);
          res.end();
          return;
        }
        const step = 256 * 1024;
        for (let off = 0; off < buf.length; off += step) {
          const part = buf.subarray(off, Math.min(buf.length, off + step));
          await deps.bucket.take(part.length);
          if (res.destroyed) return;
          if (!res.write(part)) await drained(res);
          deps.metrics.upload.inc(part.length);
        }
        res.end();
      } finally {
        entry.refs--;
      }
    })
    .post('/api/v1/tasks', async ({ res, raw }) => {
      const body = parseJson<DownloadTaskRequest | null>(raw, { what: 'download command' });
      if (typeof body !== 'object' || body === null || typeof body.url !== 'string')
        throw new FerryError('INVALID_ARGUMENT', 'url is required');
      let target: URL;
      try {
        target = new URL(body.url);
      } catch {
        throw new FerryError('INVALID_ARGUMENT', `invalid url ${body.url}`);
      }
      if (target.protocol !== 'http:' && target.protocol !== 'https:') {
        throw new FerryError('INVALID_ARGUMENT', `url must be http(s), got ${target.protocol}`);
      }
      if (body.range !== undefined && typeof body.range !== 'string')
        throw new FerryError('INVALID_ARGUMENT', 'range must be a string start-end');
      if (
        body.headers !== undefined &&
        (typeof body.headers !== 'object' ||
          body.headers === null ||
          Array.isArray(body.headers) ||
          Object.values(body.headers).some((v) => typeof v !== 'string'))
      )
        throw new FerryError('INVALID_ARGUMENT', 'headers must be an object of strings');
      // A command for a held private object must not tell a requester without access that it is here.
      await deps.access?.check(body.url, authorizationOf(body.headers));
      const { entry, download } = await deps.agent.obtain(body.url, body.headers ?? {}, {
        tag: body.tag,
        application: body.application,
        pieceLength: body.pieceLength,
        filteredQueryParams: body.filteredQueryParams,
        blobDigest: body.blobDigest,
        // a seed trigger for a range task: the same range task (id, content) as the requesting peer's
        range: body.range,
      });
      deps.log.info({ taskId: entry.id, url: redactUrl(body.url), wait: !!body.wait }, 'download task requested');
      if (!body.wait) {
        sendJson(res, 202, { taskId: entry.id, contentLength: entry.meta.contentLength, state: 'started' } satisfies DownloadTaskResponse);
        return;
      }
      try {
        await download;
        sendJson(res, 200, {
          taskId: entry.id,
          contentLength: entry.meta.contentLength,
          state: 'succeeded',
        } satisfies DownloadTaskResponse);
      } catch (err) {
        sendJson(res, 200, { taskId: entry.id, state: 'failed', description: (err as Error).message } satisfies DownloadTaskResponse);
      }
    })
    .get('/api/v1/tasks', ({ res }) => {
      const list = deps.store.list();
      sendJson(
        res,
        200,
        list.map((t) => ({
          taskId: t.id,
          contentLength: t.meta.contentLength,
          pieces: t.finishedCount,
          pieceCount: t.meta.pieceCount,
          done: t.complete,
        })),
      );
    });

  /** Handles /api/… (false for other paths): the cluster signature first, then the route. */
  return async function handle(req: IncomingMessage, res: ServerResponse): Promise<boolean> {
    const url = requestUrl(req);
    if (!url.pathname.startsWith('/api/')) return false;
    const raw = await readAuthenticated(req, deps.auth, MAX_BODY);
    await routes.dispatch(req.method ?? 'GET', url.pathname, { req, res, url, raw });
    return true;
  };
}
