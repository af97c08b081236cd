/**
 * @module accel/server
 * acceld's HTTP API: `POST /api/v1/conversions[?sync=true]` (Harbor "Default" webhook payload, the
 * Authorization header configured for the source host REQUIRED), `GET /api/v1/conversions` (the
 * same header REQUIRED: it lists the tasks of the hosts configured with that header),
 * `GET /api/v1/health`, `GET /metrics`; every other route answers acceld's 404 JSON.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { timingSafeEqual } from 'node:crypto';
import { z } from 'zod';
import { FerryError } from '../core/index.js';
import { Counter, Histogram, metricsHandler, type Logger, type MetricsRegistry } from '../observe/index.js';
import { parseReference } from '../remote/index.js';
import type { AccelConfig } from '../config/accel.js';
import type { AccelService, SubmitOutcome } from './service.js';

const MAX_BODY = 1 << 20;

/** Harbor's event types (notification.go); only PUSH_ARTIFACT triggers a conversion. */
const HARBOR_EVENTS = new Set([
  'PUSH_ARTIFACT', 'PULL_ARTIFACT', 'DELETE_ARTIFACT', 'QUOTA_EXCEED', 'QUOTA_WARNING', 'SCANNING_FAILED',
  'SCANNING_STOPPED', 'SCANNING_COMPLETED', 'REPLICATION', 'TAG_RETENTION',
]);

const Payload = z.object({
  type: z.string(),
  occur_at: z.number().optional(),
  operator: z.string().optional(),
  event_data: z.object({
    resources: z.array(z.object({
      resource_url: z.string().min(1),
      digest: z.string().optional(),
      tag: z.string().optional(),
    })).min(1),
  }),
});

class HttpError extends Error {
  constructor(readonly status: number, readonly code: string, message: string) { super(message); }
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > MAX_BODY) throw new HttpError(413, 'ERR_ILLEGAL_PARAMETER', `request body larger than ${MAX_BODY} bytes`);
  const parts: Buffer[] = [];
  let n = 0;
  for await (const c of req) {
    n += (c as Buffer).length;
    if (n > MAX_BODY) throw new HttpError(413, 'ERR_ILLEGAL_PARAMETER', `request body larger than ${MAX_BODY} bytes`);
    parts.push(c as Buffer);
  }
  return Buffer.concat(parts);
}

