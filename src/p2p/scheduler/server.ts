/**
 * @module p2p/scheduler/server
 * HTTP adapter of the scheduler (api/p2p/scheduler.openapi.yaml): host announce, peer register /
 * events / reschedule / leave, task eviction reports, the preheat job API (`/oapi/v1/jobs`,
 * bearer tokens), `/healthy` and `/metrics`. With a cluster secret every /api/v1 request must be
 * signed by a cluster member (401 otherwise, the body unread); a non-loopback listen address
 * requires one. JSON logs; FerryError codes map to statuses through one table (HTTP_STATUS).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { timingSafeEqual } from 'node:crypto';
import { z } from 'zod';
import { FerryError, asFerryError } from '../../core/index.js';
import { createMetricsRegistry, metricsHandler, silentLogger, type Logger, type MetricsRegistry } from '../../observe/index.js';
import { parseSchedulerConfig, type SchedulerConfig, type SchedulerConfigInput } from '../../config/scheduler.js';
import { HTTP_STATUS, readAuthenticated } from '../common/index.js';
import { ClusterAuth, CLUSTER_SECRET_HINT, LogThrottle, isLoopbackHost, loadClusterSecret } from '../common/index.js';
import type { HostInfo, PeerEvent, RegisterRequest, RescheduleRequest } from '../common/index.js';
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

/** A JSON object body (an empty body is `{}`), checked with `schema` when given. */
function jsonObject<T>(buf: Buffer, schema?: z.ZodType): T {
  if (buf.length === 0 && !schema) return {} as T;
  let v: unknown;
  try { v = JSON.parse(buf.toString('utf8')); } catch {
    throw new FerryError('INVALID_ARGUMENT', 'request body is not valid JSON');
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new FerryError('INVALID_ARGUMENT', 'request body must be a JSON object');
  if (schema) {
    const r = schema.safeParse(v);
    if (!r.success) throw new FerryError('INVALID_ARGUMENT', `request body: ${z.prettifyError(r.error).replace(/\s*\n\s*/g, ' ')}`);
  }
  return v as T;
}

// The shapes the RPC handlers rely on (the wire types in common/protocol.ts carry the rest).
const httpUrl = z.string().refine((s) => { try { return /^https?:$/.test(new URL(s).protocol); } catch { return false; } }, 'an http(s) URL');
const hostSchema = z.object({ id: z.string().min(1), ip: z.string().min(1), hostname: z.string(), type: z.enum(['normal', 'super']), uploadUrl: httpUrl }).passthrough();
const registerSchema = z.object({
  peerId: z.string().min(1), hostId: z.string().min(1), taskId: z.string().regex(/^[a-f0-9]{64}$/),
  download: z.object({
    url: httpUrl, contentLength: z.number().int().min(0), actualPieceLength: z.number().int().min(0),
    headers: z.record(z.string(), z.string()).optional(),
  }).passthrough(),
}).passthrough();
const pieceSchema = z.object({ number: z.number().int().min(0), length: z.number().min(0), digest: z.string(), costMs: z.number() }).passthrough();
const eventsSchema = z.object({
  events: z.array(z.object({ kind: z.string(), piece: pieceSchema.optional(), parentId: z.string().optional() }).passthrough()
    .refine((e) => !['pieceFinished', 'pieceBackToSourceFinished'].includes(e.kind) || e.piece !== undefined, 'piece events need `piece`')
    .refine((e) => e.kind !== 'pieceFailed' || e.parentId !== undefined, 'pieceFailed needs `parentId`')).max(100_000),
});
const rescheduleSchema = z.object({ candidateParentIds: z.array(z.string()).optional() }).passthrough();

function send(res: ServerResponse, status: number, body: unknown): void {
  const s = body === undefined ? '' : JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(s) });
  res.end(s);
}

