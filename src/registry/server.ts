/**
 * @module registry/server
 * The registry's HTTP server: one node:http server (keep-alive) that authenticates each request,
 * dispatches `/v2/…` to the Distribution API, `/service/token` to the token endpoint, `/api/v2.0/…`
 * to the Harbor-compatible management API, the web console's pages (`/`, `/login`, `/projects`…) to
 * console/, and serves `/metrics`. Errors become the OCI error JSON
 * at this edge only.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { FerryError } from '../core/index.js';
import { Counter, Histogram, metricsHandler, type Logger, type MetricsRegistry } from '../observe/index.js';
import type { BlobStore } from '../content/index.js';
import { DistributionApi, tokenRealm, type DistributionOptions } from './distribution.js';
import { OciError, toOciError } from './errors.js';
import { sendJson } from '../httpx/index.js';
import { sendError } from './http-util.js';
import { LoginLockedError, parseScope, type Auth, type Principal, type TokenAccess } from './auth.js';
import type { RegistryMetadata } from './metadata/metadata.js';
import type { Webhooks } from './webhooks.js';
import { HarborApi } from './harbor-api.js';
import type { AuditLog } from './audit.js';
import { Console, isConsolePath } from '../console/index.js';
import { RegistryConsoleBackend } from './console-backend.js';
import { ConsoleConversions } from './console-conversions.js';
import { ConsoleP2p } from './console-p2p.js';
import { ConsoleNydus } from './console-nydus.js';
import type { AccelClient } from '../accel/client.js';

export interface RegistryServerDeps {
  meta: RegistryMetadata;
  store: BlobStore;
  auth: Auth;
  webhooks: Webhooks;
  audit: AuditLog;
  /** Called when a gc run is requested through the API (gc-jobs looks for work at once). */
  gcKick: () => void;
  log: Logger;
  metrics: MetricsRegistry;
  /** The accel service the console shows conversion tasks of (console.accel). */
  accel?: AccelClient | undefined;
  /** The P2P scheduler the console shows (console.scheduler). */
  p2p?: ConsoleP2p | undefined;
  /** Where the console finds `ferry bench` reports (console.benchDir). */
  benchDir?: string | undefined;
}

/** Routes a request path to a low-cardinality metrics label. */
function routeLabel(path: string): string {
  if (path.startsWith('/v2/')) {
    if (path === '/v2/') return 'base';
    if (path.includes('/blobs/uploads')) return 'upload';
    if (path.includes('/blobs/')) return 'blob';
    if (path.includes('/manifests/')) return 'manifest';
    if (path.endsWith('/tags/list')) return 'tags';
    if (path.includes('/referrers/')) return 'referrers';
    return 'v2-other';
  }
  if (path.startsWith('/api/')) return 'api';
  if (path.startsWith('/service/token')) return 'token';
  if (isConsolePath(path)) return 'console';
  return 'other';
}

/** The HTTP front of the registry. */
export class RegistryServer {
  readonly server: Server;
  readonly #d: RegistryServerDeps;
  readonly #opts: DistributionOptions;
  readonly #v2: DistributionApi;
  readonly #harbor: HarborApi;
  readonly #console: Console;
  readonly #requests: InstanceType<typeof Counter>;
  readonly #latency: InstanceType<typeof Histogram>;

