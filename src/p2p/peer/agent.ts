/**
 * @module p2p/peer/agent
 * The node agent's core: turns (URL, client headers, task-id options) into a task in the piece
 * store whose download is running or done. The access check happens here: unless disabled, every
 * client request is first sent to the origin as a HEAD with the client's own headers, and only a
 * 2xx lets the peer serve bytes (from its store or from other peers); anything else is relayed.
 *
 * A Range request for an object not held locally becomes a range task (Dragonfly: the range is
 * part of the task id): its content is just that range, its pieces are cut from the range length,
 * back-to-source asks the origin for that range only, and other peers asking for the same range
 * find the same task. A range the whole-object task already holds is served from it.
 */
import { FerryError } from '../../core/index.js';
import {
  objectTaskId,
  rangeContains,
  formatTaskRange,
  parseRangeHeader,
  parseTaskRange,
  pieceLengthFor,
  pieceLengthForRange,
  piecesForRange,
  taskId,
  type RangeSpec,
} from '../common/index.js';
import type { TaskIdOptions } from '../common/index.js';
import { RangeIndex, startCopy } from './contain.js';
import { ensureDownload, type DownloadDeps } from './download.js';
import { statOrigin, type StatResult } from './source.js';
import type { OriginStatCache } from './stat-cache.js';
import type { TaskEntry } from './store.js';

type OkStat = Extract<StatResult, { ok: true }>;
type Denied = { kind: 'denied'; stat: Extract<StatResult, { ok: false }> };

export type Prepared = { kind: 'task'; entry: TaskEntry; cached: boolean } | Denied;

/**
 * How to serve a Range request: from `entry` (the whole-object task, or a range task), with
 * `range` in the coordinates of the origin object; `stat` when the origin was asked.
 */
export type PreparedRange =
  | { kind: 'task'; entry: TaskEntry; cached: boolean; range: RangeSpec; stat: OkStat | undefined }
  /** The small-range bypass applies (`directBelow`): no task was created. */
  | { kind: 'direct'; range: RangeSpec; stat: OkStat }
  | { kind: 'unsatisfiable'; total: number }
  | Denied;

export class Agent {
  private readonly creating = new Map<string, Promise<TaskEntry>>();
  /** Range tasks held here, to serve a range from one containing it. */
  private readonly ranges: RangeIndex;

  /** `stats`: remembered origin answers for digest-addressed blobs (one HEAD per blob, not per range). */
  constructor(
    readonly deps: DownloadDeps,
    private readonly stats?: OriginStatCache,
  ) {
    this.ranges = new RangeIndex(deps.store);
  }

  private statOf(url: string, headers: Record<string, string>, signal?: AbortSignal): Promise<StatResult> {
    return this.stats ? this.stats.get(url, headers, signal) : statOrigin(url, headers, this.deps.origin, signal);
  }

  private resolved(o: TaskIdOptions): TaskIdOptions {
    return { ...o, blobDigest: o.blobDigest ?? this.deps.config.download.taskIdBasedBlobDigest };
  }

  taskIdFor(url: string, o: TaskIdOptions): string {
    return taskId({ url, ...this.resolved(o) });
  }

