/**
 * @module accel/service
 * The conversion service behind `ferry accel`: turns Harbor PUSH_ARTIFACT resources into durable
 * tasks, runs them on `converter.worker` workers (one at a time per target reference, so the same
 * source + rule is never converted twice at once), retries failures with exponential backoff up to
 * `converter.retry_limit`, and resumes queued/running tasks after a restart.
 */
import { mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FerryError, asFerryError, type ErrorCode } from '../core/index.js';
import { Counter, Gauge, Histogram, silentLogger, type Logger, type MetricsRegistry } from '../observe/index.js';
import {
  RegistryClient,
  parseReference,
  formatReference,
  withTag,
  decodeBasicAuth,
  dockerConfigCredentials,
  withDigest,
  type FetchedManifest,
  type ImageReference,
} from '../remote/index.js';
import {
  convertImage,
  SqliteLayerCache,
  TieredLayerCache,
  RemoteLayerCache,
  type ConvertOptions,
  type LayerCache,
} from '../convert/index.js';
import { NydusAnnotation, parseManifestDocument } from '../oci/index.js';
import { resolveDriverOptions, type AccelConfig, type AccelDriverOptions } from '../config/accel.js';
import { TaskStore } from './store.js';
import type { TaskView } from './protocol.js';
import { WorkDirLock, removeScratchLeftovers, scratchDirOf } from './workdir.js';

/** The annotations of a fetched manifest or index. */
function annotationsOf(m: FetchedManifest): Record<string, string> | undefined {
  const doc = parseManifestDocument(m.body, m.mediaType, `manifest ${m.digest}`);
  return (doc.kind === 'index' ? doc.index : doc.manifest).annotations;
}

/** Errors that another attempt cannot fix. */
const PERMANENT: ReadonlySet<ErrorCode> = new Set([
  'INVALID_ARGUMENT',
  'NOT_FOUND',
  'FAILED_PRECONDITION',
  'UNAUTHENTICATED',
  'PERMISSION_DENIED',
  'NOT_IMPLEMENTED',
]);

export interface Submission {
  /** `host[:port]/repo:tag[@digest]` as in Harbor's resource_url */
  resourceUrl: string;
  /** manifest digest from the payload, if given */
  digest?: string;
}

export type SubmitOutcome = { kind: 'task'; task: TaskView; created: boolean } | { kind: 'skipped'; source: string; reason: string };

export interface AccelServiceOptions {
  config: AccelConfig;
  log?: Logger;
  metrics: MetricsRegistry;
  /** Override of the work dir (default provider.work_dir, else $TMPDIR/ferry-accel). */
  workDir?: string;
}

export class AccelService {
  readonly store: TaskStore;
  readonly driver: AccelDriverOptions;
  readonly workDir: string;
  /** Parent of the conversions' scratch dirs (accel/workdir.ts); leftovers are removed at start. */
  readonly scratchDir: string;
  private readonly lock: WorkDirLock;
  private readonly log: Logger;
  private readonly cfg: AccelConfig;
  private readonly cache: SqliteLayerCache;
  private readonly clients = new Map<string, RegistryClient>();
  private readonly running = new Map<string, { key: string; abort: AbortController; done: Promise<void> }>();
  private readonly busyKeys = new Set<string>();
  private readonly waiters = new Map<string, Array<(t: TaskView) => void>>();
  private timer: NodeJS.Timeout | undefined;
  private closed = false;
  private readonly m: {
    duration: InstanceType<typeof Histogram>;
    total: InstanceType<typeof Counter>;
    errors: InstanceType<typeof Counter>;
    bytesIn: InstanceType<typeof Counter>;
    bytesOut: InstanceType<typeof Counter>;
    retries: InstanceType<typeof Counter>;
  };

