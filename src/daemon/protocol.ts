/**
 * @module daemon/protocol
 * The daemon's wire contract (api/daemon.openapi.yaml), shared by its server (api.ts, daemon.ts),
 * its client (client.ts) and the snapshotter: mount requests and their schema, mount info, the
 * `LazyFs` interface both the in-process `Daemon` and the `DaemonClient` implement, and the
 * prefetch trace a mount request may carry (its codec is oci/prefetch-trace.ts: the trace is an OCI
 * artifact, a referrer of the image's Nydus manifest).
 */
import { posix } from 'node:path';
import { z } from 'zod';
import type { PrefetchTrace } from '../oci/index.js';
import type { GcReport } from '../storage/index.js';

// ---- prefetch traces ----

// The trace is an OCI artifact: its wire form, limits and codec are defined once, in oci/prefetch-trace.ts.
export {
  PREFETCH_TRACE_ARTIFACT_TYPE,
  PREFETCH_TRACE_LIMITS,
  decodePrefetchTrace,
  parsePrefetchTrace,
  type PrefetchTrace,
} from '../oci/index.js';

// ---- mounts ----

export type MountBackend =
  | {
      type: 'registry';
      host: string;
      repo: string;
      insecure?: boolean;
      /**
       * base64 `user:password` for the registry (the snapshotter's credential chain). Travels in
       * memory only: never in mount listings or logs; a daemon that records mounts for a restart
       * keeps it in a separate owner-only file. Replaced with `PUT /api/v1/mounts/{id}/auth`.
       */
      auth?: string;
      proxy?: string;
    }
  | { type: 'localfs'; dir: string };

/** The command an image's containers run (config Entrypoint + Cmd, Env, WorkingDir). */
export interface StartupHint {
  argv: string[];
  env?: string[];
  workingDir?: string;
}

export interface MountRequest {
  id: string;
  /** the image reference, for log lines about this mount (a refused credential names the image) */
  image?: string;
  mountpoint: string;
  bootstrapPath: string;
  mode?: 'erofs' | 'fuse';
  backend: MountBackend;
  cacheDir?: string;
  prefetch?: boolean | string[];
  /** the command the image's containers run: its loader reads are fetched at once (startup-prefetch) */
  startup?: StartupHint;
  /** chunks an earlier start of this image read: prefetched at once, in place of `startup` */
  trace?: PrefetchTrace;
  /** an OCI-ref image's zran index file (format/zran): its blobs are read from the original gzip layers */
  zranIndex?: string;
}

/**
 * An absolute path in normal form (no `//`, `.` or `..` components, no trailing `/`, no NUL): two
 * spellings of one directory would defeat the "already mounted there" check.
 */
const absolutePath = (what: string): z.ZodType<string> =>
  z
    .string()
    .min(1)
    .superRefine((p, ctx) => {
      if (!p.startsWith('/')) ctx.addIssue({ code: 'custom', message: `${what} must be absolute` });
      else if (p.includes('\0')) ctx.addIssue({ code: 'custom', message: `${what} contains NUL` });
      else if (p !== posix.normalize(p) || (p.length > 1 && p.endsWith('/'))) {
        const normal = JSON.stringify(posix.normalize(p).replace(/(.)\/$/, '$1'));
        ctx.addIssue({ code: 'custom', message: `${what} must be in normal form (no //, . or .. components, no trailing /): ${normal}` });
      }
    });

/** A mount request as the daemon accepts it (the trace is checked by parsePrefetchTrace). */
export const mountRequestSchema = z.strictObject({
  id: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/, 'id: letters, digits, . _ - (max 128)'),
  image: z.string().min(1).max(1024).optional(),
  mountpoint: absolutePath('mountpoint').refine((p) => p !== '/', 'mountpoint must not be /'),
  bootstrapPath: absolutePath('bootstrapPath'),
  mode: z.enum(['erofs', 'fuse']).optional(),
  backend: z.discriminatedUnion('type', [
    z.strictObject({
      type: z.literal('registry'),
      host: z.string().min(1),
      repo: z.string().min(1),
      insecure: z.boolean().optional(),
      auth: z.string().optional(),
      proxy: z.string().optional(),
    }),
    z.strictObject({ type: z.literal('localfs'), dir: absolutePath('backend.dir') }),
  ]),
  cacheDir: absolutePath('cacheDir').optional(),
  zranIndex: absolutePath('zranIndex').optional(),
  prefetch: z.union([z.boolean(), z.array(z.string())]).optional(),
  /**
   * The command its containers run (image config Entrypoint + Cmd, Env, WorkingDir): the loader's
   * share of what that command reads at start is fetched right away (daemon/startup-prefetch).
   */
  startup: z
    .strictObject({
      argv: z.array(z.string()).min(1).max(4096),
      env: z.array(z.string()).max(4096).optional(),
      workingDir: z.string().optional(),
    })
    .optional(),
  /** A prefetch trace (validated by parsePrefetchTrace): its chunks are fetched at once, in place of `startup`. */
  trace: z.unknown().optional(),
});

