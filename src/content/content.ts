/**
 * @module content/content
 * The content-addressed blob store contract. A blob is named by its digest and becomes visible only
 * after its bytes were verified against that digest. Writes go through an upload ("ingest") that
 * is appended to in order and then committed atomically; an aborted or crashed upload never
 * becomes a blob.
 */
import type { Readable } from 'node:stream';

/** What is known about a stored blob. */
export interface BlobInfo {
  digest: string;
  size: number;
  /** Last modification, ms since the epoch. */
  mtimeMs: number;
}

/** Reading committed blobs. */
export interface BlobProvider {
  /** Size and mtime of a blob, or undefined when absent. Throws INVALID_ARGUMENT for a malformed digest. */
  stat(digest: string): Promise<BlobInfo | undefined>;
  /**
   * A stream of the blob's bytes, `[start, end]` inclusive when a range is given.
   * Throws NOT_FOUND when absent. The caller reads the stream to its end or destroys it (a stream
   * may hold a reference to a cached descriptor until then).
   */
  read(digest: string, range?: { start: number; end: number }): Promise<Readable>;
  /** Every committed blob (for garbage collection). */
  list(): AsyncIterable<BlobInfo>;
}

/**
 * Runs `act` — the step that makes a blob visible (a rename, an object-store copy) or removes it —
 * inside the caller's critical section and resolves to its result; without one the store just runs
 * it. `act` may do I/O: the caller holds its lock (a SQLite write transaction, a PostgreSQL
 * transaction with the digest's advisory lock) until `act` settles, so a metadata row and the bytes
 * it names appear and disappear together.
 */
export type Critical = <T>(act: () => Promise<T>) => Promise<T>;

/** The result of committing an upload. */
export interface CommittedBlob {
  digest: string;
  size: number;
}

/** Options of `BlobIngester.append`. */
export interface AppendOptions {
  limit?: number;
  signal?: AbortSignal;
  last?: boolean;
}

/** Writing blobs through resumable uploads. An upload may be continued by another process sharing the store (an object store). */
export interface BlobIngester {
  /** Creates an empty upload with an opaque id (a UUID is expected). */
  startUpload(id: string): Promise<void>;
  /** Bytes received so far; NOT_FOUND for an unknown upload. */
  uploadSize(id: string): Promise<number>;
  /**
   * Appends `body` at `offset`, which must equal the current size (FAILED_PRECONDITION otherwise).
   * Resolves to the new size. `limit` caps the bytes accepted (RESOURCE_EXHAUSTED beyond it).
   * `last`: the caller commits the upload right after, in this process (a monolithic PUT), so the
   * store need not keep state for another process to resume from (an object store skips saving
   * its hash state).
   */
  append(id: string, offset: number, body: Readable, opts?: AppendOptions): Promise<number>;
  /**
   * Verifies the upload against `expected` (DigestMismatchError / DATA_LOSS on mismatch, the upload
   * is then removed; INVALID_ARGUMENT when `size` is given and differs) and makes it the blob
   * `expected` (local store: fsync + rename; object store: copy or complete to the blob's key).
   * When `critical` is given, the store calls it with the `publish` step that makes the blob
   * visible, so the caller can run it inside its own lock together with its metadata write (garbage
   * collection takes the same lock). A `critical` that throws before running `publish` leaves the
   * upload in place (the caller may abort it).
   */
  commitUpload(id: string, expected: string, opts?: { size?: number; critical?: Critical }): Promise<CommittedBlob>;
  /** Removes an upload; a no-op when unknown. */
  abortUpload(id: string): Promise<void>;
  /** Ids and last-modified times of uploads in progress (for garbage collection of stale uploads). */
  listUploads(): Promise<Array<{ id: string; mtimeMs: number }>>;
}

/** Deleting blobs. */
export interface BlobManager {
  /**
   * Removes a blob; resolves false when it did not exist. With `critical`, the synchronous removal is
   * handed to the caller to run inside its lock (see commitUpload).
   */
  delete(digest: string, opts?: { critical?: Critical }): Promise<boolean>;
}

/** The full blob store. */
export type BlobStore = BlobProvider &
  BlobIngester &
  BlobManager & {
    /** A local file holding the blob, when the store is a local directory (fast path for serving). */
    localPath?(digest: string): string;
    /** The bytes in one buffer (fast path for small blobs; same errors as `read`). */
    readBuffer?(digest: string, range?: { start: number; end: number }): Promise<Buffer>;
    /**
     * A URL the client may fetch the blob from directly for `expiresInSeconds` (an object store's
     * presigned GET; distribution's `redirect`). Absent when the store cannot hand out such URLs.
     */
    presignedUrl?(digest: string, expiresInSeconds: number): Promise<string>;
    /** Releases resources (open descriptors); the store is unusable afterwards. */
    close?(): Promise<void>;
  };
