/**
 * @module content/local
 * A blob store in a local directory:
 *
 *     DIR/blobs/<algorithm>/<first two hex>/<hex>   committed, verified blobs (read-only)
 *     DIR/uploads/<id>                              uploads in progress
 *
 * Uploads are appended in order; a SHA-256 of the bytes so far is kept in memory while the process
 * lives, so committing a large upload costs no second read (after a restart, or for sha512, the file
 * is hashed again). A commit verifies the digest, fsyncs the file, renames it into place and fsyncs
 * the directory: a crash at any point leaves either no blob or a complete one.
 * Paths are built only from validated digests and upload ids, never from raw request input.
 * Reads share cached FileHandles; only the store closes them, and only when no reader holds one
 * (streamed reads are positional reads on the shared handle, never a stream that owns the descriptor).
 */
import { createReadStream, createWriteStream, mkdirSync, renameSync, unlinkSync, statSync } from 'node:fs';
import { open, readdir, stat, unlink, mkdir, writeFile, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { createHash, type Hash } from 'node:crypto';
import { Readable, Transform } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { FerryError, DigestMismatchError, parseDigest } from '../../core/index.js';
import type { AppendOptions, BlobInfo, BlobStore, CommittedBlob, Critical } from '../content.js';

/** Upload ids: letters, digits, dashes; what `randomUUID()` produces. */
const UPLOAD_ID = /^[A-Za-z0-9-]{8,64}$/;

function checkUploadId(id: string): void {
  if (!UPLOAD_ID.test(id)) throw new FerryError('INVALID_ARGUMENT', `invalid upload id ${JSON.stringify(id)}`);
}

const direct: Critical = (act) => act();

/** Open descriptors kept for reads. */
const MAX_OPEN_BLOBS = 256;
/** Reads up to this size are served from one positional read into one buffer. */
const SINGLE_READ_MAX = 8 * 1024 * 1024;
/** Size of the pieces a single read is handed on in. */
const READ_SLICE = 128 * 1024;
/** Size of each positional read of a streamed (larger) read. */
const STREAM_CHUNK = 1024 * 1024;

/**
 * `[start, end]` of a shared, cached FileHandle as a stream of positional reads. It never closes the
 * handle; it calls `release` exactly once, when it ends, fails or is destroyed by its consumer — and
 * only after the read in flight (at most one) has settled, so the store never closes the handle
 * under a read. Its consumer must read it to the end or destroy it.
 */
class HandleRangeStream extends Readable {
  readonly #fh: FileHandle;
  readonly #end: number;
  readonly #digest: string;
  #pos: number;
  #inflight: Promise<void> | undefined;
  #release: (() => void) | undefined;

  constructor(fh: FileHandle, start: number, end: number, release: () => void, digest: string) {
    super({ highWaterMark: STREAM_CHUNK });
    this.#fh = fh;
    this.#pos = start;
    this.#end = end;
    this.#release = release;
    this.#digest = digest;
  }

  override _read(): void {
    const n = Math.min(STREAM_CHUNK, this.#end - this.#pos + 1);
    if (n <= 0) {
      this.push(null);
      return;
    }
    const buf = Buffer.allocUnsafe(n);
    const at = this.#pos;
    this.#inflight = this.#fh.read(buf, 0, n, at).then(
      ({ bytesRead }) => {
        this.#inflight = undefined;
        if (this.destroyed) return;
        if (bytesRead === 0) {
          this.destroy(new FerryError('DATA_LOSS', `blob ${this.#digest} ends at byte ${at}, before ${this.#end + 1}`));
          return;
        }
        this.#pos += bytesRead;
        this.push(bytesRead === n ? buf : buf.subarray(0, bytesRead));
        if (this.#pos > this.#end) this.push(null);
      },
      (err: unknown) => {
        this.#inflight = undefined;
        this.destroy(new FerryError('UNAVAILABLE', `reading blob ${this.#digest} at ${at}: ${(err as Error).message}`, { cause: err }));
      },
    );
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    const done = (): void => {
      const release = this.#release;
      this.#release = undefined;
      release?.();
      cb(err);
    };
    if (this.#inflight) void this.#inflight.then(done);
    else done();
  }
}

/**
 * A descriptor cached for reads. Only the store closes `fh` (eviction, delete, close), and only when
 * `refs` is 0; readers take a reference and give it back. `fh` never leaves the store as a raw
 * descriptor number: something that closed that number behind the cache's back (a
 * `createReadStream({ fd })` being destroyed does) would leave the cache reading whatever file the
 * kernel gives that number next.
 */
interface OpenBlob {
  fh: FileHandle;
  refs: number;
  /** Deleted: close when the last reader is done. */
  dead: boolean;
}

interface Hasher {
  hash: Hash;
  offset: number;
}

/** Content-addressed blobs in a local directory (see module doc). */
export class LocalBlobStore implements BlobStore {
  readonly root: string;
  readonly #blobs: string;
  readonly #uploads: string;
  readonly #hashers = new Map<string, Hasher>();
  readonly #busy = new Set<string>();
  readonly #fds = new Map<string, OpenBlob>();
  readonly #dirs = new Set<string>();
  readonly #fsync: boolean;

  /** `fsync: false` skips fsync (tests and benchmarks of raw throughput only). */
  constructor(root: string, opts: { fsync?: boolean } = {}) {
    this.root = root;
    this.#blobs = join(root, 'blobs');
    this.#uploads = join(root, 'uploads');
    this.#fsync = opts.fsync ?? true;
    mkdirSync(this.#blobs, { recursive: true });
    mkdirSync(this.#uploads, { recursive: true });
  }

  /** The file of a (validated) digest. */
  localPath(digest: string): string {
    const { algorithm, hex } = parseDigest(digest);
    return join(this.#blobs, algorithm, hex.slice(0, 2), hex);
  }

  async stat(digest: string): Promise<BlobInfo | undefined> {
    const p = this.localPath(digest);
    try {
      const st = await stat(p);
      return { digest, size: st.size, mtimeMs: st.mtimeMs };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
  }

  /**
   * Reads go through a small cache of open descriptors (blobs are immutable and content-addressed,
   * so a descriptor can serve every later read of the same digest): a GET of a cached blob costs one
   * positional read instead of open + read + EOF read + close on the thread pool.
   */
  async #acquire(digest: string): Promise<OpenBlob> {
    let ob = this.#fds.get(digest);
    if (ob) {
      this.#fds.delete(digest); // re-insert: Map order is the LRU order
      this.#fds.set(digest, ob);
      ob.refs++;
      return ob;
    }
    const p = this.localPath(digest);
    const fh = await open(p, 'r').catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') throw new FerryError('NOT_FOUND', `blob ${digest}`);
      throw err;
    });
    const raced = this.#fds.get(digest);
    if (raced) {
      void fh.close();
      raced.refs++;
      return raced;
    }
    ob = { fh, refs: 1, dead: false };
    this.#fds.set(digest, ob);
    this.#evict();
    return ob;
  }

  #release(digest: string, ob: OpenBlob): void {
    ob.refs--;
    if (ob.refs === 0 && (ob.dead || this.#fds.get(digest) !== ob)) void ob.fh.close().catch(() => undefined);
  }

  #evict(): void {
    for (const [digest, ob] of this.#fds) {
      if (this.#fds.size <= MAX_OPEN_BLOBS) break;
      this.#fds.delete(digest);
      if (ob.refs === 0) void ob.fh.close().catch(() => undefined);
    }
  }

  #forget(digest: string): void {
    const ob = this.#fds.get(digest);
    if (!ob) return;
    this.#fds.delete(digest);
    ob.dead = true;
    if (ob.refs === 0) void ob.fh.close().catch(() => undefined);
  }

  /**
   * The bytes of a blob (or `[start, end]` of it) in one buffer, from one positional read on a
   * cached descriptor. Meant for blobs up to a few MiB; NOT_FOUND when absent.
   */
  async readBuffer(digest: string, range?: { start: number; end: number }): Promise<Buffer> {
    parseDigest(digest);
    const ob = await this.#acquire(digest);
    try {
      return await this.#readInto(digest, ob, range);
    } finally {
      this.#release(digest, ob);
    }
  }

  async #readInto(digest: string, ob: OpenBlob, range?: { start: number; end: number }): Promise<Buffer> {
    const start = range?.start ?? 0;
    const end = range?.end ?? (await ob.fh.stat()).size - 1;
    const length = Math.max(0, end - start + 1);
    const buf = Buffer.allocUnsafe(length);
    let got = 0;
    while (got < length) {
      const { bytesRead } = await ob.fh.read(buf, got, length - got, start + got);
      if (bytesRead === 0) break;
      got += bytesRead;
    }
    if (got !== length) throw new FerryError('DATA_LOSS', `blob ${digest} is shorter than expected`);
    return buf;
  }

  async read(digest: string, range?: { start: number; end: number }): Promise<Readable> {
    parseDigest(digest);
    const ob = await this.#acquire(digest);
    let released = false;
    const release = (): void => {
      if (!released) {
        released = true;
        this.#release(digest, ob);
      }
    };
    try {
      const start = range?.start ?? 0;
      const end = range?.end ?? (await ob.fh.stat()).size - 1;
      if (end - start + 1 <= SINGLE_READ_MAX) {
        const buf = await this.#readInto(digest, ob, { start, end });
        release();
        // Handed on in slices so the socket starts sending while the rest is still being copied.
        const slices: Buffer[] = [];
        for (let o = 0; o < buf.length; o += READ_SLICE) slices.push(buf.subarray(o, Math.min(buf.length, o + READ_SLICE)));
        return Readable.from(slices);
      }
      // The stream reads the shared handle positionally and never closes it: only the store
      // closes its handles, once no reader holds them (see HandleRangeStream).
      return new HandleRangeStream(ob.fh, start, end, release, digest);
    } catch (err) {
      release();
      throw err;
    }
  }

  async *list(): AsyncIterable<BlobInfo> {
    for (const alg of await readdir(this.#blobs).catch(() => [] as string[])) {
      const algDir = join(this.#blobs, alg);
      for (const pre of await readdir(algDir).catch(() => [] as string[])) {
        for (const hex of await readdir(join(algDir, pre)).catch(() => [] as string[])) {
          const digest = `${alg}:${hex}`;
          try {
            parseDigest(digest);
          } catch {
            continue; // stray file: never ours
          }
          const info = await this.stat(digest);
          if (info) yield info;
        }
      }
    }
  }

  /** Closes cached read descriptors. */
  async close(): Promise<void> {
    const all = [...this.#fds.values()];
    this.#fds.clear();
    await Promise.all(
      all.map((ob) => {
        ob.dead = true;
        return ob.refs === 0 ? ob.fh.close().catch(() => undefined) : undefined;
      }),
    );
  }

  async startUpload(id: string): Promise<void> {
    checkUploadId(id);
    await writeFile(join(this.#uploads, id), '', { flag: 'wx' }).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'EEXIST') throw new FerryError('ALREADY_EXISTS', `upload ${id}`);
      throw err;
    });
    this.#hashers.set(id, { hash: createHash('sha256'), offset: 0 });
    // Abandoned uploads must not pin hash state forever: drop the oldest (it is rehashed on commit).
    if (this.#hashers.size > 4096) this.#hashers.delete(this.#hashers.keys().next().value!);
  }

  async uploadSize(id: string): Promise<number> {
    checkUploadId(id);
    try {
      return (await stat(join(this.#uploads, id))).size;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new FerryError('NOT_FOUND', `upload ${id}`);
      throw err;
    }
  }

  async append(id: string, offset: number, body: Readable, opts: AppendOptions = {}): Promise<number> {
    checkUploadId(id);
    if (this.#busy.has(id)) throw new FerryError('FAILED_PRECONDITION', `upload ${id} is receiving another request`);
    this.#busy.add(id);
    try {
      const size = await this.uploadSize(id);
      if (offset !== size) throw new FerryError('FAILED_PRECONDITION', `upload ${id} is at ${size}, not ${offset}`);
      let hasher = this.#hashers.get(id);
      if (hasher && hasher.offset !== size) {
        this.#hashers.delete(id);
        hasher = undefined;
      }
      const limit = opts.limit ?? Infinity;
      let written = 0;
      const counter = new Transform({
        transform(chunk: Buffer, _enc, cb) {
          written += chunk.length;
          if (size + written > limit) {
            cb(new FerryError('RESOURCE_EXHAUSTED', `upload exceeds the limit of ${limit} bytes`));
            return;
          }
          hasher?.hash.update(chunk);
          cb(null, chunk);
        },
      });
      const out = createWriteStream(join(this.#uploads, id), { flags: 'r+', start: size, highWaterMark: 256 * 1024 });
      try {
        await pipeline(body, counter, out, ...(opts.signal ? ([{ signal: opts.signal }] as const) : []));
      } catch (err) {
        // The file may hold part of the body; the in-memory hash may not match it any more.
        this.#hashers.delete(id);
        throw err;
      }
      if (hasher) hasher.offset = size + written;
      return size + written;
    } finally {
      this.#busy.delete(id);
    }
  }

  async commitUpload(id: string, expected: string, opts: { size?: number; critical?: Critical } = {}): Promise<CommittedBlob> {
    checkUploadId(id);
    const { algorithm } = parseDigest(expected);
    if (this.#busy.has(id)) throw new FerryError('FAILED_PRECONDITION', `upload ${id} is receiving another request`);
    this.#busy.add(id);
    const path = join(this.#uploads, id);
    try {
      const size = await this.uploadSize(id);
      if (opts.size !== undefined && opts.size !== size) {
        throw new FerryError('INVALID_ARGUMENT', `upload ${id} has ${size} bytes, not ${opts.size}`);
      }
      let actual: string;
      const h = this.#hashers.get(id);
      if (algorithm === 'sha256' && h && h.offset === size) {
        actual = `sha256:${h.hash.digest('hex')}`;
      } else {
        const hash = createHash(algorithm);
        for await (const c of createReadStream(path, { highWaterMark: 1 << 20 }) as AsyncIterable<Buffer>) hash.update(c);
        actual = `${algorithm}:${hash.digest('hex')}`;
      }
      this.#hashers.delete(id);
      if (actual !== expected) {
        await unlink(path).catch(() => undefined);
        throw new DigestMismatchError(expected, actual, `upload ${id}`);
      }
      if (this.#fsync) {
        const fh = await open(path, 'r+');
        try {
          await fh.sync();
        } finally {
          await fh.close();
        }
      }
      const dest = this.localPath(expected);
      const dir = join(dest, '..');
      if (!this.#dirs.has(dir)) {
        await mkdir(dir, { recursive: true });
        this.#dirs.add(dir);
      }
      await (opts.critical ?? direct)(async () => renameSync(path, dest));
      if (this.#fsync) {
        const dh = await open(dir, 'r');
        try {
          await dh.sync();
        } finally {
          await dh.close();
        }
      }
      return { digest: expected, size };
    } finally {
      this.#busy.delete(id);
    }
  }

  async abortUpload(id: string): Promise<void> {
    checkUploadId(id);
    this.#hashers.delete(id);
    await unlink(join(this.#uploads, id)).catch((err: NodeJS.ErrnoException) => {
      if (err.code !== 'ENOENT') throw err;
    });
  }

  async listUploads(): Promise<Array<{ id: string; mtimeMs: number }>> {
    const out: Array<{ id: string; mtimeMs: number }> = [];
    for (const name of await readdir(this.#uploads)) {
      if (!UPLOAD_ID.test(name)) continue;
      try {
        out.push({ id: name, mtimeMs: statSync(join(this.#uploads, name)).mtimeMs });
      } catch {
        /* finished meanwhile */
      }
    }
    return out;
  }

  async delete(digest: string, opts: { critical?: Critical } = {}): Promise<boolean> {
    const p = this.localPath(digest);
    this.#forget(digest);
    return (opts.critical ?? direct)(async () => {
      try {
        unlinkSync(p);
        return true;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
        throw err;
      }
    });
  }
}
