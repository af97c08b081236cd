/**
 * @module p2p/peer/proxy
 * The node proxy (Dragonfly dfdaemon's proxy rules): registry mirror mode (upstream from
 * `X-Dragonfly-Registry`, containerd's `?ns=`, or the configured mirror), absolute-URI proxy mode,
 * CONNECT with TLS interception for configured hosts (leaf certificates from the CA) and blind
 * tunnels for all others. Only GETs matching a rule (default `blobs/sha256.*`) or carrying
 * `X-Dragonfly-Use-P2P: true` go P2P; everything else is forwarded with all headers but Host.
 * Only allowed upstreams are reached (upstreams.ts: the mirror, hijack hosts, rule targets,
 * `proxy.allowedHosts`); any other absolute URI, CONNECT target, `X-Dragonfly-Registry` or `?ns=`
 * is refused with 403 (logged at warn once a minute per client address, else at debug).
 * Range requests answer 206: from the whole-object task when it holds the range, otherwise from a
 * range task (Dragonfly's ranged task: the range is part of the task id and only the range is
 * fetched, from peers or the origin); small ranges may bypass P2P (`download.directBelow`).
 */
import { createHash } from 'node:crypto';
import http, { type IncomingMessage, type ServerResponse } from 'node:http';
import https from 'node:https';
import net from 'node:net';
import tls from 'node:tls';
import type { Duplex } from 'node:stream';
import { FerryError, asFerryError } from '../../core/index.js';
import type { Logger } from '../../observe/index.js';
import type { PeerConfig } from '../../config/peer.js';
import { sendError } from '../../httpx/index.js';
import { LogThrottle, drained } from '../common/index.js';
import { blobDigestOfUrl, piecesForRange, type RangeSpec } from '../common/index.js';
import { H, type TaskIdOptions } from '../common/index.js';
import type { Agent, Prepared, PreparedRange } from './agent.js';
import type { LeafMinter } from './ca.js';
import type { PeerMetrics } from './metrics.js';
import { forwardableHeaders, type OriginOptions } from './source.js';
import type { TaskEntry } from './store.js';
import { UpstreamPolicy, hostPortOf, normalizeTarget } from './upstreams.js';

const HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);

interface ProxyDeps {
  config: PeerConfig;
  agent: Agent;
  metrics: PeerMetrics;
  origin: OriginOptions;
  minter: LeafMinter | undefined;
  log: Logger;
  /** Non-proxy requests to the proxy port (/metrics, /healthy). */
  local: (req: IncomingMessage, res: ServerResponse) => Promise<boolean>;
}

type Sock = tls.TLSSocket & { ferryTarget?: string };

