/**
 * @module daemon/daemon
 * The in-process lazy-loading daemon: a set of image mounts keyed by id, each recorded under
 * `<dataDir>/mounts/<id>.json` so that a daemon started after a crash cleans up what the dead one
 * left (dead FUSE mounts, loop devices) and, with `restore()`, mounts the same images again.
 */
import { chmod, mkdir, readdir, readFile, rm, writeFile, rename } from 'node:fs/promises';
import { join } from 'node:path';
import { FerryError, systemClock } from '../core/index.js';
import { NodeCache } from '../storage/index.js';
import { createMetricsRegistry, Gauge, nodeStoreMetrics, silentLogger, type Logger, type MetricsRegistry } from '../observe/index.js';
import { parseDaemonConfig, type DaemonConfig, type DaemonConfigInput } from '../config/daemon.js';
import { FuseSession } from '../fuse/index.js';
import { ImageMount, FAST_PATH_MODULE, VIEW_FAST_PATH_MODULE } from './image-mount.js';
import { cleanupMountLeftovers } from './leftovers.js';
import {
  mountRequestSchema,
  parsePrefetchTrace,
  type CacheGcReport,
  type CacheStatus,
  type LazyFs,
  type MountInfo,
  type MountRequest,
  type PrefetchTrace,
  type RestoreOptions,
} from './protocol.js';
import type { CredentialSource } from '../remote/index.js';

export interface DaemonOptions {
  log?: Logger;
  /** state: mount records, default cache, blob-view mount points */
  dataDir: string;
  /** nydusd-style configuration (defaults apply when absent) */
  config?: DaemonConfigInput | DaemonConfig;
  /** boot FUSE reader threads for the first mount at once (default true) */
  prewarm?: boolean;
  /**
   * Credential sources every registry mount asks after its own credentials (the daemon's share of
   * the credential chain: pull secrets, config.json); default none.
   */
  credentialSources?: readonly CredentialSource[];
}

export class Daemon implements LazyFs {
  readonly metrics: MetricsRegistry;
  private readonly log: Logger;
  private readonly dataDir: string;
  private readonly cfg: DaemonConfig;
  private readonly credentialSources: readonly CredentialSource[];
  private readonly mounts = new Map<string, ImageMount>();
  private readonly busy = new Map<string, Promise<unknown>>();
  private closed = false;
  /** The node cache over every mount's cache dir (quota and GC). */
  readonly nodeCache: NodeCache;
  /** A GC round in progress: mounts wait for it (it must not delete files a mount is opening). */
  private gcRound: Promise<unknown> = Promise.resolve();
  private cancelGcTimer: () => void = () => undefined;

  constructor(o: DaemonOptions) {
    this.log = (o.log ?? silentLogger()).child({ component: 'daemon' });
    this.dataDir = o.dataDir;
    this.cfg = parseDaemonConfig(o.config ?? {});
    this.credentialSources = o.credentialSources ?? [];
    this.metrics = createMetricsRegistry({ processMetrics: true });
    /** A gauge per mount; mounts for which `f` answers undefined are left out. */
    const per = (name: string, help: string, f: (m: MountInfo) => number | undefined): void => {
      const mounts = this.mounts;
      new Gauge({
        name,
        help,
        labelNames: ['mount'],
        registers: [this.metrics],
        collect() {
          this.reset();
          for (const m of mounts.values()) {
            const v = f(m.metrics());
            if (v !== undefined) this.set({ mount: m.req.id }, v);
          }
        },
      });
    };
    per('ferry_daemon_bytes_fetched_total', 'Bytes fetched from the backend per mount', (m) => m.metrics.bytesFetched);
    per('ferry_daemon_chunks_cached', 'Chunks in the local cache per mount', (m) => m.metrics.chunksCached);
    per('ferry_daemon_cache_hit_ratio', 'Chunk lookups answered from the cache / all lookups', (m) => m.metrics.cacheHitRatio);
    per('ferry_daemon_backend_errors_total', 'Failed backend requests per mount', (m) => m.metrics.backendErrors);
    per('ferry_daemon_backend_requests_total', 'Backend (ranged) requests per mount', (m) => m.stats?.requests ?? 0);
    per(
      'ferry_daemon_proxy_fallbacks_total',
      'Reads that fell back from the P2P proxy to the registry',
      (m) => m.stats?.proxyFallbacks ?? 0,
    );
    per('ferry_daemon_digest_mismatches_total', 'Chunks that failed digest verification', (m) => m.stats?.digestMismatches ?? 0);
    per('ferry_daemon_prefetched_bytes_total', 'Bytes fetched by background prefetch', (m) => m.stats?.prefetchedBytes ?? 0);
    per('ferry_daemon_fuse_requests_total', 'FUSE requests served per mount', (m) => m.stats?.fuseRequests ?? 0);
    // the background fill, for mounts that have one (ferry.fill_deadline)
    per('ferry_daemon_fill_filled_bytes', 'Background fill: compressed bytes of the image in the cache', (m) => m.fill?.filledBytes);
    per('ferry_daemon_fill_total_bytes', 'Background fill: compressed bytes of the image', (m) => m.fill?.totalBytes);
    per('ferry_daemon_fill_eta_seconds', 'Background fill: seconds until the image is wholly cached', (m) => m.fill?.etaSeconds);
    // Reader threads for the first mount, booted now rather than while a container waits for it.
    if (o.prewarm !== false)
      FuseSession.prewarm(this.cfg.ferry.fuse_threads, [this.cfg.ferry.mode === 'fuse' ? FAST_PATH_MODULE : VIEW_FAST_PATH_MODULE]);
    this.nodeCache = new NodeCache({
      quota: this.cfg.ferry.cache_quota,
      dirs: () => [this.defaultCacheDir, ...[...this.mounts.values()].flatMap((m) => (m.req.cacheDir ? [m.req.cacheDir] : []))],
      users: () => [...this.mounts.values()].flatMap((m) => (m.cacheUser ? [m.cacheUser] : [])),
      log: this.log,
    });
    nodeStoreMetrics(this.metrics, 'daemon', this.nodeCache);
    this.scheduleGc();
    const mounts = this.mounts;
    new Gauge({
      name: 'ferry_daemon_mounts',
      help: 'Mounted images',
      registers: [this.metrics],
      collect() {
        this.set(mounts.size);
      },
    });
  }