export async function startScheduler(opts: StartSchedulerOptions = {}): Promise<SchedulerHandle> {
  const config = parseSchedulerConfig(opts.config ?? {});
  const log = opts.log ?? silentLogger();
  const listen = opts.listen ?? config.listen;
  const { host, port } = splitHostPort(listen);
  const secret = loadClusterSecret(config.cluster, log);
  const auth = secret === undefined ? undefined : new ClusterAuth(secret);
  if (!auth && !isLoopbackHost(host)) {
    throw new FerryError('FAILED_PRECONDITION', `the scheduler would listen on ${listen}, reachable from other machines, but no cluster secret is configured: `
      + `give the scheduler and every peer the same secret (${CLUSTER_SECRET_HINT}; e.g. openssl rand -hex 32 > /etc/ferry/cluster-token), `
      + `or on a single machine listen on loopback: --listen 127.0.0.1:${port}`);
  }
  const metrics = createMetricsRegistry({ processMetrics: true, prefix: 'ferry_scheduler_' });
  const service = new SchedulerService(config, metrics, log.child({ component: 'scheduler' }), auth);
  const jobs = new PreheatJobs({
    hosts: (t) => service.hostsOf(t), blobDigestDefault: config.preheat.enableTaskIdBasedBlobDigest,
    timeoutMs: config.preheat.timeout, insecureSkipVerify: config.preheat.insecureSkipVerify, auth,
  }, metrics, log.child({ component: 'preheat' }));
  // Without tokens the job API is open on loopback only: reachable from the network it would let
  // anyone make the seeds fetch any URL.
  const preheatOpen = config.preheat.tokens.length === 0 && isLoopbackHost(host);
  if (config.preheat.tokens.length === 0) {
    log.warn(preheatOpen ? 'preheat job API accepts requests without a token (loopback only; configure preheat.tokens / --token)'
      : 'preheat job API disabled: the scheduler is reachable from the network and no preheat.tokens / --token are configured');
  }
  const tokens = config.preheat.tokens.map((t) => Buffer.from(t));
  const authorised = (req: IncomingMessage): boolean => {
    if (tokens.length === 0) return preheatOpen;
    const m = /^Bearer\s+(.+)$/i.exec(req.headers.authorization ?? '');
    if (!m) return false;
    const got = Buffer.from(m[1]!.trim());
    return tokens.some((t) => t.length === got.length && timingSafeEqual(t, got));
  };

  const route = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const u = new URL(req.url ?? '/', 'http://x');
    const p = u.pathname;
    const m = req.method ?? 'GET';
    let mm: RegExpExecArray | null;
    if (m === 'GET' && p === '/metrics') return metricsHandler(metrics, req, res);
    if (m === 'GET' && (p === '/healthy' || p === '/healthy/')) { res.writeHead(200, { 'content-type': 'text/plain' }); res.end('OK'); return; }
    if (p.startsWith('/oapi/v1/jobs')) {
      if (!authorised(req)) {
        res.setHeader('www-authenticate', 'Bearer');
        if (!req.complete) res.setHeader('connection', 'close');
        return send(res, 401, { message: tokens.length === 0 ? 'preheat job API disabled: configure preheat.tokens / --token' : 'invalid or missing personal access token' });
      }
      if (m === 'POST' && p === '/oapi/v1/jobs') return send(res, 200, jobs.view(jobs.create(jsonObject(await readAuthenticated(req, undefined, MAX_JOB_BODY)))));
      if (m === 'GET' && p === '/oapi/v1/jobs') return send(res, 200, jobs.list({ type: u.searchParams.get('type') ?? '', state: u.searchParams.get('state') ?? '' }).map((j) => jobs.view(j)));
      if (m === 'GET' && (mm = /^\/oapi\/v1\/jobs\/(\d+)$/.exec(p))) return send(res, 200, jobs.view(jobs.get(Number(mm[1]))));
      throw new FerryError('NOT_FOUND', `no route ${m} ${p}`);
    }
    if (!p.startsWith('/api/')) throw new FerryError('NOT_FOUND', `no route ${m} ${p}`);
    // The peer RPC: cluster members only.
    const raw = await readAuthenticated(req, auth, MAX_RPC_BODY);
    if ((m === 'PUT' || m === 'POST') && (mm = /^\/api\/v1\/hosts\/([^/]+)$/.exec(p))) {
      const info = jsonObject<HostInfo>(raw, hostSchema);
      if (info.id !== decodeURIComponent(mm[1]!)) throw new FerryError('INVALID_ARGUMENT', 'host id in path and body differ');
      service.announceHost(info);
      return send(res, 200, {});
    }
    if (m === 'DELETE' && (mm = /^\/api\/v1\/hosts\/([^/]+)$/.exec(p))) { service.leaveHost(decodeURIComponent(mm[1]!)); return send(res, 200, {}); }
    if (m === 'POST' && p === '/api/v1/peers') return send(res, 200, await service.register(jsonObject<RegisterRequest>(raw, registerSchema)));
    if (m === 'POST' && (mm = /^\/api\/v1\/peers\/([^/]+)\/events$/.exec(p))) {
      const body = jsonObject<{ events: PeerEvent[] }>(raw, eventsSchema);
      service.report(decodeURIComponent(mm[1]!), body.events);
      return send(res, 200, {});
    }
    if (m === 'POST' && (mm = /^\/api\/v1\/peers\/([^/]+)\/reschedule$/.exec(p))) {
      const body = jsonObject<RescheduleRequest>(raw, rescheduleSchema);
      return send(res, 200, await service.reschedule(decodeURIComponent(mm[1]!), body.candidateParentIds ?? []));
    }
    if (m === 'DELETE' && (mm = /^\/api\/v1\/peers\/([^/]+)$/.exec(p))) { service.leavePeer(decodeURIComponent(mm[1]!)); return send(res, 200, {}); }
    if (m === 'DELETE' && (mm = /^\/api\/v1\/tasks\/([^/]+)\/hosts\/([^/]+)$/.exec(p))) {
      return send(res, 200, { removed: service.leaveTaskOnHost(decodeURIComponent(mm[1]!), decodeURIComponent(mm[2]!)) });
    }
    if (m === 'GET' && (mm = /^\/api\/v1\/tasks\/([^/]+)$/.exec(p))) return send(res, 200, service.describeTask(decodeURIComponent(mm[1]!)));
    if (m === 'GET' && p === '/api/v1/hosts') return send(res, 200, service.hostsOf().map((h) => h.info));
    throw new FerryError('NOT_FOUND', `no route ${m} ${p}`);
  };

  const refusals = new LogThrottle();
  const server: Server = createServer((req, res) => {
    route(req, res).catch((err: unknown) => {
      const e = asFerryError(err);
      const status = HTTP_STATUS[e.code] ?? 500;
      const url = req.url?.replace(/\?.*$/, '');
      if (status >= 500) log.warn({ method: req.method, url, err: e.message }, 'scheduler request failed');
      else if (e.code === 'UNAUTHENTICATED') {
        (refusals.allow(req.socket.remoteAddress ?? '') ? log.warn.bind(log) : log.debug.bind(log))(
          { method: req.method, url, remote: req.socket.remoteAddress, err: e.message }, 'peer RPC refused: no valid cluster signature');
      }
      else log.debug({ method: req.method, url, err: e.message }, 'scheduler request rejected');
      if (res.headersSent) { res.destroy(); return; }
      if (e.code === 'UNAUTHENTICATED') res.setHeader('www-authenticate', 'Ferry-Cluster');
      // A refused request whose body was not read: close rather than drain it.
      if (!req.complete) res.setHeader('connection', 'close');
      send(res, status, { code: e.code, message: e.message });
    });
  });
  server.keepAliveTimeout = 65_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => { server.off('error', reject); resolve(); });
  });
  const addr = server.address() as AddressInfo;
  const shownHost = addr.address === '0.0.0.0' || addr.address === '::' ? '127.0.0.1' : addr.address.includes(':') ? `[${addr.address}]` : addr.address;
  const url = `http://${shownHost}:${addr.port}`;
  const gcTimer = setInterval(() => service.gc(), config.gc.interval);
  gcTimer.unref();
  log.info({ url }, 'scheduler listening');
  return {
    url, metrics, service, jobs,
    close: async () => {
      clearInterval(gcTimer);
      service.close();
      jobs.close();
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}
