/**
 * @module p2p/scheduler/server
 * HTTP adapter of the scheduler (api/p2p/scheduler.openapi.yaml): host announce, peer register /
 * events / reschedule / leave, task eviction reports, the preheat job API (`/oapi/v1/jobs`,
 * bearer tokens), `/healthy` and `/metrics`. JSON logs; FerryError codes map to statuses through
 * one table (HTTP_STATUS).
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { timingSafeEqual } from 'node:crypto';
import { FerryError, asFerryError } from '../../core/index.js';
import { createMetricsRegistry, metricsHandler, silentLogger, type Logger, type MetricsRegistry } from '../../observe/index.js';
import { parseSchedulerConfig, type SchedulerConfig, type SchedulerConfigInput } from '../../config/scheduler.js';
import { HTTP_STATUS, readAll } from '../common/index.js';
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

async function jsonBody<T>(req: IncomingMessage): Promise<T> {
  const buf = await readAll(req, 8 * 1024 * 1024);
  if (buf.length === 0) return {} as T;
  try { return JSON.parse(buf.toString('utf8')) as T; } catch {
    throw new FerryError('INVALID_ARGUMENT', 'request body is not valid JSON');
  }
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const s = body === undefined ? '' : JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(s) });
  res.end(s);
}

export async function startScheduler(opts: StartSchedulerOptions = {}): Promise<SchedulerHandle> {
  const config = parseSchedulerConfig(opts.config ?? {});
  const log = opts.log ?? silentLogger();
  const metrics = createMetricsRegistry({ processMetrics: true, prefix: 'ferry_scheduler_' });
  const service = new SchedulerService(config, metrics, log.child({ component: 'scheduler' }));
  const jobs = new PreheatJobs({
    hosts: (t) => service.hostsOf(t), blobDigestDefault: config.preheat.enableTaskIdBasedBlobDigest,
    timeoutMs: config.preheat.timeout, insecureSkipVerify: config.preheat.insecureSkipVerify,
  }, metrics, log.child({ component: 'preheat' }));
  if (config.preheat.tokens.length === 0) log.warn('preheat job API accepts requests without a token (configure preheat.tokens)');
  const tokens = config.preheat.tokens.map((t) => Buffer.from(t));
  const authorised = (req: IncomingMessage): boolean => {
    if (tokens.length === 0) return true;
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
      if (!authorised(req)) { res.setHeader('www-authenticate', 'Bearer'); return send(res, 401, { message: 'invalid or missing personal access token' }); }
      if (m === 'POST' && p === '/oapi/v1/jobs') return send(res, 200, jobs.create(await jsonBody(req)));
      if (m === 'GET' && p === '/oapi/v1/jobs') return send(res, 200, jobs.list({ type: u.searchParams.get('type') ?? '', state: u.searchParams.get('state') ?? '' }));
      if (m === 'GET' && (mm = /^\/oapi\/v1\/jobs\/(\d+)$/.exec(p))) return send(res, 200, jobs.get(Number(mm[1])));
      throw new FerryError('NOT_FOUND', `no route ${m} ${p}`);
    }
    if ((m === 'PUT' || m === 'POST') && (mm = /^\/api\/v1\/hosts\/([^/]+)$/.exec(p))) {
      const info = await jsonBody<HostInfo>(req);
      if (info.id !== decodeURIComponent(mm[1]!)) throw new FerryError('INVALID_ARGUMENT', 'host id in path and body differ');
      service.announceHost(info);
      return send(res, 200, {});
    }
    if (m === 'DELETE' && (mm = /^\/api\/v1\/hosts\/([^/]+)$/.exec(p))) { service.leaveHost(decodeURIComponent(mm[1]!)); return send(res, 200, {}); }
    if (m === 'POST' && p === '/api/v1/peers') return send(res, 200, await service.register(await jsonBody<RegisterRequest>(req)));
    if (m === 'POST' && (mm = /^\/api\/v1\/peers\/([^/]+)\/events$/.exec(p))) {
      const body = await jsonBody<{ events: PeerEvent[] }>(req);
      if (!Array.isArray(body.events)) throw new FerryError('INVALID_ARGUMENT', 'events must be an array');
      service.report(decodeURIComponent(mm[1]!), body.events);
      return send(res, 200, {});
    }
    if (m === 'POST' && (mm = /^\/api\/v1\/peers\/([^/]+)\/reschedule$/.exec(p))) {
      const body = await jsonBody<RescheduleRequest>(req);
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

  const server: Server = createServer((req, res) => {
    route(req, res).catch((err: unknown) => {
      const e = asFerryError(err);
      const status = HTTP_STATUS[e.code] ?? 500;
      if (status >= 500) log.warn({ method: req.method, url: req.url, err: e.message }, 'scheduler request failed');
      else log.debug({ method: req.method, url: req.url, err: e.message }, 'scheduler request rejected');
      if (!res.headersSent) send(res, status, { code: e.code, message: e.message });
      else res.destroy();
    });
  });
  server.keepAliveTimeout = 65_000;
  const { host, port } = splitHostPort(opts.listen ?? config.listen);
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