  /**
   * The task for (url, options) — with `o.range`, that range's task. `opts.stat` is an origin
   * answer the caller already has for this request (then no second HEAD is sent).
   */
  async prepare(
    url: string,
    headers: Record<string, string>,
    o: TaskIdOptions,
    opts: { verifyAccess: boolean; signal?: AbortSignal | undefined; stat?: OkStat | undefined },
  ): Promise<Prepared> {
    const idOptions = this.resolved(o);
    const tid = taskId({ url, ...idOptions });
    const span = idOptions.range === undefined ? undefined : parseTaskRange(idOptions.range);
    let entry = this.deps.store.get(tid);
    let stat: StatResult | undefined = opts.stat;
    if (!stat && (!entry || opts.verifyAccess)) {
      stat = await this.statOf(url, headers, opts.signal);
      if (!stat.ok) return { kind: 'denied', stat };
    }
    entry = this.deps.store.get(tid);
    // Held at first, gone now (evicted meanwhile): start over, this time asking the origin.
    if (!entry && !stat) return this.prepare(url, headers, o, opts);
    if (!entry) {
      const s = stat as OkStat;
      let p = this.creating.get(tid);
      if (!p) {
        if (span && span.end >= s.contentLength) {
          throw new FerryError('INVALID_ARGUMENT', `range ${idOptions.range} lies beyond the ${s.contentLength}-byte object ${url}`);
        }
        const contentLength = span ? span.end - span.start + 1 : s.contentLength;
        const pieceLength = idOptions.pieceLength ?? (span ? pieceLengthForRange(contentLength) : pieceLengthFor(contentLength));
        p = this.deps.store
          .create({
            taskId: tid,
            url,
            idOptions,
            contentLength,
            pieceLength,
            responseHeaders: s.headers,
            range: span ? { ...span, total: s.contentLength } : undefined,
          })
          .finally(() => this.creating.delete(tid));
        this.creating.set(tid, p);
      }
      entry = await p;
      this.ranges.add(entry);
      this.deps.metrics.diskUsage.set(this.deps.store.usage());
    } else if (stat?.ok && stat.contentLength !== (entry.meta.range?.total ?? entry.meta.contentLength) && !entry.downloading) {
      // The object changed upstream: start over.
      await this.deps.store.delete(tid);
      return this.prepare(url, headers, o, { ...opts, stat });
    }
    return { kind: 'task', entry, cached: entry.complete };
  }

  /**
   * A Range request (`header`, the client's Range header). Served from the whole-object task when
   * it holds every piece the range overlaps (or the range is the whole object); otherwise from the
   * range task of the normalized range. The access check runs per request as for whole objects.
   */
  async prepareRange(
    url: string,
    headers: Record<string, string>,
    o: TaskIdOptions,
    header: string,
    opts: { verifyAccess: boolean; signal?: AbortSignal | undefined; directBelow: number; rangeGrid?: number },
  ): Promise<PreparedRange> {
    const whole: TaskIdOptions = { ...o, range: undefined };
    const local = this.deps.store.get(this.taskIdFor(url, whole));
    if (local && local.meta.contentLength > 0) {
      let r: RangeSpec | undefined;
      try {
        r = parseRangeHeader(header, local.meta.contentLength);
      } catch {
        r = undefined;
      }
      if (r && piecesForRange(r.start, r.end, local.meta.pieceLength).every((n) => local.has(n))) {
        const p = await this.prepare(url, headers, whole, opts);
        if (p.kind === 'denied') return p;
        // A changed object replaced the task: its pieces are gone, take the general path.
        if (p.entry === local) return { kind: 'task', entry: local, cached: local.complete, range: r, stat: undefined };
      }
    }
    // Without an access check an explicit `a-b` range task held here needs no origin request.
    const explicit = /^bytes=(0|[1-9]\d*)-(0|[1-9]\d*)$/.exec(header.trim());
    if (explicit && !opts.verifyAccess) {
      const r = { start: Number(explicit[1]), end: Number(explicit[2]) };
      // the grid cell (unless it is the blob's last, whose end needs the size), then the exact range
      const keys = opts.rangeGrid ? [alignRange(r, Number.MAX_SAFE_INTEGER, opts.rangeGrid), r] : [r];
      for (const k of r.start <= r.end ? keys : []) {
        const e = this.deps.store.get(this.taskIdFor(url, { ...whole, range: formatTaskRange(k) }));
        if (e) return { kind: 'task', entry: e, cached: e.complete, range: r, stat: undefined };
      }
    }
    // The origin's answer gives the access decision and the object size the range is normalized against.
    const stat = await this.statOf(url, headers, opts.signal);
    if (!stat.ok) return { kind: 'denied', stat };
    let r: RangeSpec | undefined;
    try {
      r = parseRangeHeader(header, stat.contentLength);
    } catch {
      r = undefined;
    }
    if (!r) return { kind: 'unsatisfiable', total: stat.contentLength };
    // A range task held here that contains the range serves it (as soon as its pieces are there).
    const near = this.ranges.find(objectTaskId({ url, ...this.resolved(whole) }), r);
    if (near) return { kind: 'task', entry: near, cached: near.complete, range: r, stat };
    // The task is the range's grid cell(s); the whole object (asked for, or the cells covering it) is the whole-object task.
    const cell = alignRange(r, stat.contentLength, opts.rangeGrid ?? 0);
    const asRange = cell.start === 0 && cell.end === stat.contentLength - 1 ? undefined : formatTaskRange(cell);
    if (
      opts.directBelow > 0 &&
      r.end - r.start + 1 <= opts.directBelow &&
      !this.deps.store.get(this.taskIdFor(url, { ...whole, range: asRange }))?.complete
    ) {
      // Small ranges not held here go straight to the origin (Dragonfly's small-object bypass);
      // decided before a task exists, so no empty task is left behind.
      return { kind: 'direct', range: r, stat };
    }
    const p = await this.prepare(url, headers, { ...whole, range: asRange }, { verifyAccess: false, signal: opts.signal, stat });
    if (p.kind === 'denied') return p;
    return { kind: 'task', entry: p.entry, cached: p.cached, range: r, stat };
  }