  constructor(deps: RegistryServerDeps, opts: DistributionOptions) {
    this.#d = deps;
    this.#opts = opts;
    const served = new Counter({
      name: 'ferry_registry_blob_bytes_served_total',
      help: 'Blob body bytes sent (all GETs incl. ranges)',
      registers: [deps.metrics],
    });
    const received = new Counter({
      name: 'ferry_registry_blob_bytes_received_total',
      help: 'Blob body bytes received by uploads',
      registers: [deps.metrics],
    });
    this.#requests = new Counter({
      name: 'ferry_registry_requests_total',
      help: 'HTTP requests by route, method and status',
      labelNames: ['route', 'method', 'status'],
      registers: [deps.metrics],
    });
    this.#latency = new Histogram({
      name: 'ferry_registry_request_duration_seconds',
      help: 'HTTP request latency by route',
      labelNames: ['route', 'method'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10],
      registers: [deps.metrics],
    });
    this.#v2 = new DistributionApi(
      {
        meta: deps.meta,
        store: deps.store,
        auth: deps.auth,
        webhooks: deps.webhooks,
        audit: deps.audit,
        log: deps.log,
        counters: { blobBytesServed: (n) => served.inc(n), blobBytesReceived: (n) => received.inc(n) },
      },
      opts,
    );
    this.#harbor = new HarborApi({
      meta: deps.meta,
      auth: deps.auth,
      log: deps.log,
      webhooks: deps.webhooks,
      audit: deps.audit,
      gcKick: deps.gcKick,
    });
    this.#console = new Console({
      backend: new RegistryConsoleBackend({
        meta: deps.meta,
        auth: deps.auth,
        audit: deps.audit,
        log: deps.log,
        conversions: new ConsoleConversions({ auth: deps.auth, audit: deps.audit, accel: deps.accel }),
        p2p: deps.p2p ?? new ConsoleP2p(undefined),
        nydus: new ConsoleNydus(deps.store, deps.log),
        benchDir: deps.benchDir,
      }),
      log: deps.log,
    });
    this.server = createServer({ keepAliveTimeout: 65_000, requestTimeout: 0, headersTimeout: 60_000 }, (req, res) => {
      void this.#handle(req, res);
    });
  }

  async #handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const started = process.hrtime.bigint();
    const method = req.method ?? 'GET';
    let path = '/';
    let url: URL;
    try {
      const raw = req.url ?? '/';
      const rawPath = raw.split('?')[0]!;
      // URL parsing would resolve dot segments; a request path with them is never valid here.
      if (!rawPath.startsWith('/') || /(^|\/)\.\.?(\/|$)/.test(rawPath)) throw new Error('dot segment');
      url = new URL(raw, 'http://registry.invalid');
      path = url.pathname;
      if (path !== rawPath) throw new Error('non-canonical path');
    } catch {
      sendError(res, new OciError('NAME_INVALID', 'malformed request URL'));
      return;
    }
    const route = routeLabel(path);
    res.on('finish', () => {
      this.#requests.inc({ route, method, status: String(res.statusCode) });
      this.#latency.observe({ route, method }, Number(process.hrtime.bigint() - started) / 1e9);
    });
    try {
      if (path === '/metrics') {
        await metricsHandler(this.#d.metrics, req, res);
        return;
      }
      if (path === '/healthz' || path === '/api/v2.0/ping') {
        res.writeHead(200, { 'content-type': 'text/plain', 'content-length': 4 });
        res.end('Pong');
        return;
      }
      if (this.#console.owns(path)) {
        // The web console: its own session login (a cookie), not the Authorization header.
        await this.#console.handle(req, res, url);
        return;
      }
      let principal: Principal;
      try {
        principal = await this.#d.auth.authenticate(req.headers.authorization, { source: req.socket.remoteAddress, path, method });
      } catch (err) {
        if (!(err instanceof LoginLockedError)) await this.#auditLoginFailure(req.headers.authorization);
        if (err instanceof LoginLockedError) {
          throw new OciError('TOOMANYREQUESTS', err.message, { cause: err, headers: { 'retry-after': String(err.retryAfterSeconds) } });
        }
        if (path === '/service/token' || path.startsWith('/api/')) throw new OciError('UNAUTHORIZED', (err as Error).message);
        const e = new OciError('UNAUTHORIZED', (err as Error).message) as OciError & { challenge?: string };
        e.challenge = (req.headers.authorization ?? '').toLowerCase().startsWith('basic ')
          ? 'Basic realm="harbor"'
          : `Bearer realm="${tokenRealm(this.#opts, req.headers.host)}",service="${this.#opts.service}"`;
        throw e;
      }
      if (path === '/v2' || path.startsWith('/v2/')) {
        await this.#v2.handle(req, res, url, principal);
        return;
      }
      if (path === '/service/token') {
        await this.#token(req, res, url, principal);
        return;
      }
      if (path.startsWith('/api/v2.0/')) {
        await this.#harbor.handle(req, res, url, principal);
        return;
      }
      throw new OciError('NAME_UNKNOWN', `not found: ${path.slice(0, 200)}`, { status: 404 });
    } catch (err) {
      if (res.headersSent || res.destroyed) {
        // The client went away mid-body (or we failed mid-stream): nothing to answer.
        this.#d.log.debug({ method, path, err: (err as Error).message }, 'response aborted');
        res.destroy();
        return;
      }
      const e = toOciError(err);
      const headers: Record<string, string> = { 'docker-distribution-api-version': 'registry/2.0', ...e.headers };
      const challenge = (err as { challenge?: string }).challenge;
      if (challenge) headers['www-authenticate'] = challenge;
      if (e.status >= 500) this.#d.log.error({ err, method, path }, 'request failed');
      else this.#d.log.debug({ method, path, status: e.status, code: e.oci, msg: e.message }, 'request rejected');
      // A body we did not read must not poison the keep-alive connection.
      if (!req.complete) res.setHeader('connection', 'close');
      sendError(res, e, headers);
    }
  }

  /** A failed Basic login in the audit log (the user name only; never the secret). */
  async #auditLoginFailure(header: string | undefined): Promise<void> {
    if (!header?.toLowerCase().startsWith('basic ')) return;
    const user = Buffer.from(header.slice(6), 'base64').toString('utf8').split(':')[0] ?? '';
    await this.#d.audit.record({
      username: user.slice(0, 255),
      resource: user.slice(0, 255),
      resourceType: 'user',
      operation: 'login',
      success: false,
    });
  }

  /** Docker token endpoint (GET; POST answers 405 like Harbor so clients fall back to GET). */
  async #token(req: IncomingMessage, res: ServerResponse, url: URL, principal: Principal): Promise<void> {
    if (req.method !== 'GET') {
      throw new OciError('UNSUPPORTED', 'use GET for tokens');
    }
    if (principal.kind === 'token') throw new OciError('UNAUTHORIZED', 'a token cannot request a token');
    const scopes: TokenAccess[] = [];
    for (const raw of url.searchParams.getAll('scope')) {
      for (const s of raw.split(' ')) {
        const parsed = parseScope(s);
        if (parsed) scopes.push(parsed);
      }
    }
    const out = await this.#d.auth.issueToken(principal, scopes);
    sendJson(res, 200, out);
  }

  /** Listens on `host:port`; resolves the bound address. */
  listen(listen: string): Promise<AddressInfo> {
    const i = listen.lastIndexOf(':');
    if (i < 0) throw new FerryError('INVALID_ARGUMENT', `listen address ${listen} must be host:port`);
    const host = listen.slice(0, i).replace(/^\[|\]$/g, '');
    const port = Number(listen.slice(i + 1));
    if (!Number.isInteger(port) || port < 0 || port > 65535) throw new FerryError('INVALID_ARGUMENT', `invalid port in ${listen}`);
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, () => {
        this.server.off('error', reject);
        resolve(this.server.address() as AddressInfo);
      });
    });
  }

  close(): Promise<void> {
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      this.server.closeIdleConnections();
      setTimeout(() => this.server.closeAllConnections(), 2000).unref();
    });
  }
}