  private get defaultCacheDir(): string {
    return this.cfg.device.cache?.config.work_dir ?? join(this.dataDir, 'cache');
  }

  /** With a quota: a GC round every `ferry.cache_gc_interval` (the timer does not keep the process up). */
  private scheduleGc(): void {
    const every = this.cfg.ferry.cache_gc_interval;
    if (this.cfg.ferry.cache_quota <= 0 || every <= 0 || this.closed) return;
    this.cancelGcTimer = systemClock.setTimer(
      every,
      () => {
        void this.collect(false).finally(() => this.scheduleGc());
      },
      { unref: true },
    );
  }

  /** One GC round, mounts and unmounts waiting for it; failures are logged (the automatic rounds) or thrown (asked for). */
  private collect(collectUnused: boolean): Promise<CacheGcReport> {
    const round = Promise.allSettled([this.gcRound, ...this.busy.values()]).then(() => this.nodeCache.gc({ collectUnused }));
    this.gcRound = round.catch((err: unknown) => this.log.warn({ err }, 'node cache gc failed'));
    return round;
  }

  /** Runs a GC round now: every blob no mount uses is deleted, then LRU eviction down to the quota. */
  gc(): Promise<CacheGcReport> {
    return this.collect(true);
  }

  async cache(): Promise<CacheStatus> {
    const blobs = await this.nodeCache.blobs();
    return {
      quota: this.nodeCache.quota,
      usedBytes: blobs.reduce((a, b) => a + b.bytes, 0),
      evictedBytes: this.nodeCache.evictedBytes,
      refetchedBytes: this.nodeCache.refetchedBytes(),
      sharedBytes: this.nodeCache.sharedBytes(),
      blobs: blobs.length,
    };
  }

  get config(): DaemonConfig {
    return this.cfg;
  }

  private recordPath(id: string): string {
    return join(this.dataDir, 'mounts', `${id}.json`);
  }
  /** A mount's registry credentials, kept apart from its record: owner-only (0600), in a 0700 directory. */
  private authPath(id: string): string {
    return join(this.dataDir, 'mounts', `${id}.auth`);
  }

  /** Writes (or removes) a mount's credentials file; created 0600, never at a looser mode. */
  private async recordAuth(id: string, auth: string | undefined): Promise<void> {
    const p = this.authPath(id);
    if (auth === undefined) {
      await rm(p, { force: true });
      return;
    }
    const tmp = `${p}.tmp`;
    await rm(tmp, { force: true });
    await writeFile(tmp, auth, { mode: 0o600, flag: 'wx' });
    await rename(tmp, p);
  }
  private workDir(id: string): string {
    return join(this.dataDir, 'work', id);
  }

