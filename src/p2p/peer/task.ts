/**
 * @module p2p/peer/task
 * One task of the piece store (p2p/peer/store): its metadata, its pieces — in its sparse data file,
 * or for a memory task in memory until the store writes it out — checked reads, and the waits of
 * readers and children on pieces still downloading; plus the byte-bounded piece cache the store's
 * tasks share.
 */
import { EventEmitter } from 'node:events';
import { open, type FileHandle } from 'node:fs/promises';
import { FerryError } from '../../core/index.js';
import { pieceDigest, pieceRange } from '../common/index.js';
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
  /**
   * A memory task's pieces until its data file is written (`PieceStore.flush`); undefined for a
   * task whose pieces go to its data file as they arrive.
   */
  mem: Map<number, Buffer> | undefined;
  /** The background write of a memory task's files, while it runs (a deletion waits for it). */
  flushing: Promise<void> | undefined;

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
    if (this.mem) {
      this.mem.set(n, buf);
      this.recorded(n, buf, digest);
      return;
    }
    const fh = await this.handle();
    let off = 0;
    while (off < buf.length) {
      const { bytesWritten } = await fh.write(buf, off, buf.length - off, r.offset + off);
      off += bytesWritten;
    }
    this.recorded(n, buf, digest);
  }

  private recorded(n: number, buf: Buffer, digest: string): void {
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
    const hit = this.mem?.get(n) ?? this.cache?.get(`${this.id}:${n}`);
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
    this.mem?.clear();
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
