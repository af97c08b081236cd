/**
 * @module p2p/scheduler/server
 * HTTP adapter of the scheduler (api/p2p/scheduler.openapi.yaml): host announce, peer register /
 * events / reschedule / leave, task eviction reports, the preheat job API (`/oapi/v1/jobs`,
 * bearer tokens), `/healthy` and `/metrics`. With a cluster secret every /api/v1 request must be
 * signed by a cluster member (401 otherwise, the body unread); a non-loopback listen address
 * requires one. JSON logs; routes, bodies and errors through the httpx kit (FerryError codes map to
 * statuses through its one table); wire shapes and their schemas in common/protocol.ts.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { timingSafeEqual } from 'node:crypto';
import type { ZodType } from 'zod';
import { FerryError, asFerryError } from '../../core/index.js';
import { createMetricsRegistry, metricsHandler, silentLogger, type Logger, type MetricsRegistry } from '../../observe/index.js';
import { parseSchedulerConfig, type SchedulerConfig, type SchedulerConfigInput } from '../../config/scheduler.js';
import { Router, parseJson, readBody, requestUrl, sendError, sendJson, statusOf, type Params } from '../../httpx/index.js';
import { readAuthenticated } from '../common/index.js';
import { ClusterAuth, CLUSTER_SECRET_HINT, LogThrottle, isLoopbackHost, loadClusterSecret } from '../common/index.js';
import {
  OVERVIEW_PATH,
  hostInfoSchema,
  peerEventsSchema,
  peerReportsSchema,
  registerRequestSchema,
  rescheduleRequestSchema,
} from '../common/index.js';
import type { HostInfo, PeerEvent, PeerReports, PeerReportsResponse, RegisterRequest, RescheduleRequest } from '../common/index.js';
import { PreheatJobs } from './preheat.js';
import { SchedulerService } from './service.js';

export interface StartSchedulerOptions {
  /** host:port, default from config (127.0.0.1:8002); use 127.0.0.1:0 in tests. */
  listen?: string;
  config?: SchedulerConfig | SchedulerConfigInput;
  log?: Logger;
}

export interface SchedulerHandle {
  url: string;
  metrics: MetricsRegistry;
  service: SchedulerService;
  jobs: PreheatJobs;
  close(): Promise<void>;
}

function splitHostPort(listen: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(listen);
  if (!m) throw new FerryError('INVALID_ARGUMENT', `listen address must be host:port, got ${JSON.stringify(listen)}`);
  return { host: m[1] ?? (m[2] || '0.0.0.0'), port: Number(m[3]) };
}
export { splitHostPort };

/** Largest request body of the peer RPC (a register request carries origin headers). */
const MAX_RPC_BODY = 8 * 1024 * 1024;
/** Largest preheat job. */
const MAX_JOB_BODY = 1024 * 1024;

/** A JSON object body, checked with `schema` (the wire shapes of common/protocol.ts). */
function jsonObject<T>(buf: Buffer, schema: ZodType): T {
  return parseJson(buf, { object: true, schema }) as T;
}

interface Ctx {
  req: IncomingMessage;
  res: ServerResponse;
  url: URL;
  raw: Buffer;
}

