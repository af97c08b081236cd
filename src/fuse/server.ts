/**
 * @module fuse/server
 * (Over 600 lines: the FUSE opcode table and its reply encoders belong to one session loop.)
 * A read-only FUSE server speaking the kernel protocol directly over /dev/fuse.
 *
 * The session opens /dev/fuse, mounts it with `mount -i -t fuse -o fd=3,…` (the descriptor is the
 * child's fd 3), and reads requests in several worker threads (blocking read(2) there keeps libuv's
 * pool free for the filesystem's own I/O). Requests are dispatched on the main thread to a
 * `FuseFilesystem`; many can be outstanding at once (ASYNC_READ, PARALLEL_DIROPS). Replies go back
 * with one writev(2) each. Entries and attributes are given long timeouts and files are opened
 * with FOPEN_KEEP_CACHE, so once the kernel holds a page or a dentry it never asks again: warm
 * reads do not come back to userspace.
 */
import { openSync, closeSync, writevSync, existsSync, writeFileSync } from 'node:fs';
import { Worker } from 'node:worker_threads';
import { resolve } from 'node:path';
import { FerryError } from '../core/index.js';
import { silentLogger, type Logger } from '../observe/index.js';
import {
  Op,
  OP_NAMES,
  InitFlag,
  FUSE_KERNEL_VERSION,
  FUSE_KERNEL_MINOR_VERSION,
  FUSE_ROOT_ID,
  IN_HEADER_SIZE,
  OUT_HEADER_SIZE,
  FOPEN_KEEP_CACHE,
  FOPEN_DIRECT_IO,
  FOPEN_CACHE_DIR,
  parseInHeader,
  outHeader,
  entryOut,
  attrOut,
  dtype,
  direntSize,
  writeDirent,
  statfsOut,
  ENTRY_OUT_SIZE,
  type FuseAttr,
  type InHeader,
  type StatfsInfo,
} from './protocol.js';
import { E, FuseErrno, errnoOf } from './errno.js';
import { clearStaleMounts, mountsAt, run, unmount } from './mounts.js';

export interface FuseDirEntry {
  name: string;
  nodeid: number;
  /** full st_mode of the entry */
  mode: number;
}

export interface FuseOpenResult {
  fh?: number;
  /** default true: keep the page cache across opens */
  keepCache?: boolean;
  directIo?: boolean;
}

/** What a filesystem implements. Node ids are the FUSE ones: FUSE_ROOT_ID (1) is the root. */
export interface FuseFilesystem {
  lookup(parent: number, name: string): Promise<{ nodeid: number; attr: FuseAttr } | null>;
  getattr(nodeid: number): Promise<FuseAttr>;
  /** Directory entries without `.` and `..`. */
  readdir(nodeid: number): Promise<FuseDirEntry[]>;
  open?(nodeid: number, flags: number): Promise<FuseOpenResult>;
  read(nodeid: number, fh: number, offset: number, size: number, signal: AbortSignal): Promise<Buffer | Buffer[]>;
  release?(nodeid: number, fh: number): Promise<void>;
  readlink?(nodeid: number): Promise<Buffer>;
  getxattr?(nodeid: number, name: string): Promise<Buffer | null>;
  listxattr?(nodeid: number): Promise<string[]>;
  statfs?(): Promise<StatfsInfo>;
}

export interface FuseSessionOptions {
  mountpoint: string;
  fs: FuseFilesystem;
  log?: Logger;
  /** fsname shown in the mount table */
  source?: string;
  subtype?: string;
  /** number of request-reader threads (outstanding requests the kernel can hand us at once) */
  readers?: number;
  /** entry/attr cache timeout in seconds (default one year: the tree is immutable) */
  timeout?: number;
  /** max_pages: largest READ in 4 KiB pages (default 256 = 1 MiB) */
  maxPages?: number;
  allowOther?: boolean;
  /**
   * Zero-message open (default true): OPEN/OPENDIR/FLUSH are answered ENOSYS once with
   * NO_OPEN(DIR)_SUPPORT negotiated, so the kernel stops sending them (and RELEASE) and keeps the
   * page cache across opens — a warm `open+read+close` never reaches userspace. `fs.open` is then
   * not called.
   */
  zeroMessageOpen?: boolean;
  /** bdi read-ahead in KiB set after mounting (default 1024; the kernel default is 128) */
  readaheadKb?: number;
  /**
   * Optional fast path run inside the reader threads: `module` (a URL) exports
   * `init(data) → (opcode, nodeid, body) => { parts, hits? } | null`. Whatever it answers never
   * reaches the main thread; null sends the request on as usual. `data` must be cloneable.
   */
  fastPath?: { module: string; data: unknown };
  /** called with the number of cache hits the fast path reported, as they are reported */
  onFastHits?: (hits: number) => void;
}

