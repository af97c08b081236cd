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
 */
import { EventEmitter } from 'node:events';
import { mkdir, open, readdir, readFile, rename, rm, writeFile, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { FerryError } from '../../core/index.js';
import { type Logger, silentLogger } from '../../observe/index.js';
import { pieceCount, pieceDigest, pieceRange } from '../common/index.js';
import type { TaskIdOptions } from '../common/index.js';

export interface TaskMeta {
  taskId: string;
  url: string;
  idOptions: TaskIdOptions;
  contentLength: number;
  pieceLength: number;
  pieceCount: number;
  /** piece number → `crc32:<u32>` */
  pieces: Record<string, string>;
  done: boolean;
  responseHeaders: Record<string, string>;
  expectedDigest?: string | undefined;
  /**
   * A range task: its content is origin bytes [start, end] of an object of `total` bytes (byte 0
   * of the task = byte `start` of the origin). Absent for whole-object tasks.
   */
  range?: { start: number; end: number; total: number } | undefined;
  createdAt: number;
  updatedAt: number;
}

/** Byte-bounded LRU of recently written/read pieces, shared by a store's tasks (uploads to many children read each piece once). */
export class PieceCache {
  private readonly map = new Map<string, Buffer>();
  private bytes = 0;
  constructor(readonly capacity: number) {}
  get(key: string): Buffer | undefined {
    const b = this.map.get(key);
    if (b) {
      this.map.delete(key);
      this.map.set(key, b);
    }
    return b;
  }
  set(key: string, buf: Buffer): void {
    if (buf.length > this.capacity) return;
    const old = this.map.get(key);
    if (old) {
      this.bytes -= old.length;
      this.map.delete(key);
    }
    this.map.set(key, buf);
    this.bytes += buf.length;
    for (const [k, v] of this.map) {
      if (this.bytes <= this.capacity) break;
      this.map.delete(k);
      this.bytes -= v.length;
    }
  }
  dropTask(taskId: string): void {
    for (const [k, v] of this.map)
      if (k.startsWith(`${taskId}:`)) {
        this.map.delete(k);
        this.bytes -= v.length;
      }
  }
}

export class TaskEntry {
  private readonly ev = new EventEmitter();
  /** Set while a download runs for this task on this peer. */
  downloading: Promise<void> | undefined;
  /** The last download attempt's error; readers waiting on missing pieces get it. */
  error: FerryError | undefined;
  /** Readers/uploads currently using the data (eviction skips tasks in use). */
  refs = 0;
  private fh: Promise<FileHandle> | undefined;
  private done = 0;

  constructor(
    readonly meta: TaskMeta,
    readonly dataPath: string,
    readonly metaPath: string,
    private readonly cache?: PieceCache,
    /** Called after a piece read from disk failed its crc32 check and was dropped. */
    private readonly onCorrupt?: (t: TaskEntry, n: number, got: string) => void,
  ) {
    this.ev.setMaxListeners(0);
    this.done = Object.keys(meta.pieces).length;
  }

  /** Pieces some reader asked for; undefined = all. */
  private wanted: Set<number> | undefined = new Set();

  get id(): string {
    return this.meta.taskId;
  }

  /** Adds pieces to the wanted set (undefined = the whole task). */
  want(pieces?: number[]): void {
    if (!pieces) {
      this.wanted = undefined;
      return;
    }
    if (this.wanted) for (const n of pieces) this.wanted.add(n);
  }

  missingWanted(): number[] {
    const out: number[] = [];
    if (!this.wanted) {
      for (let n = 0; n < this.meta.pieceCount; n++) if (!this.has(n)) out.push(n);
    } else for (const n of [...this.wanted].sort((a, b) => a - b)) if (!this.has(n)) out.push(n);
    return out;
  }
  get finishedCount(): number {
    return this.done;
  }
  get complete(): boolean {
    return this.done === this.meta.pieceCount;
  }
  has(n: number): boolean {
    return this.meta.pieces[n] !== undefined;
  }
  digestOf(n: number): string | undefined {
    return this.meta.pieces[n];
  }
  range(n: number): { offset: number; length: number } {
    return pieceRange(n, this.meta.contentLength, this.meta.pieceLength);
  }

  private closed = false;

  handle(): Promise<FileHandle> {
    if (this.closed) return Promise.reject(new FerryError('CANCELED', `task ${this.id} closed`));
    if (!this.fh) {
      this.fh = open(this.dataPath, 'r+');
      this.fh.catch(() => {
        this.fh = undefined;
      });
    }
    return this.fh;
  }

  async writePiece(n: number, buf: Buffer, digest: string): Promise<void> {
    const r = this.range(n);
    if (buf.length !== r.length) throw new FerryError('DATA_LOSS', `piece ${n}: got ${buf.length} bytes, want ${r.length}`);
    if (this.has(n)) return;
    const fh = await this.handle();
    let off = 0;
    while (off < buf.length) {
      const { bytesWritten } = await fh.write(buf, off, buf.length - off, r.offset + off);
      off += bytesWritten;
    }
    this.meta.pieces[n] = digest;
    this.cache?.set(`${this.id}:${n}`, buf);
    this.done++;
    this.meta.updatedAt = Date.now();
    this.error = undefined;
    this.ev.emit('piece', n);
  }

  /**
   * Piece n, checked: from the memory cache (filled with checked bytes), else from disk against
   * the recorded crc32. A mismatch drops the piece and throws DATA_LOSS.
   */
  async readPiece(n: number): Promise<Buffer> {
    const want = this.meta.pieces[n];
    if (want === undefined) throw new FerryError('NOT_FOUND', `piece ${n} of task ${this.id} not present`);
    const hit = this.cache?.get(`${this.id}:${n}`);
    if (hit) return hit;
    const buf = await this.readBytes(this.range(n).offset, this.range(n).length);
    const got = pieceDigest(buf);
    if (got !== want) {
      // Only if the piece is still the one checked (not dropped and rewritten meanwhile).
      if (this.meta.pieces[n] === want) this.dropPiece(n, got);
      throw new FerryError(
        'DATA_LOSS',
        `task ${this.id} piece ${n}: stored bytes have digest ${got}, recorded ${want} (altered on disk); dropped`,
      );
    }
    this.cache?.set(`${this.id}:${n}`, buf);
    return buf;
  }

  /** Bytes [offset, offset+length) of the content, read through checked pieces. */
  async readRange(offset: number, length: number): Promise<Buffer> {
    const out = Buffer.allocUnsafe(length);
    let at = 0;
    while (at < length) {
      const n = Math.floor((offset + at) / this.meta.pieceLength);
      const r = this.range(n);
      const piece = await this.readPiece(n);
      const from = offset + at - r.offset;
      const k = piece.copy(out, at, from, Math.min(r.length, from + length - at));
      at += k;
    }
    return out;
  }

  private dropPiece(n: number, got: string): void {
    delete this.meta.pieces[n];
    this.done--;
    this.meta.done = false;
    this.cache?.dropTask(this.id);
    this.onCorrupt?.(this, n, got);
  }

  /** Raw bytes from the data file, unchecked (readPiece / readRange check them). */
  async readBytes(offset: number, length: number): Promise<Buffer> {
    const fh = await this.handle();
    const buf = Buffer.allocUnsafe(length);
    let got = 0;
    while (got < length) {
      const { bytesRead } = await fh.read(buf, got, length - got, offset + got);
      if (bytesRead === 0) throw new FerryError('DATA_LOSS', `task ${this.id}: short read at ${offset + got}`);
      got += bytesRead;
    }
    return buf;
  }

  /** Resolves when piece n is present; rejects when the download fails or the signal aborts. */
  waitPiece(n: number, signal?: AbortSignal): Promise<void> {
    if (this.has(n)) return Promise.resolve();
    if (this.error && !this.downloading) return Promise.reject(this.error);
    return new Promise((resolve, reject) => {
      const cleanup = (): void => {
        this.ev.off('piece', onPiece);
        this.ev.off('failed', onFail);
        signal?.removeEventListener('abort', onAbort);
      };
      const onPiece = (m: number): void => {
        if (m === n) {
          cleanup();
          resolve();
        }
      };
      const onFail = (err: FerryError): void => {
        cleanup();
        reject(err);
      };
      const onAbort = (): void => {
        cleanup();
        reject(new FerryError('CANCELED', 'reader went away'));
      };
      this.ev.on('piece', onPiece);
      this.ev.on('failed', onFail);
      signal?.addEventListener('abort', onAbort, { once: true });
    });
  }

  /** Resolves when more than `have` pieces are present, the task failed/stopped, or after `ms`. */
  waitProgress(have: number, ms: number, signal?: AbortSignal): Promise<void> {
    if (this.done > have || this.complete || !this.downloading) return Promise.resolve();
    return new Promise((resolve) => {
      const t = setTimeout(finish, ms);
      function finish(this: void): void {
        clearTimeout(t);
        off();
        resolve();
      }
      const off = (): void => {
        this.ev.off('piece', finish);
        this.ev.off('failed', finish);
        this.ev.off('stopped', finish);
        signal?.removeEventListener('abort', finish);
      };
      this.ev.on('piece', finish);
      this.ev.on('failed', finish);
      this.ev.on('stopped', finish);
      signal?.addEventListener('abort', finish, { once: true });
    });
  }

  fail(err: FerryError): void {
    this.error = err;
    this.ev.emit('failed', err);
  }

  stopped(): void {
    this.ev.emit('stopped');
  }

  /** Forgets every piece (after a whole-blob digest mismatch). */
  reset(): void {
    this.cache?.dropTask(this.id);
    this.wanted = undefined;
    this.meta.pieces = {};
    this.done = 0;
    this.meta.done = false;
  }

  /** The data file's handle, already open read-write (the store just created the file). */
  adopt(fh: FileHandle): void {
    if (this.fh || this.closed) void fh.close().catch(() => undefined);
    else this.fh = Promise.resolve(fh);
  }

  async close(): Promise<void> {
    this.closed = true;
    const fh = this.fh;
    this.fh = undefined;
    if (fh) await fh.then((h) => h.close()).catch(() => undefined);
  }
}

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
        if (f.endsWith('.data') && !this.tasks.has(f.slice(0, -5))) await rm(join(d, f), { force: true });
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
    const now = Date.now();
    const meta: TaskMeta = {
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
    const t = this.entry(meta, p.data, p.meta);
    t.adopt(fh);
    this.tasks.set(c.taskId, t);
    return t;
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
    await this.writeMeta(t);
  }

  /** Metadata writes per task, one after the other (they share the .tmp file). */
  private readonly metaWrites = new WeakMap<TaskEntry, Promise<void>>();

  private writeMeta(t: TaskEntry): Promise<void> {
    const write = async (): Promise<void> => {
      const tmp = `${t.metaPath}.tmp`;
      await writeFile(tmp, JSON.stringify(t.meta));
      await rename(tmp, t.metaPath);
    };
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
