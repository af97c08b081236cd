/**
 * @module accel/service
 * The conversion service behind `ferry accel`: turns Harbor PUSH_ARTIFACT resources into durable
 * tasks in the task queue (accel/queue.ts: SQLite, or PostgreSQL shared by many accel processes),
 * runs them on `converter.worker` workers (one at a time per target reference, so the same
 * source + rule is never converted twice at once), retries failures with exponential backoff up to
 * `converter.retry_limit`, and resumes queued/running tasks after a restart.
 *
 * Each running task is held by a lease renewed every third of `converter.task_lease`; a worker that
 * loses its lease (paused past it, cut off from the database) aborts the conversion, and the queue
 * refuses whatever it would still write. Tasks queued by other processes, retries falling due and
 * leases of dead workers running out are found by polling every `converter.poll_interval`.
 */
import type { KeyObject } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { FerryError, systemClock, type Clock } from '../core/index.js';
import { classifyFailure } from './failures.js';
import { CHUNK_DICT_SCAN, pickChunkDict } from './chunk-dict.js';
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
import { SqliteLayerCache, carrySupplyChain, attestMissing, BUILDER_VERSION } from '../convert/index.js';
import { convertWithDriver } from './drivers.js';
import { HarborAnnotation, NydusAnnotation, artifactTagSubject, parseManifestDocument } from '../oci/index.js';
import { resolveDriverOptions, type AccelConfig, type AccelDriverOptions } from '../config/accel.js';
import type { TaskView } from './protocol.js';
import type { ClaimedTask, Lease, TaskQueue } from './queue.js';
import { openTaskQueue } from './engines.js';
import { ociRefTask } from './oci-ref-task.js';
import { WorkDirLock, removeScratchLeftovers, scratchDirOf } from './workdir.js';
import { signingKeyOf } from './attestation.js';

/** The annotations of a fetched manifest or index. */
function annotationsOf(m: FetchedManifest): Record<string, string> | undefined {
  const doc = parseManifestDocument(m.body, m.mediaType, `manifest ${m.digest}`);
  return (doc.kind === 'index' ? doc.index : doc.manifest).annotations;
}

export interface Submission {
  /** `host[:port]/repo:tag[@digest]` as in Harbor's resource_url */
  resourceUrl: string;
  /** manifest digest from the payload, if given */
  digest?: string;
  /** identity of the webhook event (accel/queue.ts eventKeyOf): the same event twice makes one task */
  eventKey?: string;
}

export type SubmitOutcome = { kind: 'task'; task: TaskView; created: boolean } | { kind: 'skipped'; source: string; reason: string };

export interface AccelServiceOptions {
  config: AccelConfig;
  log?: Logger;
  metrics: MetricsRegistry;
  /** Override of the work dir (default provider.work_dir, else $TMPDIR/ferry-accel). */
  workDir?: string;
  /** Time of leases, heartbeats, polls and retries (default the system clock). */
  clock?: Clock;
  /** Where password_env is looked up (default process.env). */
  env?: NodeJS.ProcessEnv;
}

interface Running {
  lease: Lease;
  abort: AbortController;
  done: Promise<void>;
}

export class AccelService {
  readonly queue: TaskQueue;
  readonly driver: AccelDriverOptions;
  readonly workDir: string;
  /** Parent of the conversions' scratch dirs (accel/workdir.ts); leftovers are removed at start. */
  readonly scratchDir: string;
  /** This process's name on its leases: `host:pid:random`. */
  readonly worker: string;
  private readonly lock: WorkDirLock;
  private readonly log: Logger;
  private readonly cfg: AccelConfig;
  private readonly clock: Clock;
  private readonly cache: SqliteLayerCache;
  /** converter.attestation's key: every conversion gets a signed attestation (convert/attestation.ts) */
  private readonly signKey: KeyObject | undefined;
  private readonly clients = new Map<string, RegistryClient>();
  private readonly running = new Map<string, Running>();
  private readonly waiters = new Map<string, Array<(t: TaskView) => void>>();
  private cancelTimer: (() => void) | undefined;
  private pumping = false;
  private pumpAgain = false;
  private closed = false;
  private readonly m: {
    duration: InstanceType<typeof Histogram>;
    total: InstanceType<typeof Counter>;
    errors: InstanceType<typeof Counter>;
    bytesIn: InstanceType<typeof Counter>;
    bytesOut: InstanceType<typeof Counter>;
    retries: InstanceType<typeof Counter>;
    leasesLost: InstanceType<typeof Counter>;
  };