export interface FuseStats {
  requests: Record<string, number>;
  /** requests answered by the fast path in the reader threads */
  fastRequests: number;
  readBytes: number;
  errors: number;
}

const BUFFER_SIZE = 1024 * 1024 + 64 * 1024;
const ONE_YEAR = 365 * 24 * 3600;

interface DirHandle {
  nodeid: number;
  entries: Promise<FuseDirEntry[]> | null;
}

/**
 * Reader threads booted ahead of any mount (see `FuseSession.prewarm`): a mount takes its readers
 * from here instead of waiting for new threads to load their modules — on a busy 2-core machine
 * that wait was ~0.1 s of every cold container start. Idle threads do not keep the process alive.
 */
const warmPool: { size: number; preload: string[]; idle: Worker[] } = { size: 0, preload: [], idle: [] };

function refillWarmPool(): void {
  while (warmPool.idle.length < warmPool.size) {
    const w = new Worker(new URL('./reader-worker.js', import.meta.url), { workerData: { preload: warmPool.preload } });
    w.unref();
    w.on('error', () => {
      const i = warmPool.idle.indexOf(w);
      if (i >= 0) warmPool.idle.splice(i, 1);
    });
    warmPool.idle.push(w);
  }
}

/** One mounted FUSE filesystem. Create with `FuseSession.mount(opts)`. */
export class FuseSession {
  /**
   * Keeps `threads` reader threads booted (with the fast-path `modules` loaded) for the next
   * mounts; refilled in the background after each mount. 0 stops keeping any.
   */
  static prewarm(threads: number, modules: string[] = []): void {
    warmPool.size = Math.max(0, threads);
    warmPool.preload = modules;
    for (const w of warmPool.idle.splice(warmPool.size)) void w.terminate();
    refillWarmPool();
  }

  readonly mountpoint: string;
  readonly stats: FuseStats = { requests: {}, fastRequests: 0, readBytes: 0, errors: 0 };
  private readonly fs: FuseFilesystem;
  private readonly log: Logger;
  private readonly timeout: number;
  private readonly maxPages: number;
  private fd = -1;
  private workers: Worker[] = [];
  private liveWorkers = 0;
  private readonly dirs = new Map<number, DirHandle>();
  private nextDirFh = 1;
  private readonly pending = new Map<bigint, AbortController>();
  private initResolve!: () => void;
  private initReject!: (e: Error) => void;
  private readonly initDone: Promise<void>;
  private closedResolve!: () => void;
  /** Resolves when the kernel connection is gone (unmounted or aborted). */
  readonly closed: Promise<void>;
  private connMinor = -1;
  private proto = { minor: FUSE_KERNEL_MINOR_VERSION };
  private readonly zeroOpen: boolean;
  private readonly readaheadKb: number;
  private readonly fastPath: { module: string; data: unknown } | undefined;
  private readonly onFastHits: ((hits: number) => void) | undefined;
  /** directory listings by node id (the tree is static), bounded */
  private readonly dirCache = new Map<number, Promise<FuseDirEntry[]>>();

  private constructor(opts: FuseSessionOptions) {
    this.mountpoint = resolve(opts.mountpoint);
    this.fs = opts.fs;
    this.log = (opts.log ?? silentLogger()).child({ component: 'fuse', mountpoint: this.mountpoint });
    this.timeout = opts.timeout ?? ONE_YEAR;
    this.maxPages = opts.maxPages ?? 256;
    this.zeroOpen = opts.zeroMessageOpen ?? true;
    this.readaheadKb = opts.readaheadKb ?? 1024;
    this.fastPath = opts.fastPath;
    this.onFastHits = opts.onFastHits;
    this.initDone = new Promise((res, rej) => {
      this.initResolve = res;
      this.initReject = rej;
    });
    this.initDone.catch(() => undefined);
    this.closed = new Promise((res) => {
      this.closedResolve = res;
    });
  }

  /** Clears a stale mount at the path, mounts, and resolves once FUSE_INIT was answered. */
  static async mount(opts: FuseSessionOptions): Promise<FuseSession> {
    const s = new FuseSession(opts);
    await s.start(opts);
    return s;
  }

