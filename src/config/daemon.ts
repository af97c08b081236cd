/**
 * @module config/daemon
 * Configuration of the lazy-loading daemon. `ferry daemon --config FILE` reads nydusd's (v1) JSON
 * configuration — `device.backend`, `device.cache`, `fs_prefetch`, `amplify_io`, … — where the keys
 * apply, plus a `ferry` section for what nydusd has no key for. Unknown keys are an error. (The
 * schema of one mount request, the daemon API's body, is in daemon/protocol.ts.)
 */
import { z } from 'zod';
import { parseDuration } from '../core/index.js';
import { parseConfig, sizeSchema as size } from './parse.js';

/** nydusd gives timeouts in seconds (numbers); strings go through parseDuration. */
const seconds = z.union([
  z
    .number()
    .nonnegative()
    .transform((n) => n * 1000),
  z.string().transform((s, ctx) => {
    try {
      return parseDuration(s);
    } catch (e) {
      ctx.addIssue({ code: 'custom', message: (e as Error).message });
      return z.NEVER;
    }
  }),
]);

const proxySchema = z.strictObject({
  url: z.string().default(''),
  ping_url: z.string().optional(),
  fallback: z.boolean().default(true),
  check_interval: z.number().optional(),
  check_pause_elapsed: z.number().optional(),
  use_http: z.boolean().optional(),
});

const backendConfigSchema = z.strictObject({
  // registry
  scheme: z.enum(['', 'http', 'https']).optional(),
  host: z.string().optional(),
  repo: z.string().optional(),
  auth: z.string().optional(),
  registry_token: z.string().optional(),
  skip_verify: z.boolean().optional(),
  ca_cert_files: z.array(z.string()).optional(),
  timeout: seconds.optional(),
  connect_timeout: seconds.optional(),
  retry_limit: z.number().int().min(0).max(10).optional(),
  blob_url_scheme: z.string().optional(),
  blob_redirected_host: z.string().optional(),
  proxy: proxySchema.optional(),
  mirrors: z.array(z.unknown()).optional(),
  // localfs
  dir: z.string().optional(),
  blob_file: z.string().optional(),
  alt_dirs: z.array(z.string()).optional(),
});

/**
 * Default largest ELF file of a mount's start-up set fetched whole at mount (bytes; 0 = only the
 * loader's reads; daemon/startup-prefetch). A program starting up faults in pages scattered over
 * its own and its libraries' code and read-only data (a cold python start: ~90 single-chunk reads
 * over python3.11, libc, libm and the loader, one after another); fetched whole, as a few large
 * requests in flight at once while the container is set up, they cost bytes instead of round trips.
 */
export const DEFAULT_WHOLE_ELF = 8 * 1024 * 1024;
/**
 * Default largest other file fetched whole when its first chunk is read (bytes; 0 = none): a file
 * read from its start is almost always read to its end (python's .pyc files: 2–3 requests each
 * otherwise, one after another).
 */
export const DEFAULT_WHOLE_FILE = 256 * 1024;
/**
 * Default largest shared object (`*.so`, `*.so.N`) fetched whole when its first chunk is read (a
 * dlopen; bytes; 0 = none). Smaller than the start-up set's limit: these are loaded while the
 * program runs, and a big library a program barely touches (numpy's liblapack, 4 MB compressed)
 * costs more link time whole than its page faults cost round trips.
 */
export const DEFAULT_WHOLE_SO = 2 * 1024 * 1024;
/**
 * Miss amplification (storage/speculation; the same values as storage/fetch-plan's defaults): the
 * starting window of a miss in a region of the blob that missed before, the largest it grows to
 * while what it fetched ahead is read, and the most amplified bytes fetched and not read yet.
 * Measured on a cold pyimport start (bench/daemon/requests.ts): 128 KiB / 2 MiB spent the budget
 * early (414 requests), 512 KiB / 4 MiB made ~205 requests for 18.5 MiB, 512 KiB / 6 MiB ~180 for 19.3 MiB (docs/results/bench-15.md §6).
 */
export const DEFAULT_MISS_WINDOW = 512 * 1024;
export const DEFAULT_MISS_WINDOW_MAX = 1024 * 1024;
export const DEFAULT_AMPLIFY_BUDGET = 6 * 1024 * 1024;

