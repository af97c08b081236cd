/**
 * @module daemon/types
 * The LazyFs contract shared by the in-process `Daemon` and the `DaemonClient` (agreed interface 5).
 */
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
  umount(id: string): Promise<void>;
  list(): Promise<MountInfo[]>;
  close(): Promise<void>;
}
