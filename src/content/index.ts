/**
 * @module content
 * Content-addressed blob storage: the `BlobStore` contract (read, resumable verified uploads,
 * delete), a local-directory implementation (atomic temp + fsync + rename) and an in-memory fake.
 * A library tier folder: imports only core. The S3 implementation (`s3/`, shared by registry
 * replicas) runs the same `testsuite.ts` against a real radosgw.
 */
export type { BlobStore, BlobProvider, BlobIngester, BlobManager, BlobInfo, CommittedBlob, Critical, AppendOptions } from './content.js';
export { LocalBlobStore } from './local/local-store.js';
export { MemoryBlobStore } from './memory/memory-store.js';
export { S3BlobStore, type S3BlobStoreOptions } from './s3/s3-store.js';
