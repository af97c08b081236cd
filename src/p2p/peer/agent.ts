/**
 * @module p2p/peer/agent
 * The node agent's core: turns (URL, client headers, task-id options) into a task in the piece
 * store whose download is running or done. The access check happens here: unless disabled, every
 * client request is first sent to the origin as a HEAD with the client's own headers, and only a
 * 2xx lets the peer serve bytes (from its store or from other peers); anything else is relayed.
 */
import { FerryError } from '../../core/index.js';
import { pieceLengthFor, taskId } from '../common/index.js';
import type { TaskIdOptions } from '../common/index.js';
import { ensureDownload, type DownloadDeps } from './download.js';
import { statOrigin, type StatResult } from './source.js';
import type { TaskEntry } from './store.js';

export type Prepared =
  | { kind: 'task'; entry: TaskEntry; cached: boolean }
  | { kind: 'denied'; stat: Extract<StatResult, { ok: false }> };

export class Agent {
  private readonly creating = new Map<string, Promise<TaskEntry>>();

  constructor(readonly deps: DownloadDeps) {}

  taskIdFor(url: string, o: TaskIdOptions): string {
    return taskId({ url, ...o, blobDigest: o.blobDigest ?? this.deps.config.download.taskIdBasedBlobDigest });
  }

  async prepare(url: string, headers: Record<string, string>, o: TaskIdOptions, opts: { verifyAccess: boolean; signal?: AbortSignal }): Promise<Prepared> {
    const idOptions: TaskIdOptions = { ...o, blobDigest: o.blobDigest ?? this.deps.config.download.taskIdBasedBlobDigest };
    const tid = taskId({ url, ...idOptions });
    let entry = this.deps.store.get(tid);
    let stat: StatResult | undefined;
    if (!entry || opts.verifyAccess) {
      stat = await statOrigin(url, headers, this.deps.origin, opts.signal);
      if (!stat.ok) return { kind: 'denied', stat };
    }
    entry = this.deps.store.get(tid);
    if (!entry) {
      const s = stat as Extract<StatResult, { ok: true }>;
      let p = this.creating.get(tid);
      if (!p) {
        const pieceLength = idOptions.pieceLength ?? pieceLengthFor(s.contentLength);
        p = this.deps.store.create({ taskId: tid, url, idOptions, contentLength: s.contentLength, pieceLength, responseHeaders: s.headers })
          .finally(() => this.creating.delete(tid));
        this.creating.set(tid, p);
      }
      entry = await p;
      this.deps.metrics.diskUsage.set(this.deps.store.usage());
    } else if (stat?.ok && stat.contentLength !== entry.meta.contentLength && !entry.downloading) {
      // The object changed upstream: start over.
      await this.deps.store.delete(tid);
      return this.prepare(url, headers, o, opts);
    }
    return { kind: 'task', entry, cached: entry.complete };
  }

  /** Downloads `pieces` of the task (undefined = all); resolves when they are all present. */
  download(entry: TaskEntry, url: string, headers: Record<string, string>, pieces?: number[]): Promise<void> {
    if (entry.complete) return Promise.resolve();
    const p = ensureDownload(this.deps, entry, { url, headers }, pieces);
    // A failed attempt leaves no half task behind: the next request starts afresh.
    p.catch(() => { if (!entry.complete && !entry.downloading && this.deps.store.get(entry.id) === entry) void this.deps.store.delete(entry.id).catch(() => undefined); });
    return p;
  }

  /** For seed triggers and preheat: fetch the task fully (no client access check beyond the origin stat). */
  async obtain(url: string, headers: Record<string, string>, o: TaskIdOptions): Promise<{ entry: TaskEntry; download: Promise<void> }> {
    const p = await this.prepare(url, headers, o, { verifyAccess: false });
    if (p.kind === 'denied') throw new FerryError(p.stat.status === 401 ? 'UNAUTHENTICATED' : p.stat.status === 403 ? 'PERMISSION_DENIED' : p.stat.status === 404 ? 'NOT_FOUND' : 'UNAVAILABLE', `origin answered ${p.stat.status} for ${url}`);
    const download = this.download(p.entry, url, headers);
    download.catch(() => undefined);
    return { entry: p.entry, download };
  }
}
