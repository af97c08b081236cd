/**
 * @module content/memory
 * An in-memory blob store with the same contract as the local one: the test fake for code that
 * needs a BlobStore without a directory.
 */
import { Readable } from 'node:stream';
import { createHash } from 'node:crypto';
import { FerryError, DigestMismatchError, parseDigest } from '../../core/index.js';
import type { BlobInfo, BlobStore, CommittedBlob, Critical } from '../content.js';

const direct: Critical = (act) => act();

/** Blobs and uploads held in maps. */
export class MemoryBlobStore implements BlobStore {
  readonly #blobs = new Map<string, { data: Buffer; mtimeMs: number }>();
  readonly #uploads = new Map<string, { chunks: Buffer[]; size: number; mtimeMs: number }>();

  async stat(digest: string): Promise<BlobInfo | undefined> {
    parseDigest(digest);
    const b = this.#blobs.get(digest);
    return b ? { digest, size: b.data.length, mtimeMs: b.mtimeMs } : undefined;
  }

  async read(digest: string, range?: { start: number; end: number }): Promise<Readable> {
    parseDigest(digest);
    const b = this.#blobs.get(digest);
    if (!b) throw new FerryError('NOT_FOUND', `blob ${digest}`);
    return Readable.from([range ? b.data.subarray(range.start, range.end + 1) : b.data]);
  }

  async *list(): AsyncIterable<BlobInfo> {
    for (const [digest, b] of [...this.#blobs]) yield { digest, size: b.data.length, mtimeMs: b.mtimeMs };
  }

  async startUpload(id: string): Promise<void> {
    if (this.#uploads.has(id)) throw new FerryError('ALREADY_EXISTS', `upload ${id}`);
    this.#uploads.set(id, { chunks: [], size: 0, mtimeMs: Date.now() });
  }

  #upload(id: string): { chunks: Buffer[]; size: number; mtimeMs: number } {
    const u = this.#uploads.get(id);
    if (!u) throw new FerryError('NOT_FOUND', `upload ${id}`);
    return u;
  }

  async uploadSize(id: string): Promise<number> {
    return this.#upload(id).size;
  }

  async append(id: string, offset: number, body: Readable, opts: { limit?: number } = {}): Promise<number> {
    const u = this.#upload(id);
    if (offset !== u.size) throw new FerryError('FAILED_PRECONDITION', `upload ${id} is at ${u.size}, not ${offset}`);
    const limit = opts.limit ?? Infinity;
    for await (const c of body) {
      const chunk = Buffer.isBuffer(c) ? c : Buffer.from(c as string);
      if (u.size + chunk.length > limit) throw new FerryError('RESOURCE_EXHAUSTED', `upload exceeds the limit of ${limit} bytes`);
      u.chunks.push(chunk);
      u.size += chunk.length;
      u.mtimeMs = Date.now();
    }
    return u.size;
  }

  async commitUpload(id: string, expected: string, opts: { size?: number; critical?: Critical } = {}): Promise<CommittedBlob> {
    const { algorithm } = parseDigest(expected);
    const u = this.#upload(id);
    const data = Buffer.concat(u.chunks);
    if (opts.size !== undefined && opts.size !== data.length) {
      throw new FerryError('INVALID_ARGUMENT', `upload ${id} has ${data.length} bytes, not ${opts.size}`);
    }
    const actual = `${algorithm}:${createHash(algorithm).update(data).digest('hex')}`;
    this.#uploads.delete(id);
    if (actual !== expected) throw new DigestMismatchError(expected, actual, `upload ${id}`);
    await (opts.critical ?? direct)(async () => {
      this.#blobs.set(expected, { data, mtimeMs: Date.now() });
    });
    return { digest: expected, size: data.length };
  }

  async abortUpload(id: string): Promise<void> {
    this.#uploads.delete(id);
  }

  async listUploads(): Promise<Array<{ id: string; mtimeMs: number }>> {
    return [...this.#uploads].map(([id, u]) => ({ id, mtimeMs: u.mtimeMs }));
  }

  async delete(digest: string, opts: { critical?: Critical } = {}): Promise<boolean> {
    parseDigest(digest);
    return (opts.critical ?? direct)(async () => this.#blobs.delete(digest));
  }
}
