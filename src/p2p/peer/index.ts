/**
 * @module p2p/peer
 * The P2P node agent (dfdaemon / seed peer): `startPeer`, and `PeerClient` for talking to one.
 */
export { startPeer, type StartPeerOptions, type PeerHandle } from './peer.js';
export { PeerClient } from './client.js';
export { createCa, LeafMinter, loadOrCreateCa } from './ca.js';
export { PieceStore, TaskEntry } from './store.js';
export { UpstreamPolicy, hostPortOf } from './upstreams.js';
