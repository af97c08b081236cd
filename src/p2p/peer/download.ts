/**
 * @module p2p/peer/download
 * One task download on this peer (Dragonfly's client flow): register with
 * the scheduler, then either fetch pieces from the parents it names (piece lists long-polled from
 * each parent, so pieces flow while parents still download; weighted-random parent per piece;
 * crc32 checked; a failing or lying parent is blocked and reported) or go back to source. Rounds
 * end in reschedule with the used parents blocked; after `maxScheduleCount` rounds, or when no
 * scheduler answers, the rest comes from the origin. The whole blob is checked against its OCI
 * digest before the peer reports success. Range tasks download the same way; their origin
 * requests are offset by the range start, and a range of an object held here whole is copied
 * from that task.
 */
import { createHash, randomUUID } from 'node:crypto';
import { FerryError, asFerryError } from '../../core/index.js';
import type { Logger } from '../../observe/index.js';
import type { PeerConfig } from '../../config/peer.js';
import { jsonRequest, request } from '../common/index.js';
import { H, blobDigestOfUrl, objectTaskId, pieceDigest, taskId } from '../common/index.js';
import type { TokenBucket } from '../common/index.js';
import type { ClusterAuth, HostInfo, ParentRef, PeerEvent, PieceListResponse, RegisterRequest, ScheduleResponse } from '../common/index.js';
import { authorizationOf } from './access.js';
import type { PeerMetrics } from './metrics.js';
import type { SchedulerClient } from './scheduler-client.js';
import type { SoloObjects } from './speculate.js';
import { fetchOriginRange, type OriginOptions } from './source.js';
import type { PieceStore, TaskEntry } from './store.js';

export interface DownloadDeps {
  config: PeerConfig;
  host: HostInfo;
  store: PieceStore;
  scheduler: SchedulerClient;
  metrics: PeerMetrics;
  origin: OriginOptions;
  downloadBucket: TokenBucket;
  sourceBucket: TokenBucket;
  log: Logger;
  signal: AbortSignal;
  /** Cluster credentials for requests to parents' upload servers. */
  auth: ClusterAuth | undefined;
  /** Objects this host reads alone (range tasks of them start at the origin while registering); undefined = off. */
  solo?: SoloObjects | undefined;
}

export interface DownloadRequest {
  url: string;
  headers: Record<string, string>;
}

/**
 * Starts (or joins) the download of `pieces` of `entry` (undefined = all of them). A running
 * download picks up pieces added while it runs; if some remain when it ends, another run starts.
 */
export function ensureDownload(deps: DownloadDeps, entry: TaskEntry, req: DownloadRequest, pieces?: number[], idleRuns = 0): Promise<void> {
  entry.want(pieces);
  if (entry.missingWanted().length === 0) return Promise.resolve();
  if (entry.downloading) return entry.downloading;
  const before = entry.finishedCount;
  const run = new TaskDownload(deps, entry, req).run();
  const p: Promise<void> = run.then(
    () => {
      entry.downloading = undefined;
      // Pieces wanted while the run was finishing: run again (bounded when runs make no progress).
      const idle = entry.finishedCount === before ? idleRuns + 1 : 0;
      if (entry.missingWanted().length > 0 && !deps.signal.aborted) {
        if (idle >= 3) {
          const err = new FerryError('UNAVAILABLE', `task ${entry.id}: downloads make no progress`);
          entry.fail(err);
          entry.stopped();
          throw err;
        }
        return ensureDownload(deps, entry, req, undefined, idle);
      }
      entry.stopped();
      return undefined;
    },
    (err: unknown) => {
      entry.downloading = undefined;
      entry.stopped();
      throw err;
    },
  );
  entry.downloading = p;
  p.catch(() => undefined);
  return p;
}

class TaskDownload {
  private readonly peerId: string;
  private readonly log: Logger;
  private scheduler: string | undefined;
  private readonly c: PeerConfig['download'];

  constructor(
    private readonly d: DownloadDeps,
    private readonly t: TaskEntry,
    private readonly req: DownloadRequest,
  ) {
    this.peerId = `${d.host.ip}-${d.host.hostname}-${randomUUID()}${d.host.type === 'super' ? '-seed' : ''}`;
    this.log = d.log.child({ taskId: t.id, peerId: this.peerId });
    this.c = d.config.download;
    if (t.meta.pieceCount === 1) this.held = [];
  }

