/**
 * @module daemon/types
 * The LazyFs contract shared by the in-process `Daemon` and the `DaemonClient` (agreed interface 5).
 */
import type { PrefetchTrace } from '../oci/index.js';

export type MountBackend =
  | { type: 'registry'; host: string; repo: string; insecure?: boolean; auth?: string /* base64 user:pass */; proxy?: string }
  | { type: 'localfs'; dir: string };

export interface MountRequest {
  id: string;
  mountpoint: string;
  bootstrapPath: string;
  mode?: 'erofs' | 'fuse';
  backend: MountBackend;
  cacheDir?: string;
  prefetch?: boolean | string[];
  /** the command the image's containers run: its loader reads are fetched at once (startup-prefetch) */
  startup?: { argv: string[]; env?: string[]; workingDir?: string };
  /** chunks an earlier start of this image read (oci/prefetch-trace): prefetched at once, in place of `startup` */
  trace?: PrefetchTrace;
}

export interface MountMetrics {
  bytesFetched: number;
  chunksCached: number;
  cacheHitRatio: number;
  backendErrors: number;
}

export type MountInfo = MountRequest & {
  metrics: MountMetrics;
  /** the mode actually in use (EROFS falls back to FUSE where the kernel path fails) */
  activeMode?: 'erofs' | 'fuse';
  /** extra counters: chunks the image references, backend requests, P2P fallbacks, digest mismatches */
  stats?: { chunksTotal: number; requests: number; proxyFallbacks: number; digestMismatches: number; prefetchedBytes: number; fuseRequests: number };
};

export interface LazyFs {
  mount(req: MountRequest): Promise<MountInfo>;
  /** The access trace a mount has recorded so far (StorageDevice.trace). */
  trace(id: string): Promise<PrefetchTrace>;
  umount(id: string): Promise<void>;
  list(): Promise<MountInfo[]>;
  close(): Promise<void>;
}