  /**
   * Takes the work dir's lock (a second service on one work dir is refused, accel/workdir.ts),
   * removes scratch leftovers, opens the task queue (migrating a PostgreSQL schema).
   */
  static async open(opts: AccelServiceOptions): Promise<AccelService> {
    const cfg = opts.config;
    const log = opts.log ?? silentLogger();
    const clock = opts.clock ?? systemClock;
    const driver = resolveDriverOptions(cfg);
    const workDir = opts.workDir ?? cfg.provider.work_dir ?? join(tmpdir(), 'ferry-accel');
    const signKey = signingKeyOf(cfg, opts.env ?? process.env);
    const lock = WorkDirLock.acquire(workDir);
    let queue: TaskQueue | undefined;
    let cache: SqliteLayerCache | undefined;
    try {
      const scratchDir = scratchDirOf(workDir, driver.workDir);
      mkdirSync(scratchDir, { recursive: true });
      const removed = removeScratchLeftovers(scratchDir);
      if (removed.length) log.info({ scratchDir, removed }, 'removed the scratch dirs of conversions a killed accel left');
      queue = await openTaskQueue(cfg, workDir, { clock, log, ...(opts.env ? { env: opts.env } : {}) });
      cache = new SqliteLayerCache(join(workDir, 'layer-cache.db'));
      await queue.evictFinished(clock.now() - cfg.converter.task_retention);
      return new AccelService(opts, { log, clock, driver, workDir, lock, queue, cache, scratchDir, signKey });
    } catch (err) {
      cache?.close();
      await queue?.close();
      lock.release();
      throw err;
    }
  }