function safeEqual(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

export function createAccelServer(o: { service: AccelService; config: AccelConfig; metrics: MetricsRegistry; log: Logger }): Server {
  const { service, config, metrics, log } = o;
  const sub = `acceleration_service_${config.server.name.toLowerCase().replace(/[^a-z0-9_]/g, '_')}`;
  const reqTotal = new Counter({ name: `${sub}_requests_total`, help: 'HTTP requests', labelNames: ['code', 'method', 'url'], registers: [metrics] });
  const reqDur = new Histogram({ name: `${sub}_request_duration_seconds`, help: 'HTTP request duration', labelNames: ['code', 'method', 'url'], registers: [metrics] });

  /** Hosts with a webhook.auth_header: the only ones whose tasks can be created or listed. */
  const guarded = Object.entries(config.provider.source).flatMap(([host, src]) => (src.webhook?.auth_header ? [{ host, header: src.webhook.auth_header }] : []));

  /**
   * The hosts whose webhook.auth_header equals the request's Authorization header (at least one, or
   * 401): checked before a body is read, so an unauthenticated request costs nothing.
   */
  const authenticate = (req: IncomingMessage): string[] => {
    if (guarded.length === 0) {
      throw new HttpError(401, 'ERR_UNAUTHORIZED', 'no provider.source.<host>.webhook.auth_header is configured: Ferry requires one to create or list tasks');
    }
    const got = req.headers.authorization;
    if (!got) throw new HttpError(401, 'ERR_UNAUTHORIZED', 'invalid auth config: no Authorization header (send the webhook.auth_header of the source host)');
    const hosts = guarded.filter((g) => safeEqual(got, g.header)).map((g) => g.host);
    if (hosts.length === 0) throw new HttpError(401, 'ERR_UNAUTHORIZED', 'invalid auth config: the Authorization header matches no provider.source.<host>.webhook.auth_header');
    return hosts;
  };

  /** Checks the webhook Authorization header against provider.source.<host>.webhook.auth_header. */
  const authorize = (req: IncomingMessage, host: string): void => {
    const src = config.provider.source[host];
    if (!src) throw new HttpError(401, 'ERR_UNAUTHORIZED', `registry host ${host} is not configured in provider.source`);
    const want = src.webhook?.auth_header;
    if (!want) throw new HttpError(401, 'ERR_UNAUTHORIZED', `no webhook.auth_header configured for ${host}: Ferry requires one`);
    const got = req.headers.authorization;
    if (!got || !safeEqual(got, want)) throw new HttpError(401, 'ERR_UNAUTHORIZED', `invalid auth config: the Authorization header is not the webhook.auth_header of ${host}`);
  };

  const conversions = async (req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> => {
    authenticate(req);
    const body = await readBody(req);
    const ctype = String(req.headers['content-type'] ?? '');
    let doc: unknown;
    try {
      doc = JSON.parse(body.toString('utf8'));
    } catch {
      throw new HttpError(400, 'ERR_ILLEGAL_PARAMETER', 'request body is not JSON (expected a Harbor webhook payload)');
    }
    if (ctype.includes('cloudevents') || (typeof doc === 'object' && doc !== null && 'specversion' in doc)) {
      throw new HttpError(400, 'ERR_ILLEGAL_PARAMETER', 'CloudEvents payloads are not supported: set the Harbor webhook payload format to Default');
    }
    const parsed = Payload.safeParse(doc);
    if (!parsed.success) {
      const type = (doc as { type?: unknown } | null)?.type;
      if (typeof type === 'string' && HARBOR_EVENTS.has(type) && type !== 'PUSH_ARTIFACT') {
        log.info({ type }, 'ignoring webhook event type');
        send(res, 200, 'Ok');
        return;
      }
      throw new HttpError(400, 'ERR_ILLEGAL_PARAMETER', `invalid webhook payload: ${parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ')}`);
    }
    const p = parsed.data;
    if (p.type !== 'PUSH_ARTIFACT') {
      if (!HARBOR_EVENTS.has(p.type)) throw new HttpError(400, 'ERR_ILLEGAL_PARAMETER', `unknown event type ${JSON.stringify(p.type)}`);
      log.info({ type: p.type }, 'ignoring webhook event type');
      send(res, 200, 'Ok');
      return;
    }
    // Validate and authorise every resource before queueing any.
    const refs = p.event_data.resources.map((r) => {
      let ref;
      try { ref = parseReference(r.resource_url); } catch (err) {
        throw new HttpError(400, 'ERR_ILLEGAL_PARAMETER', `invalid resource_url ${JSON.stringify(r.resource_url)}: ${(err as Error).message}`);
      }
      authorize(req, ref.registry);
      return r;
    });
    const outcomes: SubmitOutcome[] = refs.map((r) => service.submit(r.digest ? { resourceUrl: r.resource_url, digest: r.digest } : { resourceUrl: r.resource_url }));
    for (const o2 of outcomes) if (o2.kind === 'skipped') log.info({ source: o2.source, reason: o2.reason }, 'resource skipped');
    const ids = outcomes.flatMap((x) => (x.kind === 'task' ? [x.task.id] : []));
    if (ids.length) res.setHeader('x-ferry-task-ids', ids.join(','));
    if (url.searchParams.get('sync') === 'true') {
      const done = await Promise.all(ids.map((id) => service.waitFor(id)));
      const failed = done.filter((t) => t.status !== 'COMPLETED');
      if (failed.length) {
        send(res, 500, { code: 'ERR_CONVERT_FAILED', message: failed.map((t) => `${t.source}: ${t.reason || t.status}`).join('; ') });
        return;
      }
    }
    send(res, 200, 'Ok');
  };

  const KNOWN = new Set(['/api/v1/conversions', '/api/v1/health', '/metrics']);
  /** The request target as a URL; undefined for one that is not a path (`GET //`, `GET http://[`). */
  const targetOf = (req: IncomingMessage): URL | undefined => {
    try { return new URL(req.url ?? '/', 'http://accel'); } catch { return undefined; }
  };
  const routeOf = (url: URL | undefined): string => {
    const p = url ? url.pathname.replace(/\/+$/, '') || '/' : '';
    return KNOWN.has(p) ? p : 'other';
  };
  const handle = async (req: IncomingMessage, res: ServerResponse, url: URL | undefined): Promise<void> => {
    if (!url) throw new HttpError(400, 'ERR_ILLEGAL_PARAMETER', 'invalid request target');
    const path = url.pathname.replace(/\/+$/, '') || '/';
    if (path === '/api/v1/conversions' && req.method === 'POST') { await conversions(req, res, url); return; }
    if (path === '/api/v1/conversions' && req.method === 'GET') {
      const hosts = authenticate(req);
      const limit = Math.trunc(Number(url.searchParams.get('limit') ?? 1000));
      send(res, 200, service.store.list(limit >= 1 && limit <= 1000 ? limit : 1000, hosts));
      return;
    }
    if (path === '/api/v1/health' && req.method === 'GET') {
      if (!service.store.healthy()) throw new HttpError(500, 'ERR_UNHEALTHY', 'task store unavailable');
      res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' });
      res.end('Ok');
      return;
    }
    if (path === '/metrics' && req.method === 'GET' && config.metric.enabled) { await metricsHandler(metrics, req, res); return; }
    throw new HttpError(404, 'ERR_INVALID_ENDPOINT', 'Endpoint not found');
  };

  return createServer((req, res) => {
    const t0 = process.hrtime.bigint();
    const url = targetOf(req);
    const route = routeOf(url);
    handle(req, res, url).catch((err: unknown) => {
      if (err instanceof HttpError) {
        if (err.status >= 500 || err.status === 401) log.warn({ status: err.status, err: err.message, path: req.url }, 'request refused');
        // a body that was not read (refused before, or too large) is not drained: close the connection
        if (!req.complete && !res.headersSent) res.setHeader('connection', 'close');
        if (!res.headersSent) send(res, err.status, { code: err.code, message: err.message });
      } else {
        const status = FerryError.hasCode(err, 'INVALID_ARGUMENT') ? 400 : 500;
        log.error({ err, path: req.url }, 'request failed');
        if (!res.headersSent) send(res, status, { code: status === 400 ? 'ERR_ILLEGAL_PARAMETER' : 'ERR_INTERNAL', message: (err as Error).message });
      }
    }).finally(() => {
      const labels = { code: String(res.statusCode), method: req.method ?? '', url: route };
      reqTotal.inc(labels);
      reqDur.observe(labels, Number(process.hrtime.bigint() - t0) / 1e9);
    });
  });
}
