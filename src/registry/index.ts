/**
 * @module registry
 * `ferry registry`: an OCI Distribution v1.1 registry with the Harbor features an acceleration
 * setup relies on (projects, users, robot accounts, Docker token auth, webhooks, gc).
 *
 * Layers: `server.ts` (HTTP edge, auth, errors) → `distribution.ts` (/v2 API) and
 * `harbor-api.ts` (/api/v2.0) → `metadata/` (the `RegistryMetadata` interface; SQLite behind it) +
 * `content` (blob bytes) + `webhooks.ts` (event policy, durable outbox, dispatcher). A service:
 * imports content, core, oci, observe, config; nothing imports its internals except through this
 * file.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import type { Clock } from '../core/index.js';
import { createMetricsRegistry, silentLogger, type Logger, type MetricsRegistry } from '../observe/index.js';
import { FerryError } from '../core/index.js';
import { LocalBlobStore, S3BlobStore, type BlobStore } from '../content/index.js';
import { parseRegistryConfig, type RegistryConfig, type RegistryConfigInput } from '../config/registry.js';
import { pgSettingsOf, type S3Config } from '../config/database.js';
import type { RegistryMetadata } from './metadata/metadata.js';
import { SqliteMetadata } from './metadata/sqlite.js';
import { PostgresMetadata } from './metadata/postgres.js';
import { Auth, hashSecret, verifySecret } from './auth.js';
import { Webhooks } from './webhooks.js';
import { AuditLog } from './audit.js';
import { GcJobs } from './gc-jobs.js';
import { RegistryServer } from './server.js';
import { consoleAccel } from './console-conversions.js';
import { ConsoleP2p } from './console-p2p.js';
import { collectGarbage, type GcResult } from './gc.js';

export interface StartRegistryOptions {
  /** host:port; default from config (127.0.0.1:5000). Use port 0 in tests. */
  listen?: string;
  dataDir: string;
  /** Admin password; else config.adminPassword; else FERRY_ADMIN_PASSWORD; else stored; else generated. */
  adminPassword?: string;
  config?: RegistryConfigInput;
  log?: Logger;
  /** Replace the blob store (e.g. MemoryBlobStore in tests). */
  store?: BlobStore;
  /** Time of the webhook dispatcher (due times, backoff, its timers); default the system clock. */
  clock?: Clock;
}

export interface RegistryHandle {
  /** http://127.0.0.1:PORT */
  url: string;
  /** 127.0.0.1:PORT */
  host: string;
  metrics: MetricsRegistry;
  /** The admin password when it was given or generated in this start; undefined when an earlier start stored it. */
  adminPassword: string | undefined;
  /** True when the password was generated now (print it once). */
  adminPasswordGenerated: boolean;
  /** The effective configuration. */
  config: RegistryConfig;
  close(): Promise<void>;
}

/** The metadata store the config names (default SQLite in the data directory; the one place that names the implementations). */
async function openMetadata(config: RegistryConfig, dataDir: string, log: Logger): Promise<RegistryMetadata> {
  const db = config.database;
  if (db && 'postgres' in db) return PostgresMetadata.open(pgSettingsOf(db.postgres), { log });
  return new SqliteMetadata(db?.sqlite ?? join(dataDir, 'registry.db'));
}

/** The S3 client settings of a config block; the keys from the environment, never from the file. */
function s3ClientOf(c: S3Config, env: NodeJS.ProcessEnv = process.env) {
  const key = (name: string | undefined, fallback: string): string | undefined => env[name ?? fallback] || undefined;
  const accessKeyId = key(c.access_key_env, 'AWS_ACCESS_KEY_ID');
  const secretAccessKey = key(c.secret_key_env, 'AWS_SECRET_ACCESS_KEY');
  if ((c.access_key_env || c.secret_key_env) && !(accessKeyId && secretAccessKey)) {
    throw new FerryError(
      'FAILED_PRECONDITION',
      `storage.s3: ${c.access_key_env ?? 'AWS_ACCESS_KEY_ID'} and ${c.secret_key_env ?? 'AWS_SECRET_ACCESS_KEY'} must be set`,
    );
  }
  return {
    region: c.region,
    forcePathStyle: c.path_style,
    ...(c.endpoint ? { endpoint: c.endpoint } : {}),
    ...(accessKeyId && secretAccessKey ? { credentials: { accessKeyId, secretAccessKey } } : {}),
    // S3-compatible stores (radosgw 16) refuse the SDK's default streaming checksums
    requestChecksumCalculation: 'WHEN_REQUIRED' as const,
    responseChecksumValidation: 'WHEN_REQUIRED' as const,
  };
}

/** The blob store the config names (default the data directory). */
function openStore(config: RegistryConfig, dataDir: string): BlobStore {
  const st = config.storage;
  if (st && 's3' in st) {
    const c = st.s3;
    return new S3BlobStore({
      bucket: c.bucket,
      prefix: c.prefix,
      client: s3ClientOf(c),
      ...(c.chunk_size ? { chunkBytes: c.chunk_size } : {}),
    });
  }
  return new LocalBlobStore(st?.filesystem.path ?? dataDir, { fsync: config.fsync });
}

/** Seconds blob GETs redirect for (S3 with `redirect`), else 0. */
function redirectSeconds(config: RegistryConfig): number {
  const st = config.storage;
  return st && 's3' in st && st.s3.redirect ? Math.max(1, Math.floor(st.s3.redirect_expiry / 1000)) : 0;
}

