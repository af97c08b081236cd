/**
 * @module content/s3/s3-store
 * The blob store on an S3-compatible object store (Ceph radosgw, MinIO, AWS S3), shared by every
 * registry replica: nothing about an upload lives only in one process, so an upload started on
 * one replica continues on another.
 *
 * Layout under `prefix`: blobs at `blobs/<alg>/<hex[0:2]>/<hex>`; an upload `<id>` is a marker
 * object `uploads/<id>/info` plus its chunks `uploads/<id>/c/<start offset, 16 digits>`, each one
 * append's bytes cut into pieces of at most `chunkBytes` (memory per request stays bounded and a
 * body of unknown length needs no buffering). The upload's size is the sum of its contiguous
 * chunks, read by listing, so any replica knows where to continue.
 *
 * A monolithic upload (`append` with `last`: the commit follows in this process) of at most one
 * chunk is held in memory instead and published with one PutObject.
 *
 * Commit: the digest is computed from the hash this process kept while receiving every byte (a
 * monolithic PUT), else by reading the chunks back. The blob is then assembled by one S3 multipart
 * upload on the blob's key — a chunk of at least 5 MiB becomes a part by server-side copy
 * (UploadPartCopy), smaller neighbours are merged into one part — and `publish` is the
 * CompleteMultipartUpload, which makes the whole object appear at once: a reader never sees a
 * half-written blob. A mismatch aborts the multipart upload and removes the upload.
 */
import { createHash, type Hash } from 'node:crypto';
import type { Readable } from 'node:stream';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
  UploadPartCopyCommand,
  type S3ClientConfig,
} from '@aws-sdk/client-s3';
import { getSignedUrl } from '@aws-sdk/s3-request-presigner';
import { DigestMismatchError, FerryError, parseDigest } from '../../core/index.js';
import type { AppendOptions, BlobInfo, BlobStore, CommittedBlob, Critical } from '../content.js';

/** Upload ids: letters, digits, dashes; what `randomUUID()` produces. */
const UPLOAD_ID = /^[A-Za-z0-9-]{8,64}$/;
/** S3's smallest part (except the last one). */
const MIN_PART = 5 * 1024 * 1024;
/** Bound on list pages read for one upload or one listing (10^3 keys each). */
const MAX_PAGES = 100_000;

export interface S3BlobStoreOptions {
  bucket: string;
  /** Key prefix of this store inside the bucket ('' or ending in '/'). */
  prefix?: string;
  /** S3 client settings: endpoint, region, forcePathStyle, credentials… */
  client: S3ClientConfig;
  /** Largest chunk object one append writes (default 8 MiB, at least 5 MiB). */
  chunkBytes?: number;
}

interface Chunk {
  key: string;
  start: number;
  size: number;
  mtimeMs: number;
}

/** An error of the S3 client: its name (`NoSuchKey`, `NotFound`…) and HTTP status. */
function s3Status(err: unknown): { name: string; status: number | undefined } {
  const e = err as { name?: string; $metadata?: { httpStatusCode?: number } };
  return { name: e?.name ?? '', status: e?.$metadata?.httpStatusCode };
}

function isNotFound(err: unknown): boolean {
  const { name, status } = s3Status(err);
  return status === 404 || name === 'NoSuchKey' || name === 'NotFound' || name === 'NoSuchUpload';
}

function checkUploadId(id: string): void {
  if (!UPLOAD_ID.test(id)) throw new FerryError('INVALID_ARGUMENT', `invalid upload id ${JSON.stringify(id.slice(0, 80))}`);
}

/** Reads up to `max` bytes from an async iterator of buffers, keeping the remainder in `carry`. */
async function nextPiece(it: AsyncIterator<Buffer>, carry: { buf: Buffer | undefined }, max: number): Promise<Buffer | undefined> {
  const parts: Buffer[] = [];
  let n = 0;
  while (n < max) {
    let b = carry.buf;
    carry.buf = undefined;
    if (!b) {
      const r = await it.next();
      if (r.done) break;
      b = Buffer.isBuffer(r.value) ? r.value : Buffer.from(r.value as Uint8Array);
    }
    if (n + b.length > max) {
      carry.buf = b.subarray(max - n);
      b = b.subarray(0, max - n);
    }
    parts.push(b);
    n += b.length;
  }
  return n === 0 ? undefined : Buffer.concat(parts, n);
}

