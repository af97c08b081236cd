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
 * Runs a synchronous step (`act`) inside the caller's critical section and returns its result;
 * the default is to just call it.
 */
export type Critical = <T>(act: () => T) => T;

/** The result of committing an upload. */
export interface CommittedBlob {
  digest: string;
  size: number;
}

/** Writing blobs through resumable uploads. */
export interface BlobIngester {
  /** Creates an empty upload with an opaque id (a UUID is expected). */
  startUpload(id: string): Promise<void>;
  /** Bytes received so far; NOT_FOUND for an unknown upload. */
  uploadSize(id: string): Promise<number>;
  /**
   * Appends `body` at `offset`, which must equal the current size (FAILED_PRECONDITION otherwise).
   * Resolves to the new size. `limit` caps the bytes accepted (RESOURCE_EXHAUSTED beyond it).
   */
  append(id: string, offset: number, body: Readable, opts?: { limit?: number; signal?: AbortSignal }): Promise<number>;
  /**
   * Verifies the upload against `expected` (DigestMismatchError / DATA_LOSS on mismatch, the upload
   * is then removed; INVALID_ARGUMENT when `size` is given and differs) and makes it the blob
   * `expected` (local store: fsync + rename). When `critical` is given, the store calls it with a
   * synchronous `publish` that makes the blob visible, so the caller can run it inside its own lock
   * together with its metadata write (garbage collection takes the same lock).
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
    /** Releases resources (open descriptors); the store is unusable afterwards. */
    close?(): Promise<void>;
  };