export const daemonConfigSchema = z.strictObject({
  device: z
    .strictObject({
      backend: z.strictObject({ type: z.enum(['registry', 'localfs']), config: backendConfigSchema.default({}) }).optional(),
      cache: z
        .strictObject({
          type: z.enum(['blobcache', 'filecache', '']).default('blobcache'),
          compressed: z.literal(false).optional(),
          config: z.strictObject({ work_dir: z.string().optional(), disable_indexed_map: z.boolean().optional() }).default({}),
        })
        .optional(),
    })
    .default({}),
  mode: z.literal('direct').optional(),
  digest_validate: z.boolean().optional(),
  iostats_files: z.boolean().optional(),
  enable_xattr: z.boolean().optional(),
  amplify_io: size.default(1024 * 1024),
  fs_prefetch: z
    .strictObject({
      enable: z.boolean().default(false),
      threads_count: z.number().int().positive().optional(),
      merging_size: size.default(1024 * 1024),
      bandwidth_rate: size.default(0),
      prefetch_all: z.boolean().default(true),
      stream_prefetch: z.boolean().optional(),
    })
    .default({ enable: false, merging_size: 1024 * 1024, bandwidth_rate: 0, prefetch_all: true }),
  /** what nydusd has no key for */
  ferry: z
    .strictObject({
      /** default filesystem mode of mounts that do not ask for one */
      mode: z.enum(['erofs', 'fuse']).default('erofs'),
      /** FUSE request reader threads per mount */
      fuse_threads: z.number().int().min(1).max(64).default(4),
      /** hard deadline of one backend request including retries */
      request_deadline: seconds.optional(),
      /** largest gap (compressed bytes) read over to merge two requests into one (storage/fetch-plan) */
      merge_gap: size.default(32 * 1024),
      /** starting window a clustered on-demand miss is amplified toward (storage/speculation); 0 = off */
      miss_window: size.default(DEFAULT_MISS_WINDOW),
      /** the largest the miss window grows to while what it fetched ahead is read */
      miss_window_max: size.default(DEFAULT_MISS_WINDOW_MAX),
      /** amplified bytes fetched and not read yet, at most (the waste amplification may cause) */
      amplify_budget: size.default(DEFAULT_AMPLIFY_BUDGET),
      /** count the reads of every chunk fetched ahead in the mount's `stats.ahead`, not only amplified ones (a diagnostic: each first read of such a chunk hops to the main thread) */
      count_ahead: z.boolean().default(false),
      /** prefetch and read-ahead requests in flight at once per mount (on-demand reads never wait) */
      fetch_concurrency: z.number().int().min(1).max(64).default(4),
      /** ELF files of a mount's start-up set up to this size are fetched whole at mount (DEFAULT_WHOLE_ELF); 0 = only the loader's reads */
      whole_elf: size.default(DEFAULT_WHOLE_ELF),
      /** shared objects up to this size are fetched whole when their first chunk is read (DEFAULT_WHOLE_SO); 0 = none */
      whole_so: size.default(DEFAULT_WHOLE_SO),
      /** other files up to this size are fetched whole when their first chunk is read (DEFAULT_WHOLE_FILE); 0 = none */
      whole_file: size.default(DEFAULT_WHOLE_FILE),
      /**
       * requests through a P2P proxy are cut at multiples of this (bytes; 0 = not cut): set it to the
       * peers' `download.rangeGrid`, so every request is one whole-cell range task all nodes share
       */
      p2p_range_grid: size.default(0),
      /**
       * the node cache's quota (bytes on disk of every cache dir; 0 = none): over it, blobs no mount
       * uses go first, then blobs of mounted images least recently read (refetched when read again)
       */
      cache_quota: size.default(0),
      /** how often (seconds; ms once parsed) the node cache is checked against its quota, besides after each mount and unmount; 0 = only then */
      cache_gc_interval: seconds.default(30_000),
      /**
       * background fill: each mounted image is wholly fetched into the cache within this long after
       * its mount (seconds, or "10m"; ms once parsed), at idle priority; 0 = off (the default)
       */
      fill_deadline: seconds.default(0),
      /** the fill's idle rate (bytes/s), raised only as far as the deadline needs; 0 = unlimited */
      fill_rate: size.default(4 * 1024 * 1024),
      /**
       * content-addressed sharing: a chunk missing from one blob's cache that another blob's cache
       * holds (same digest, any image) is copied from there and verified instead of fetched
       */
      share_chunks: z.boolean().default(true),
    })
    .default({
      mode: 'erofs',
      fuse_threads: 4,
      merge_gap: 32 * 1024,
      miss_window: DEFAULT_MISS_WINDOW,
      miss_window_max: DEFAULT_MISS_WINDOW_MAX,
      amplify_budget: DEFAULT_AMPLIFY_BUDGET,
      count_ahead: false,
      fetch_concurrency: 4,
      whole_elf: DEFAULT_WHOLE_ELF,
      whole_so: DEFAULT_WHOLE_SO,
      whole_file: DEFAULT_WHOLE_FILE,
      p2p_range_grid: 0,
      cache_quota: 0,
      cache_gc_interval: 30_000,
      fill_deadline: 0,
      fill_rate: 4 * 1024 * 1024,
      share_chunks: true,
    }),
});

export type DaemonConfig = z.output<typeof daemonConfigSchema>;
export type DaemonConfigInput = z.input<typeof daemonConfigSchema>;

/** Validates a daemon configuration (nydusd v1 JSON); throws a readable error listing bad keys. */
export function parseDaemonConfig(input: unknown): DaemonConfig {
  return parseConfig(daemonConfigSchema, input, 'daemon');
}
