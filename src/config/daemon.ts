/**
 * @module config/daemon
 * Configuration of the lazy-loading daemon. `ferry daemon --config FILE` reads nydusd's (v1) JSON
 * configuration — `device.backend`, `device.cache`, `fs_prefetch`, `amplify_io`, … — where the keys
 * apply, plus a `ferry` section for what nydusd has no key for. Unknown keys are an error. Also the
 * schema of one mount request (the daemon API's body).
 */
import { posix } from 'node:path';
import { z } from 'zod';
import { parseDuration } from '../core/index.js';
import { parseConfig, sizeSchema as size } from './parse.js';

/** nydusd gives timeouts in seconds (numbers); strings go through parseDuration. */
const seconds = z.union([z.number().nonnegative().transform((n) => n * 1000), z.string().transform((s, ctx) => {
  try { return parseDuration(s); } catch (e) { ctx.addIssue({ code: 'custom', message: (e as Error).message }); return z.NEVER; }
})]);

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

export const daemonConfigSchema = z.strictObject({
  device: z.strictObject({
    backend: z.strictObject({ type: z.enum(['registry', 'localfs']), config: backendConfigSchema.default({}) }).optional(),
    cache: z.strictObject({
      type: z.enum(['blobcache', 'filecache', '']).default('blobcache'),
      compressed: z.literal(false).optional(),
      config: z.strictObject({ work_dir: z.string().optional(), disable_indexed_map: z.boolean().optional() }).default({}),
    }).optional(),
  }).default({}),
  mode: z.literal('direct').optional(),
  digest_validate: z.boolean().optional(),
  iostats_files: z.boolean().optional(),
  enable_xattr: z.boolean().optional(),
  amplify_io: size.default(1024 * 1024),
  fs_prefetch: z.strictObject({
    enable: z.boolean().default(false),
    threads_count: z.number().int().positive().optional(),
    merging_size: size.default(1024 * 1024),
    bandwidth_rate: size.default(0),
    prefetch_all: z.boolean().default(true),
    stream_prefetch: z.boolean().optional(),
  }).default({ enable: false, merging_size: 1024 * 1024, bandwidth_rate: 0, prefetch_all: true }),
  /** what nydusd has no key for */
  ferry: z.strictObject({
    /** default filesystem mode of mounts that do not ask for one */
    mode: z.enum(['erofs', 'fuse']).default('erofs'),
    /** FUSE request reader threads per mount */
    fuse_threads: z.number().int().min(1).max(64).default(4),
    /** hard deadline of one backend request including retries */
    request_deadline: seconds.optional(),
  }).default({ mode: 'erofs', fuse_threads: 4 }),
});

export type DaemonConfig = z.output<typeof daemonConfigSchema>;
export type DaemonConfigInput = z.input<typeof daemonConfigSchema>;

/** Validates a daemon configuration (nydusd v1 JSON); throws a readable error listing bad keys. */
export function parseDaemonConfig(input: unknown): DaemonConfig {
  return parseConfig(daemonConfigSchema, input, 'daemon');
}

/**
 * An absolute path in normal form (no `//`, `.` or `..` components, no trailing `/`, no NUL): two
 * spellings of one directory would defeat the "already mounted there" check.
 */
const absolutePath = (what: string): z.ZodType<string> => z.string().min(1).superRefine((p, ctx) => {
  if (!p.startsWith('/')) ctx.addIssue({ code: 'custom', message: `${what} must be absolute` });
  else if (p.includes('\0')) ctx.addIssue({ code: 'custom', message: `${what} contains NUL` });
  else if (p !== posix.normalize(p) || (p.length > 1 && p.endsWith('/'))) {
    ctx.addIssue({ code: 'custom', message: `${what} must be in normal form (no //, . or .. components, no trailing /): ${JSON.stringify(posix.normalize(p).replace(/(.)\/$/, '$1'))}` });
  }
});

export const mountRequestSchema = z.strictObject({
  id: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/, 'id: letters, digits, . _ - (max 128)'),
  mountpoint: absolutePath('mountpoint').refine((p) => p !== '/', 'mountpoint must not be /'),
  bootstrapPath: absolutePath('bootstrapPath'),
  mode: z.enum(['erofs', 'fuse']).optional(),
  backend: z.discriminatedUnion('type', [
    z.strictObject({
      type: z.literal('registry'), host: z.string().min(1), repo: z.string().min(1),
      insecure: z.boolean().optional(), auth: z.string().optional(), proxy: z.string().optional(),
    }),
    z.strictObject({ type: z.literal('localfs'), dir: absolutePath('backend.dir') }),
  ]),
  cacheDir: absolutePath('cacheDir').optional(),
  prefetch: z.union([z.boolean(), z.array(z.string())]).optional(),
  /**
   * The command its containers run (image config Entrypoint + Cmd, Env, WorkingDir): the loader's
   * share of what that command reads at start is fetched right away (daemon/startup-prefetch).
   */
  startup: z.strictObject({
    argv: z.array(z.string()).min(1).max(4096),
    env: z.array(z.string()).max(4096).optional(),
    workingDir: z.string().optional(),
  }).optional(),
  /** A prefetch trace (oci/prefetch-trace; validated by the daemon): its chunks are fetched at once, in place of `startup`. */
  trace: z.unknown().optional(),
});

export type MountRequestInput = z.input<typeof mountRequestSchema>;
