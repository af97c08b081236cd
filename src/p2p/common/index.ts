/**
 * @module p2p/common
 * What the scheduler and the peer share: identity and piece arithmetic, wire shapes, the hash
 * ring, rate limiting, the small HTTP client, configuration snippets.
 */
export {
  taskId,
  objectTaskId,
  rangeContains,
  filterUrl,
  pieceLengthFor,
  pieceLengthForRange,
  formatTaskRange,
  parseTaskRange,
  pieceCount,
  pieceRange,
  piecesForRange,
  pieceDigest,
  parseRangeHeader,
  hostId,
  peerId,
  blobDigestOfUrl,
  DEFAULT_FILTERED_QUERY_PARAMS,
  MIN_PIECE_LENGTH,
  MAX_PIECE_LENGTH,
  MAX_PIECE_COUNT,
  type TaskIdInput,
  type RangeSpec,
} from './idgen.js';
export * from './protocol.js';
export { HashRing } from './hashring.js';
export { TokenBucket } from '../../core/index.js';
export { request, readAll, jsonRequest, drained, type RequestOptions, type Response } from './http.js';
export { hostsToml, httpProxyDropIn } from './snippets.js';
export {
  ClusterAuth,
  isLoopbackHost,
  loadClusterSecret,
  readAuthenticated,
  CLUSTER_AUTH_SCHEME,
  CLUSTER_AUTH_WINDOW_MS,
  CLUSTER_SECRET_HINT,
  MIN_CLUSTER_SECRET_LENGTH,
  type ClusterAuthCheck,
} from './cluster-auth.js';
export { LogThrottle } from './logthrottle.js';
export { redactUrl, redactHeaders, REDACTED } from './redact.js';