  /** Headers of requests to parents: who asks, and the requester's registry credential for their access check. */
  private parentHeaders(): Record<string, string> {
    const a = authorizationOf(this.req.headers);
    return { 'x-ferry-peer-id': this.peerId, ...(a ? { [H.originAuthorization]: a } : {}) };
  }

  /**
   * The query naming this task to parent `p`: its URL, and when `p` is a peer of a task holding all
   * of this range task's bytes (`ParentRef.taskId`), that task and this range, so the parent serves
   * the range from it (p2p/peer/contain).
   */
  private taskQuery(p: ParentRef): string {
    const q = `url=${encodeURIComponent(this.t.meta.url)}`;
    const range = this.t.meta.idOptions.range;
    return p.taskId && p.taskId !== this.t.id && range ? `${q}&from=${p.taskId}&range=${range}` : q;
  }

  private missing(): number[] {
    return this.t.missingWanted();
  }

  private report(events: PeerEvent[]): void {
    if (this.scheduler) void this.d.scheduler.report(this.scheduler, this.peerId, events);
  }

  /**
   * Piece reports of a one-piece task, held back to go with the task's last report (finished or
   * failed): one report request per small range task instead of two or three. Its children ask
   * the piece itself (`?wait=`), not the scheduler's piece list, so nothing waits for it.
   */
  private readonly held: PeerEvent[] | undefined = undefined;

  private reportPiece(ev: PeerEvent): void {
    if (this.held) this.held.push(ev);
    else this.report([ev]);
  }

  /** The held piece reports followed by `last`. */
  private final(last: PeerEvent): PeerEvent[] {
    return [...(this.held?.splice(0) ?? []), last];
  }

  async run(): Promise<void> {
    const started = Date.now();
    try {
      await this.fetchAll();
      if (!this.t.complete) {
        // A range download: the pieces are here, the task is not; leave the scheduler's graph.
        this.log.debug({ pieces: this.t.finishedCount }, 'partial task downloaded');
        if (this.held?.length) this.report(this.held.splice(0));
        if (this.scheduler) await this.d.scheduler.leave(this.scheduler, this.peerId);
        return;
      }
      await this.verify();
      await this.d.store.markDone(this.t);
      this.d.metrics.tasks.inc({ result: 'succeeded' });
      this.log.info({ ms: Date.now() - started, bytes: this.t.meta.contentLength }, 'task downloaded');
      if (this.unregistered) {
        // registered now, with the outcome: others find this peer as a parent from here on
        const alone = await this.d.scheduler.registerDone(this.unregistered, this.final({ kind: 'backToSourceFinished' }));
        this.d.solo?.note(this.objectId(), alone);
      } else if (this.scheduler) {
        await this.d.scheduler.report(
          this.scheduler,
          this.peerId,
          this.final({ kind: this.wentToSource ? 'backToSourceFinished' : 'finished' }),
        );
      }
    } catch (err) {
      const e = asFerryError(err, 'UNAVAILABLE');
      this.d.metrics.tasks.inc({ result: 'failed' });
      this.log.warn({ err: e.message }, 'task download failed');
      this.report(this.final({ kind: this.wentToSource ? 'backToSourceFailed' : 'failed', description: e.message }));
      if (this.scheduler) void this.d.scheduler.leave(this.scheduler, this.peerId);
      this.t.fail(e);
      throw e;
    }
  }

  private wentToSource = false;