export function createProxyServer(d: ProxyDeps): http.Server {
  const rules = d.config.proxy.rules.map((r) => ({ ...r, re: new RegExp(r.regex) }));
  const hijack = d.config.proxy.hijackHosts.map((h) => new RegExp(h));
  const policy = new UpstreamPolicy(d.config.proxy);
  const refusals = new LogThrottle();
  const ALLOW_HINT = 'allow it with proxy.allowedHosts / --allow-host, or --registry-mirror';
  /** Logs a refused upstream (warn once a minute per host, else debug) and counts it. */
  const noteDenied = (hostPort: string, how: string, req: IncomingMessage): void => {
    d.metrics.proxyDenied.inc({ method: req.method ?? 'GET' });
    (refusals.allow(req.socket.remoteAddress ?? '') ? d.log.warn.bind(d.log) : d.log.debug.bind(d.log))(
      { upstream: hostPort, how, method: req.method, remote: req.socket.remoteAddress },
      'proxy refused an upstream that is not an allowed registry',
    );
  };

  const fail = (res: ServerResponse, err: unknown, type: 'proxy' | 'backend' | 'dfdaemon'): void => {
    const e = asFerryError(err);
    if (e.code === 'PERMISSION_DENIED' && type === 'dfdaemon') type = 'proxy';
    else {
      d.metrics.proxyFailures.inc({ type });
      d.log.warn({ err: e.message, type }, 'proxy request failed');
    }
    sendError(res, e, { headers: { [H.errorType]: type } });
  };

  /** Upstream URL of a request, or undefined for requests addressed to the proxy itself. */
  const upstreamOf = (req: IncomingMessage): string | undefined => {
    const target = (req.socket as Sock).ferryTarget;
    const raw = req.url ?? '/';
    if (target) return `https://${target}${raw}`;
    if (/^https?:\/\//i.test(raw)) return raw;
    const u = new URL(raw, 'http://proxy.invalid');
    let base = req.headers[H.registry] as string | undefined;
    const ns = u.searchParams.get('ns');
    if (!base && ns) base = ns === 'docker.io' ? 'https://registry-1.docker.io' : `${d.config.proxy.registryMirror.nsScheme}://${ns}`;
    if (!base) base = d.config.proxy.registryMirror.url;
    if (!base) return undefined;
    u.searchParams.delete('ns'); // mirror-only parameter, never leaked upstream
    let b: URL;
    try {
      b = new URL(base);
    } catch {
      throw new FerryError('INVALID_ARGUMENT', `invalid upstream ${JSON.stringify(base.slice(0, 200))} (${H.registry} or ?ns=)`);
    }
    if (b.protocol !== 'http:' && b.protocol !== 'https:')
      throw new FerryError('INVALID_ARGUMENT', `upstream must be http(s), got ${b.protocol}`);
    return `${b.protocol}//${b.host}${b.pathname.replace(/\/+$/, '')}${u.pathname}${u.search}`;
  };

  const handle = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    let url = upstreamOf(req);
    if (url === undefined) {
      if (await d.local(req, res)) return;
      throw new FerryError('INVALID_ARGUMENT', 'no upstream: send X-Dragonfly-Registry, ?ns=, or configure proxy.registryMirror.url');
    }
    d.metrics.proxyRequests.inc({ method: req.method ?? 'GET' });
    const noQuery = url.replace(/[?#].*$/, '');
    const rule = rules.find((r) => r.re.test(noQuery));
    if (rule) {
      const u = new URL(url);
      if (rule.useTLS) u.protocol = 'https:';
      if (rule.redirect) u.host = rule.redirect;
      url = u.toString();
    }
    let target: URL;
    try {
      target = new URL(url);
    } catch {
      throw new FerryError('INVALID_ARGUMENT', 'invalid upstream URL');
    }
    const hp = hostPortOf(target);
    if (!policy.allows(hp)) {
      const how = (req.socket as Sock).ferryTarget
        ? 'intercepted'
        : /^https?:\/\//i.test(req.url ?? '')
          ? 'absolute URI'
          : req.headers[H.registry]
            ? H.registry
            : 'mirror (?ns=)';
      noteDenied(hp, how, req);
      throw new FerryError('PERMISSION_DENIED', `upstream ${hp} is not a registry this peer serves (${ALLOW_HINT})`);
    }
    const wantP2P = req.method === 'GET' && ((rule && !rule.direct) || String(req.headers[H.useP2P] ?? '').toLowerCase() === 'true');
    if (!wantP2P) return passThrough(req, res, url);
    return viaP2P(req, res, url);
  };

  const idOptionsOf = (req: IncomingMessage): TaskIdOptions => {
    const h = (k: string): string | undefined => {
      const v = req.headers[k];
      return typeof v === 'string' && v ? v : undefined;
    };
    const pl = h(H.pieceLength);
    const fq = h(H.filteredQueryParams);
    const bd = h(H.blobDigest);
    let pieceLength: number | undefined;
    if (pl !== undefined) {
      pieceLength = Number(/^\d+$/.test(pl) ? pl : NaN);
      if (!Number.isSafeInteger(pieceLength) || pieceLength < 4 * 1024 * 1024)
        throw new FerryError('INVALID_ARGUMENT', `${H.pieceLength} must be an integer ≥ 4 MiB`);
    }
    return {
      tag: h(H.tag),
      application: h(H.application),
      pieceLength,
      filteredQueryParams: fq
        ? fq
            .split(/[,&]/)
            .map((s) => s.trim())
            .filter(Boolean)
        : undefined,
      blobDigest: bd === undefined ? undefined : bd.toLowerCase() === 'true',
    };
  };

  /** Relays the origin's refusal (status, headers, body) of the access check. */
  const relayDenied = (res: ServerResponse, s: Extract<Prepared, { kind: 'denied' }>['stat']): void => {
    const out: Record<string, string | string[]> = {};
    for (const [k, v] of Object.entries(s.headers)) if (v !== undefined && !HOP.has(k) && k !== 'content-length') out[k] = v;
    out['content-length'] = String(s.body.length);
    out[H.errorType] = 'backend';
    res.writeHead(s.status, out);
    res.end(s.body);
  };

  /** Recovery for serveEntry: refetch dropped pieces; forget a blob that failed its digest. */
  const serveOptions = (entry: TaskEntry, url: string, headers: Record<string, string>): ServeOptions => ({
    refetch: (n) => d.agent.download(entry, url, headers, [n]),
    onBadBlob: (want, got) => {
      d.metrics.pieceFailures.inc({ reason: 'digest' });
      d.log.error({ taskId: entry.id, want, got }, 'blob failed its digest while being served: transfer aborted, local copy dropped');
      d.agent.forget(entry);
    },
  });

  const viaP2P = async (req: IncomingMessage, res: ServerResponse, url: string): Promise<void> => {
    const headers = forwardableHeaders(req.headers);
    const ac = new AbortController();
    res.on('close', () => ac.abort());
    const o = idOptionsOf(req);
    const verifyAccess = d.config.proxy.verifyUpstreamAccess;
    const rangeHeader = req.headers.range;
    if (rangeHeader === undefined) {
      let prep: Prepared;
      try {
        prep = await d.agent.prepare(url, headers, o, { verifyAccess, signal: ac.signal });
      } catch (err) {
        return fail(res, err, 'backend');
      }
      if (prep.kind === 'denied') return relayDenied(res, prep.stat);
      d.metrics.proxyViaP2P.inc();
      d.agent.download(prep.entry, url, headers).catch(() => undefined);
      return serveEntry(res, prep.entry, undefined, prep.cached, ac.signal, d.metrics, serveOptions(prep.entry, url, headers));
    }
    // A Range request: served from the whole-object task if it holds the range, else from the
    // range's own task (content = the range, pieces cut from the range length).
    let prep: PreparedRange;
    try {
      prep = await d.agent.prepareRange(url, headers, o, rangeHeader, {
        verifyAccess,
        signal: ac.signal,
        directBelow: d.config.download.directBelow,
        rangeGrid: d.config.download.rangeGrid,
      });
    } catch (err) {
      return fail(res, err, 'backend');
    }
    if (prep.kind === 'denied') return relayDenied(res, prep.stat);
    if (prep.kind === 'unsatisfiable') {
      res.writeHead(416, { 'content-range': `bytes */${prep.total}` });
      res.end();
      return;
    }
    const entry = prep.kind === 'task' ? prep.entry : undefined;
    const wholeCached = entry !== undefined && entry.meta.range === undefined && entry.complete;
    if (!wholeCached && (d.config.proxy.prefetch || String(req.headers[H.prefetch] ?? '').toLowerCase() === 'true')) {
      // The whole object in the background (lazy loaders soon read the rest).
      if (entry && entry.meta.range === undefined) d.agent.download(entry, url, headers).catch(() => undefined);
      else {
        d.agent
          .prepare(url, headers, o, { verifyAccess: false, stat: prep.stat })
          .then((w) => {
            if (w.kind === 'task') d.agent.download(w.entry, url, headers).catch(() => undefined);
          })
          .catch(() => undefined);
      }
    }
    if (prep.kind === 'direct') return passThrough(req, res, url);
    d.metrics.proxyViaP2P.inc();
    const span = prep.entry.meta.range;
    const pieces = span ? undefined : piecesForRange(prep.range.start, prep.range.end, prep.entry.meta.pieceLength);
    d.agent.download(prep.entry, url, headers, pieces).catch(() => undefined);
    await serveEntry(res, prep.entry, prep.range, prep.cached, ac.signal, d.metrics, serveOptions(prep.entry, url, headers));
  };

  const passThrough = (req: IncomingMessage, res: ServerResponse, url: string): Promise<void> =>
    new Promise((resolve) => {
      const u = new URL(url);
      const headers: Record<string, string | string[]> = {};
      for (const [k, v] of Object.entries(req.headers))
        if (v !== undefined && !HOP.has(k) && k !== 'host' && !k.startsWith('x-dragonfly-')) headers[k] = v;
      headers.host = u.host;
      const isHttps = u.protocol === 'https:';
      const opts: https.RequestOptions = {
        method: req.method,
        headers,
        hostname: u.hostname.replace(/^\[|\]$/g, ''),
        port: u.port || (isHttps ? 443 : 80),
        path: `${u.pathname}${u.search}`,
      };
      if (isHttps) {
        opts.rejectUnauthorized = !d.origin.insecure;
        if (d.origin.ca) opts.ca = [d.origin.ca];
      }
      const up = (isHttps ? https : http).request(opts, (ur) => {
        const out: Record<string, string | string[]> = {};
        for (const [k, v] of Object.entries(ur.headers)) if (v !== undefined && !HOP.has(k)) out[k] = v;
        res.writeHead(ur.statusCode ?? 502, out);
        ur.pipe(res);
        ur.on('end', () => resolve());
        ur.on('error', () => {
          res.destroy();
          resolve();
        });
      });
      up.on('error', (err) => {
        fail(res, new FerryError('UNAVAILABLE', `upstream ${u.host}: ${err.message}`), 'backend');
        resolve();
      });
      res.on('close', () => {
        if (!res.writableFinished) up.destroy();
        resolve();
      });
      req.pipe(up);
    });

  const onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    handle(req, res).catch((err: unknown) => fail(res, err, 'dfdaemon'));
  };

  const server = http.createServer(onRequest);
  const inner = http.createServer(onRequest);
  server.keepAliveTimeout = 65_000;

  server.on('connect', (req: IncomingMessage, socket: Duplex, head: Buffer) => {
    const target = req.url ?? '';
    const m = /^(\[[^\]]+\]|[^:]+):(\d+)$/.exec(target);
    socket.on('error', () => socket.destroy());
    if (!m) {
      socket.end('HTTP/1.1 400 Bad Request\r\n\r\n');
      return;
    }
    d.metrics.proxyRequests.inc({ method: 'CONNECT' });
    const host = m[1]!.replace(/^\[|\]$/g, '');
    const port = Number(m[2]);
    const hp = normalizeTarget(target);
    if (!hp || !policy.allows(hp)) {
      noteDenied(hp ?? target, 'CONNECT', req);
      const body = `CONNECT to ${target} refused: not a registry this peer serves (${ALLOW_HINT})\n`;
      socket.end(
        `HTTP/1.1 403 Forbidden\r\ncontent-type: text/plain\r\ncontent-length: ${Buffer.byteLength(body)}\r\n${H.errorType}: proxy\r\nconnection: close\r\n\r\n${body}`,
      );
      return;
    }
    if (d.minter && hijack.some((re) => re.test(target))) {
      socket.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      if (head.length) socket.unshift(head);
      let ctx: tls.SecureContext;
      try {
        ctx = d.minter.contextFor(host);
      } catch (err) {
        d.log.warn({ host, err: (err as Error).message }, 'cannot mint certificate');
        socket.destroy();
        return;
      }
      const t = new tls.TLSSocket(socket, { isServer: true, secureContext: ctx, ALPNProtocols: ['http/1.1'] }) as Sock;
      t.ferryTarget = target;
      t.on('error', (err) => {
        d.log.debug({ host, err: err.message }, 'intercepted TLS failed');
        t.destroy();
      });
      inner.emit('connection', t);
      return;
    }
    // Not intercepted: a blind tunnel, bytes untouched.
    const up = net.connect(port, host, () => {
      socket.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      if (head.length) up.write(head);
      up.pipe(socket);
      socket.pipe(up);
    });
    up.on('error', () => {
      if (!socket.destroyed) socket.end('HTTP/1.1 502 Bad Gateway\r\n\r\n');
    });
    socket.on('close', () => up.destroy());
  });
  server.on('close', () => inner.close());
  return server;
}