async function bufferOf(body: unknown): Promise<Buffer> {
  const out: Buffer[] = [];
  for await (const c of body as AsyncIterable<Uint8Array>) out.push(Buffer.from(c));
  return Buffer.concat(out);
}

/** The blob store on S3 (see module doc). */
export class S3BlobStore implements BlobStore {
  readonly #s3: S3Client;
  readonly #bucket: string;
  readonly #prefix: string;
  readonly #chunk: number;
  /** Hash of an upload this process received every byte of, by upload id. */
  readonly #hashes = new Map<string, { size: number; hash: Hash; algorithm: string }>();
  /** The whole body of a monolithic upload (AppendOptions.last), held until this process commits it. */
  readonly #held = new Map<string, Buffer>();
  /** Uploads receiving a request in this process. */
  readonly #busy = new Set<string>();

  constructor(opts: S3BlobStoreOptions) {
    this.#s3 = new S3Client(opts.client);
    this.#bucket = opts.bucket;
    this.#prefix = opts.prefix ?? '';
    if (this.#prefix && !this.#prefix.endsWith('/')) throw new FerryError('INVALID_ARGUMENT', 's3 prefix must end with /');
    this.#chunk = Math.max(opts.chunkBytes ?? 8 * 1024 * 1024, MIN_PART);
  }

  #blobKey(digest: string): string {
    const { algorithm, hex } = parseDigest(digest);
    return `${this.#prefix}blobs/${algorithm}/${hex.slice(0, 2)}/${hex}`;
  }

