/**
 * @module httpx/metrics-listener
 * The `/metrics` door of a server whose API lives on a unix socket (the daemon, the snapshotter):
 * Prometheus scrapes TCP, not unix sockets. The address is `host:port` (a bare `port` is
 * 127.0.0.1; loopback is the default everywhere) or a unix socket path (owner-only, as every
 * node-local socket). A non-loopback address is refused unless a bearer token is given (read from a
 * file by the caller, never a flag value): every scrape must then carry `Authorization: Bearer
 * <token>` (Prometheus: `authorization: {credentials_file: …}`), compared in constant time; 401
 * otherwise. Only `GET /metrics` is served (404/405 for anything else, from the route table).
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { rm } from 'node:fs/promises';
import { isIP } from 'node:net';
import { FerryError } from '../core/index.js';
import { metricsHandler, type MetricsRegistry } from '../observe/index.js';
import { sendError } from './errors.js';
import { Router, requestUrl } from './router.js';
import { listenPrivate } from './unix.js';

export interface MetricsListener {
  /** `host:port` as bound (the real port for port 0), or the socket path. */
  address: string;
  close(): Promise<void>;
}

/** `host:port`, `[v6]:port` or `port` → host and port; undefined for a unix socket path. */
function tcpAddress(addr: string): { host: string; port: number } | undefined {
  if (addr.includes('/')) return undefined;
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(addr) ?? /^()()(\d+)$/.exec(addr);
  if (!m)
    throw new FerryError('INVALID_ARGUMENT', `metrics address must be host:port, a port or a socket path, got ${JSON.stringify(addr)}`);
  const port = Number(m[3]);
  if (port > 65535) throw new FerryError('INVALID_ARGUMENT', `metrics port ${port} out of range`);
  return { host: m[1] || m[2] || '127.0.0.1', port };
}

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || (isIP(host) === 4 && host.startsWith('127.'));
}

const digest = (s: string): Buffer => createHash('sha256').update(s).digest();

export async function serveMetrics(o: {
  registry: MetricsRegistry;
  address: string;
  /** Required for a non-loopback address. */
  token?: string | undefined;
  /** The option that chose the address, for messages (e.g. `--metrics-address`). */
  what: string;
}): Promise<MetricsListener> {
  const tcp = tcpAddress(o.address);
  if (tcp && !isLoopback(tcp.host) && !o.token) {
    throw new FerryError(
      'INVALID_ARGUMENT',
      `${o.what} ${o.address} is not a loopback address: give a bearer token file for scrapers (or listen on 127.0.0.1)`,
    );
  }
  const want = o.token ? digest(`Bearer ${o.token}`) : undefined;
  const routes = new Router<{ req: IncomingMessage; res: ServerResponse }>().get('/metrics', ({ req, res }) =>
    metricsHandler(o.registry, req, res),
  );
  const server = createServer((req, res) => {
    (async () => {
      if (want && !timingSafeEqual(digest(req.headers.authorization ?? ''), want)) {
        throw new FerryError('UNAUTHENTICATED', 'metrics: a bearer token is required');
      }
      await routes.dispatch(req.method ?? 'GET', requestUrl(req).pathname, { req, res });
    })().catch((err: unknown) =>
      sendError(res, err, FerryError.hasCode(err, 'UNAUTHENTICATED') ? { headers: { 'www-authenticate': 'Bearer' } } : {}),
    );
  });
  let address = o.address;
  if (tcp) {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(tcp.port, tcp.host, () => resolve());
    });
    const a = server.address();
    if (typeof a === 'object' && a) address = a.family === 'IPv6' ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`;
  } else {
    await listenPrivate(server, o.address, o.what);
  }
  return {
    address,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
      if (!tcp) await rm(o.address, { force: true });
    },
  };
}