/** Opens the data directory and serves the registry until `close()`. */
export async function startRegistry(opts: StartRegistryOptions): Promise<RegistryHandle> {
  const config = parseRegistryConfig({ ...(opts.config ?? {}) });
  const log = (opts.log ?? silentLogger()).child({ component: 'registry' });
  const accel = consoleAccel(config);
  const p2p = new ConsoleP2p(config.console.scheduler);
  const dataDir = opts.dataDir;
  mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  const meta: RegistryMetadata = await openMetadata(config, dataDir, log);
  try {
    const store = opts.store ?? openStore(config, dataDir);
    const metrics = createMetricsRegistry({ processMetrics: true, prefix: 'ferry_registry_' });

    // Default project and admin.
    await meta.ensureProject('library', true, 'admin');
    const given = opts.adminPassword ?? config.adminPassword ?? (process.env.FERRY_ADMIN_PASSWORD || undefined);
    let adminPassword: string | undefined;
    let generated = false;
    const existing = await meta.getUser('admin');
    if (given !== undefined) {
      adminPassword = given;
      if (!existing || !(await verifySecret(given, existing.passwordHash))) await meta.upsertUser('admin', await hashSecret(given), true);
    } else if (!existing) {
      adminPassword = randomBytes(12).toString('base64url');
      generated = true;
      await meta.upsertUser('admin', await hashSecret(adminPassword), true);
    }

    const auth = new Auth(
      meta,
      {
        keyPath: config.tokenKey ?? join(dataDir, 'token-key.jwk'),
        service: config.tokenService,
        issuer: config.tokenIssuer,
        tokenExpirationMs: config.tokenExpiration,
        limits: {
          maxFailures: config.auth.maxFailures,
          maxSourceFailures: config.auth.maxSourceFailures,
          windowMs: config.auth.window,
          lockoutMs: config.auth.lockout,
          maxLockoutMs: config.auth.maxLockout,
        },
      },
      { log, metrics },
    );
    await auth.init();
    // another replica's user or robot change drops this one's cached credential checks
    const unwatch = meta.watchAuth(() => auth.invalidate());
    const webhooks = new Webhooks(
      { meta, log, metrics, clock: opts.clock },
      {
        enabled: config.webhook.enabled,
        maxRetries: config.webhook.maxRetries,
        backoffMs: config.webhook.backoff,
        timeoutMs: config.webhook.timeout,
        settleDelayMs: config.webhook.settleDelay,
        pollIntervalMs: config.webhook.pollInterval,
        externalHost: '',
      },
    );
    const audit = new AuditLog(
      { meta, log, clock: opts.clock },
      {
        enabled: config.audit.enabled,
        pulls: config.audit.pulls,
        retentionMs: config.audit.retention,
        purgeIntervalMs: config.audit.purgeInterval,
      },
    );
    const gcJobs = new GcJobs(
      { meta, store, log, clock: opts.clock },
      {
        pollIntervalMs: config.gc.jobPollInterval,
        minAgeMs: config.gc.minAge,
        uploadMaxAgeMs: config.gc.uploadMaxAge,
        staleAfterMs: config.gc.staleAfter,
      },
    );
    const server = new RegistryServer(
      { meta, store, auth, webhooks, audit, gcKick: () => gcJobs.kick(), log, metrics, accel, p2p, benchDir: config.console.benchDir },
      {
        maxManifestSize: config.maxManifestSize,
        maxBlobSize: config.maxBlobSize,
        deleteEnabled: config.deleteEnabled,
        autoCreateProjects: config.autoCreateProjects,
        service: config.tokenService,
        realm: config.externalUrl ? `${config.externalUrl.replace(/\/+$/, '')}/service/token` : undefined,
        redirectSeconds: redirectSeconds(config),
      },
    );
    const addr = await server.listen(opts.listen ?? config.listen);
    const hostName = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
    const host = `${hostName === '0.0.0.0' || hostName === '[::]' ? '127.0.0.1' : hostName}:${addr.port}`;
    webhooks.setExternalHost(config.externalUrl ? config.externalUrl.replace(/^[a-z]+:\/\//, '').replace(/\/+$/, '') : host);
    webhooks.start();
    audit.start();
    gcJobs.start();
    log.info({ listen: `${hostName}:${addr.port}`, dataDir }, 'registry listening');
    let closed = false;
    return {
      url: `http://${host}`,
      host,
      metrics,
      adminPassword,
      adminPasswordGenerated: generated,
      config,
      async close() {
        if (closed) return;
        closed = true;
        await server.close();
        unwatch();
        audit.stop();
        await gcJobs.stop();
        await webhooks.stop();
        await store.close?.();
        await meta.close();
      },
    };
  } catch (err) {
    await meta.close();
    throw err;
  }
}

/** Runs garbage collection on a data directory (the registry may be running). */
export async function runGc(opts: { dataDir: string; dryRun?: boolean; config?: RegistryConfigInput; log?: Logger }): Promise<GcResult> {
  const config = parseRegistryConfig({ ...(opts.config ?? {}) });
  const meta = await openMetadata(config, opts.dataDir, opts.log ?? silentLogger());
  const store = openStore(config, opts.dataDir);
  try {
    return await collectGarbage(meta, store, {
      dryRun: opts.dryRun ?? false,
      minAgeMs: config.gc.minAge,
      uploadMaxAgeMs: config.gc.uploadMaxAge,
      ...(opts.log ? { log: opts.log } : {}),
    });
  } finally {
    await store.close?.();
    await meta.close();
  }
}

export { collectGarbage, type GcResult } from './gc.js';
export { parseRegistryConfig, type RegistryConfig, type RegistryConfigInput } from '../config/registry.js';
export { OciError, OCI_STATUS, type OciCode } from './errors.js';
export { NAME_GRAMMAR, TAG_GRAMMAR, isValidName, isValidTag } from './names.js';
