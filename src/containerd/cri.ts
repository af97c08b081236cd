/**
 * @module containerd/cri
 * The Kubernetes CRI (package runtime.v1) as Ferry describes it (api/cri/runtime/v1/api.proto):
 * the ImageService definition the snapshotter's CRI proxy forwards, the decoder of a
 * `PullImageRequest` (the image and the credentials kubelet hands over), and client constructors
 * for the RuntimeService and ImageService (tests act as kubelet with them).
 */
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { FerryError } from '../core/index.js';
import { API_DIR } from './proto.js';

export const CRI_IMAGE_SERVICE = 'runtime.v1.ImageService';
export const CRI_RUNTIME_SERVICE = 'runtime.v1.RuntimeService';

let cached: protoLoader.PackageDefinition | undefined;

function definition(): protoLoader.PackageDefinition {
  if (!cached) {
    const dir = join(API_DIR, '..', 'cri');
    cached = protoLoader.loadSync(join(dir, 'runtime/v1/api.proto'), {
      keepCase: true,
      longs: Number,
      enums: String,
      defaults: true,
      arrays: true,
      objects: true,
      includeDirs: [dir],
    });
  }
  return cached;
}

/** The methods of a CRI service (path, and the decoders of its messages). */
export function criServiceDefinition(name: typeof CRI_IMAGE_SERVICE | typeof CRI_RUNTIME_SERVICE): grpc.ServiceDefinition {
  const d = definition()[name];
  if (!d || 'format' in d) throw new FerryError('INTERNAL', `${name} not in api/cri`);
  return d as unknown as grpc.ServiceDefinition;
}

/** A client constructor of a CRI service (RuntimeService / ImageService). */
export function criClientConstructor(name: typeof CRI_IMAGE_SERVICE | typeof CRI_RUNTIME_SERVICE): grpc.ServiceClientConstructor {
  return grpc.makeClientConstructor(criServiceDefinition(name) as grpc.ServiceDefinition, name);
}

/** What the proxy reads of a PullImage: the image, and the credentials (if any). */
export interface CriPullImage {
  image: string;
  auth?: { username: string; password: string; auth: string; server_address: string; identity_token: string; registry_token: string };
}

/** Decodes a PullImageRequest from its wire bytes. */
export function decodePullImageRequest(buf: Buffer): CriPullImage {
  const m = criServiceDefinition(CRI_IMAGE_SERVICE).PullImage!;
  const r = m.requestDeserialize(buf) as { image?: { image?: string }; auth?: CriPullImage['auth'] | null };
  return { image: r.image?.image ?? '', ...(r.auth ? { auth: r.auth } : {}) };
}