  /** Takes the work dir's lock (a second service on one work dir is refused, accel/workdir.ts). */
  constructor(opts: AccelServiceOptions) {
    this.cfg = opts.config;
    this.log = opts.log ?? silentLogger();
    this.driver = resolveDriverOptions(this.cfg);
    this.workDir = opts.workDir ?? this.cfg.provider.work_dir ?? join(tmpdir(), 'ferry-accel');
    this.lock = WorkDirLock.acquire(this.workDir);
    let store: TaskStore | undefined;
    let cache: SqliteLayerCache | undefined;
    try {
      this.scratchDir = scratchDirOf(this.workDir, this.driver.workDir);
      mkdirSync(this.scratchDir, { recursive: true });
      const removed = removeScratchLeftovers(this.scratchDir);
      if (removed.length)
        this.log.info({ scratchDir: this.scratchDir, removed }, 'removed the scratch dirs of conversions a killed accel left');
      store = new TaskStore(this.workDir);
      cache = new SqliteLayerCache(join(this.workDir, 'layer-cache.db'));
      store.evictFinished(Date.now() - this.cfg.converter.task_retention);
      const recovered = store.recover();
      if (recovered) this.log.info({ tasks: recovered }, 'resuming tasks interrupted by the last stop');
    } catch (err) {
      cache?.close();
      store?.close();
      this.lock.release();
      throw err;
    }
    this.store = store;
    this.cache = cache;
    const reg = [opts.metrics];
    this.m = {
      duration: new Histogram({
        name: 'acceleration_service_core_conversions_op_duration_seconds',
        help: 'Duration of successful conversions',
        labelNames: ['op'],
        buckets: [0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800],
        registers: reg,
      }),
      total: new Counter({
        name: 'acceleration_service_core_conversions_op_total',
        help: 'Conversion attempts',
        labelNames: ['op'],
        registers: reg,
      }),
      errors: new Counter({
        name: 'acceleration_service_core_conversions_op_error_total',
        help: 'Failed conversion attempts',
        labelNames: ['op'],
        registers: reg,
      }),
      bytesIn: new Counter({ name: 'ferry_accel_source_bytes_total', help: 'Uncompressed source layer bytes converted', registers: reg }),
      bytesOut: new Counter({
        name: 'ferry_accel_target_bytes_total',
        help: 'Bytes of converted images (blobs, configs, manifests)',
        registers: reg,
      }),
      retries: new Counter({ name: 'ferry_accel_task_retries_total', help: 'Failed attempts scheduled for another try', registers: reg }),
    };
    new Gauge({
      name: 'ferry_accel_tasks',
      help: 'Conversion tasks by status',
      labelNames: ['status'],
      registers: reg,
      collect() {
        const c = store.countByStatus();
        for (const [s, n] of Object.entries(c)) this.set({ status: s }, n);
      },
    });
  }

  /** Starts the workers. */
  start(): void {
    this.pump();
  }

  /** The registry client for a host: credentials from provider.source.<host>.auth, else docker config. */
  client(host: string): RegistryClient {
    let c = this.clients.get(host);
    if (!c) {
      const src = this.cfg.provider.source[host];
      const creds = src?.auth ? decodeBasicAuth(src.auth) : undefined;
      if (src?.auth && !creds) throw new FerryError('INVALID_ARGUMENT', `provider.source.${host}.auth is not base64 user:password`);
      c = new RegistryClient({
        log: this.log,
        insecure: (h) => (h === host && src?.insecure === true) || /^(localhost|127\.|\[::1\])/.test(h),
        credentials: (h) => (h === host && creds ? creds : dockerConfigCredentials(h)),
      });
      this.clients.set(host, c);
    }
    return c;
  }

  /** The target of a source reference under the first tag_suffix rule. */
  targetOf(src: ImageReference): ImageReference {
    return withTag(src, `${src.tag ?? 'latest'}${this.driver.tagSuffix}`);
  }

