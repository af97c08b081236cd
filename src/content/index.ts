/**
 * @module content
 * Content-addressed blob storage: the `BlobStore` contract (read, resumable verified uploads,
 * delete), a local-directory implementation (atomic temp + fsync + rename) and an in-memory fake.
 * A library tier folder: imports only core. An S3-compatible implementation would sit beside
 * `local/` and run the same `testsuite.ts`.
 */
export type { BlobStore, BlobProvider, BlobIngester, BlobManager, BlobInfo, CommittedBlob, Critical, AppendOptions } from './content.js';
export { LocalBlobStore } from './local/local-store.js';
export { MemoryBlobStore } from './memory/memory-store.js';
