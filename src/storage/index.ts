/**
 * @module storage
 * Lazy chunk access, in three layers as nydusd does it.
 *
 * **Backend** (`backend.ts`) — where the bytes of a data blob live: a registry (ranged GETs on
 * `/v2/<repo>/blobs/sha256:<id>` through the shared registry client, which brings token auth with
 * refresh, redirects, retries with backoff and a per-request timeout), a local directory of blob
 * files, or a P2P proxy that is tried first and abandoned per read for the registry when it fails
 * (counted as a fallback). A backend only moves compressed bytes; it knows no chunks.
 *
 * **Cache** (`cache.ts`) — per blob, the uncompressed chunks at their uncompressed offsets in
 * `<id>.blob.data` and a persisted bitmap of ready chunks in `<id>.chunk_map` (nydusd's blobcache
 * layout). It survives restarts: what is marked ready is never fetched again. The data file is, byte
 * for byte, the "uncompressed blob view" an EROFS mount of a RAFS v6 bootstrap reads as its extra
 * device, which is what makes the kernel fast path possible.
 *
 * **Device** (`device.ts`) — the read API, `read(blobId, uncompressedOffset, length)`, used both by
 * the FUSE filesystem (file offsets mapped to chunks by the bootstrap) and by the blob-view files
 * of EROFS mode (kernel block reads). It finds the chunks a read touches, fetches the missing ones
 * — each at most once at a time however many readers wait for it — decodes and verifies each
 * (format/compress's chunk decoder; big chunks in a small thread pool, `decode-pool.ts`; a mismatch
 * is refetched once, then the read fails and the log names blob and chunk), stores it, and serves
 * the bytes from the cache file. Each backend request has a hard deadline, so a dead backend turns
 * into an error (EIO at the FUSE edge) instead of a hung process, and the next read tries again.
 *
 * **Fetch planner** (`fetch-plan.ts`) — pure: which requests to make (neighbours merged into one
 * ranged request, bounded in size and gap; read-ahead that grows while misses are sequential) and
 * how a prefetch list is cut, steered by named constants. **Prefetcher** (`prefetcher.ts`) — the
 * background queue: merged, throttled, yielding to on-demand reads unless urgent. The cache's
 * bitmap bit order, which FUSE reader threads read too, is in `protocol.ts`.
 */
export {
  RegistryBackend,
  LocalFsBackend,
  ProxyBackend,
  type Backend,
  type ReadProgress,
  type RegistryBackendOptions,
  type ProxyBackendOptions,
} from './backend.js';
export { BlobCache } from './cache.js';
export { ChunkIndex, type ChunkIndexStats } from './chunk-index.js';
export { ZranBackend } from './zran-backend.js';
export {
  StorageDevice,
  type DeviceBlob,
  type DeviceChunk,
  type DeviceStats,
  type BlobViewMap,
  type StorageDeviceOptions,
  type PrefetchOptions,
} from './device.js';
export {
  NodeCache,
  planEviction,
  GC_LOW_WATERMARK,
  type CacheUser,
  type CachedBlob,
  type EvictionPlan,
  type GcReport,
  type NodeCacheOptions,
} from './cache-gc.js';