  /** Validates one resource and queues its task (or says why it is skipped). */
  submit(s: Submission): SubmitOutcome {
    const src = parseReference(s.resourceUrl);
    const source = formatReference(src);
    if (src.tag === undefined) {
      return { kind: 'skipped', source, reason: 'digest-only reference (a child of an index push): the tagged push converts it' };
    }
    if (src.tag.endsWith(this.driver.tagSuffix))
      return { kind: 'skipped', source, reason: `already converted (tag ends with ${this.driver.tagSuffix})` };
    if (this.driver.cacheTag && src.tag === this.driver.cacheTag) return { kind: 'skipped', source, reason: 'cache tag' };
    const digest = src.digest ?? (s.digest && /^sha256:[a-f0-9]{64}$/.test(s.digest) ? s.digest : undefined);
    const target = formatReference(this.targetOf(src));
    const t: { source: string; sourceDigest?: string; target: string; dedupKey: string } = {
      source: formatReference(withTag(src, src.tag)),
      target,
      dedupKey: target,
    };
    if (digest) t.sourceDigest = digest;
    const r = this.store.create(t);
    if (r.created) this.log.info({ task: r.task.id, source: r.task.source, target }, 'task queued');
    this.pump();
    return { kind: 'task', task: r.task, created: r.created };
  }

  /** Resolves when the task is COMPLETED or FAILED. */
  waitFor(id: string): Promise<TaskView> {
    const t = this.store.get(id);
    if (t && t.status !== 'PROCESSING') return Promise.resolve(t);
    return new Promise((resolve) => {
      const list = this.waiters.get(id) ?? [];
      list.push(resolve);
      this.waiters.set(id, list);
    });
  }

  private notify(id: string): void {
    const t = this.store.get(id);
    if (!t || t.status === 'PROCESSING') return;
    for (const w of this.waiters.get(id) ?? []) w(t);
    this.waiters.delete(id);
  }

  /** Starts due tasks up to the worker limit; arms a timer for the next retry. Never throws. */
  private pump(): void {
    if (this.closed) return;
    try {
      this.pumpOnce();
    } catch (err) {
      this.log.error({ err: (err as Error).message }, 'task scheduling failed; retrying in 5 s');
      if (this.timer) clearTimeout(this.timer);
      this.timer = setTimeout(() => this.pump(), 5000);
      this.timer.unref();
    }
  }

  private pumpOnce(): void {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    const free = this.cfg.converter.worker - this.running.size;
    if (free > 0) {
      for (const t of this.store.runnable(Date.now(), 200)) {
        if (this.running.size >= this.cfg.converter.worker) break;
        if (this.busyKeys.has(t.dedupKey)) continue;
        if (!this.store.claim(t.id)) continue;
        this.busyKeys.add(t.dedupKey);
        const abort = new AbortController();
        const done = this.execute(t.id, abort.signal)
          .catch((err: unknown) => {
            this.log.error({ task: t.id, err: (err as Error).message }, 'task bookkeeping failed');
          })
          .finally(() => {
            this.running.delete(t.id);
            this.busyKeys.delete(t.dedupKey);
            if (this.closed) return;
            try {
              this.store.evictFinished(Date.now() - this.cfg.converter.task_retention);
              this.notify(t.id);
            } catch (err) {
              this.log.error({ err: (err as Error).message }, 'task store error');
            }
            this.pump();
          });
        this.running.set(t.id, { key: t.dedupKey, abort, done });
      }
    }
    const next = this.store.nextDue();
    if (next !== undefined && this.running.size < this.cfg.converter.worker) {
      const delay = Math.max(50, next - Date.now());
      this.timer = setTimeout(() => this.pump(), Math.min(delay, 60_000));
      this.timer.unref();
    }
  }

