/**
 * @module p2p/peer/peer
 * `startPeer`: wires the piece store, scheduler client, agent, upload server and proxy of one
 * node agent (or seed peer), with `/metrics` and `/healthy` on both ports.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { networkInterfaces, hostname as osHostname } from 'node:os';
import { setMaxListeners } from 'node:events';
import { readFileSync } from 'node:fs';
import { FerryError, asFerryError } from '../../core/index.js';
import {
  createMetricsRegistry,
  metricsHandler,
  nodeStoreMetrics,
  silentLogger,
  type Logger,
  type MetricsRegistry,
} from '../../observe/index.js';
import { parsePeerConfig, type PeerConfig, type PeerConfigInput } from '../../config/peer.js';
import { sendError, statusOf } from '../../httpx/index.js';
import { ClusterAuth, CLUSTER_SECRET_HINT, LogThrottle, isLoopbackHost, loadClusterSecret } from '../common/index.js';
import { hostId } from '../common/index.js';
import type { HostInfo } from '../common/index.js';
import { TokenBucket } from '../common/index.js';
import { AccessCheck } from './access.js';
import { Agent } from './agent.js';
import { LeafMinter, loadOrCreateCa, type CaFiles } from './ca.js';
import { makePeerMetrics, type PeerMetrics } from './metrics.js';
import { createProxyServer } from './proxy.js';
import { SchedulerClient } from './scheduler-client.js';
import { PieceStore } from './store.js';
import { uploadRoutes } from './upload.js';
import { OriginStatCache } from './stat-cache.js';
import { SoloObjects } from './speculate.js';
import { UpstreamPolicy } from './upstreams.js';

export interface StartPeerOptions {
  config?: PeerConfig | PeerConfigInput;
  /** Shorthands that override the config. */
  dataDir?: string;
  schedulers?: string[];
  seed?: boolean;
  proxyListen?: string;
  uploadListen?: string;
  log?: Logger;
}

export interface PeerHandle {
  proxyUrl: string;
  uploadUrl: string;
  hostId: string;
  metrics: MetricsRegistry;
  peerMetrics: PeerMetrics;
  store: PieceStore;
  /** The interception CA, when HTTPS interception is configured. */
  ca: CaFiles | undefined;
  config: PeerConfig;
  close(): Promise<void>;
}

function split(listen: string): { host: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(listen);
  if (!m) throw new FerryError('INVALID_ARGUMENT', `listen address must be host:port, got ${JSON.stringify(listen)}`);
  return { host: m[1] ?? (m[2] || '0.0.0.0'), port: Number(m[3]) };
}

function listen(server: Server, addr: string): Promise<AddressInfo> {
  const { host, port } = split(addr);
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve(server.address() as AddressInfo);
    });
  });
}

function firstIPv4(): string {
  for (const list of Object.values(networkInterfaces()))
    for (const a of list ?? []) if (a.family === 'IPv4' && !a.internal) return a.address;
  return '127.0.0.1';
}

function fmtHost(a: string): string {
  return a.includes(':') ? `[${a}]` : a;
}

