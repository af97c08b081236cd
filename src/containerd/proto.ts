/**
 * @module containerd/proto
 * Loads Ferry's own containerd .proto files (api/containerd/…) with @grpc/proto-loader and hands
 * out the service definitions: the snapshots service we serve, and the content, images, diff,
 * leases and snapshots services `ferry pull` calls on containerd.
 */
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { FerryError } from '../core/index.js';

/** Finds `api/containerd` above this module (works from src/ and from dist/src/). */
function findApiDir(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 8; i++) {
    const cand = join(dir, 'api', 'containerd');
    if (existsSync(join(cand, 'types', 'mount.proto'))) return cand;
    const up = dirname(dir);
    if (up === dir) break;
    dir = up;
  }
  throw new FerryError('INTERNAL', `api/containerd/*.proto not found above ${fileURLToPath(import.meta.url)}`);
}

export const API_DIR = findApiDir();

const LOADER_OPTIONS: protoLoader.Options = {
  keepCase: true, // snake_case field names as on the wire (created_at, update_mask, media_type)
  longs: Number,
  enums: String,
  defaults: true,
  arrays: true,
  objects: true,
  oneofs: true,
  includeDirs: [API_DIR],
};

const FILES = [
  'services/snapshots/v1/snapshots.proto',
  'services/content/v1/content.proto',
  'services/images/v1/images.proto',
  'services/diff/v1/diff.proto',
  'services/leases/v1/leases.proto',
];

let cached: grpc.GrpcObject | undefined;

function root(): grpc.GrpcObject {
  if (!cached) {
    const def = protoLoader.loadSync(
      FILES.map((f) => join(API_DIR, f)),
      LOADER_OPTIONS,
    );
    cached = grpc.loadPackageDefinition(def);
  }
  return cached;
}

function lookup(path: string): grpc.ServiceClientConstructor {
  let node: unknown = root();
  for (const part of path.split('.')) node = (node as Record<string, unknown>)[part];
  if (typeof node !== 'function') throw new FerryError('INTERNAL', `gRPC service ${path} not in the loaded protos`);
  return node as grpc.ServiceClientConstructor;
}

export const SERVICE_NAMES = {
  snapshots: 'containerd.services.snapshots.v1.Snapshots',
  content: 'containerd.services.content.v1.Content',
  images: 'containerd.services.images.v1.Images',
  diff: 'containerd.services.diff.v1.Diff',
  leases: 'containerd.services.leases.v1.Leases',
} as const;

/** Client constructor (and `.service` definition) of one containerd service. */
export function serviceConstructor(name: keyof typeof SERVICE_NAMES): grpc.ServiceClientConstructor {
  return lookup(SERVICE_NAMES[name]);
}

/** Wire shapes (as proto-loader presents them with the options above). */
export interface PbTimestamp {
  seconds: number;
  nanos: number;
}
export interface PbMount {
  type: string;
  source: string;
  target: string;
  options: string[];
}
export type PbKind = 'UNKNOWN' | 'VIEW' | 'ACTIVE' | 'COMMITTED';
export interface PbInfo {
  name: string;
  parent: string;
  kind: PbKind;
  created_at: PbTimestamp | null;
  updated_at: PbTimestamp | null;
  labels: Record<string, string>;
}
export interface PbDescriptor {
  media_type: string;
  digest: string;
  size: number;
  annotations: Record<string, string>;
}

export function toTimestamp(ms: number): PbTimestamp {
  const seconds = Math.floor(ms / 1000);
  return { seconds, nanos: Math.round((ms - seconds * 1000) * 1e6) };
}
export function fromTimestamp(ts: PbTimestamp | null | undefined): number {
  if (!ts) return 0;
  return Number(ts.seconds) * 1000 + Math.floor(Number(ts.nanos) / 1e6);
}
