/**
 * @module config/registry
 * Configuration of `ferry registry` (YAML/JSON file, `--config`). Defaults live in the schema;
 * unknown keys are an error. Durations ("30s") and sizes ("4MiB") are strings parsed once.
 */
import { z } from 'zod';
import { parseConfig, durationSchema as duration, sizeSchema as size } from './parse.js';
import { DatabaseSchema, StorageSchema } from './database.js';

/**
 * A service the console calls: its URL and the credentials it wants — the Authorization header
 * value, from an environment variable or an owner-only file, never in the config itself.
 */
function serviceLink(what: string) {
  return z
    .strictObject({
      /** `http://host:port` of the service. */
      url: z.url({ protocol: /^https?$/ }),
      /** Environment variable holding the Authorization header value to send. */
      authHeaderEnv: z.string().min(1).optional(),
      /** Owner-only file whose first line is the Authorization header value to send. */
      authHeaderFile: z.string().min(1).optional(),
      /** Bound on one call. */
      timeout: duration.default(10_000),
    })
    .refine((v) => !(v.authHeaderEnv && v.authHeaderFile), { message: `${what}: give authHeaderEnv or authHeaderFile, not both` });
}

export const RegistryConfigSchema = z.strictObject({
  /** host:port to listen on. */
  listen: z.string().default('127.0.0.1:5000'),
  /** Data directory (blobs, uploads, SQLite metadata, token key — by default; see `database`, `storage`, `tokenKey`). */
  dataDir: z.string().optional(),
  /**
   * Metadata: `{sqlite: path}` (default `<dataDir>/registry.db`, one process) or `{postgres: URL}` /
   * `{postgres: {url, password_file | password_env, max_connections}}`, shared by replicas.
   */
  database: DatabaseSchema.optional(),
  /** Blobs: `{filesystem: {path}}` (default `<dataDir>`) or `{s3: {bucket, endpoint, …}}`, shared by replicas. */
  storage: StorageSchema.optional(),
  /**
   * The token signing key (JWK, mode 0600; created when missing). Default `<dataDir>/token-key.jwk`.
   * Replicas must share it (a mounted secret), as Harbor's core instances share their private key.
   */
  tokenKey: z.string().optional(),
  /** Admin password; else FERRY_ADMIN_PASSWORD; else the stored one; else generated and printed once. */
  adminPassword: z.string().min(1).optional(),
  /** Public URL used in webhook resource_url and the token realm (default: derived from the request Host). */
  externalUrl: z.string().optional(),
  /** Token service name (Harbor: harbor-registry). */
  tokenService: z.string().default('harbor-registry'),
  /** Token issuer (Harbor: harbor-token-issuer). */
  tokenIssuer: z.string().default('harbor-token-issuer'),
  /** Lifetime of issued tokens (Harbor default 30 min). */
  tokenExpiration: duration.default(30 * 60_000),
  /** Create a missing project on push by the admin (Harbor would answer 404); private by default. */
  autoCreateProjects: z.boolean().default(true),
  /** Manifests larger than this are rejected with 413. */
  maxManifestSize: size.default(4 * 1024 * 1024),
  /** Largest blob accepted (0 = unlimited). */
  maxBlobSize: size.default(0),
  /** fsync blobs and directories on commit (turn off only for throwaway benchmarks). */
  fsync: z.boolean().default(true),
  /** Allow DELETE of blobs, manifests and tags. */
  deleteEnabled: z.boolean().default(true),
  /**
   * Failed-login limits (Basic credentials of users and robots, on every endpoint including the
   * token endpoint). Keys: one account from one source address, and one source address whatever the
   * account; there is no account-wide key, so nobody can lock an account out for everyone.
   */
  auth: z
    .strictObject({
      /** Failed logins of one account from one source address within `window` before that pair is locked out. */
      maxFailures: z.number().int().min(1).default(5),
      /** Failed logins from one source address, any accounts, within `window` before that address is locked out. */
      maxSourceFailures: z.number().int().min(1).default(50),
      /** The window failures are counted in; a key also forgets its past lockouts after a quiet window. */
      window: duration.default(10 * 60_000),
      /** The first lockout; every failure after a lockout locks again for twice as long. */
      lockout: duration.default(10_000),
      /** The longest lockout. */
      maxLockout: duration.default(15 * 60_000),
    })
    .refine((a) => a.lockout > 0 && a.maxLockout >= a.lockout, {
      message: 'lockout must be positive and maxLockout at least lockout',
      path: ['maxLockout'],
    })
    .prefault({}),
  webhook: z
    .strictObject({
      /** Deliver webhooks at all (Harbor: notification_enable). */
      enabled: z.boolean().default(true),
      /** Retries after the first attempt (Harbor: webhook_job_max_retry = 3). */
      maxRetries: z.number().int().min(0).max(20).default(3),
      /** First retry delay; doubles each retry. */
      backoff: duration.default(1000),
      /** HTTP timeout per attempt (Harbor: 3 s). */
      timeout: duration.default(3000),
      /**
       * An untagged manifest pushed by digest waits this long before its PUSH_ARTIFACT is sent; if an
       * index referencing it arrives meanwhile, only the index's event is sent.
       */
      settleDelay: duration.default(30_000),
      /** How often the outbox is polled for due deliveries. */
      pollInterval: duration.default(500),
    })
    .prefault({}),
  audit: z
    .strictObject({
      /** Record pushes, pulls, deletes and management changes (Harbor's audit log). */
      enabled: z.boolean().default(true),
      /** Record pulls too (a write per manifest GET; Harbor: pull_audit_log_disable = false). */
      pulls: z.boolean().default(true),
      /** Entries older than this are purged ("0" keeps them forever). */
      retention: duration.default(0),
      /** How often the purge runs. */
      purgeInterval: duration.default(60 * 60_000),
    })
    .prefault({}),
  gc: z
    .strictObject({
      /** Blobs younger than this are never collected (covers pushes whose manifest is not in yet). */
      minAge: duration.default(60 * 60_000),
      /** Uploads untouched this long are removed by gc. */
      uploadMaxAge: duration.default(24 * 60 * 60_000),
      /** How often each replica looks for gc runs requested through /system/gc or due by its schedule. */
      jobPollInterval: duration.default(10_000),
      /** A running gc not heard of for this long (its replica died) is marked Error. */
      staleAfter: duration.default(5 * 60_000),
    })
    .prefault({}),
  /**
   * What the web console shows besides the registry's own data. Each service it calls is called by the
   * registry (server-side): the browser never sees a service's address or credentials.
   */
  console: z
    .strictObject({
      /** The acceleration service (`ferry accel`): its conversion tasks, retried from the console. */
      accel: serviceLink('console.accel').optional(),
      /** The P2P scheduler (`ferry scheduler`): peers, tasks and preheat jobs. */
      scheduler: serviceLink('console.scheduler').optional(),
      /** Where `ferry bench` writes its reports (`--out`): the newest `report.json` below is shown. */
      benchDir: z.string().optional(),
    })
    .prefault({}),
});

export type RegistryConfig = z.output<typeof RegistryConfigSchema>;
export type RegistryConfigInput = z.input<typeof RegistryConfigSchema>;

/** Validates a config object (from YAML/JSON or code); throws a readable error listing the problems. */
export function parseRegistryConfig(input: unknown): RegistryConfig {
  return parseConfig(RegistryConfigSchema, input, 'registry');
}
