/**
 * @module accel/server
 * acceld's HTTP API: `POST /api/v1/conversions[?sync=true]` (Harbor "Default" webhook payload, the
 * Authorization header configured for the source host REQUIRED), `GET /api/v1/conversions` (the
 * same header REQUIRED: it lists the tasks of the hosts configured with that header),
 * `GET /api/v1/health`, `GET /metrics`; every other path answers acceld's 404 JSON, another method
 * on a known path 405. Wire types in protocol.ts; routes, bodies (1 MiB, 413 beyond, checked only
 * after the Authorization header) and errors through the httpx kit, `code` in acceld's vocabulary.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { timingSafeEqual } from 'node:crypto';
import { FerryError } from '../core/index.js';
import { Counter, Histogram, metricsHandler, type Logger, type MetricsRegistry } from '../observe/index.js';
import { Router, readBody, requestUrl, sendError, sendJson } from '../httpx/index.js';
import { parseReference } from '../remote/index.js';
import type { AccelConfig } from '../config/accel.js';
import type { AccelService, SubmitOutcome } from './service.js';
import { eventKeyOf } from './queue.js';
import {
  CONVERSIONS_PATH,
  HEALTH_PATH,
  RETRY_PATH,
  TASK_IDS_HEADER,
  accelErrorCode,
  harborWebhookPayloadSchema,
  isHarborEventType,
} from './protocol.js';

const MAX_BODY = 1 << 20;

interface Ctx {
  req: IncomingMessage;
  res: ServerResponse;
  url: URL;
}

function safeEqual(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

export function createAccelServer(o: { service: AccelService; config: AccelConfig; metrics: MetricsRegistry; log: Logger }): Server {
  const { service, config, metrics, log } = o;
  const sub = `acceleration_service_${config.server.name.toLowerCase().replace(/[^a-z0-9_]/g, '_')}`;
  const reqTotal = new Counter({
    name: `${sub}_requests_total`,
    help: 'HTTP requests',
    labelNames: ['code', 'method', 'url'],
    registers: [metrics],
  });
  const reqDur = new Histogram({
    name: `${sub}_request_duration_seconds`,
    help: 'HTTP request duration',
    labelNames: ['code', 'method', 'url'],
    registers: [metrics],
  });

  /** Hosts with a webhook.auth_header: the only ones whose tasks can be created or listed. */
  const guarded = Object.entries(config.provider.source).flatMap(([host, src]) =>
    src.webhook?.auth_header ? [{ host, header: src.webhook.auth_header }] : [],
  );

  /**
   * The hosts whose webhook.auth_header equals the request's Authorization header (at least one, or
   * 401): checked before a body is read, so an unauthenticated request costs nothing.
   */
  const authenticate = (req: IncomingMessage): string[] => {
    if (guarded.length === 0) {
      throw new FerryError(
        'UNAUTHENTICATED',
        'no provider.source.<host>.webhook.auth_header is configured: Ferry requires one to create or list tasks',
      );
    }
    const got = req.headers.authorization;
    if (!got) {
      throw new FerryError(
        'UNAUTHENTICATED',
        'invalid auth config: no Authorization header (send the webhook.auth_header of the source host)',
      );
    }
    const hosts = guarded.filter((g) => safeEqual(got, g.header)).map((g) => g.host);
    if (hosts.length === 0) {
      throw new FerryError(
        'UNAUTHENTICATED',
        'invalid auth config: the Authorization header matches no provider.source.<host>.webhook.auth_header',
      );
    }
    return hosts;
  };

  /** Checks the webhook Authorization header against provider.source.<host>.webhook.auth_header. */
  const authorize = (req: IncomingMessage, host: string): void => {
    const src = config.provider.source[host];
    if (!src) throw new FerryError('UNAUTHENTICATED', `registry host ${host} is not configured in provider.source`);
    const want = src.webhook?.auth_header;
    if (!want) throw new FerryError('UNAUTHENTICATED', `no webhook.auth_header configured for ${host}: Ferry requires one`);
    const got = req.headers.authorization;
    if (!got || !safeEqual(got, want)) {
      throw new FerryError('UNAUTHENTICATED', `invalid auth config: the Authorization header is not the webhook.auth_header of ${host}`);
    }
  };

  const conversions = async ({ req, res, url }: Ctx): Promise<void> => {
    authenticate(req);
    const body = await readBody(req, MAX_BODY);
    const ctype = String(req.headers['content-type'] ?? '');
    let doc: unknown;
    try {
      doc = JSON.parse(body.toString('utf8'));
    } catch {
      throw new FerryError('INVALID_ARGUMENT', 'request body is not JSON (expected a Harbor webhook payload)');
    }
    if (ctype.includes('cloudevents') || (typeof doc === 'object' && doc !== null && 'specversion' in doc)) {
      throw new FerryError('INVALID_ARGUMENT', 'CloudEvents payloads are not supported: set the Harbor webhook payload format to Default');
    }
    const parsed = harborWebhookPayloadSchema.safeParse(doc);
    if (!parsed.success) {
      const type = (doc as { type?: unknown } | null)?.type;
      if (typeof type === 'string' && isHarborEventType(type) && type !== 'PUSH_ARTIFACT') {
        log.info({ type }, 'ignoring webhook event type');
        sendJson(res, 200, 'Ok');
        return;
      }
      const issues = parsed.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ');
      throw new FerryError('INVALID_ARGUMENT', `invalid webhook payload: ${issues}`);
    }
    const p = parsed.data;
    if (p.type !== 'PUSH_ARTIFACT') {
      if (!isHarborEventType(p.type)) throw new FerryError('INVALID_ARGUMENT', `unknown event type ${JSON.stringify(p.type)}`);
      log.info({ type: p.type }, 'ignoring webhook event type');
      sendJson(res, 200, 'Ok');
      return;
    }
    // Validate and authorise every resource before queueing any.
    const refs = p.event_data.resources.map((r) => {
      let ref: ReturnType<typeof parseReference>;
      try {
        ref = parseReference(r.resource_url);
      } catch (err) {
        throw new FerryError('INVALID_ARGUMENT', `invalid resource_url ${JSON.stringify(r.resource_url)}: ${(err as Error).message}`);
      }
      authorize(req, ref.registry);
      return r;
    });
    const outcomes: SubmitOutcome[] = [];
    for (const r of refs) {
      // the same event delivered again (another registry replica, a retried delivery) finds its task
      const eventKey =
        p.occur_at === undefined
          ? undefined
          : eventKeyOf({ type: p.type, occurAt: p.occur_at, resourceUrl: r.resource_url, ...(r.digest ? { digest: r.digest } : {}) });
      outcomes.push(
        await service.submit({
          resourceUrl: r.resource_url,
          ...(r.digest ? { digest: r.digest } : {}),
          ...(eventKey ? { eventKey } : {}),
        }),
      );
    }
    for (const o2 of outcomes) if (o2.kind === 'skipped') log.info({ source: o2.source, reason: o2.reason }, 'resource skipped');
    const ids = outcomes.flatMap((x) => (x.kind === 'task' ? [x.task.id] : []));
    if (ids.length) res.setHeader(TASK_IDS_HEADER, ids.join(','));
    if (url.searchParams.get('sync') === 'true') {
      const done = await Promise.all(ids.map((id) => service.waitFor(id)));
      const failed = done.filter((t) => t.status !== 'COMPLETED');
      if (failed.length) {
        const message = failed.map((t) => `${t.source}: ${t.reason || t.status}`).join('; ');
        sendJson(res, 500, { code: 'ERR_CONVERT_FAILED', message });
        return;
      }
    }
    sendJson(res, 200, 'Ok');
  };

  // acceld's answer to an unknown path; a known path with another method is 405 (code ERR_INVALID_ENDPOINT)
  const notFound = (): FerryError => new FerryError('NOT_FOUND', 'Endpoint not found');
  const routes = new Router<Ctx>({ looseSlashes: true, notFound })
    .post(CONVERSIONS_PATH, conversions)
    .get(CONVERSIONS_PATH, async ({ req, res, url }) => {
      const hosts = authenticate(req);
      const limit = Math.trunc(Number(url.searchParams.get('limit') ?? 1000));
      sendJson(res, 200, await service.queue.list(limit >= 1 && limit <= 1000 ? limit : 1000, hosts));
    })
    .post(RETRY_PATH, async ({ req, res }, params) => {
      const hosts = authenticate(req);
      const id = params.id!;
      const task = await service.queue.get(id);
      // a task of a host this header does not guard is as good as absent
      if (!task || !hosts.some((h) => task.source.startsWith(`${h}/`))) throw new FerryError('NOT_FOUND', `task ${id} not found`);
      const queued = await service.retry(id);
      log.info({ task: id, source: queued.source }, 'task queued again on request');
      sendJson(res, 200, queued);
    })
    .get(HEALTH_PATH, async ({ res }) => {
      if (!(await service.queue.healthy())) {
        log.warn({ status: 500, path: HEALTH_PATH }, 'task store unavailable');
        sendJson(res, 500, { code: 'ERR_UNHEALTHY', message: 'task store unavailable' });
        return;
      }
      res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' });
      res.end('Ok');
    });
  if (config.metric.enabled) routes.get('/metrics', ({ req, res }) => metricsHandler(metrics, req, res));
  const KNOWN = new Set([CONVERSIONS_PATH, HEALTH_PATH, '/metrics']);
  const RETRY_ROUTE = /^\/api\/v1\/conversions\/[^/]+\/retry$/;
  const routeOf = (url: URL | undefined): string => {
    const p = url ? url.pathname.replace(/\/+$/, '') || '/' : '';
    if (RETRY_ROUTE.test(p)) return RETRY_PATH;
    return KNOWN.has(p) ? p : 'other';
  };

  return createServer((req, res) => {
    const t0 = process.hrtime.bigint();
    let url: URL | undefined;
    (async () => {
      url = requestUrl(req);
      await routes.dispatch(req.method ?? 'GET', url.pathname, { req, res, url });
    })()
      .catch((err: unknown) => {
        const { error, status } = sendError(res, err, { code: (e) => accelErrorCode(e.code) });
        if (status >= 500) log.error({ err, path: req.url }, 'request failed');
        else if (status === 401) log.warn({ status, err: error.message, path: req.url }, 'request refused');
      })
      .finally(() => {
        const labels = { code: String(res.statusCode), method: req.method ?? '', url: routeOf(url) };
        reqTotal.inc(labels);
        reqDur.observe(labels, Number(process.hrtime.bigint() - t0) / 1e9);
      });
  });
}