  private async start(opts: FuseSessionOptions): Promise<void> {
    const removed = await clearStaleMounts(this.mountpoint);
    if (removed) this.log.warn({ removed }, 'cleared stale mount');
    if (!existsSync('/dev/fuse')) throw new FerryError('FAILED_PRECONDITION', '/dev/fuse is missing (kernel FUSE not available)');
    this.fd = openSync('/dev/fuse', 'r+');
    const o = [
      'fd=3',
      'rootmode=40000',
      'user_id=0',
      'group_id=0',
      'default_permissions',
      'ro',
      ...(opts.allowOther === false ? [] : ['allow_other']),
      ...(opts.subtype ? [`subtype=${opts.subtype}`] : []),
    ].join(',');
    const r = await run('mount', ['-i', '-t', 'fuse', '-o', o, opts.source ?? 'ferry', this.mountpoint], {
      stdio3: this.fd,
      timeoutMs: 30_000,
    });
    if (r.code !== 0) {
      closeSync(this.fd);
      this.fd = -1;
      throw new FerryError('INTERNAL', `mount fuse at ${this.mountpoint} failed: ${r.stderr.trim() || `exit ${r.code}`}`);
    }
    // Never stat the mount point here: until FUSE_INIT is answered that would block forever.
    const dev = mountsAt(this.mountpoint).at(-1)?.dev;
    if (dev) this.connMinor = Number(dev.split(':')[1]);
    const n = Math.max(1, opts.readers ?? 4);
    // One reader answers FUSE_INIT; the others boot after it, so the mount does not wait for n
    // threads loading their modules at once on a busy machine.
    this.startWorker({ initFirst: true });
    const t = setTimeout(() => this.initReject(new FerryError('DEADLINE_EXCEEDED', 'no FUSE_INIT from the kernel within 10s')), 10_000);
    try {
      await this.initDone;
    } catch (err) {
      await this.unmount().catch(() => undefined);
      throw err;
    } finally {
      clearTimeout(t);
    }
    for (let i = 1; i < n; i++) this.startWorker({ initFirst: false });
    if (this.connMinor >= 0 && this.readaheadKb >= 0) {
      try {
        writeFileSync(`/sys/class/bdi/0:${this.connMinor}/read_ahead_kb`, String(this.readaheadKb));
      } catch (err) {
        this.log.debug({ err }, 'could not set read-ahead');
      }
    }
    this.log.info({ readers: n }, 'fuse mounted');
  }

  /** Starts a reader thread; `initFirst`: it answers FUSE_INIT before the others start. */
  private startWorker(opts: { initFirst: boolean }): void {
    const start = { fd: this.fd, bufferSize: BUFFER_SIZE, fastPath: this.fastPath, initFirst: opts.initFirst };
    let w = warmPool.idle.shift();
    if (w) {
      w.ref();
      w.postMessage(start);
      // refill later: booting threads now would compete with the start this mount is for
      setTimeout(refillWarmPool, 3000).unref();
    } else {
      w = new Worker(new URL('./reader-worker.js', import.meta.url), { workerData: start });
    }
    let seenCount = 0;
    let seenHits = 0;
    const fastReport = (m: { fastCount?: number; fastHits?: number }): void => {
      if (m.fastCount === undefined) return;
      this.stats.fastRequests += m.fastCount - seenCount;
      seenCount = m.fastCount;
      const h = (m.fastHits ?? 0) - seenHits;
      seenHits = m.fastHits ?? 0;
      if (h > 0) this.onFastHits?.(h);
    };
    this.liveWorkers++;
    let ended = false;
    const end = (): void => {
      if (ended) return;
      ended = true;
      if (--this.liveWorkers === 0) this.onAllWorkersGone();
    };
    w.on('message', (m: { type: string; data?: Uint8Array; code?: string; message?: string; fastCount?: number; fastHits?: number }) => {
      if (m.type === 'req' && m.data) this.dispatch(Buffer.from(m.data.buffer, m.data.byteOffset, m.data.byteLength));
      else if (m.type === 'fast') fastReport(m);
      else if (m.type === 'fast-error') this.log.warn({ err: m.message }, 'fuse fast path unavailable');
      else if (m.type === 'end') {
        fastReport(m);
        this.log.debug({ code: m.code }, 'reader ended');
        end();
      }
    });
    w.on('error', (err) => {
      this.log.error({ err }, 'fuse reader failed');
      end();
    });
    w.on('exit', end);
    this.workers.push(w);
  }

