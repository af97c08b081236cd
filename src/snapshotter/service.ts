/**
 * @module snapshotter/service
 * `startSnapshotter`: the whole `ferry snapshotter` server — metadata store, overlay snapshots,
 * lazy Nydus layers through a `LazyFs` (the daemon), the snapshots gRPC service on a unix socket,
 * Prometheus `/metrics` on HTTP (TCP `host:port`, loopback unless a scrape token is set, or a unix
 * socket; httpx/metrics-listener), and the pull API on an
 * owner-only unix socket (`ferry pull` served in this warm process; see pull-api.ts).
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { serveMetrics, type MetricsListener } from '../httpx/index.js';
import type { SnapshotterConfig } from '../config/snapshotter.js';
import { createMetricsRegistry, Gauge, silentLogger, type Logger, type MetricsRegistry } from '../observe/index.js';
import { CredentialChain, RegistryClient, SuppliedCredentials, parseUserPassword, type CredentialSource } from '../remote/index.js';
import { GrpcConnection } from '../containerd/index.js';
import type { LazyFs } from '../daemon/protocol.js';
import { LazyImages } from './lazy.js';
import { loadVerifyKey } from '../convert/index.js';
import { pullImage } from './pull.js';
import { servePullApi, type PullApiServer } from './pull-api.js';
import { serveCriProxy, type CriProxy } from './cri-proxy.js';
import type { PullRequestBody, PullResult } from './protocol.js';
import { FerryError, asFerryError } from '../core/index.js';
import { serveSnapshots, type SnapshotServer } from './server.js';
import { Snapshotter } from './snapshotter.js';

export interface StartSnapshotterOptions {
  config: SnapshotterConfig;
  /** The lazy-loading daemon (in-process `Daemon` or a `DaemonClient`); none = no lazy layers. */
  lazyFs?: LazyFs;
  log?: Logger;
  /**
   * The snapshotter's own credential sources (pull secrets, config.json), asked after the
   * credentials supplied with pulls (`supplied`); default none (anonymous).
   */
  credentialSources?: readonly CredentialSource[];
  /** Credentials handed over with requests (pull API, CRI); default a new, empty store. */
  supplied?: SuppliedCredentials;
  /** Bearer token scrapers of a non-loopback `metricsAddress` must send (read from `metricsTokenFile`). */
  metricsToken?: string | undefined;
}

export interface SnapshotterHandle {
  address: string;
  metricsAddress: string;
  /** unix socket of the pull API */
  apiAddress: string;
  /** unix socket of the CRI image service proxy ('' when off) */
  criAddress: string;
  metrics: MetricsRegistry;
  snapshotter: Snapshotter;
  lazy: LazyImages | undefined;
  /** Credentials supplied with pulls (pull API, CRI), per (registry, repository), in memory. */
  supplied: SuppliedCredentials;
  /** supplied → credentialSources → anonymous */
  credentials: CredentialChain;
  close(): Promise<void>;
}

