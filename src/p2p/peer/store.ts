/**
 * @module p2p/peer/store
 * Piece store: one sparse file per task (`tasks/<id[0:3]>/<id>.data`) written at piece offsets,
 * plus a JSON metadata file (piece digests, lengths, origin response headers, timestamps).
 * Readers wait on in-flight pieces, so a task is served (to clients and child peers) while it
 * downloads. A disk quota evicts finished, idle tasks in LRU order and reports each eviction.
 * Range tasks are ordinary tasks here (their content is the range), so quota, TTL and eviction
 * count their range length. Every piece read from disk is checked against the crc32 recorded when
 * it was stored: a piece altered on disk is dropped (the task is no longer complete; its metadata
 * says so, so a restart discards it) and the read fails with DATA_LOSS, so it is refetched, never
 * served.
 *
 * A small one-piece task (a lazy loader's range read: `memoryBelow`, 4 MiB by default) touches no
 * file while it downloads: its piece is kept in memory, readers and children are served from
 * there, and once the task is complete its data file and then its metadata are written in the
 * background, one `writeFile` each (`flush`), off the path of the read that created it. What a
 * crash loses is at most that cache entry: an unflushed task is simply not on disk, and metadata
 * written in place (no temporary file and rename) that a crash cut short is not valid JSON, so
 * `open` discards the task; the data file is written before the metadata that claims it, and
 * every piece read from disk is checked against its crc32 — a wrong byte is never served.
 */