  private async fetchAll(): Promise<void> {
    const size = this.t.meta.contentLength;
    if (size === 0) return;
    await this.fromLocalWhole();
    // The small-object bypass is for whole objects; a range task exists because the proxy's
    // small-range bypass did not apply (and a seed must register its range tasks to share them).
    const small = this.t.meta.range === undefined && this.c.directBelow > 0 && size <= this.c.directBelow;
    if (small || !this.d.scheduler.enabled) {
      return this.backToSource('small object or no scheduler');
    }
    if (this.readsAlone()) {
      // The scheduler's answer is predictable: straight to the origin, registered with the outcome.
      this.d.metrics.speculative.inc();
      this.unregistered = this.registration();
      return this.backToSource('object read alone', true);
    }
    let resp: ScheduleResponse;
    try {
      const r = await this.d.scheduler.register(this.registration(), this.d.signal);
      this.scheduler = r.scheduler;
      resp = r.response;
    } catch (err) {
      this.d.metrics.schedulerFallback.inc();
      this.log.warn({ err: (err as Error).message }, 'scheduler unavailable, downloading from the origin');
      return this.backToSource('scheduler unavailable');
    }
    if (this.t.meta.range) this.d.solo?.note(this.objectId(), resp.kind === 'needBackToSource' && resp.objectAlone === true);
    const blocked = new Set<string>();
    for (let round = 1; ; round++) {
      if (resp.kind === 'empty') return;
      // (the scheduler moved this peer to back-to-source when it answered so: no report of it)
      if (resp.kind === 'needBackToSource') return this.backToSource(resp.description ?? 'scheduler said so', true);
      this.report([{ kind: 'started' }]);
      this.log.debug({ round, parents: resp.parents.map((p) => p.peerId) }, 'downloading from parents');
      const used =
        this.t.meta.pieceCount === 1
          ? await this.fromParentsOnePiece(resp.parents, blocked)
          : await this.fromParents(resp.parents, blocked);
      if (this.missing().length === 0) return;
      if (round >= this.c.maxScheduleCount) break;
      try {
        resp = await this.d.scheduler.reschedule(this.scheduler!, this.peerId, [...used], this.d.signal);
      } catch (err) {
        this.log.warn({ err: (err as Error).message }, 'reschedule failed');
        break;
      }
    }
    this.d.metrics.schedulerFallback.inc();
    this.report([{ kind: 'failed', description: 'too many schedule rounds' }]);
    return this.backToSource('scheduling gave up');
  }

  private objectId(): string {
    return objectTaskId({ url: this.t.meta.url, ...this.t.meta.idOptions });
  }

  /** Set when the task went to the origin without registering: it registers with its last report. */
  private unregistered: RegisterRequest | undefined;

  private registration(): RegisterRequest {
    return {
      peerId: this.peerId,
      hostId: this.d.host.id,
      taskId: this.t.id,
      download: {
        url: this.t.meta.url,
        ...this.t.meta.idOptions,
        headers: this.req.headers,
        contentLength: this.t.meta.contentLength,
        actualPieceLength: this.t.meta.pieceLength,
        needBackToSource: this.d.host.type === 'super',
        concurrentPieceCount: this.c.concurrentPieceCount,
      },
    };
  }

  /**
   * A one-piece range task of an object this host read alone at the scheduler's last answer
   * (p2p/peer/speculate): it goes to the origin at once and registers with its last report.
   */
  private readsAlone(): boolean {
    const solo = this.d.solo;
    if (!solo || !this.t.meta.range || this.t.meta.pieceCount !== 1 || this.d.host.type === 'super') return false;
    return !this.c.disableBackToSource && solo.alone(this.objectId());
  }

  /**
   * A range task of an object held here complete (a preheated seed, typically): its pieces are
   * copied from the whole-object task instead of fetched. The peer still registers afterwards, so
   * the scheduler learns it holds the range task and names it as a parent.
   */
  private async fromLocalWhole(): Promise<void> {
    const span = this.t.meta.range;
    if (!span) return;
    const whole = this.d.store.get(taskId({ url: this.t.meta.url, ...this.t.meta.idOptions, range: undefined }));
    if (!whole?.complete || whole.meta.contentLength !== span.total) return;
    whole.refs++;
    try {
      for (const n of this.missing()) {
        const r = this.t.range(n);
        const buf = await whole.readRange(span.start + r.offset, r.length);
        await this.t.writePiece(n, buf, pieceDigest(buf));
        this.d.metrics.traffic.inc({ type: 'LOCAL_PEER' }, buf.length);
      }
    } catch (err) {
      // e.g. the whole task was evicted meanwhile: the usual sources supply the rest
      this.log.debug({ err: (err as Error).message }, 'copy from the local whole-object task failed');
    } finally {
      whole.refs--;
    }
  }

