/**
 * @module containerd
 * Talking containerd's gRPC API over its unix socket: the .proto files (api/containerd) loaded with
 * their wire shapes, the one table between Ferry's error codes and gRPC statuses (containerd's
 * errdefs), promise clients of the snapshots, content, images, diff and leases services, and the
 * snapshot model (kinds, info, mounts). A library: the snapshotter serves the snapshots service with
 * these definitions, `ferry pull` and the snapshotter's pull API call containerd with these clients.
 */
export type { Kind, Mount, SnapshotInfo } from './types.js';
export { GRPC_STATUS, toGrpcError, fromGrpcError } from './grpc-status.js';
export {
  serviceConstructor,
  toTimestamp,
  fromTimestamp,
  API_DIR,
  SERVICE_NAMES,
  type PbTimestamp,
  type PbMount,
  type PbKind,
  type PbInfo,
  type PbDescriptor,
} from './proto.js';
export { GrpcConnection, SnapshotsClient, type CallContext } from './client.js';
export { ContainerdApi, type ContentDescriptor } from './api.js';
export {
  CRI_IMAGE_SERVICE,
  CRI_RUNTIME_SERVICE,
  criServiceDefinition,
  criClientConstructor,
  decodePullImageRequest,
  type CriPullImage,
} from './cri.js';
export { mergeProxySnapshotter, type ProxySnapshotter } from './config-toml.js';