  #uploadDir(id: string): string {
    checkUploadId(id);
    return `${this.#prefix}uploads/${id}/`;
  }

  async stat(digest: string): Promise<BlobInfo | undefined> {
    const Key = this.#blobKey(digest);
    try {
      const h = await this.#s3.send(new HeadObjectCommand({ Bucket: this.#bucket, Key }));
      return { digest, size: h.ContentLength ?? 0, mtimeMs: h.LastModified?.getTime() ?? 0 };
    } catch (err) {
      if (isNotFound(err)) return undefined;
      throw this.#error(err, `stat ${digest}`);
    }
  }

  async read(digest: string, range?: { start: number; end: number }): Promise<Readable> {
    const Key = this.#blobKey(digest);
    try {
      const out = await this.#s3.send(
        new GetObjectCommand({ Bucket: this.#bucket, Key, ...(range ? { Range: `bytes=${range.start}-${range.end}` } : {}) }),
      );
      return out.Body as Readable;
    } catch (err) {
      if (isNotFound(err)) throw new FerryError('NOT_FOUND', `blob ${digest} not found`);
      throw this.#error(err, `read ${digest}`);
    }
  }

  async readBuffer(digest: string, range?: { start: number; end: number }): Promise<Buffer> {
    return bufferOf(await this.read(digest, range));
  }

  async *list(): AsyncIterable<BlobInfo> {
    for await (const o of this.#listKeys(`${this.#prefix}blobs/`)) {
      const parts = o.key.slice(this.#prefix.length).split('/');
      if (parts.length !== 4) continue;
      yield { digest: `${parts[1]}:${parts[3]}`, size: o.size, mtimeMs: o.mtimeMs };
    }
  }

  async presignedUrl(digest: string, expiresInSeconds: number): Promise<string> {
    const Key = this.#blobKey(digest);
    return getSignedUrl(this.#s3, new GetObjectCommand({ Bucket: this.#bucket, Key }), { expiresIn: expiresInSeconds });
  }

  async startUpload(id: string): Promise<void> {
    const Key = `${this.#uploadDir(id)}info`;
    await this.#try(`start upload ${id}`, () =>
      this.#s3.send(new PutObjectCommand({ Bucket: this.#bucket, Key, Body: Buffer.from(JSON.stringify({ id })) })),
    );
  }

  async uploadSize(id: string): Promise<number> {
    const chunks = await this.#chunks(id);
    return chunks.reduce((n, c) => n + c.size, 0) + (this.#held.get(id)?.length ?? 0);
  }

  async append(id: string, offset: number, body: Readable, opts: AppendOptions = {}): Promise<number> {
    checkUploadId(id);
    if (this.#busy.has(id)) throw new FerryError('FAILED_PRECONDITION', `upload ${id} is receiving another request`);
    this.#busy.add(id);
    const written: string[] = [];
    try {
      const size = await this.uploadSize(id);
      if (offset !== size) throw new FerryError('FAILED_PRECONDITION', `upload ${id} is at ${size}, not ${offset}`);
      const kept = this.#hashes.get(id);
      const hash = kept?.size === size ? kept.hash : size === 0 ? createHash('sha256') : undefined;
      this.#hashes.delete(id);
      const it = body[Symbol.asyncIterator]() as AsyncIterator<Buffer>;
      const carry: { buf: Buffer | undefined } = { buf: undefined };
      let at = size;
      const check = (n: number): void => {
        opts.signal?.throwIfAborted();
        if (opts.limit !== undefined && at + n > opts.limit) {
          throw new FerryError('RESOURCE_EXHAUSTED', `upload ${id} exceeds the limit of ${opts.limit} bytes`);
        }
      };
      let piece = await nextPiece(it, carry, this.#chunk);
      let next = piece ? await nextPiece(it, carry, this.#chunk) : undefined;
      if (piece && !next && size === 0 && opts.last && hash) {
        // a whole blob in one piece, committed by this process right after: no chunk object at all
        check(piece.length);
        hash.update(piece);
        this.#held.set(id, piece);
        this.#hashes.set(id, { size: piece.length, hash, algorithm: 'sha256' });
        return piece.length;
      }
      while (piece) {
        check(piece.length);
        const Key = `${this.#uploadDir(id)}c/${String(at).padStart(16, '0')}`;
        const Body = piece;
        await this.#try(`append to upload ${id}`, () => this.#s3.send(new PutObjectCommand({ Bucket: this.#bucket, Key, Body })));
        written.push(Key);
        hash?.update(piece);
        at += piece.length;
        piece = next;
        next = piece ? await nextPiece(it, carry, this.#chunk) : undefined;
      }
      if (hash) this.#hashes.set(id, { size: at, hash, algorithm: 'sha256' });
      written.length = 0;
      return at;
    } finally {
      this.#busy.delete(id);
      // A failed append leaves the upload where it was.
      if (written.length) await this.#deleteKeys(written).catch(() => undefined);
    }
  }

  async commitUpload(id: string, expected: string, opts: { size?: number; critical?: Critical } = {}): Promise<CommittedBlob> {
    const { algorithm } = parseDigest(expected);
    const chunks = await this.#chunks(id);
    const held = this.#held.get(id);
    const size = chunks.reduce((n, c) => n + c.size, 0) + (held?.length ?? 0);
    if (opts.size !== undefined && opts.size !== size) {
      throw new FerryError('INVALID_ARGUMENT', `upload ${id} has ${size} bytes, not ${opts.size}`);
    }
    const actual = await this.#digestOf(id, chunks, algorithm, size);
    if (actual !== expected) {
      await this.abortUpload(id);
      throw new DigestMismatchError(expected, actual, `upload ${id}`);
    }
    const Key = this.#blobKey(expected);
    const publish = held ? this.#putWhole(Key, held) : await this.#assemble(Key, chunks);
    try {
      await (opts.critical ?? ((act) => act()))(publish.complete);
    } catch (err) {
      await publish.abort();
      throw err;
    }
    // the upload's objects are known: removed without listing them again
    this.#hashes.delete(id);
    this.#held.delete(id);
    await this.#deleteKeys([`${this.#uploadDir(id)}info`, ...chunks.map((c) => c.key)]);
    return { digest: expected, size };
  }

  async abortUpload(id: string): Promise<void> {
    this.#hashes.delete(id);
    this.#held.delete(id);
    const keys: string[] = [];
    for await (const o of this.#listKeys(this.#uploadDir(id))) keys.push(o.key);
    await this.#deleteKeys(keys);
  }

  async listUploads(): Promise<Array<{ id: string; mtimeMs: number }>> {
    const latest = new Map<string, number>();
    for await (const o of this.#listKeys(`${this.#prefix}uploads/`)) {
      const id = o.key.slice(this.#prefix.length + 'uploads/'.length).split('/')[0]!;
      latest.set(id, Math.max(latest.get(id) ?? 0, o.mtimeMs));
    }
    return [...latest].map(([id, mtimeMs]) => ({ id, mtimeMs }));
  }

  async delete(digest: string, opts: { critical?: Critical } = {}): Promise<boolean> {
    const Key = this.#blobKey(digest);
    return (opts.critical ?? ((act) => act()))(async () => {
      if (!(await this.stat(digest))) return false;
      await this.#deleteKeys([Key]);
      return true;
    });
  }

  async close(): Promise<void> {
    this.#s3.destroy();
  }

  /** The upload's chunks in order; NOT_FOUND when the upload does not exist. */
  async #chunks(id: string): Promise<Chunk[]> {
    const dir = this.#uploadDir(id);
    let found = false;
    const chunks: Chunk[] = [];
    for await (const o of this.#listKeys(dir)) {
      if (o.key === `${dir}info`) found = true;
      else if (o.key.startsWith(`${dir}c/`)) chunks.push({ ...o, start: Number(o.key.slice(dir.length + 2)) });
    }
    if (!found) throw new FerryError('NOT_FOUND', `upload ${id} not found`);
    chunks.sort((a, b) => a.start - b.start);
    let at = 0;
    for (const c of chunks) {
      if (c.start !== at) throw new FerryError('DATA_LOSS', `upload ${id} has a gap or overlap at ${at}`);
      at += c.size;
    }
    return chunks;
  }

  /** The digest of the upload's bytes: from this process's running hash, else by reading the chunks. */
  async #digestOf(id: string, chunks: Chunk[], algorithm: string, size: number): Promise<string> {
    const kept = this.#hashes.get(id);
    if (kept && kept.size === size && kept.algorithm === algorithm) return `${algorithm}:${kept.hash.copy().digest('hex')}`;
    const h = createHash(algorithm);
    for (const c of chunks) {
      const out = await this.#try(`read upload ${id}`, () => this.#s3.send(new GetObjectCommand({ Bucket: this.#bucket, Key: c.key })));
      for await (const b of out.Body as AsyncIterable<Uint8Array>) h.update(b);
    }
    return `${algorithm}:${h.digest('hex')}`;
  }

  /** Publishing a blob held in memory: one PutObject. */
  #putWhole(Key: string, data: Buffer): { complete: () => Promise<void>; abort: () => Promise<void> } {
    const complete = async (): Promise<void> => {
      await this.#try(`publish ${Key}`, () => this.#s3.send(new PutObjectCommand({ Bucket: this.#bucket, Key, Body: data })));
    };
    return { complete, abort: async () => undefined };
  }

  /**
   * Uploads the parts of `Key` from `chunks` (server-side copies where a chunk is big enough) and
   * returns the step that makes the object appear (`complete`) and the one that drops the parts.
   */
  async #assemble(Key: string, chunks: Chunk[]): Promise<{ complete: () => Promise<void>; abort: () => Promise<void> }> {
    const Bucket = this.#bucket;
    if (chunks.length === 0) {
      return {
        complete: async () =>
          void (await this.#try(`publish ${Key}`, () => this.#s3.send(new PutObjectCommand({ Bucket, Key, Body: Buffer.alloc(0) })))),
        abort: async () => undefined,
      };
    }
    const mpu = await this.#try(`assemble ${Key}`, () => this.#s3.send(new CreateMultipartUploadCommand({ Bucket, Key })));
    const UploadId = mpu.UploadId!;
    const abort = async (): Promise<void> => {
      await this.#s3.send(new AbortMultipartUploadCommand({ Bucket, Key, UploadId })).catch(() => undefined);
    };
    try {
      const parts: Array<{ ETag: string; PartNumber: number }> = [];
      for (const group of groupChunks(chunks)) {
        const PartNumber = parts.length + 1;
        if (group.length === 1 && (group[0]!.size >= MIN_PART || chunks.length === 1)) {
          const CopySource = `${Bucket}/${encodeURI(group[0]!.key)}`;
          const r = await this.#try(`assemble ${Key}`, () =>
            this.#s3.send(new UploadPartCopyCommand({ Bucket, Key, UploadId, PartNumber, CopySource })),
          );
          parts.push({ ETag: r.CopyPartResult!.ETag!, PartNumber });
        } else {
          const bufs: Buffer[] = [];
          for (const c of group) {
            const out = await this.#try(`assemble ${Key}`, () => this.#s3.send(new GetObjectCommand({ Bucket, Key: c.key })));
            bufs.push(await bufferOf(out.Body));
          }
          const r = await this.#try(`assemble ${Key}`, () =>
            this.#s3.send(new UploadPartCommand({ Bucket, Key, UploadId, PartNumber, Body: Buffer.concat(bufs) })),
          );
          parts.push({ ETag: r.ETag!, PartNumber });
        }
      }
      const complete = async (): Promise<void> => {
        await this.#try(`publish ${Key}`, () =>
          this.#s3.send(new CompleteMultipartUploadCommand({ Bucket, Key, UploadId, MultipartUpload: { Parts: parts } })),
        );
      };
      return { complete, abort };
    } catch (err) {
      await abort();
      throw err;
    }
  }

  async *#listKeys(prefix: string): AsyncIterable<{ key: string; size: number; mtimeMs: number }> {
    let token: string | undefined;
    for (let page = 0; page < MAX_PAGES; page++) {
      const out = await this.#try(`list ${prefix}`, () =>
        this.#s3.send(new ListObjectsV2Command({ Bucket: this.#bucket, Prefix: prefix, ...(token ? { ContinuationToken: token } : {}) })),
      );
      for (const o of out.Contents ?? []) {
        if (o.Key) yield { key: o.Key, size: o.Size ?? 0, mtimeMs: o.LastModified?.getTime() ?? 0 };
      }
      if (!out.IsTruncated || !out.NextContinuationToken) return;
      token = out.NextContinuationToken;
    }
    throw new FerryError('RESOURCE_EXHAUSTED', `more than ${MAX_PAGES} pages under ${prefix}`);
  }

  async #deleteKeys(keys: string[]): Promise<void> {
    for (let i = 0; i < keys.length; i += 1000) {
      const Objects = keys.slice(i, i + 1000).map((Key) => ({ Key }));
      const out = await this.#try('delete', () =>
        this.#s3.send(new DeleteObjectsCommand({ Bucket: this.#bucket, Delete: { Objects, Quiet: true } })),
      );
      const failed = (out.Errors ?? []).filter((e) => e.Code !== 'NoSuchKey');
      if (failed.length) throw new FerryError('UNAVAILABLE', `s3 delete of ${failed[0]!.Key} failed: ${failed[0]!.Code}`);
    }
  }

  async #try<T>(what: string, fn: () => Promise<T>): Promise<T> {
    try {
      return await fn();
    } catch (err) {
      throw this.#error(err, what);
    }
  }

  #error(err: unknown, what: string): FerryError {
    if (err instanceof FerryError) return err;
    const { name, status } = s3Status(err);
    if (isNotFound(err)) return new FerryError('NOT_FOUND', `s3 ${what}: ${name || status}`, { cause: err });
    return new FerryError('UNAVAILABLE', `s3 ${what} failed: ${name || 'error'}${status ? ` (HTTP ${status})` : ''}`, { cause: err });
  }
}

/** Chunks in parts: a chunk of at least 5 MiB alone, smaller neighbours merged until 5 MiB. */
function groupChunks(chunks: Chunk[]): Chunk[][] {
  const groups: Chunk[][] = [];
  let cur: Chunk[] = [];
  let n = 0;
  for (const c of chunks) {
    if (c.size >= MIN_PART && cur.length === 0) {
      groups.push([c]);
      continue;
    }
    cur.push(c);
    n += c.size;
    if (n >= MIN_PART) {
      groups.push(cur);
      cur = [];
      n = 0;
    }
  }
  if (cur.length) groups.push(cur);
  return groups;
}