  private async backToSource(why: string, toldByScheduler = false): Promise<void> {
    if (this.c.disableBackToSource) throw new FerryError('UNAVAILABLE', `back-to-source disabled (${why})`);
    this.wentToSource = true;
    if (!toldByScheduler) this.report([{ kind: 'backToSourceStarted' }]);
    this.log.debug({ why }, 'back to source');
    for (let pass = 0; pass < 1000; pass++) {
      const todo = this.missing();
      if (todo.length === 0) return;
      await this.sourcePass(todo);
    }
  }

  private async sourcePass(todo: number[]): Promise<void> {
    let i = 0;
    const worker = async (): Promise<void> => {
      while (i < todo.length) {
        const n = todo[i++]!;
        if (this.t.has(n)) continue;
        const r = this.t.range(n);
        const t0 = Date.now();
        // A range task's byte 0 is the origin's byte range.start.
        const base = this.t.meta.range?.start ?? 0;
        let buf: Buffer;
        try {
          buf = await fetchOriginRange(
            this.req.url,
            this.req.headers,
            base + r.offset,
            r.length,
            this.d.origin,
            [this.d.sourceBucket, this.d.downloadBucket],
            this.d.signal,
          );
        } catch (err) {
          this.d.metrics.pieceFailures.inc({ reason: 'source' });
          this.report([{ kind: 'pieceBackToSourceFailed', pieceNumber: n }]);
          throw err;
        }
        const digest = pieceDigest(buf);
        await this.t.writePiece(n, buf, digest);
        this.d.metrics.traffic.inc({ type: 'BACK_TO_SOURCE' }, buf.length);
        this.reportPiece({ kind: 'pieceBackToSourceFinished', piece: { number: n, length: buf.length, digest, costMs: Date.now() - t0 } });
      }
    };
    await Promise.all(Array.from({ length: Math.min(this.c.backToSourceConcurrency, Math.max(1, todo.length)) }, worker));
  }