export interface MountMetrics {
  bytesFetched: number;
  chunksCached: number;
  cacheHitRatio: number;
  backendErrors: number;
}

/** What mount listings show of `backend.auth`: whether credentials are held, never their value. */
export const REDACTED_AUTH = '<redacted>';

/** Body of `PUT /api/v1/mounts/{id}/auth`. */
export const setAuthSchema = z.strictObject({ auth: z.string().min(1).max(16_384).optional() });

export type MountInfo = MountRequest & {
  metrics: MountMetrics;
  /** the mode actually in use (EROFS falls back to FUSE where the kernel path fails) */
  activeMode?: 'erofs' | 'fuse';
  /** extra counters: chunks the image references, backend requests, P2P fallbacks, digest mismatches */
  stats?: {
    chunksTotal: number;
    requests: number;
    proxyFallbacks: number;
    digestMismatches: number;
    prefetchedBytes: number;
    /** bytes copied from another blob's cache (same chunk digest) instead of fetched */
    sharedBytes?: number;
    /** compressed bytes fetched before a reader asked for them, and of them read since, by why (amplified misses, rest of whole files, gaps read over, start-up/trace prefetch) */
    ahead?: Record<'amplify' | 'whole' | 'gap' | 'read-ahead' | 'prefetch', { fetched: number; read: number }>;
    fuseRequests: number;
    /** files a read of their first chunk fetches whole (`ferry.whole_so`, `ferry.whole_file`); absent until the mount has marked them */
    wholeFiles?: number;
    /** OCI-ref mounts: compressed bytes read from the original gzip layers (bytesFetched counts chunk bytes) */
    layerBytes?: number;
  };
  /** the background fill (daemon config `ferry.fill_deadline`), absent when it is off */
  fill?: FillStatus;
};

/**
 * Background fill of a mounted image: bytes are compressed bytes (what the backend sends).
 * `waiting`: behind the start-up prefetch; `retrying`: the last batch fetched nothing (backend
 * failing), tried again after a backoff; `stopped`: closed before done.
 */
export interface FillStatus {
  state: 'waiting' | 'filling' | 'retrying' | 'done' | 'stopped';
  filledBytes: number;
  totalBytes: number;
  /** filled / total, one decimal */
  percent: number;
  /** bytes/s the fill is allowed now (the idle rate, raised to meet the deadline); 0 = unlimited */
  rateBytesPerSecond: number;
  /** seconds until done at that rate (or the rate measured so far when unlimited) */
  etaSeconds?: number;
  /** when the image should be wholly cached (ISO 8601) */
  deadline: string;
}

/** `GET /api/v1/daemon`. */
export interface DaemonInfo {
  version: string;
  state: 'RUNNING';
  pid: number;
  uptimeSeconds: number;
  mounts: number;
}

/** What one node cache GC round did (`POST /api/v1/cache/gc`; storage/cache-gc's report); bytes are bytes on disk. */
export type CacheGcReport = GcReport;

/** The node cache (`GET /api/v1/cache`). */
export interface CacheStatus {
  quota: number;
  usedBytes: number;
  evictedBytes: number;
  refetchedBytes: number;
  /** bytes copied from another blob's cache (same chunk digest) instead of fetched */
  sharedBytes: number;
  blobs: number;
}

/** Which recorded mounts a restarted daemon mounts again (`ids`: only these; default all). */
export interface RestoreOptions {
  remount: boolean;
  ids?: string[];
  /** Records not in `ids`: left alone (default) or cleaned up and forgotten. */
  others?: 'skip' | 'clean';
}

/** The lazy-loading filesystem: the in-process `Daemon`, or a `DaemonClient` of `ferry daemon --apisock`. */
export interface LazyFs {
  mount(req: MountRequest): Promise<MountInfo>;
  /** The access trace a mount has recorded so far (StorageDevice.trace). */
  trace(id: string): Promise<PrefetchTrace>;
  umount(id: string): Promise<void>;
  /**
   * New registry credentials (base64 `user:password`, undefined: none) for a mount's backend —
   * used from its next token request on (a token refresh, or a 401).
   */
  setAuth(id: string, auth: string | undefined): Promise<void>;
  list(): Promise<MountInfo[]>;
  /**
   * In-process only: after a crash, mounts again what a killed predecessor had mounted on the same
   * data dir — taking over its EROFS mounts, which containers may still use — or cleans up what it
   * left (dead FUSE mounts, loop devices) and forgets it (`remount: false`). A client of a separate
   * daemon has none: that daemon keeps its mounts across our restarts.
   */
  restore?(opts: RestoreOptions): Promise<unknown>;
  /** One node cache GC round now: blobs no mount uses are deleted, then LRU eviction down to the quota. */
  gc(): Promise<CacheGcReport>;
  cache(): Promise<CacheStatus>;
  close(): Promise<void>;
}