export async function startSnapshotter(opts: StartSnapshotterOptions): Promise<SnapshotterHandle> {
  const cfg = opts.config;
  const log = (opts.log ?? silentLogger()).child({ component: 'snapshotter' });
  await mkdir(cfg.root, { recursive: true, mode: 0o700 });
  const metrics = createMetricsRegistry({ processMetrics: true, prefix: 'ferry_snapshotter_' });

  const insecureHosts = new Set(cfg.insecureRegistries);
  const supplied = opts.supplied ?? new SuppliedCredentials('pull-api');
  const credentials = new CredentialChain([supplied, ...(opts.credentialSources ?? [])], { log });
  let lazy: LazyImages | undefined;
  let snapshotter: Snapshotter;
  const lazyFs = opts.lazyFs;
  // read before anything is served: a policy whose key cannot be read must not start as no policy
  const requireAttestation = cfg.requireAttestationKey ? loadVerifyKey(cfg.requireAttestationKey) : undefined;
  if (requireAttestation)
    log.info({ key: cfg.requireAttestationKey }, 'attestation policy on: Nydus images run only with a verified conversion attestation');
  if (lazyFs && !cfg.disableLazy) {
    const registryOpts: ConstructorParameters<typeof RegistryClient>[0] = {
      log,
      insecure: (h) => insecureHosts.has(h) || /^(localhost|127\.|\[::1\])/.test(h),
      credentials,
    };
    const registry = new RegistryClient(registryOpts);
    snapshotter = await Snapshotter.open({
      root: cfg.root,
      log,
      remote: (store) => {
        const li: ConstructorParameters<typeof LazyImages>[0] = {
          root: cfg.root,
          store,
          lazyFs,
          registry,
          log,
          mode: cfg.daemon.mode,
          prefetch: cfg.daemon.prefetch,
          startupPrefetch: cfg.daemon.startupPrefetch,
          tracePrefetch: cfg.daemon.tracePrefetch,
          ociRef: cfg.daemon.ociRef,
          ...(cfg.daemon.tracePush ? { tracePushAfterMs: cfg.daemon.tracePushAfter } : {}),
          cacheDir: cfg.daemon.cacheDir || join(cfg.root, 'cache'),
          insecure: (h) => insecureHosts.has(h),
        };
        if (requireAttestation) li.requireAttestation = requireAttestation;
        if (cfg.daemon.proxy) li.proxy = cfg.daemon.proxy;
        li.credentials = credentials;
        lazy = new LazyImages(li);
        return lazy;
      },
    });
  } else {
    snapshotter = await Snapshotter.open({ root: cfg.root, log });
  }

  const lazyMounts = new Gauge({
    name: 'ferry_snapshotter_lazy_mounts',
    help: 'Lazily mounted images',
    registers: [metrics],
    async collect() {
      this.set(lazy ? (await lazy.mounts().catch(() => [])).length : 0);
    },
  });
  const fetched = new Gauge({
    name: 'ferry_snapshotter_lazy_bytes_fetched',
    help: 'Bytes the daemon fetched for the lazily mounted images',
    registers: [metrics],
    async collect() {
      const ms = lazy ? await lazy.mounts().catch(() => []) : [];
      this.set(ms.reduce((s, m) => s + (m.metrics?.bytesFetched ?? 0), 0));
    },
  });
  void lazyMounts;
  void fetched;

  let grpcServer: SnapshotServer | undefined;
  // One connection per containerd socket, kept open across pulls.
  const containerd = new Map<string, GrpcConnection>();
  const pullLog = log.child({ component: 'pull' });
  // credentials supplied for a repository reach the mounts of its images already up
  supplied.onChange((host, repo) => {
    void supplied.get(host, repo).then((c) => lazy?.credentialsChanged(host, repo, c));
  });
  const pullThrough = async (body: PullRequestBody, progress: (line: string) => void): Promise<PullResult> => {
    let connection = containerd.get(body.address);
    if (!connection) {
      connection = new GrpcConnection(body.address);
      containerd.set(body.address, connection);
    }
    const forUs = (body.snapshotter ?? cfg.name) === cfg.name;
    const t0 = Date.now();
    pullLog.debug({ ref: body.ref }, 'pull request received');
    const explicit = body.user !== undefined ? parseUserPassword(body.user) : undefined;
    const result = await pullImage({
      ...body,
      connection,
      log: pullLog,
      progress,
      credentials,
      onResolved: (ref, digest, manifest, imageConfig) => {
        // the registry accepted them (the manifest came): the image's mounts and token refreshes use them
        if (explicit) supplied.set(ref.registry, ref.repository, explicit, 'pull-api');
        if (lazy && forUs) lazy.warm(ref, digest, manifest, body.plainHttp === true, imageConfig);
      },
    });
    if (lazy && forUs && result.layers.some((l) => l.how !== 'applied')) {
      try {
        if (await lazy.ensureMounted(result.manifestDigest)) {
          progress(`lazy mount of ${result.name} ready`);
          pullLog.debug({ ref: result.name, ms: Date.now() - t0 }, 'pull answered: image in containerd and mounted');
        }
      } catch (err) {
        throw new FerryError(
          asFerryError(err).code === 'UNAUTHENTICATED' ? 'UNAUTHENTICATED' : 'UNAVAILABLE',
          `${result.name} is in containerd, but its lazy mount failed, so no container of it could start: ${(err as Error).message}`,
        );
      }
    }
    return result;
  };
  let metricsListener: MetricsListener | undefined;
  let api: PullApiServer | undefined;
  let cri: CriProxy | undefined;
  try {
    grpcServer = await serveSnapshots({ snapshotter, address: cfg.address, log, metrics });
    metricsListener = await serveMetrics({
      registry: metrics,
      address: cfg.metricsAddress || join(cfg.root, 'metrics.sock'),
      token: opts.metricsToken,
      what: '--metrics-address',
    });
    api = await servePullApi({
      path: cfg.apiAddress || join(cfg.root, 'api.sock'),
      pull: (body, progress) => pullThrough(body, progress),
      onError: (err, body) => pullLog.warn({ err, ref: body?.ref }, 'pull failed'),
      ...(lazy ? { trace: (digest: string) => lazy!.trace(digest), gc: () => lazyFs!.gc() } : {}),
    });
    if (cfg.criAddress) cri = await serveCriProxy({ address: cfg.criAddress, upstream: cfg.criUpstream, supplied, log });
  } catch (err) {
    await cri?.close();
    await api?.close();
    await grpcServer?.close();
    await metricsListener?.close();
    await snapshotter.close();
    throw err;
  }
  const apiServer = api;
  const metricsAddress = metricsListener!.address;
  log.info(
    { address: cfg.address, root: cfg.root, metrics: metricsAddress, api: apiServer.path, lazy: lazy !== undefined },
    'snapshotter started',
  );
  let closed = false;
  return {
    address: cfg.address,
    metricsAddress,
    apiAddress: apiServer.path,
    criAddress: cri?.address ?? '',
    metrics,
    snapshotter,
    lazy,
    supplied,
    credentials,
    async close() {
      if (closed) return;
      closed = true;
      await cri?.close();
      await apiServer.close();
      for (const c of containerd.values()) c.close();
      await grpcServer?.close();
      await metricsListener?.close();
      await snapshotter.close();
      log.info('snapshotter stopped');
    },
  };
}
