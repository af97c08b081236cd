/**
 * @module daemon
 * The lazy-loading filesystem (the role of nydusd): RAFS bootstrap reader + storage device, served
 * over FUSE or mounted by the kernel as EROFS over lazily filled blob views; `Daemon` in-process,
 * `DaemonClient` over `ferry daemon --apisock`. Both implement `LazyFs` (protocol.ts: the wire contract).
 */
export { Daemon, type DaemonOptions } from './daemon.js';
export { DaemonClient } from './client.js';
export { startApi, type ApiServer } from './api.js';
export { RafsFs, BlobViewFs } from './rafs-fs.js';
export { cleanupMountLeftovers } from './leftovers.js';
export {
  PREFETCH_TRACE_ARTIFACT_TYPE,
  PREFETCH_TRACE_LIMITS,
  decodePrefetchTrace,
  parsePrefetchTrace,
  mountRequestSchema,
  type PrefetchTrace,
  type LazyFs,
  type MountRequest,
  type MountInfo,
  type MountMetrics,
  type MountBackend,
  type StartupHint,
  type DaemonInfo,
} from './protocol.js';