  /** Serialises operations on one id. */
  private async exclusive<T>(id: string, f: () => Promise<T>): Promise<T> {
    while (this.busy.has(id)) await this.busy.get(id)!.catch(() => undefined);
    const p = f();
    this.busy.set(id, p);
    try {
      return await p;
    } finally {
      this.busy.delete(id);
    }
  }

  async mount(input: MountRequest): Promise<MountInfo> {
    if (this.closed) throw new FerryError('FAILED_PRECONDITION', 'daemon is closing');
    const parsed = mountRequestSchema.safeParse(input);
    if (!parsed.success)
      throw new FerryError(
        'INVALID_ARGUMENT',
        `mount request: ${parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`,
      );
    const req = parsed.data as MountRequest;
    if (req.trace !== undefined) req.trace = parsePrefetchTrace(req.trace);
    // nydusd's fs_prefetch.enable: prefetch mounts that do not say otherwise.
    if (req.prefetch === undefined && this.cfg.fs_prefetch.enable) req.prefetch = true;
    // after every GC round started so far (a round started later waits for this mount instead)
    for (let i = 0, r = this.gcRound; i < 64; i++, r = this.gcRound) {
      await r;
      if (r === this.gcRound) break;
    }
    const mounted = await this.exclusive(req.id, async () => {
      const cur = this.mounts.get(req.id);
      if (cur) {
        if (cur.req.mountpoint === req.mountpoint && cur.req.bootstrapPath === req.bootstrapPath) return cur.metrics();
        throw new FerryError('ALREADY_EXISTS', `mount ${req.id} exists (at ${cur.req.mountpoint})`);
      }
      for (const m of this.mounts.values()) {
        if (m.req.mountpoint === req.mountpoint) throw new FerryError('ALREADY_EXISTS', `${req.mountpoint} is already mount ${m.req.id}`);
      }
      const c = this.cfg;
      const m = await ImageMount.mount(req, {
        log: this.log,
        workDir: this.workDir(req.id),
        defaultCacheDir: this.defaultCacheDir,
        defaultMode: c.ferry.mode,
        amplifyBytes: c.amplify_io,
        mergeGap: c.ferry.merge_gap,
        missWindow: c.ferry.miss_window,
        missWindowMax: c.ferry.miss_window_max,
        amplifyBudget: c.ferry.amplify_budget,
        countAhead: c.ferry.count_ahead,
        fetchConcurrency: c.ferry.fetch_concurrency,
        whole: { elf: c.ferry.whole_elf, so: c.ferry.whole_so, file: c.ferry.whole_file },
        p2pRangeGrid: c.ferry.p2p_range_grid,
        requestTimeoutMs: c.device.backend?.config.timeout ?? 5000,
        retries: c.device.backend?.config.retry_limit ?? 2,
        requestDeadlineMs:
          c.ferry.request_deadline ?? (c.device.backend?.config.timeout ?? 5000) * ((c.device.backend?.config.retry_limit ?? 2) + 1) + 2000,
        prefetchMergeBytes: c.fs_prefetch.merging_size,
        prefetchBandwidth: c.fs_prefetch.bandwidth_rate,
        fuseThreads: c.ferry.fuse_threads,
        proxyFallback: c.device.backend?.config.proxy?.fallback ?? true,
        ...(c.device.backend?.config.proxy?.url ? { defaultProxy: c.device.backend.config.proxy.url } : {}),
        credentialSources: this.credentialSources,
        fillDeadlineMs: c.ferry.fill_deadline,
        fillRate: c.ferry.fill_rate,
        ...(c.ferry.share_chunks ? { chunkIndex: this.nodeCache.chunks } : {}),
      });
      this.mounts.set(req.id, m);
      const dir = join(this.dataDir, 'mounts');
      await mkdir(dir, { recursive: true, mode: 0o700 });
      await chmod(dir, 0o700);
      const tmp = `${this.recordPath(req.id)}.tmp`;
      // a remount after a restart needs no prefetch trace: the chunks are in the cache by then;
      // credentials go to their own owner-only file, never into the record
      const { trace: _trace, ...record } = req;
      const auth = record.backend.type === 'registry' ? record.backend.auth : undefined;
      if (record.backend.type === 'registry') {
        const { auth: _auth, ...rest } = record.backend;
        record.backend = rest;
      }
      await this.recordAuth(req.id, auth);
      await writeFile(tmp, JSON.stringify(record));
      await rename(tmp, this.recordPath(req.id));
      return m.metrics();
    });
    if (this.nodeCache.quota > 0) void this.collect(false);
    return mounted;
  }