/** How serveEntry recovers: refetch a dropped piece; what to do with a blob that fails its digest. */
export interface ServeOptions {
  /** Downloads piece n again (it was found altered on disk and dropped). */
  refetch?: ((n: number) => Promise<void>) | undefined;
  /** The whole blob did not hash to the digest in its URL (the client's transfer is aborted). */
  onBadBlob?: ((want: string, got: string) => void) | undefined;
}

/**
 * Streams a task (or a range of it) to an HTTP client as pieces become available. `range` is in
 * the coordinates of the origin object; a range task holds origin bytes from its `range.start`.
 * Every piece comes through the store's checked read: a piece altered on disk is dropped,
 * refetched (`opts.refetch`, twice at most) and only then sent. A whole registry blob is hashed as
 * it is sent and its last piece is held back until the hash matches the digest in the URL; on a
 * mismatch the transfer is aborted (the client sees a short body, never a complete wrong one).
 */
export async function serveEntry(
  res: ServerResponse,
  entry: TaskEntry,
  range: RangeSpec | undefined,
  cached: boolean,
  signal: AbortSignal,
  metrics: PeerMetrics,
  opts: ServeOptions = {},
): Promise<void> {
  const span = entry.meta.range;
  const base = span?.start ?? 0;
  const total = span?.total ?? entry.meta.contentLength;
  const want = !span && !range ? (entry.meta.expectedDigest ?? blobDigestOfUrl(entry.meta.url)) : undefined;
  const hash = want ? createHash(want.slice(0, want.indexOf(':'))) : undefined;
  if (span && !range) range = { start: span.start, end: span.end };
  // Within the task's own content from here on.
  const start = (range?.start ?? 0) - base;
  const end = (range?.end ?? total - 1) - base;
  if (start < 0 || end >= Math.max(1, entry.meta.contentLength))
    throw new FerryError('INTERNAL', `range ${start}-${end} outside task ${entry.id}`);
  const pieces = entry.meta.contentLength === 0 ? [] : piecesForRange(start, end, entry.meta.pieceLength);
  const readChecked = async (n: number): Promise<Buffer> => {
    for (let attempt = 0; ; attempt++) {
      await entry.waitPiece(n, signal);
      try {
        return await entry.readPiece(n);
      } catch (err) {
        if (!FerryError.hasCode(err, 'DATA_LOSS') || !opts.refetch || attempt >= 2) throw err;
        await opts.refetch(n);
      }
    }
  };
  entry.refs++;
  try {
    if (pieces.length) await entry.waitPiece(pieces[0]!, signal);
    const headers: Record<string, string | number> = {
      ...entry.meta.responseHeaders,
      'content-length': total === 0 ? 0 : end - start + 1,
      'accept-ranges': 'bytes',
      [H.taskId]: entry.id,
    };
    if (cached) headers[H.finished] = 'true';
    if (range) headers['content-range'] = `bytes ${range.start}-${range.end}/${total}`;
    res.writeHead(range ? 206 : 200, headers);
    for (const [i, n] of pieces.entries()) {
      const r = entry.range(n);
      const s = Math.max(start, r.offset);
      const e = Math.min(end + 1, r.offset + r.length);
      const piece = await readChecked(n);
      const buf = piece.subarray(s - r.offset, e - r.offset);
      if (hash) {
        hash.update(buf);
        if (i === pieces.length - 1) {
          const got = `${want!.slice(0, want!.indexOf(':'))}:${hash.digest('hex')}`;
          if (got !== want) {
            opts.onBadBlob?.(want!, got);
            throw new FerryError('DATA_LOSS', `blob ${want} did not verify (got ${got}): transfer aborted`);
          }
        }
      }
      if (res.destroyed) return;
      if (!res.write(buf)) await drained(res);
      metrics.served.inc(buf.length);
      if (cached) metrics.traffic.inc({ type: 'LOCAL_PEER' }, buf.length);
    }
    res.end();
  } catch (err) {
    sendError(res, err, { headers: { [H.errorType]: 'dfdaemon' } });
  } finally {
    entry.refs--;
  }
}