export async function startScheduler(opts: StartSchedulerOptions = {}): Promise<SchedulerHandle> {
  const config = parseSchedulerConfig(opts.config ?? {});
  const log = opts.log ?? silentLogger();
  const listen = opts.listen ?? config.listen;
  const { host, port } = splitHostPort(listen);
  const secret = loadClusterSecret(config.cluster, log);
  const auth = secret === undefined ? undefined : new ClusterAuth(secret);
  if (!auth && !isLoopbackHost(host)) {
    throw new FerryError(
      'FAILED_PRECONDITION',
      `the scheduler would listen on ${listen}, reachable from other machines, but no cluster secret is configured: ` +
        `give the scheduler and every peer the same secret (${CLUSTER_SECRET_HINT}; e.g. openssl rand -hex 32 > /etc/ferry/cluster-token), ` +
        `or on a single machine listen on loopback: --listen 127.0.0.1:${port}`,
    );
  }
  const metrics = createMetricsRegistry({ processMetrics: true, prefix: 'ferry_scheduler_' });
  const service = new SchedulerService(config, metrics, log.child({ component: 'scheduler' }), auth);
  const jobs = new PreheatJobs(
    {
      hosts: (t) => service.hostsOf(t),
      blobDigestDefault: config.preheat.enableTaskIdBasedBlobDigest,
      timeoutMs: config.preheat.timeout,
      insecureSkipVerify: config.preheat.insecureSkipVerify,
      auth,
    },
    metrics,
    log.child({ component: 'preheat' }),
  );
  // Without tokens the job API is open on loopback only: reachable from the network it would let
  // anyone make the seeds fetch any URL.
  const preheatOpen = config.preheat.tokens.length === 0 && isLoopbackHost(host);
  if (config.preheat.tokens.length === 0) {
    log.warn(
      preheatOpen
        ? 'preheat job API accepts requests without a token (loopback only; configure preheat.tokens / --token)'
        : 'preheat job API disabled: the scheduler is reachable from the network and no preheat.tokens / --token are configured',
    );
  }
  const tokens = config.preheat.tokens.map((t) => Buffer.from(t));
  const authorised = (req: IncomingMessage): boolean => {
    if (tokens.length === 0) return preheatOpen;
    const m = /^Bearer\s+(.+)$/i.exec(req.headers.authorization ?? '');
    if (!m) return false;
    const got = Buffer.from(m[1]!.trim());
    return tokens.some((t) => t.length === got.length && timingSafeEqual(t, got));
  };

  // /metrics and /healthy: open.
  const open = new Router<Ctx>()
    .get('/metrics', ({ req, res }) => metricsHandler(metrics, req, res))
    .get('/healthy', ({ res }) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('OK');
    })
    .get('/healthy/', ({ res }) => {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('OK');
    });
  // The preheat job API (Dragonfly manager's): personal access tokens, checked before the body is read.
  const jobRoutes = new Router<Ctx>()
    .post('/oapi/v1/jobs', async ({ req, res }) => {
      const body = parseJson<Record<string, unknown>>(await readBody(req, MAX_JOB_BODY), { object: true, empty: {} });
      sendJson(res, 200, jobs.view(jobs.create(body)));
    })
    .get('/oapi/v1/jobs', ({ res, url }) => {
      const list = jobs.list({ type: url.searchParams.get('type') ?? '', state: url.searchParams.get('state') ?? '' });
      sendJson(
        res,
        200,
        list.map((j) => jobs.view(j)),
      );
    })
    .get('/oapi/v1/jobs/:id(\\d+)', ({ res }, p) => sendJson(res, 200, jobs.view(jobs.get(Number(p.id)))))
    .get(OVERVIEW_PATH, ({ res }) => sendJson(res, 200, service.overview()));
  // The peer RPC: cluster members only (the signature covers the body, read before routing).
  const announce = ({ res, raw }: Ctx, p: Params): void => {
    const info = jsonObject<HostInfo>(raw, hostInfoSchema);
    if (info.id !== p.id) throw new FerryError('INVALID_ARGUMENT', 'host id in path and body differ');
    service.announceHost(info);
    sendJson(res, 200, {});
  };
  const rpc = new Router<Ctx>()
    .put('/api/v1/hosts/:id', announce)
    .post('/api/v1/hosts/:id', announce)
    .delete('/api/v1/hosts/:id', ({ res }, p) => {
      service.leaveHost(p.id!);
      sendJson(res, 200, {});
    })
    .get('/api/v1/hosts', ({ res }) =>
      sendJson(
        res,
        200,
        service.hostsOf().map((h) => h.info),
      ),
    )
    .post('/api/v1/peers', async ({ res, raw }) => {
      sendJson(res, 200, await service.register(jsonObject<RegisterRequest>(raw, registerRequestSchema)));
    })
    .post('/api/v1/peers/:id/events', ({ res, raw }, p) => {
      service.metrics.reportRequests.inc();
      service.report(p.id!, jsonObject<{ events: PeerEvent[] }>(raw, peerEventsSchema).events);
      sendJson(res, 200, {});
    })
    .post('/api/v1/events', ({ res, raw }) => {
      service.metrics.reportRequests.inc();
      const unknown: string[] = [];
      const alone: string[] = [];
      for (const r of jsonObject<PeerReports>(raw, peerReportsSchema).reports) {
        try {
          if (r.register && service.registerDone(r.register)) alone.push(r.peerId);
          service.report(r.peerId, r.events);
        } catch (err) {
          if (!FerryError.hasCode(err, 'NOT_FOUND')) throw err;
          unknown.push(r.peerId);
        }
      }
      sendJson(res, 200, { unknown, alone } satisfies PeerReportsResponse);
    })
    .post('/api/v1/peers/:id/reschedule', async ({ res, raw }, p) => {
      const body = jsonObject<RescheduleRequest>(raw, rescheduleRequestSchema);
      sendJson(res, 200, await service.reschedule(p.id!, body.candidateParentIds ?? []));
    })
    .delete('/api/v1/peers/:id', ({ res }, p) => {
      service.leavePeer(p.id!);
      sendJson(res, 200, {});
    })
    .delete('/api/v1/tasks/:task/hosts/:host', ({ res }, p) => sendJson(res, 200, { removed: service.leaveTaskOnHost(p.task!, p.host!) }))
    .get('/api/v1/tasks/:task', ({ res }, p) => sendJson(res, 200, service.describeTask(p.task!)));

  const route = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = requestUrl(req);
    const p = url.pathname;
    const m = req.method ?? 'GET';
    if (p.startsWith('/oapi/v1/jobs') || p === OVERVIEW_PATH) {
      if (!authorised(req)) {
        res.setHeader('www-authenticate', 'Bearer');
        if (!req.complete) res.setHeader('connection', 'close');
        const message =
          tokens.length === 0 ? 'preheat job API disabled: configure preheat.tokens / --token' : 'invalid or missing personal access token';
        return sendJson(res, 401, { message });
      }
      return jobRoutes.dispatch(m, p, { req, res, url, raw: Buffer.alloc(0) });
    }
    if (!p.startsWith('/api/')) return open.dispatch(m, p, { req, res, url, raw: Buffer.alloc(0) });
    const raw = await readAuthenticated(req, auth, MAX_RPC_BODY);
    return rpc.dispatch(m, p, { req, res, url, raw });
  };

  const refusals = new LogThrottle();
  const server: Server = createServer((req, res) => {
    route(req, res).catch((err: unknown) => {
      const e = asFerryError(err);
      const status = statusOf(e);
      const url = req.url?.replace(/\?.*$/, '');
      if (status >= 500) log.warn({ method: req.method, url, err: e.message }, 'scheduler request failed');
      else if (e.code === 'UNAUTHENTICATED') {
        (refusals.allow(req.socket.remoteAddress ?? '') ? log.warn.bind(log) : log.debug.bind(log))(
          { method: req.method, url, remote: req.socket.remoteAddress, err: e.message },
          'peer RPC refused: no valid cluster signature',
        );
      } else log.debug({ method: req.method, url, err: e.message }, 'scheduler request rejected');
      // (a refused request whose body was not read is closed rather than drained: sendError)
      sendError(res, e, e.code === 'UNAUTHENTICATED' ? { headers: { 'www-authenticate': 'Ferry-Cluster' } } : {});
    });
  });
  server.keepAliveTimeout = 65_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const addr = server.address() as AddressInfo;
  const shownHost =
    addr.address === '0.0.0.0' || addr.address === '::' ? '127.0.0.1' : addr.address.includes(':') ? `[${addr.address}]` : addr.address;
  const url = `http://${shownHost}:${addr.port}`;
  const gcTimer = setInterval(() => service.gc(), config.gc.interval);
  gcTimer.unref();
  log.info({ url }, 'scheduler listening');
  return {
    url,
    metrics,
    service,
    jobs,
    close: async () => {
      clearInterval(gcTimer);
      service.close();
      jobs.close();
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
