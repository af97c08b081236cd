/**
 * @module snapshotter
 * containerd proxy-plugin snapshotter (the role of nydus-snapshotter): the snapshots gRPC
 * service over a unix socket, snapshot metadata in SQLite, overlayfs snapshots for ordinary
 * layers, lazy Nydus layers mounted through the daemon; and `ferry pull`, which drives containerd
 * through the clients in src/containerd.
 */
export { Snapshotter, type SnapshotterOptions, type SnapshotInfo, type Mount, type RemoteLayers } from './snapshotter.js';
export { serveSnapshots, type SnapshotServer, type SnapshotServerOptions } from './server.js';
export { parseFilter, matchesAny, type Filter } from './filters.js';
export { Label, remoteHint, validateLabels, MAX_LABEL_BYTES, type RemoteLayerHint } from './labels.js';
export type { Kind } from './store.js';
export { startSnapshotter, type StartSnapshotterOptions, type SnapshotterHandle } from './service.js';
export { LazyImages, mountIdOf } from './lazy.js';
export { pullImage, chainIds, imageLayersLabel, type PullOptions } from './pull.js';
export { parsePullRequest, type PullRequestBody, type PullResult, type PulledLayer, type PullLine } from './protocol.js';
export { fetchPrefetchTrace, pushPrefetchTrace } from './trace.js';