import { mkdir, open, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { FerryError } from '../../core/index.js';
import { type Logger, silentLogger } from '../../observe/index.js';
import { pieceCount, type TaskIdOptions } from '../common/index.js';
import { PieceCache, TaskEntry, type TaskMeta } from './task.js';

export { PieceCache, TaskEntry, type TaskMeta } from './task.js';

/** Most bytes of memory tasks not yet written to disk; new small tasks beyond it write as they go. */
const MEMORY_TASKS_MAX = 64 * 1024 * 1024;

export interface CreateTask {
  taskId: string;
  url: string;
  idOptions: TaskIdOptions;
  contentLength: number;
  pieceLength: number;
  responseHeaders: Record<string, string>;
  expectedDigest?: string | undefined;
  range?: TaskMeta['range'];
}

export class PieceStore {
  private readonly tasks = new Map<string, TaskEntry>();
  private readonly cache: PieceCache;
  /** bytes of task data the quota or the TTL evicted so far (the node-store metrics' `evictedBytes`) */
  evictedBytes = 0;

  constructor(
    readonly dir: string,
    private readonly opts: {
      quota: number;
      keep: boolean;
      taskTTL: number;
      memoryCache?: number;
      onEvict?: (taskId: string) => void;
      log?: Logger;
      /** A piece altered on disk was found (and dropped). */
      onCorrupt?: (taskId: string, piece: number) => void;
      /** One-piece tasks up to this many bytes are memory tasks (see the module comment); 0 (default) = none. */
      memoryBelow?: number;
    },
  ) {
    this.cache = new PieceCache(opts.memoryCache ?? 64 * 1024 * 1024);
  }

  private get log(): Logger {
    return this.opts.log ?? silentLogger();
  }

  private paths(id: string): { dir: string; data: string; meta: string } {
    if (!/^[a-f0-9]{64}$/.test(id)) throw new FerryError('INVALID_ARGUMENT', `invalid task id ${JSON.stringify(id)}`);
    const d = join(this.dir, 'tasks', id.slice(0, 3));
    return { dir: d, data: join(d, `${id}.data`), meta: join(d, `${id}.json`) };
  }

  /** Loads finished tasks kept from a previous run; drops unfinished ones. */
  async open(): Promise<void> {
    await mkdir(join(this.dir, 'tasks'), { recursive: true });
    if (!this.opts.keep) {
      await rm(join(this.dir, 'tasks'), { recursive: true, force: true });
      await mkdir(join(this.dir, 'tasks'), { recursive: true });
      return;
    }
    for (const pre of await readdir(join(this.dir, 'tasks'))) {
      const d = join(this.dir, 'tasks', pre);
      for (const f of await readdir(d).catch(() => [] as string[])) {
        if (!f.endsWith('.json')) continue;
        const id = f.slice(0, -5);
        try {
          const meta = JSON.parse(await readFile(join(d, f), 'utf8')) as TaskMeta;
          if (!meta.done || meta.taskId !== id) throw new Error('unfinished');
          const p = this.paths(id);
          this.tasks.set(id, this.entry(meta, p.data, p.meta));
        } catch {
          await rm(join(d, f), { force: true });
          await rm(join(d, `${id}.data`), { force: true });
        }
      }
      for (const f of await readdir(d).catch(() => [] as string[])) {
        // data of no kept task, and the `.json.tmp` files older versions wrote metadata through
        const orphan = f.endsWith('.data') ? !this.tasks.has(f.slice(0, -5)) : f.endsWith('.json.tmp');
        if (orphan) await rm(join(d, f), { force: true });
      }
    }
    this.log.info({ tasks: this.tasks.size, bytes: this.usage() }, 'piece store opened');
  }

  get(id: string): TaskEntry | undefined {
    const t = this.tasks.get(id);
    if (t) t.meta.updatedAt = Date.now();
    return t;
  }

  list(): TaskEntry[] {
    return [...this.tasks.values()];
  }

  usage(): number {
    let n = 0;
    for (const t of this.tasks.values()) n += t.meta.contentLength;
    return n;
  }

  /** The node store view (observe/node-store): the same names as the daemon's cache, `store="peer"`. */
  usedBytes(): number {
    return this.usage();
  }

  /** Disk quota for task data (0: none). */
  get quota(): number {
    return this.opts.quota;
  }

  /** Set when close() starts (no new tasks) and when it is done (no more writes at all). */
  private closing = false;
  private closed = false;
  /** File writes in flight (creates, metadata), awaited by close() so none lands after it. */
  private readonly writes = new Set<Promise<unknown>>();

  private track<T>(p: Promise<T>): Promise<T> {
    this.writes.add(p);
    const drop = (): void => {
      this.writes.delete(p);
    };
    p.then(drop, drop);
    return p;
  }

  create(c: CreateTask): Promise<TaskEntry> {
    if (this.closing) return Promise.reject(new FerryError('CANCELED', 'piece store closed'));
    return this.track(this.createTask(c));
  }

  private async createTask(c: CreateTask): Promise<TaskEntry> {
    const existing = this.tasks.get(c.taskId);
    if (existing) return existing;
    // A deletion of the same task still removing its files would remove the new ones: wait for it.
    await this.deleting.get(c.taskId)?.catch(() => undefined);
    const again = this.tasks.get(c.taskId);
    if (again) return again;
    await this.ensureSpace(c.contentLength);
    const p = this.paths(c.taskId);
    if (this.memoryTask(c)) {
      const t = this.entry(this.newMeta(c), p.data, p.meta);
      t.mem = new Map();
      this.memBytes += c.contentLength;
      this.tasks.set(c.taskId, t);
      return t;
    }
    // A lazy loader creates a range task per read: no mkdir for a directory made before, and the
    // handle opened here is the one the task writes its pieces through (no close and reopen).
    if (!this.madeDirs.has(p.dir)) {
      await mkdir(p.dir, { recursive: true });
      this.madeDirs.add(p.dir);
    }
    const fh = await open(p.data, 'w+');
    try {
      await fh.truncate(c.contentLength); // sparse
    } catch (err) {
      await fh.close().catch(() => undefined);
      throw err;
    }
    const t = this.entry(this.newMeta(c), p.data, p.meta);
    t.adopt(fh);
    this.tasks.set(c.taskId, t);
    return t;
  }

  /** Bytes of memory tasks not yet written to disk. */
  private memBytes = 0;

  /** A one-piece task small enough, while unflushed memory tasks stay under MEMORY_TASKS_MAX. */
  private memoryTask(c: CreateTask): boolean {
    const below = this.opts.memoryBelow ?? 0;
    return (
      c.contentLength > 0 &&
      c.contentLength <= below &&
      c.contentLength <= c.pieceLength &&
      this.memBytes + c.contentLength <= MEMORY_TASKS_MAX
    );
  }

  private newMeta(c: CreateTask): TaskMeta {
    const now = Date.now();
    return {
      taskId: c.taskId,
      url: c.url,
      idOptions: c.idOptions,
      contentLength: c.contentLength,
      pieceLength: c.pieceLength,
      pieceCount: pieceCount(c.contentLength, c.pieceLength),
      pieces: {},
      done: c.contentLength === 0,
      responseHeaders: c.responseHeaders,
      expectedDigest: c.expectedDigest,
      range: c.range,
      createdAt: now,
      updatedAt: now,
    };
  }

  /** Task directories known to exist (they are never removed while the store runs). */
  private readonly madeDirs = new Set<string>();

  private entry(meta: TaskMeta, data: string, metaPath: string): TaskEntry {
    return new TaskEntry(meta, data, metaPath, this.cache, (t, n, got) => {
      this.log.warn({ taskId: t.id, piece: n, recorded: t.meta.pieces[n], got }, 'piece altered on disk: dropped, it will be refetched');
      this.opts.onCorrupt?.(t.id, n);
      // The metadata no longer claims a complete task: a restart discards it.
      if (!this.closed && this.tasks.get(t.id) === t) void this.track(this.writeMeta(t)).catch(() => undefined);
    });
  }

  markDone(t: TaskEntry): Promise<void> {
    // a download that was running when close() started may still finish its task
    if (this.closed) return Promise.reject(new FerryError('CANCELED', 'piece store closed'));
    return this.track(this.writeDone(t));
  }

  private async writeDone(t: TaskEntry): Promise<void> {
    t.meta.done = true;
    t.meta.updatedAt = Date.now();
    if (!t.mem) return this.writeMeta(t);
    // a memory task: its files are written in the background (see flush)
    if (!t.flushing) {
      const f = this.flush(t).finally(() => {
        t.flushing = undefined;
      });
      t.flushing = f;
      void this.track(f).catch((err: unknown) =>
        this.log.warn({ taskId: t.id, err: (err as Error).message }, 'writing a task to disk failed'),
      );
    }
  }

  /**
   * Writes a complete memory task to disk: its data file in one write, then its metadata; its
   * pieces then stay in the memory cache only. A task deleted meanwhile is not written; a failed
   * write drops the task (it is refetched when asked for again), never leaves it half on disk.
   */
  private async flush(t: TaskEntry): Promise<void> {
    const pieces = t.mem;
    if (!pieces) return;
    try {
      const dir = dirname(t.dataPath);
      if (!this.madeDirs.has(dir)) {
        await mkdir(dir, { recursive: true });
        this.madeDirs.add(dir);
      }
      if (this.tasks.get(t.id) !== t || !t.complete) return;
      const bufs = [...pieces.keys()].sort((a, b) => a - b).map((n) => pieces.get(n)!);
      await writeFile(t.dataPath, bufs.length === 1 ? bufs[0]! : Buffer.concat(bufs));
      if (this.tasks.get(t.id) !== t) return;
      await this.writeMeta(t);
      for (const [n, b] of pieces) this.cache.set(`${t.id}:${n}`, b);
      t.mem = undefined;
      this.memBytes -= t.meta.contentLength;
    } catch (err) {
      if (this.tasks.get(t.id) === t) {
        this.tasks.delete(t.id);
        this.cache.dropTask(t.id);
        if (t.mem) this.memBytes -= t.meta.contentLength;
        t.mem = undefined;
        await rm(t.metaPath, { force: true }).catch(() => undefined);
        await rm(t.dataPath, { force: true }).catch(() => undefined);
      }
      throw err;
    }
  }

  /** Metadata writes per task, one after the other. */
  private readonly metaWrites = new WeakMap<TaskEntry, Promise<void>>();

  /**
   * Writes a task's metadata in place: a write a crash cut short is not valid JSON (the file's
   * last byte closes the object), so `open` discards that task — a cache entry lost, not a wrong
   * byte (its pieces are crc32-checked on every read anyway).
   */
  private writeMeta(t: TaskEntry): Promise<void> {
    const write = (): Promise<void> => writeFile(t.metaPath, JSON.stringify(t.meta));
    const p = (this.metaWrites.get(t) ?? Promise.resolve()).catch(() => undefined).then(write);
    this.metaWrites.set(t, p);
    return p;
  }

  /** Deletions whose files are still being removed, by task id (see `create`). */
  private readonly deleting = new Map<string, Promise<void>>();

  async delete(id: string): Promise<void> {
    const t = this.tasks.get(id);
    this.tasks.delete(id);
    this.cache.dropTask(id);
    const p = this.paths(id);
    const prev = this.deleting.get(id) ?? Promise.resolve();
    const done = prev
      .catch(() => undefined)
      .then(async () => {
        // a memory task being written waits for that write, then its files go too
        await t?.flushing?.catch(() => undefined);
        if (t?.mem) {
          this.memBytes -= t.meta.contentLength;
          t.mem = undefined;
        }
        await t?.close();
        await rm(p.meta, { force: true });
        await rm(p.data, { force: true });
      });
    this.deleting.set(id, done);
    try {
      await done;
    } finally {
      if (this.deleting.get(id) === done) this.deleting.delete(id);
    }
  }

  /** Evicts finished idle tasks (least recently used first) until `bytes` more fit in the quota. */
  async ensureSpace(bytes: number): Promise<void> {
    const quota = this.opts.quota;
    if (!quota) return;
    if (bytes > quota) throw new FerryError('RESOURCE_EXHAUSTED', `task of ${bytes} bytes exceeds the disk quota of ${quota} bytes`);
    const victims = [...this.tasks.values()]
      .filter((t) => t.meta.done && t.refs === 0 && !t.downloading)
      .sort((a, b) => a.meta.updatedAt - b.meta.updatedAt);
    while (this.usage() + bytes > quota) {
      const v = victims.shift();
      if (!v) throw new FerryError('RESOURCE_EXHAUSTED', `disk quota ${quota} bytes full of tasks in use`);
      this.log.info({ taskId: v.id, bytes: v.meta.contentLength }, 'evicting task (quota)');
      await this.delete(v.id);
      this.evictedBytes += v.meta.contentLength;
      this.opts.onEvict?.(v.id);
    }
  }

  /** Deletes finished tasks idle longer than the TTL. */
  async expire(now = Date.now()): Promise<void> {
    for (const t of [...this.tasks.values()]) {
      if (t.meta.done && t.refs === 0 && !t.downloading && now - t.meta.updatedAt > this.opts.taskTTL) {
        await this.delete(t.id);
        this.evictedBytes += t.meta.contentLength;
        this.opts.onEvict?.(t.id);
      }
    }
  }

  /**
   * Waits for running downloads (the caller aborts them first), deletions and file writes, then
   * closes every task's file: when it resolves nothing writes under the store's directory any more.
   */
  async close(): Promise<void> {
    this.closing = true;
    const busy = [...this.tasks.values()].map((t) => t.downloading);
    await Promise.allSettled([...busy, ...this.deleting.values(), ...this.writes]);
    // A download that was creating its task when close began has its entry only now.
    await Promise.allSettled([...this.tasks.values()].map((t) => t.downloading));
    await Promise.allSettled([...this.writes]);
    this.closed = true;
    for (const t of this.tasks.values()) await t.close();
  }
}
