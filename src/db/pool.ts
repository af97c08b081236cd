/**
 * @module db/pool
 * A PostgreSQL connection pool from a URL plus a password kept out of it: the password comes from
 * an environment variable or a file (owner-only), never from the URL, a command line or a log line.
 */
import pg from 'pg';
import { parseIntoClientConfig } from 'pg-connection-string';
import { FerryError } from '../core/index.js';
import { readSecret } from '../config/secret.js';
import { silentLogger, type Logger } from '../observe/index.js';

/** Where a PostgreSQL database is and how to log in to it. */
export interface PgSettings {
  /** `postgres://user@host:port/database[?…]` — without a password. */
  url: string;
  /** Read the password from this file (first line; the file must not be readable by group or others). */
  passwordFile?: string;
  /** Read the password from this environment variable. */
  passwordEnv?: string;
  /** Most connections the pool opens (default 10). */
  maxConnections?: number;
  /** Bound on opening one connection (default 10 s). */
  connectTimeoutMs?: number;
  /** `application_name` shown in pg_stat_activity (default `ferry`). */
  applicationName?: string;
}

function parseUrl(url: string): URL {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new FerryError('INVALID_ARGUMENT', 'database: postgres URL is not a URL');
  }
  if (u.protocol !== 'postgres:' && u.protocol !== 'postgresql:') {
    throw new FerryError('INVALID_ARGUMENT', `database: postgres URL must start with postgres:// (got ${u.protocol}//)`);
  }
  if (u.password) {
    throw new FerryError(
      'INVALID_ARGUMENT',
      'database: the postgres URL carries a password; put it in password_file or the variable named by password_env instead',
    );
  }
  return u;
}

/** The URL with any password replaced by `***`, for logs and error messages. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password) u.password = '***';
    return u.toString();
  } catch {
    return '(unparsable URL)';
  }
}

/** The password of `settings` (env first, then file), or undefined when neither is configured. */
export function readPassword(settings: PgSettings, env: NodeJS.ProcessEnv = process.env): string | undefined {
  return readSecret(
    {
      what: 'database',
      env: settings.passwordEnv ? { name: settings.passwordEnv, key: 'password_env' } : undefined,
      file: settings.passwordFile ? { path: settings.passwordFile, key: 'password_file' } : undefined,
    },
    env,
  );
}

/** Validates `settings` and builds the `pg.PoolConfig` (password resolved). */
export function poolConfig(settings: PgSettings, env: NodeJS.ProcessEnv = process.env): pg.PoolConfig {
  parseUrl(settings.url);
  const password = readPassword(settings, env);
  // parsed here, not passed as connectionString: pg lets the string's (empty) password win over ours
  const { password: _none, ...fromUrl } = parseIntoClientConfig(settings.url);
  return {
    ...(fromUrl as pg.PoolConfig),
    ...(password !== undefined ? { password } : {}),
    max: settings.maxConnections ?? 10,
    connectionTimeoutMillis: settings.connectTimeoutMs ?? 10_000,
    application_name: settings.applicationName ?? 'ferry',
  };
}

/**
 * A pool for `settings`. Errors of connections, idle or checked out (server restarted, connection
 * killed), are logged instead of crashing the process; the query in flight fails, the next reconnects.
 */
export function createPool(settings: PgSettings, opts: { log?: Logger; env?: NodeJS.ProcessEnv } = {}): pg.Pool {
  const pool = new pg.Pool(poolConfig(settings, opts.env));
  const log = (opts.log ?? silentLogger()).child({ database: redactUrl(settings.url) });
  pool.on('error', (err) => log.warn({ err: err.message }, 'idle database connection failed'));
  // a checked-out connection has no pool listener: without its own, a server restart or a killed
  // backend ('terminating connection due to administrator command') would crash the process
  pool.on('connect', (client) => {
    client.on('error', (err) => log.warn({ err: err.message }, 'database connection failed'));
  });
  return pool;
}

/** Runs `fn` in one transaction on a connection of `pool` (COMMIT on success, ROLLBACK on a throw). */
export async function withTransaction<T>(pool: pg.Pool, fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
  const client = await pool.connect();
  let broken = false;
  try {
    await client.query('BEGIN');
    const out = await fn(client);
    await client.query('COMMIT');
    return out;
  } catch (err) {
    try {
      await client.query('ROLLBACK');
    } catch {
      broken = true; // the connection itself failed: do not return it to the pool
    }
    throw err;
  } finally {
    client.release(broken);
  }
}
