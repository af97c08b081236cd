/**
 * @module daemon
 * The lazy-loading filesystem (the role of nydusd): RAFS bootstrap reader + storage device, served
 * over FUSE or mounted by the kernel as EROFS over lazily filled blob views; `Daemon` in-process,
 * `DaemonClient` over `ferry daemon --apisock`. Both implement `LazyFs`.
 */
export { Daemon, type DaemonOptions } from './daemon.js';
export { DaemonClient } from './client.js';
export { startApi, type ApiServer } from './api.js';
export { RafsFs, BlobViewFs } from './rafs-fs.js';
export { cleanupMountLeftovers } from './image-mount.js';
export type { LazyFs, MountRequest, MountInfo, MountMetrics, MountBackend } from './types.js';
// The prefetch trace (its type is part of LazyFs) is an OCI artifact: its codec lives in oci/prefetch-trace.ts.
export type { PrefetchTrace } from '../oci/index.js';