  private onAllWorkersGone(): void {
    if (this.fd >= 0) {
      try {
        closeSync(this.fd);
      } catch {
        /* already closed */
      }
      this.fd = -1;
    }
    for (const c of this.pending.values()) c.abort();
    this.initReject(new FerryError('UNAVAILABLE', 'fuse connection closed'));
    this.log.info('fuse connection closed');
    this.closedResolve();
  }

  /** Unmounts (lazily if busy) and waits for the connection to end; aborts it after 5 s. */
  async unmount(): Promise<void> {
    if (this.liveWorkers === 0) return;
    try {
      if (mountsAt(this.mountpoint).length > 0) await unmount(this.mountpoint);
    } catch (err) {
      this.log.warn({ err }, 'umount failed, aborting connection');
    }
    let t: NodeJS.Timeout | undefined;
    const timer = new Promise<'timeout'>((res) => {
      t = setTimeout(() => res('timeout'), 5000);
    });
    const r = await Promise.race([this.closed, timer]);
    clearTimeout(t);
    if (r === 'timeout') await this.abort();
  }

  /** Aborts the kernel connection (fusectl), failing every pending and future request. */
  async abort(): Promise<void> {
    if (this.connMinor < 0) return;
    const dir = '/sys/fs/fuse/connections';
    if (!existsSync(`${dir}/${this.connMinor}`)) await run('mount', ['-t', 'fusectl', 'fusectl', dir]).catch(() => undefined);
    try {
      writeFileSync(`${dir}/${this.connMinor}/abort`, '1');
    } catch (err) {
      this.log.warn({ err }, 'fuse abort failed');
    }
    let t: NodeJS.Timeout | undefined;
    await Promise.race([
      this.closed,
      new Promise((res) => {
        t = setTimeout(res, 2000);
      }),
    ]);
    clearTimeout(t);
  }

  // ---- request handling ----------------------------------------------------------------

  private reply(unique: bigint, parts: Buffer[]): void {
    if (this.fd < 0) return;
    let len = OUT_HEADER_SIZE;
    for (const p of parts) len += p.length;
    try {
      writevSync(this.fd, [outHeader(len, 0, unique), ...parts]);
    } catch (err) {
      // ENOENT: the request was interrupted meanwhile; the kernel no longer waits for it.
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') this.log.warn({ err }, 'fuse reply failed');
    }
  }

  private replyError(unique: bigint, errno: number): void {
    if (this.fd < 0) return;
    try {
      writevSync(this.fd, [outHeader(OUT_HEADER_SIZE, -errno, unique)]);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') this.log.warn({ err }, 'fuse reply failed');
    }
  }

  private dispatch(b: Buffer): void {
    const h = parseInHeader(b);
    const name = OP_NAMES[h.opcode] ?? String(h.opcode);
    this.stats.requests[name] = (this.stats.requests[name] ?? 0) + 1;
    const body = b.subarray(IN_HEADER_SIZE, h.len);
    switch (h.opcode) {
      case Op.FORGET:
      case Op.BATCH_FORGET:
        return; // the tree is static: node ids stay valid whatever the lookup count
      case Op.INTERRUPT: {
        this.pending.get(body.readBigUInt64LE(0))?.abort();
        return;
      }
      case Op.INIT:
        this.handleInit(h, body);
        return;
      default:
        break;
    }
    const ac = new AbortController();
    this.pending.set(h.unique, ac);
    this.handle(h, body, ac.signal)
      .then(
        (parts) => {
          if (parts) this.reply(h.unique, parts);
        },
        (err: unknown) => {
          const errno = errnoOf(err);
          if (errno !== E.ENOENT && errno !== E.ENODATA && errno !== E.ENOSYS) {
            this.stats.errors++;
            this.log.warn({ err, op: name, nodeid: h.nodeid }, 'fuse request failed');
          }
          this.replyError(h.unique, errno);
        },
      )
      .finally(() => this.pending.delete(h.unique));
  }