  /** One round with the given parents; returns the parents used (to be blocked on reschedule). */
  private fromParents(parents: ParentRef[], blocked: Set<string>): Promise<Set<string>> {
    const used = new Set(parents.map((p) => p.peerId));
    const live = new Map(parents.filter((p) => !blocked.has(p.peerId)).map((p) => [p.peerId, p]));
    const avail = new Map<string, Map<number, string>>();
    const finished = new Set<string>(); // parents that will get no more pieces
    const inflight = new Map<number, string>();
    const perParent = new Map<string, number>();
    const ac = new AbortController();
    const onAbort = (): void => ac.abort();
    this.d.signal.addEventListener('abort', onAbort, { once: true });
    let lastProgress = Date.now();

    return new Promise<Set<string>>((resolve, reject) => {
      let settled = false;
      const done = (): void => {
        if (settled) return;
        settled = true;
        ac.abort();
        clearInterval(timer);
        this.d.signal.removeEventListener('abort', onAbort);
        if (this.d.signal.aborted) reject(new FerryError('CANCELED', 'peer stopping'));
        else resolve(used);
      };
      const block = (pid: string, n: number | undefined, why: string, reason: 'crc' | 'network'): void => {
        if (!live.has(pid)) return;
        live.delete(pid);
        blocked.add(pid);
        this.d.metrics.pieceFailures.inc({ reason });
        this.log.warn({ parent: pid, piece: n, why }, 'parent failed, blocked for this task');
        this.report([{ kind: 'pieceFailed', pieceNumber: n, parentId: pid, temporary: true, description: why }]);
      };
      const pump = (): void => {
        if (settled) return;
        const missing = this.missing();
        if (missing.length === 0) {
          done();
          return;
        }
        for (const n of missing) {
          if (inflight.size >= this.c.concurrentPieceCount) break;
          if (inflight.has(n)) continue;
          const cands = [...live.keys()].filter((pid) => avail.get(pid)?.has(n));
          if (cands.length === 0) continue;
          // Weighted random: parents with fewer pieces in flight from us are favoured.
          const w = cands.map((pid) => 1 / (1 + (perParent.get(pid) ?? 0)));
          let x = Math.random() * w.reduce((a, b) => a + b, 0);
          let pick = cands[cands.length - 1]!;
          for (let k = 0; k < cands.length; k++) {
            x -= w[k]!;
            if (x <= 0) {
              pick = cands[k]!;
              break;
            }
          }
          inflight.set(n, pick);
          perParent.set(pick, (perParent.get(pick) ?? 0) + 1);
          this.fetchPiece(live.get(pick)!, n, avail.get(pick)!.get(n)!, ac.signal)
            .then(
              () => {
                lastProgress = Date.now();
              },
              (err: unknown) => {
                if (ac.signal.aborted) return;
                const e = asFerryError(err);
                block(pick, n, e.message, e.code === 'DATA_LOSS' ? 'crc' : 'network');
              },
            )
            .finally(() => {
              inflight.delete(n);
              perParent.set(pick, (perParent.get(pick) ?? 1) - 1);
              pump();
            });
        }
        // Nothing in flight and no live parent can supply what is missing: end the round.
        if (inflight.size === 0) {
          const anyHope = [...live.keys()].some((pid) => !finished.has(pid) || missing.some((n) => avail.get(pid)?.has(n)));
          if (!anyHope) {
            done();
            return;
          }
        }
      };
      const timer = setInterval(() => {
        if (inflight.size === 0 && Date.now() - lastProgress > this.c.pieceTimeout) {
          this.log.warn({ ms: this.c.pieceTimeout }, 'no piece progress from parents');
          done();
        }
      }, 250);
      for (const p of live.values()) {
        void (async () => {
          let have = -1;
          while (!ac.signal.aborted && live.has(p.peerId)) {
            try {
              const r = await jsonRequest<PieceListResponse>(
                `${p.uploadUrl}/api/v1/tasks/${this.t.id}/pieces?${this.taskQuery(p)}&have=${have}&wait=2000`,
                { timeoutMs: 10_000, signal: ac.signal, headers: this.parentHeaders(), auth: this.d.auth },
              );
              const m = avail.get(p.peerId) ?? new Map<number, string>();
              for (const pc of r.pieces) m.set(pc.number, pc.digest);
              avail.set(p.peerId, m);
              have = r.pieces.length;
              if (r.done || r.failed) finished.add(p.peerId);
              if (r.failed && !r.pieces.some((pc) => !this.t.has(pc.number))) {
                block(p.peerId, undefined, 'parent has no more pieces', 'network');
              }
              pump();
              if (r.done) break;
            } catch (err) {
              if (ac.signal.aborted) break;
              block(p.peerId, undefined, `piece list: ${(err as Error).message}`, 'network');
              pump();
              break;
            }
          }
        })();
      }
      if (live.size === 0) done();
    });
  }

  /**
   * A one-piece task (a lazy loader's small range read): the piece is asked of the parents one at a
   * time, best first, each request waiting at the parent until the piece is there — one request
   * per parent instead of a long-polled piece list from each plus the piece. A parent that fails is
   * blocked and the next one asked; returns the parents asked (blocked on reschedule).
   */
  private async fromParentsOnePiece(parents: ParentRef[], blocked: Set<string>): Promise<Set<string>> {
    const used = new Set<string>();
    for (const p of parents) {
      if (blocked.has(p.peerId) || this.t.has(0) || this.d.signal.aborted) continue;
      used.add(p.peerId);
      try {
        await this.fetchPiece(p, 0, undefined, this.d.signal);
      } catch (err) {
        if (this.d.signal.aborted) throw new FerryError('CANCELED', 'peer stopping');
        const e = asFerryError(err);
        blocked.add(p.peerId);
        this.d.metrics.pieceFailures.inc({ reason: e.code === 'DATA_LOSS' ? 'crc' : 'network' });
        this.log.debug({ parent: p.peerId, why: e.message }, 'parent failed, blocked for this task');
        this.report([{ kind: 'pieceFailed', pieceNumber: 0, parentId: p.peerId, temporary: true, description: e.message }]);
      }
    }
    return used;
  }

