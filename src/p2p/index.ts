/**
 * @module p2p
 * Peer-to-peer distribution (the role of Dragonfly): scheduler, node agent / seed peer, client,
 * and the shared identity/piece arithmetic.
 */
export { startScheduler, type StartSchedulerOptions, type SchedulerHandle } from './scheduler/index.js';
export { startPeer, PeerClient, createCa, LeafMinter, UpstreamPolicy, type StartPeerOptions, type PeerHandle } from './peer/index.js';
export {
  taskId,
  filterUrl,
  pieceLengthFor,
  pieceCount,
  pieceRange,
  pieceDigest,
  hostId,
  peerId,
  blobDigestOfUrl,
  DEFAULT_FILTERED_QUERY_PARAMS,
  type TaskIdInput,
} from './common/index.js';
export { HashRing } from './common/index.js';
export { hostsToml, httpProxyDropIn } from './common/index.js';