  private handleInit(h: InHeader, body: Buffer): void {
    const major = body.readUInt32LE(0);
    const minor = body.readUInt32LE(4);
    const maxReadahead = body.readUInt32LE(8);
    const kflags = body.readUInt32LE(12);
    if (major !== FUSE_KERNEL_VERSION) {
      this.replyError(h.unique, E.EPROTO);
      this.initReject(new FerryError('FAILED_PRECONDITION', `unsupported FUSE major version ${major}`));
      return;
    }
    this.proto.minor = Math.min(minor, FUSE_KERNEL_MINOR_VERSION);
    const want =
      InitFlag.ASYNC_READ |
      InitFlag.BIG_WRITES |
      InitFlag.DO_READDIRPLUS |
      InitFlag.READDIRPLUS_AUTO |
      InitFlag.PARALLEL_DIROPS |
      InitFlag.MAX_PAGES |
      InitFlag.CACHE_SYMLINKS |
      InitFlag.ATOMIC_O_TRUNC |
      (this.zeroOpen ? InitFlag.NO_OPEN_SUPPORT | InitFlag.NO_OPENDIR_SUPPORT : 0);
    const flags = (want & kflags) >>> 0;
    const out = Buffer.alloc(64);
    out.writeUInt32LE(FUSE_KERNEL_VERSION, 0);
    out.writeUInt32LE(this.proto.minor, 4);
    out.writeUInt32LE(maxReadahead, 8);
    out.writeUInt32LE(flags, 12);
    out.writeUInt16LE(64, 16); // max_background
    out.writeUInt16LE(48, 18); // congestion_threshold
    out.writeUInt32LE(128 * 1024, 20); // max_write (read-only fs: only bounds the request buffer)
    out.writeUInt32LE(1, 24); // time_gran (ns)
    out.writeUInt16LE(this.maxPages, 28);
    this.reply(h.unique, [out]);
    this.log.debug({ kernel: `${major}.${minor}`, flags: flags.toString(16), maxReadahead }, 'fuse init');
    this.initResolve();
  }

  private async handle(h: InHeader, body: Buffer, signal: AbortSignal): Promise<Buffer[] | null> {
    const fs = this.fs;
    switch (h.opcode) {
      case Op.LOOKUP: {
        const name = cstring(body, 0);
        const r = await fs.lookup(h.nodeid, name);
        // A negative entry (node id 0) with a long timeout lets the kernel cache "does not exist".
        if (!r) return [entryOut(0, null, this.timeout, this.timeout)];
        return [entryOut(r.nodeid, r.attr, this.timeout, this.timeout)];
      }
      case Op.GETATTR:
        return [attrOut(await fs.getattr(h.nodeid), this.timeout)];
      case Op.SETATTR:
        throw new FuseErrno(E.EROFS);
      case Op.READLINK:
        if (!fs.readlink) throw new FuseErrno(E.EINVAL);
        return [await fs.readlink(h.nodeid)];
      case Op.OPEN: {
        const flags = body.readUInt32LE(0);
        if ((flags & 3) !== 0) throw new FuseErrno(E.EROFS);
        if (this.zeroOpen) throw new FuseErrno(E.ENOSYS);
        const r = fs.open ? await fs.open(h.nodeid, flags) : {};
        const out = Buffer.alloc(16);
        out.writeBigUInt64LE(BigInt(r.fh ?? 0), 0);
        out.writeUInt32LE((r.keepCache === false ? 0 : FOPEN_KEEP_CACHE) | (r.directIo ? FOPEN_DIRECT_IO : 0), 8);
        return [out];
      }
      case Op.READ: {
        const fh = Number(body.readBigUInt64LE(0));
        const offset = Number(body.readBigUInt64LE(8));
        const size = body.readUInt32LE(16);
        const data = await fs.read(h.nodeid, fh, offset, size, signal);
        const parts = Array.isArray(data) ? data : [data];
        for (const p of parts) this.stats.readBytes += p.length;
        return parts;
      }
      case Op.RELEASE: {
        const fh = Number(body.readBigUInt64LE(0));
        if (fs.release) await fs.release(h.nodeid, fh);
        return [];
      }
      case Op.FLUSH:
        if (this.zeroOpen) throw new FuseErrno(E.ENOSYS);
        return [];
      case Op.FSYNC:
      case Op.FSYNCDIR:
        return [];
      case Op.STATFS: {
        const s = fs.statfs
          ? await fs.statfs()
          : { blocks: 0, bfree: 0, bavail: 0, files: 0, ffree: 0, bsize: 4096, namelen: 255, frsize: 4096 };
        return [statfsOut(s)];
      }
      case Op.GETXATTR: {
        const size = body.readUInt32LE(0);
        const name = cstring(body, 8);
        const v = fs.getxattr ? await fs.getxattr(h.nodeid, name) : null;
        if (!v) throw new FuseErrno(E.ENODATA);
        return sizedReply(v, size);
      }
      case Op.LISTXATTR: {
        const size = body.readUInt32LE(0);
        const names = fs.listxattr ? await fs.listxattr(h.nodeid) : [];
        const v = Buffer.concat(names.map((n) => Buffer.from(`${n}\0`)));
        return sizedReply(v, size);
      }
      case Op.ACCESS:
        return [];
      case Op.OPENDIR: {
        if (this.zeroOpen) throw new FuseErrno(E.ENOSYS);
        const fh = this.nextDirFh++;
        this.dirs.set(fh, { nodeid: h.nodeid, entries: null });
        const out = Buffer.alloc(16);
        out.writeBigUInt64LE(BigInt(fh), 0);
        out.writeUInt32LE(FOPEN_KEEP_CACHE | FOPEN_CACHE_DIR, 8);
        return [out];
      }
      case Op.READDIR:
      case Op.READDIRPLUS:
        return [await this.readdir(h, body, { plus: h.opcode === Op.READDIRPLUS })];
      case Op.RELEASEDIR:
        this.dirs.delete(Number(body.readBigUInt64LE(0)));
        return [];
      case Op.DESTROY:
        return [];
      case Op.WRITE:
      case Op.CREATE:
      case Op.MKNOD:
      case Op.MKDIR:
      case Op.UNLINK:
      case Op.RMDIR:
      case Op.RENAME:
      case Op.RENAME2:
      case Op.LINK:
      case Op.SYMLINK:
      case Op.SETXATTR:
      case Op.REMOVEXATTR:
      case Op.FALLOCATE:
      case Op.TMPFILE:
      case Op.COPY_FILE_RANGE:
        throw new FuseErrno(E.EROFS);
      default:
        throw new FuseErrno(E.ENOSYS);
    }
  }