  /**
   * Piece `n` from parent `p`, checked against `digest` (from the parent's piece list), or when
   * undefined against the digest the parent sends with the bytes.
   */
  private async fetchPiece(p: ParentRef, n: number, digest: string | undefined, signal: AbortSignal): Promise<void> {
    const r = this.t.range(n);
    const t0 = Date.now();
    // no piece list (a one-piece task): the parent waits for the piece, up to half the piece timeout
    const wait = digest === undefined ? `&wait=${Math.min(10_000, Math.floor(this.c.pieceTimeout / 2))}` : '';
    const res = await request(`${p.uploadUrl}/api/v1/tasks/${this.t.id}/pieces/${n}?${this.taskQuery(p)}${wait}`, {
      timeoutMs: this.c.pieceTimeout,
      signal,
      headers: this.parentHeaders(),
      auth: this.d.auth,
    });
    if (res.status !== 200) {
      res.body.resume();
      throw new FerryError('UNAVAILABLE', `parent answered ${res.status} for piece ${n}`);
    }
    const buf = Buffer.allocUnsafe(r.length);
    let got = 0;
    for await (const chunk of res.body as AsyncIterable<Buffer>) {
      await this.d.downloadBucket.take(chunk.length);
      if (got + chunk.length > r.length) throw new FerryError('DATA_LOSS', `parent sent more than ${r.length} bytes for piece ${n}`);
      chunk.copy(buf, got);
      got += chunk.length;
    }
    if (got !== r.length) throw new FerryError('UNAVAILABLE', `parent sent ${got} of ${r.length} bytes of piece ${n}`);
    const actual = pieceDigest(buf);
    const announced = digest ?? res.headers['x-ferry-piece-digest'];
    if (actual !== announced) throw new FerryError('DATA_LOSS', `piece ${n}: digest ${actual}, parent announced ${String(announced)}`);
    if (this.t.has(n)) return;
    await this.t.writePiece(n, buf, actual);
    this.d.metrics.traffic.inc({ type: 'REMOTE_PEER' }, buf.length);
    this.reportPiece({
      kind: 'pieceFinished',
      piece: { number: n, length: buf.length, digest: actual, parentId: p.peerId, costMs: Date.now() - t0 },
    });
  }

  /**
   * Whole-blob check against the OCI digest in the URL (`/v2/<name>/blobs/<alg>:<hex>`) before the
   * task counts as complete: the blob is hashed piece by piece through the checked store reads. On
   * a mismatch (or a piece found altered on disk meanwhile) the pieces are refetched from the
   * origin once; a second mismatch fails the task with DATA_LOSS naming the digest.
   */
  private async verify(): Promise<void> {
    if (this.t.meta.range) return; // a range is not the blob: its pieces are crc32-checked only
    const want = this.t.meta.expectedDigest ?? blobDigestOfUrl(this.t.meta.url);
    if (!want) return;
    for (let attempt = 0; ; attempt++) {
      const got = await this.wholeDigest(want);
      if (got === want) return;
      this.d.metrics.pieceFailures.inc({ reason: 'digest' });
      if (attempt >= 1) {
        // Not complete any more, so the failed task is dropped rather than served from memory.
        this.t.reset();
        throw new FerryError(
          'DATA_LOSS',
          `blob ${want} did not verify: its bytes hash to ${got ?? 'nothing (pieces altered on disk)'}, also after refetching from the origin`,
        );
      }
      this.log.warn({ want, got }, 'whole-blob digest mismatch, refetching from the origin');
      if (got !== undefined) this.t.reset();
      await this.backToSource('digest mismatch');
    }
  }

  /** `<alg>:<hex>` of the task's bytes, or undefined when a piece failed its on-disk check (and was dropped). */
  private async wholeDigest(want: string): Promise<string | undefined> {
    const alg = want.slice(0, want.indexOf(':'));
    const h = createHash(alg);
    for (let n = 0; n < this.t.meta.pieceCount; n++) {
      try {
        h.update(await this.t.readPiece(n));
      } catch (err) {
        if (FerryError.hasCode(err, 'DATA_LOSS') || FerryError.hasCode(err, 'NOT_FOUND')) return undefined;
        throw err;
      }
    }
    return `${alg}:${h.digest('hex')}`;
  }
}
