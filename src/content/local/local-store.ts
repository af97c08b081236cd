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
 */
import { createReadStream, createWriteStream, mkdirSync, renameSync, unlinkSync, statSync } from 'node:fs';
import { open, readdir, stat, unlink, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createHash, type Hash } from 'node:crypto';
import { Transform, type Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { FerryError, DigestMismatchError, parseDigest } from '../../core/index.js';
import type { BlobInfo, BlobStore, CommittedBlob, Critical } from '../content.js';

/** Upload ids: letters, digits, dashes; what `randomUUID()` produces. */
const UPLOAD_ID = /^[A-Za-z0-9-]{8,64}$/;

function checkUploadId(id: string): void {
  if (!UPLOAD_ID.test(id)) throw new FerryError('INVALID_ARGUMENT', `invalid upload id ${JSON.stringify(id)}`);
}

const direct: Critical = (act) => act();

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

  async read(digest: string, range?: { start: number; end: number }): Promise<Readable> {
    const p = this.localPath(digest);
    // Large reads in 1 MiB slices: fewer syscalls and socket writes per byte.
    const stream = createReadStream(p, { ...(range ? { start: range.start, end: range.end } : {}), highWaterMark: 1024 * 1024 });
    await new Promise<void>((resolve, reject) => {
      const onError = (err: NodeJS.ErrnoException): void => {
        stream.off('ready', onReady);
        reject(err.code === 'ENOENT' ? new FerryError('NOT_FOUND', `blob ${digest}`) : err);
      };
      const onReady = (): void => {
        stream.off('error', onError);
        resolve();
      };
      stream.once('error', onError);
      stream.once('ready', onReady);
    });
    return stream;
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

  async startUpload(id: string): Promise<void> {
    checkUploadId(id);
    await writeFile(join(this.#uploads, id), '', { flag: 'wx' }).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'EEXIST') throw new FerryError('ALREADY_EXISTS', `upload ${id}`);
      throw err;
    });
    this.#hashers.set(id, { hash: createHash('sha256'), offset: 0 });
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

  async append(id: string, offset: number, body: Readable, opts: { limit?: number; signal?: AbortSignal } = {}): Promise<number> {
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
        await pipeline(body, counter, out, ...(opts.signal ? [{ signal: opts.signal }] as const : []));
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
        await pipeline(createReadStream(path, { highWaterMark: 1 << 20 }), async function* (src: AsyncIterable<Buffer>) {
          for await (const c of src) hash.update(c);
        });
        actual = `${algorithm}:${hash.digest('hex')}`;
      }
      this.#hashers.delete(id);
      if (actual !== expected) {
        await unlink(path).catch(() => undefined);
        throw new DigestMismatchError(expected, actual, `upload ${id}`);
      }
      if (this.#fsync) {
        const fh = await open(path, 'r+');
        try { await fh.sync(); } finally { await fh.close(); }
      }
      const dest = this.localPath(expected);
      const dir = join(dest, '..');
      await mkdir(dir, { recursive: true });
      (opts.critical ?? direct)(() => renameSync(path, dest));
      if (this.#fsync) {
        const dh = await open(dir, 'r');
        try { await dh.sync(); } finally { await dh.close(); }
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
      } catch { /* finished meanwhile */ }
    }
    return out;
  }

  async delete(digest: string, opts: { critical?: Critical } = {}): Promise<boolean> {
    const p = this.localPath(digest);
    return (opts.critical ?? direct)(() => {
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