export async function startPeer(opts: StartPeerOptions = {}): Promise<PeerHandle> {
  const input = (opts.config ?? {}) as PeerConfigInput;
  const merged: PeerConfigInput = {
    ...input,
    scheduler: { ...(input.scheduler ?? {}), ...(opts.schedulers ? { urls: opts.schedulers } : {}) },
    host: { ...(input.host ?? {}), ...(opts.seed !== undefined ? { seed: opts.seed } : {}) },
    storage: { ...(input.storage ?? {}), ...(opts.dataDir ? { dir: opts.dataDir } : {}) },
    proxy: { ...(input.proxy ?? {}), ...(opts.proxyListen ? { listen: opts.proxyListen } : {}) },
    upload: { ...(input.upload ?? {}), ...(opts.uploadListen ? { listen: opts.uploadListen } : {}) },
  };
  const config = parsePeerConfig(merged);
  const log = (opts.log ?? silentLogger()).child({ component: config.host.seed ? 'seed-peer' : 'peer' });
  if (!config.storage.dir) throw new FerryError('INVALID_ARGUMENT', 'peer needs a data directory (--data)');
  const dataDir = config.storage.dir;
  const upstreams = new UpstreamPolicy(config.proxy); // a bad allow-list entry fails here, before anything listens
  const secret = loadClusterSecret(config.cluster, log);
  const auth = secret === undefined ? undefined : new ClusterAuth(secret);
  const uploadHost = split(config.upload.listen).host;
  if (!auth && !isLoopbackHost(uploadHost)) {
    throw new FerryError(
      'FAILED_PRECONDITION',
      `the upload server would listen on ${config.upload.listen}, reachable from other machines, but no cluster secret is configured: ` +
        `give the scheduler and every peer the same secret (${CLUSTER_SECRET_HINT}; e.g. openssl rand -hex 32 > /etc/ferry/cluster-token), ` +
        `or on a single machine listen on loopback: --upload-listen 127.0.0.1:${split(config.upload.listen).port}`,
    );
  }
  if (!isLoopbackHost(split(config.proxy.listen).host)) {
    log.warn(
      { listen: config.proxy.listen },
      'the proxy listens on a non-loopback address: every host that reaches it may pull through it from the allowed registries',
    );
  }
  const registry = createMetricsRegistry({ processMetrics: true, prefix: 'ferry_peer_' });
  const metrics = makePeerMetrics(registry);

  let ca: CaFiles | undefined;
  let minter: LeafMinter | undefined;
  if (config.proxy.hijackHosts.length > 0 || config.proxy.caCert) {
    ca = loadOrCreateCa({ certPath: config.proxy.caCert, keyPath: config.proxy.caKey, dataDir });
    minter = new LeafMinter(ca.certPem, ca.keyPem);
  }
  let upstreamCa: string | undefined;
  if (config.proxy.upstreamCaCerts.length) {
    try {
      upstreamCa = config.proxy.upstreamCaCerts.map((f) => readFileSync(f, 'utf8')).join('\n');
    } catch (err) {
      throw new FerryError('INVALID_ARGUMENT', `upstream CA: ${(err as Error).message}`, { cause: err });
    }
  }
  const origin = { ca: upstreamCa, insecure: config.proxy.insecureUpstream, timeoutMs: 30_000 };

  // Servers first (their addresses are part of the host identity).
  const uploadServer = createServer();
  const upAddr = await listen(uploadServer, config.upload.listen);
  const ip = config.host.ip ?? (upAddr.address !== '0.0.0.0' && upAddr.address !== '::' ? upAddr.address : firstIPv4());
  const hostname = config.host.hostname ?? osHostname();
  const host: HostInfo = {
    id: hostId(ip, hostname, config.host.seed),
    ip,
    hostname,
    type: config.host.seed ? 'super' : 'normal',
    uploadUrl: `http://${fmtHost(ip)}:${upAddr.port}`,
    idc: config.host.idc,
    location: config.host.location,
    maxTxBps: config.host.maxTxBps ?? (config.upload.rateLimit > 0 ? config.upload.rateLimit * 8 : 10e9),
    disableShared: config.host.disableShared,
  };
  const scheduler = new SchedulerClient(config.scheduler.urls, host, {
    timeoutMs: config.scheduler.scheduleTimeout,
    announceInterval: config.scheduler.announceInterval,
    log,
    auth,
  });
  const store = new PieceStore(dataDir, {
    quota: config.storage.quota,
    keep: config.storage.keep,
    taskTTL: config.storage.taskTTL,
    memoryCache: config.storage.memoryCache,
    memoryBelow: config.storage.memoryBelow,
    log,
    onEvict: (id) => {
      metrics.evictions.inc();
      metrics.diskUsage.set(store.usage());
      void scheduler.evicted(id);
    },
    onCorrupt: () => {
      metrics.pieceFailures.inc({ reason: 'disk' });
    },
  });
  // the node's disk in one set of names with the daemon's chunk cache (ferry_node_cache_*{store})
  nodeStoreMetrics(registry, 'peer', store);
  await store.open();
  metrics.diskUsage.set(store.usage());
  const aborter = new AbortController();
  // every running download listens on it (one per range task: many at once under a lazy loader)
  setMaxListeners(0, aborter.signal);
  const agent = new Agent(
    {
      config,
      host,
      store,
      scheduler,
      metrics,
      origin,
      downloadBucket: new TokenBucket(config.download.rateLimit),
      sourceBucket: new TokenBucket(config.download.backToSourceRateLimit),
      log,
      signal: aborter.signal,
      auth,
      solo: config.download.sourceWhileRegistering ? new SoloObjects() : undefined,
    },
    new OriginStatCache({ origin, ttlMs: config.access.ttl }),
  );
  const upload = uploadRoutes({
    store,
    agent,
    metrics,
    bucket: new TokenBucket(config.upload.rateLimit),
    log,
    disableShared: config.host.disableShared,
    auth,
    access: config.access.verify ? new AccessCheck({ origin, ttlMs: config.access.ttl, log }) : undefined,
    upstreams,
  });

  const local = async (req: IncomingMessage, res: ServerResponse): Promise<boolean> => {
    const p = (req.url ?? '/').split('?')[0];
    if (req.method === 'GET' && p === '/metrics') {
      await metricsHandler(registry, req, res);
      return true;
    }
    if (req.method === 'GET' && (p === '/healthy' || p === '/healthz')) {
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.end('OK');
      return true;
    }
    return false;
  };
  const refusals = new LogThrottle();
  const onError = (req: IncomingMessage, res: ServerResponse, err: unknown): void => {
    const e = asFerryError(err);
    const loud = statusOf(e) >= 500 || (e.code === 'UNAUTHENTICATED' && refusals.allow(req.socket.remoteAddress ?? ''));
    const fields = { method: req.method, url: req.url?.replace(/\?.*$/, ''), remote: req.socket.remoteAddress, err: e.message };
    (loud ? log.warn.bind(log) : log.debug.bind(log))(fields, 'upload request failed');
    // (a refused request whose body was not read is closed rather than drained: sendError)
    sendError(res, e, e.code === 'UNAUTHENTICATED' ? { headers: { 'www-authenticate': 'Ferry-Cluster' } } : {});
  };
  uploadServer.on('request', (req: IncomingMessage, res: ServerResponse) => {
    (async () => {
      if (await local(req, res)) return;
      if (await upload(req, res)) return;
      throw new FerryError('NOT_FOUND', `no route ${req.method} ${req.url?.replace(/\?.*$/, '')}`);
    })().catch((err: unknown) => onError(req, res, err));
  });
  uploadServer.keepAliveTimeout = 65_000;

  const proxy = createProxyServer({ config, agent, metrics, origin, minter, log, local });
  let pAddr: AddressInfo;
  try {
    pAddr = await listen(proxy, config.proxy.listen);
  } catch (err) {
    uploadServer.close();
    throw new FerryError('UNAVAILABLE', `proxy listen ${config.proxy.listen}: ${(err as Error).message}`, { cause: err });
  }
  const proxyHost = pAddr.address === '0.0.0.0' || pAddr.address === '::' ? '127.0.0.1' : fmtHost(pAddr.address);
  scheduler.start();
  const gc = setInterval(() => {
    void store.expire().then(() => metrics.diskUsage.set(store.usage()));
  }, 15 * 60_000);
  gc.unref();
  log.info(
    {
      hostId: host.id,
      proxy: `${proxyHost}:${pAddr.port}`,
      upload: host.uploadUrl,
      schedulers: config.scheduler.urls,
      seed: config.host.seed,
    },
    'peer started',
  );
  return {
    proxyUrl: `http://${proxyHost}:${pAddr.port}`,
    uploadUrl: host.uploadUrl,
    hostId: host.id,
    metrics: registry,
    peerMetrics: metrics,
    store,
    ca,
    config,
    close: async () => {
      clearInterval(gc);
      aborter.abort();
      proxy.closeAllConnections();
      uploadServer.closeAllConnections();
      await Promise.all([new Promise<void>((r) => proxy.close(() => r())), new Promise<void>((r) => uploadServer.close(() => r()))]);
      await scheduler.stop();
      await store.close();
    },
  };
}