  /**
   * Range task `range` (`start-end`) of the object of `from`, a task held here that contains it:
   * created if needed and filled from `from` as its pieces arrive (a parent named for a range task
   * through a containing task, p2p/peer/contain). The ids of both were checked by the caller.
   */
  async deriveRange(from: TaskEntry, range: string): Promise<TaskEntry> {
    const span = parseTaskRange(range);
    const total = from.meta.range?.total ?? from.meta.contentLength;
    if (span.end >= total || !rangeContains(from.meta.range, span))
      throw new FerryError('INVALID_ARGUMENT', `task ${from.id} does not hold range ${range}`);
    const idOptions: TaskIdOptions = { ...from.meta.idOptions, range };
    const tid = taskId({ url: from.meta.url, ...idOptions });
    let entry = this.deps.store.get(tid);
    if (!entry) {
      const contentLength = span.end - span.start + 1;
      entry = await this.deps.store.create({
        taskId: tid,
        url: from.meta.url,
        idOptions,
        contentLength,
        pieceLength: idOptions.pieceLength ?? pieceLengthForRange(contentLength),
        responseHeaders: from.meta.responseHeaders,
        range: { ...span, total },
      });
      this.ranges.add(entry);
    }
    startCopy(this.deps.store, from, entry, this.deps.signal);
    return entry;
  }

  /** Downloads `pieces` of the task (undefined = all); resolves when they are all present. */
  download(entry: TaskEntry, url: string, headers: Record<string, string>, pieces?: number[]): Promise<void> {
    if (entry.complete) return Promise.resolve();
    const p = ensureDownload(this.deps, entry, { url, headers }, pieces);
    // A failed attempt leaves no half task behind: the next request starts afresh.
    p.catch(() => {
      if (!entry.complete && !entry.downloading && this.deps.store.get(entry.id) === entry)
        void this.deps.store.delete(entry.id).catch(() => undefined);
    });
    return p;
  }

  /**
   * Drops a task whose bytes failed their digest (the next request starts afresh); a running
   * download is left to its own check, which fails and drops it.
   */
  forget(entry: TaskEntry): void {
    if (entry.downloading || this.deps.store.get(entry.id) !== entry) return;
    void this.deps.store.delete(entry.id).catch(() => undefined);
  }

  /** For seed triggers and preheat: fetch the task fully (no client access check beyond the origin stat). */
  async obtain(url: string, headers: Record<string, string>, o: TaskIdOptions): Promise<{ entry: TaskEntry; download: Promise<void> }> {
    const p = await this.prepare(url, headers, o, { verifyAccess: false });
    if (p.kind === 'denied')
      throw new FerryError(
        p.stat.status === 401
          ? 'UNAUTHENTICATED'
          : p.stat.status === 403
            ? 'PERMISSION_DENIED'
            : p.stat.status === 404
              ? 'NOT_FOUND'
              : 'UNAVAILABLE',
        `origin answered ${p.stat.status} for ${url}`,
      );
    const download = this.download(p.entry, url, headers);
    download.catch(() => undefined);
    return { entry: p.entry, download };
  }
}

/**
 * The range task that serves `r` of an object of `total` bytes: `r` widened to whole cells of
 * `grid` bytes (the last cell ends at the object's end), or `r` itself when `grid` is 0. Reads that
 * fall in the same cells — on any node, however its reader split them — share one task.
 */
export function alignRange(r: RangeSpec, total: number, grid: number): RangeSpec {
  if (grid <= 0) return r;
  return { start: Math.floor(r.start / grid) * grid, end: Math.min(total, Math.ceil((r.end + 1) / grid) * grid) - 1 };
}