  private async execute(id: string, signal: AbortSignal): Promise<void> {
    const task = this.store.get(id)!;
    const log = this.log.child({ task: id, source: task.source, attempt: task.attempts });
    const t0 = Date.now();
    this.m.total.inc({ op: 'convert' });
    try {
      const src = parseReference(task.source);
      const dst = parseReference(task.target);
      const client = this.client(src.registry);
      // Pin the source to one digest for the whole attempt (and skip work already done).
      const head = await client.headManifest(task.source_digest ? withDigest(src, task.source_digest) : src);
      if (!head) {
        // A push event pins the digest: that manifest was there and is gone. Without one nothing
        // tells whether the tag ever existed.
        throw new FerryError(
          'NOT_FOUND',
          task.source_digest
            ? `source ${task.source}@${task.source_digest} is not in the registry (deleted since it was pushed, or never pushed there)`
            : `source ${task.source} does not exist in the registry (no such repository or tag)`,
        );
      }
      const existing = await client.headManifest(dst).catch(() => undefined);
      if (existing) {
        const m = await client.getManifest(withDigest(dst, existing.digest)).catch(() => undefined);
        const ann = m ? annotationsOf(m) : undefined;
        if (ann?.[NydusAnnotation.SOURCE_DIGEST] === head.digest) {
          log.info({ target: task.target }, 'target already converted from this source digest');
          this.store.complete(id, {
            sourceDigest: head.digest,
            targetDigest: existing.digest,
            sourceSize: 0,
            targetSize: existing.size,
            reason: 'already converted',
          });
          return;
        }
      }
      const d = this.driver;
      // rules[].cache_tag: the repository's cache image (shared by every converter that can pull it),
      // behind the local SQLite cache.
      let cache: LayerCache = this.cache;
      if (d.cacheTag) {
        const remote = new RemoteLayerCache({
          client,
          repo: dst,
          tag: d.cacheTag,
          maxRecords: this.cfg.provider.cache_size ?? 200,
          log,
          ...(this.cfg.provider.cache_version !== undefined ? { version: this.cfg.provider.cache_version } : {}),
        });
        cache = new TieredLayerCache([this.cache, remote]);
      }
      const opts: ConvertOptions = {
        source: withDigest(src, head.digest),
        target: dst,
        sourceClient: client,
        targetClient: client,
        fsVersion: d.fsVersion,
        compressor: d.compressor,
        chunkSize: d.chunkSize,
        digester: d.digester,
        chunkTable: d.chunkTable,
        mergePlatform: d.mergeManifest,
        withReferrer: d.withReferrer,
        harborAnnotation: d.harborAnnotation,
        cache,
        log,
        signal,
        workDir: this.scratchDir,
        annotations: { [NydusAnnotation.SOURCE_REFERENCE]: task.source },
      };
      if (d.platforms.length) opts.platforms = d.platforms;
      if (d.chunkDictRef) opts.chunkDictRef = d.chunkDictRef;
      if (d.prefetchPatterns) opts.prefetchPatterns = d.prefetchPatterns;
      if (d.backend) opts.backend = d.backend;
      const res = await convertImage(opts);
      // The source reference annotation names the tag, not the pinned digest.
      this.store.complete(id, {
        sourceDigest: res.sourceDigest,
        targetDigest: res.targetDigest,
        sourceSize: res.sourceSize,
        targetSize: res.targetSize,
      });
      this.m.duration.observe({ op: 'convert' }, (Date.now() - t0) / 1000);
      this.m.bytesIn.inc(res.uncompressedBytes);
      this.m.bytesOut.inc(res.targetSize);
      log.info({ target: res.target, digest: res.targetDigest, durationMs: Date.now() - t0 }, 'task completed');
    } catch (e) {
      const err = asFerryError(e);
      if (signal.aborted) {
        this.store.release(id);
        log.info('task interrupted by shutdown; it resumes on the next start');
        return;
      }
      this.m.errors.inc({ op: 'convert' });
      const current = this.store.get(id)!;
      const reason = `${err.code}: ${err.message}`;
      if (!PERMANENT.has(err.code) && current.attempts < this.cfg.converter.retry_limit) {
        const delay = this.cfg.converter.retry_backoff * 2 ** (current.attempts - 1);
        this.store.fail(id, reason, Date.now() + delay);
        this.m.retries.inc();
        log.warn({ err: reason, retryInMs: delay }, 'task attempt failed; will retry');
      } else {
        this.store.fail(id, reason);
        log.error({ err: reason }, 'task failed');
      }
    }
  }

  /** Stops the workers: running conversions are aborted and stay queued for the next start. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    for (const r of this.running.values()) r.abort.abort();
    await Promise.allSettled([...this.running.values()].map((r) => r.done));
    for (const [id, list] of this.waiters) {
      const t = this.store.get(id);
      if (t) for (const w of list) w(t);
    }
    this.waiters.clear();
    this.cache.close();
    this.store.close();
    this.lock.release();
  }
}