  private constructor(
    opts: AccelServiceOptions,
    parts: {
      log: Logger;
      clock: Clock;
      driver: AccelDriverOptions;
      workDir: string;
      lock: WorkDirLock;
      queue: TaskQueue;
      cache: SqliteLayerCache;
      scratchDir: string;
      signKey: KeyObject | undefined;
    },
  ) {
    this.cfg = opts.config;
    ({ log: this.log, clock: this.clock, driver: this.driver, workDir: this.workDir, lock: this.lock } = parts);
    ({ queue: this.queue, cache: this.cache, scratchDir: this.scratchDir, signKey: this.signKey } = parts);
    this.worker = `${hostname()}:${process.pid}:${randomBytes(4).toString('hex')}`;
    const queue = this.queue;
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
      leasesLost: new Counter({
        name: 'ferry_accel_leases_lost_total',
        help: 'Tasks this worker stopped because its lease was lost (taken over, or not renewed in time)',
        registers: reg,
      }),
    };
    new Gauge({
      name: 'ferry_accel_tasks',
      help: 'Conversion tasks by status',
      labelNames: ['status'],
      registers: reg,
      async collect() {
        const c = await queue.countByStatus();
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
  async submit(s: Submission): Promise<SubmitOutcome> {
    const src = parseReference(s.resourceUrl);
    const source = formatReference(src);
    if (src.tag === undefined) {
      return { kind: 'skipped', source, reason: 'digest-only reference (a child of an index push): the tagged push converts it' };
    }
    const artifact = artifactTagSubject(src.tag);
    if (artifact) {
      // A signature pushed after its image was converted: carry it to the conversions done so far.
      if (artifact.suffix) void this.carryLateArtifact(src, artifact.digest);
      return {
        kind: 'skipped',
        source,
        reason:
          'supply-chain artefact tag (cosign sha256-<hex>.sig/.att/.sbom, or a referrers index): carried along with its image, never converted',
      };
    }
    if (src.tag.endsWith(this.driver.tagSuffix))
      return { kind: 'skipped', source, reason: `already converted (tag ends with ${this.driver.tagSuffix})` };
    if (this.driver.cacheTag && src.tag === this.driver.cacheTag) return { kind: 'skipped', source, reason: 'cache tag' };
    const digest = src.digest ?? (s.digest && /^sha256:[a-f0-9]{64}$/.test(s.digest) ? s.digest : undefined);
    const target = formatReference(this.targetOf(src));
    const r = await this.queue.create({
      source: formatReference(withTag(src, src.tag)),
      target,
      dedupKey: target,
      ...(digest ? { sourceDigest: digest } : {}),
      ...(s.eventKey ? { eventKey: s.eventKey } : {}),
    });
    if (r.created) this.log.info({ task: r.task.id, source: r.task.source, target }, 'task queued');
    this.pump();
    return { kind: 'task', task: r.task, created: r.created };
  }

  /**
   * Carries the artefacts of `digest` (pushed after its image) to the targets of the COMPLETED
   * tasks converted from that digest in the same repository (the most recent 1000 tasks looked at).
   * Never throws: a failure is logged (the artefact stays on the source; `ferry task retry` of the
   * conversion is not needed — pushing the tag again carries it).
   */
  private async carryLateArtifact(src: ImageReference, digest: string): Promise<void> {
    try {
      const client = this.client(src.registry);
      for (const t of await this.queue.list(1000, [src.registry])) {
        if (t.status !== 'COMPLETED' || t.source_digest !== digest || !t.target_digest) continue;
        const from = parseReference(t.source);
        if (from.repository !== src.repository) continue;
        const r = await carrySupplyChain({
          sourceClient: client,
          targetClient: client,
          source: from,
          target: parseReference(t.target),
          sourceDigest: digest,
          targetDigest: t.target_digest,
          log: this.log,
        });
        this.log.info({ task: t.id, tags: r.tags }, 'late supply-chain artefact carried to a finished conversion');
      }
    } catch (err) {
      this.log.warn({ err: (err as Error).message, digest }, 'could not carry a late supply-chain artefact');
    }
  }

  /** Queues a FAILED task again (see TaskQueue.retry) and wakes the workers. */
  async retry(id: string): Promise<TaskView> {
    const t = await this.queue.retry(id);
    this.pump();
    return t;
  }

  /** Resolves when the task is COMPLETED or FAILED (here or in another process sharing the queue). */
  async waitFor(id: string): Promise<TaskView> {
    const t = await this.queue.get(id);
    if (t && t.status !== 'PROCESSING') return t;
    return new Promise((resolve) => {
      const list = this.waiters.get(id) ?? [];
      list.push(resolve);
      this.waiters.set(id, list);
    });
  }

  /** Answers the waiters of tasks that are finished. */
  private async notifyWaiters(): Promise<void> {
    for (const id of [...this.waiters.keys()]) {
      const t = await this.queue.get(id);
      if (!t || t.status === 'PROCESSING') continue;
      for (const w of this.waiters.get(id) ?? []) w(t);
      this.waiters.delete(id);
    }
  }

  /** Claims due tasks up to the worker limit, answers waiters, arms the next poll. Never throws; one at a time. */
  private pump(): void {
    if (this.closed) return;
    if (this.pumping) {
      this.pumpAgain = true;
      return;
    }
    this.pumping = true;
    void this.pumpOnce().finally(() => {
      this.pumping = false;
      if (this.pumpAgain) {
        this.pumpAgain = false;
        this.pump();
      }
    });
  }

  private async pumpOnce(): Promise<void> {
    this.cancelTimer?.();
    this.cancelTimer = undefined;
    const conv = this.cfg.converter;
    let delay = conv.poll_interval;
    try {
      // bounded: each pass claims at most `worker` tasks
      while (!this.closed && this.running.size < conv.worker) {
        const c = await this.queue.claim(this.worker, conv.task_lease);
        if (!c) break;
        this.startTask(c);
      }
      await this.notifyWaiters();
      const next = await this.queue.nextDue();
      if (next !== undefined) delay = Math.min(delay, Math.max(10, next - this.clock.now()));
    } catch (err) {
      this.log.error({ err: (err as Error).message, retryInMs: delay }, 'task scheduling failed; retrying');
    }
    if (!this.closed) this.cancelTimer = this.clock.setTimer(delay, () => this.pump(), { unref: true });
  }

  /** Runs a claimed task, renewing its lease every third of converter.task_lease until it is done. */
  private startTask(c: ClaimedTask): void {
    const abort = new AbortController();
    const log = this.log.child({ task: c.task.id });
    let lost = false;
    const stopBeat = this.heartbeat(c.lease, log, () => {
      lost = true;
      abort.abort(new FerryError('ABORTED', 'lease lost'));
    });
    const done = this.execute(c, abort.signal, () => lost)
      .catch((err: unknown) => {
        log.error({ err: (err as Error).message }, 'task bookkeeping failed');
      })
      .finally(() => {
        stopBeat();
        this.running.delete(c.task.id);
        this.pump();
      });
    this.running.set(c.task.id, { lease: c.lease, abort, done });
  }

  /**
   * Renews `lease` every third of converter.task_lease until the returned stop() is called; calls
   * `onLost` once if a renewal is refused (the task was taken over). A renewal that fails (database
   * unreachable) is tried again at the next beat: the lease may still run out meanwhile.
   */
  private heartbeat(lease: Lease, log: Logger, onLost: () => void): () => void {
    const leaseMs = this.cfg.converter.task_lease;
    let stopped = false;
    let cancel: (() => void) | undefined;
    const beat = (): void => {
      if (stopped) return;
      cancel = this.clock.setTimer(Math.floor(leaseMs / 3), () => void this.queue.renew(lease, leaseMs).then(renewed, failed), {
        unref: true,
      });
    };
    const renewed = (held: boolean): void => {
      if (stopped) return; // the task finished meanwhile: its lease ended with it
      if (held) {
        beat();
        return;
      }
      stopped = true;
      this.m.leasesLost.inc();
      log.warn('lease lost (the task was taken over): abandoning the conversion');
      onLost();
    };
    const failed = (err: unknown): void => {
      log.warn({ err: (err as Error).message }, 'lease renewal failed; trying again');
      beat();
    };
    beat();
    return () => {
      stopped = true;
      cancel?.();
    };
  }

  /** Logs a write the queue refused because the lease was lost. */
  private fenced(written: boolean, log: Logger, what: string): void {
    if (!written) log.warn({ refused: what }, 'lease lost: another worker holds the task; this result is not recorded');
  }

  private async execute(c: ClaimedTask, signal: AbortSignal, leaseLost: () => boolean): Promise<void> {
    const { task, lease } = c;
    const log = this.log.child({ task: task.id, source: task.source, attempt: task.attempts, worker: this.worker });
    const t0 = this.clock.now();
    const limit = this.cfg.converter.retry_limit;
    if (task.attempts > limit) {
      // attempts are counted at claim: more than the limit means earlier workers died holding it
      const reason = `ABORTED: gave up after ${task.attempts - 1} attempts, the last of which ended without a result (worker stopped or lost its lease)`;
      this.fenced(await this.queue.fail(lease, reason), log, 'fail');
      log.error({ err: reason }, 'task failed');
      return;
    }
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
        // nydus: its own source annotation; estargz: Harbor's acceleration source digest
        const from = ann?.[NydusAnnotation.SOURCE_DIGEST] ?? ann?.[HarborAnnotation.ACCELERATION_SOURCE_DIGEST];
        if (from === head.digest) {
          log.info({ target: task.target }, 'target already converted from this source digest');
          // converted before converter.attestation was set: attested now, or the policy would refuse it for good
          // (attestations are of Nydus conversions; an eStargz image is not run by the snapshotter's policy)
          if (this.signKey && this.driver.format !== 'estargz')
            await attestMissing({
              client,
              target: dst,
              targetDigest: existing.digest,
              source: task.source,
              key: this.signKey,
              tool: BUILDER_VERSION,
              log,
            });
          const written = await this.queue.complete(lease, {
            sourceDigest: head.digest,
            targetDigest: existing.digest,
            sourceSize: 0,
            targetSize: existing.size,
            reason: 'already converted',
          });
          this.fenced(written, log, 'complete');
          return;
        }
      }
      const d = this.driver;
      if (d.ociRef) {
        const r = await ociRefTask(withDigest(src, head.digest), client, d, { signal, workDir: this.scratchDir, log });
        this.fenced(await this.queue.complete(lease, r), log, 'complete');
        return;
      }
      // the project's automatic chunk dictionary (chunk_dict_auto; chunk_dict_ref overrides it)
      let chunkDictRefs: string[] | undefined;
      if (d.format !== 'estargz' && !d.chunkDictRef && d.chunkDictImages > 0) {
        chunkDictRefs = pickChunkDict(await this.queue.list(CHUNK_DICT_SCAN, [dst.registry]), dst, d.chunkDictImages);
        if (chunkDictRefs.length) log.info({ dict: chunkDictRefs }, "converting against the project's chunk dictionary");
      }
      const res = await convertWithDriver({
        ...(chunkDictRefs?.length ? { chunkDictRefs } : {}),
        driver: this.driver,
        config: this.cfg,
        cache: this.cache,
        source: withDigest(src, head.digest),
        target: dst,
        sourceRef: task.source,
        client,
        log,
        signal,
        workDir: this.scratchDir,
        ...(this.signKey ? { signKey: this.signKey } : {}),
      });
      // The source reference annotation names the tag, not the pinned digest.
      const written = await this.queue.complete(lease, {
        sourceDigest: res.sourceDigest,
        targetDigest: res.targetDigest,
        sourceSize: res.sourceSize,
        targetSize: res.targetSize,
      });
      this.fenced(written, log, 'complete');
      if (!written) return;
      this.m.duration.observe({ op: 'convert' }, (this.clock.now() - t0) / 1000);
      this.m.bytesIn.inc(res.uncompressedBytes);
      this.m.bytesOut.inc(res.targetSize);
      log.info({ target: res.target, digest: res.targetDigest, durationMs: this.clock.now() - t0 }, 'task completed');
    } catch (e) {
      await this.attemptFailed(lease, task.attempts, e, signal, leaseLost(), log);
    }
  }

  /** Books a failed attempt: released at shutdown, nothing when the lease was lost, else retry or FAILED. */
  private async attemptFailed(
    lease: Lease,
    attempts: number,
    err: unknown,
    signal: AbortSignal,
    lost: boolean,
    log: Logger,
  ): Promise<void> {
    if (lost) {
      log.info("conversion stopped: the lease was lost, the task is another worker's now");
      return;
    }
    if (signal.aborted) {
      this.fenced(await this.queue.release(lease), log, 'release');
      log.info('task interrupted by shutdown; it resumes on the next start (or on another worker)');
      return;
    }
    this.m.errors.inc({ op: 'convert' });
    const { permanent, reason } = classifyFailure(err);
    if (!permanent && attempts < this.cfg.converter.retry_limit) {
      const delay = this.cfg.converter.retry_backoff * 2 ** (attempts - 1);
      this.fenced(await this.queue.fail(lease, reason, this.clock.now() + delay), log, 'retry');
      this.m.retries.inc();
      log.warn({ err: reason, retryInMs: delay }, 'task attempt failed; will retry');
    } else {
      this.fenced(await this.queue.fail(lease, reason), log, 'fail');
      log.error({ err: reason, permanent }, 'task failed');
    }
  }

  /** Stops the workers: running conversions are aborted and stay queued for the next start. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.cancelTimer?.();
    for (const r of this.running.values()) r.abort.abort();
    await Promise.allSettled([...this.running.values()].map((r) => r.done));
    for (const [id, list] of this.waiters) {
      const t = await this.queue.get(id).catch(() => undefined);
      if (t) for (const w of list) w(t);
    }
    this.waiters.clear();
    this.cache.close();
    await this.queue.close();
    this.lock.release();
  }
}