  /** READDIR, or READDIRPLUS (`plus`: entries with their attributes). */
  private async readdir(h: InHeader, body: Buffer, opts: { plus: boolean }): Promise<Buffer> {
    const { plus } = opts;
    const fh = Number(body.readBigUInt64LE(0));
    const offset = Number(body.readBigUInt64LE(8));
    const size = body.readUInt32LE(16);
    let entries: Promise<FuseDirEntry[]>;
    const d = fh ? this.dirs.get(fh) : undefined;
    if (d) {
      d.entries ??= this.fs.readdir(d.nodeid);
      entries = d.entries;
    } else {
      // No open directory handle (zero-message opendir): listings cached by node id.
      let c = this.dirCache.get(h.nodeid);
      if (!c) {
        c = this.fs.readdir(h.nodeid);
        c.catch(() => this.dirCache.delete(h.nodeid));
        if (this.dirCache.size >= 4096) this.dirCache.delete(this.dirCache.keys().next().value!);
        this.dirCache.set(h.nodeid, c);
      }
      entries = c;
    }
    const list = await entries;
    const all =
      offset < 2
        ? [
            { name: '.', nodeid: h.nodeid, mode: 0o040000 },
            { name: '..', nodeid: 0, mode: 0o040000 },
          ]
        : [];
    const out = Buffer.alloc(size);
    let pos = 0;
    for (let i = offset; i < list.length + 2; i++) {
      const e = i < 2 ? all[i]! : list[i - 2]!;
      const nm = Buffer.from(e.name);
      const rec = direntSize(nm.length) + (plus ? ENTRY_OUT_SIZE : 0);
      if (pos + rec > size) break;
      if (plus) {
        if (i < 2) {
          entryOut(0, null, 0, 0).copy(out, pos);
        } else {
          const attr = await this.fs.getattr(e.nodeid);
          entryOut(e.nodeid, attr, this.timeout, this.timeout).copy(out, pos);
        }
        pos += ENTRY_OUT_SIZE;
      }
      pos = writeDirent(out, pos, e.nodeid === 0 ? 1 : e.nodeid, i + 1, nm, dtype(e.mode));
    }
    return out.subarray(0, pos);
  }
}

function cstring(b: Buffer, off: number): string {
  const end = b.indexOf(0, off);
  return b.toString('utf8', off, end < 0 ? b.length : end);
}

function sizedReply(v: Buffer, size: number): Buffer[] {
  if (size === 0) {
    const out = Buffer.alloc(8);
    out.writeUInt32LE(v.length, 0);
    return [out];
  }
  if (v.length > size) throw new FuseErrno(E.ERANGE);
  return [v];
}

export { FUSE_ROOT_ID };