  async umount(id: string): Promise<void> {
    await this.exclusive(id, async () => {
      const m = this.mounts.get(id);
      if (!m) throw new FerryError('NOT_FOUND', `no mount ${JSON.stringify(id)}`);
      this.mounts.delete(id);
      await m.teardown();
      await rm(this.recordPath(id), { force: true });
      await rm(this.authPath(id), { force: true });
    });
    if (this.nodeCache.quota > 0 && !this.closed) void this.collect(false);
  }

  async setAuth(id: string, auth: string | undefined): Promise<void> {
    await this.exclusive(id, async () => {
      const m = this.mounts.get(id);
      if (!m) throw new FerryError('NOT_FOUND', `no mount ${JSON.stringify(id)}`);
      m.setAuth(auth);
      await this.recordAuth(id, auth);
      this.log.info({ mount: id, credentials: auth !== undefined }, 'mount credentials replaced');
    });
  }

  async list(): Promise<MountInfo[]> {
    return [...this.mounts.values()].map((m) => m.metrics());
  }

  async get(id: string): Promise<MountInfo> {
    const m = this.mounts.get(id);
    if (!m) throw new FerryError('NOT_FOUND', `no mount ${JSON.stringify(id)}`);
    return m.metrics();
  }

  /** The access trace a mount has recorded (oci/prefetch-trace). */
  async trace(id: string): Promise<PrefetchTrace> {
    const m = this.mounts.get(id);
    if (!m) throw new FerryError('NOT_FOUND', `no mount ${JSON.stringify(id)}`);
    return m.trace();
  }

  /** Waits until a mount's background prefetch is done. */
  async prefetchIdle(id: string): Promise<void> {
    const m = this.mounts.get(id);
    if (!m) throw new FerryError('NOT_FOUND', `no mount ${JSON.stringify(id)}`);
    await m.prefetchIdle();
  }

  /** Resolves when a mount's FUSE side ended without us (external umount). */
  ended(id: string): Promise<void> {
    const m = this.mounts.get(id);
    if (!m) throw new FerryError('NOT_FOUND', `no mount ${JSON.stringify(id)}`);
    return m.ended;
  }

  /** Mount requests recorded by a previous daemon on this data dir. */
  async recorded(): Promise<MountRequest[]> {
    const dir = join(this.dataDir, 'mounts');
    const names = await readdir(dir).catch(() => [] as string[]);
    const out: MountRequest[] = [];
    for (const n of names.filter((x) => x.endsWith('.json'))) {
      let req: MountRequest;
      try {
        req = JSON.parse(await readFile(join(dir, n), 'utf8')) as MountRequest;
      } catch {
        continue; // a torn record
      }
      if (req.backend?.type === 'registry') {
        const auth = await readFile(this.authPath(req.id), 'utf8').catch(() => undefined);
        if (auth) req.backend.auth = auth;
      }
      out.push(req);
    }
    return out;
  }

  /**
   * After a crash: mounts every recorded mount again (`remount` true; with `ids`, only those) —
   * taking over an EROFS mount the dead daemon left (containers on it keep running, see
   * daemon/leftovers), else cleaning up its leftovers first; with `remount` false it cleans up
   * and forgets them. Records not in `ids` are left alone, or cleaned up with `others: 'clean'`.
   */
  async restore(opts: RestoreOptions): Promise<{ restored: string[]; failed: string[] }> {
    const restored: string[] = [];
    const failed: string[] = [];
    for (const req of await this.recorded()) {
      const listed = !opts.ids || opts.ids.includes(req.id);
      if (!listed && opts.others !== 'clean') continue;
      if (!listed || !opts.remount) {
        await cleanupMountLeftovers(req.mountpoint, join(this.workDir(req.id), 'blobs'), this.log).catch(() => undefined);
        await rm(this.recordPath(req.id), { force: true });
        await rm(this.authPath(req.id), { force: true });
        continue;
      }
      try {
        await this.mount(req);
        restored.push(req.id);
      } catch (err) {
        this.log.error({ err, mount: req.id }, 'could not restore mount');
        failed.push(req.id);
      }
    }
    return { restored, failed };
  }

  /** Unmounts everything (records removed: a clean stop leaves nothing to restore). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.cancelGcTimer();
    await this.gcRound;
    for (const id of [...this.mounts.keys()]) {
      await this.umount(id).catch((err: unknown) => this.log.error({ err, mount: id }, 'umount at close failed'));
    }
  }
}
