/**
 * @module db/migrate
 * Versioned schema migrations per component (`registry`, `accel`, …) in one table,
 * `ferry_schema_migrations(component, version, name, applied_at)`. Each migration runs in its own
 * transaction holding a transaction-scoped advisory lock, so replicas starting at once apply each
 * version exactly once: the second one waits for the lock, then sees the version
 * recorded and skips it. A database whose component is at a version this program does not know
 * (a newer release migrated it) is refused rather than used.
 */
import type pg from 'pg';
import { FerryError } from '../core/index.js';
import { silentLogger, type Logger } from '../observe/index.js';
import { withTransaction } from './pool.js';

export interface Migration {
  /** 1, 2, 3 … in order, never reused. */
  version: number;
  /** Short description, recorded with the version. */
  name: string;
  /** SQL (several statements allowed) or a function run on the transaction's connection. */
  up: string | ((client: pg.PoolClient) => Promise<void>);
}

export interface MigrateResult {
  /** Versions this call applied (empty when the schema was current). */
  applied: number[];
  /** The component's version afterwards. */
  version: number;
}

const TABLE = 'ferry_schema_migrations';
/** Key of the advisory lock migrations hold (the pair (LOCK_NAMESPACE, 0)). */
const LOCK_NAMESPACE = 0x46455259; // 'FERY'
const COMPONENT = /^[a-z][a-z0-9_]{0,62}$/;

function checkList(component: string, migrations: readonly Migration[]): void {
  if (!COMPONENT.test(component)) throw new FerryError('INVALID_ARGUMENT', `migrations: bad component name ${JSON.stringify(component)}`);
  migrations.forEach((m, i) => {
    if (m.version !== i + 1) {
      throw new FerryError('INVALID_ARGUMENT', `migrations of ${component}: entry ${i} has version ${m.version}, expected ${i + 1}`);
    }
  });
}

/**
 * Takes the migrations lock inside the current transaction (released at its end), then creates the
 * table if needed. One lock for all components: migrations are rare, and CREATE TABLE IF NOT EXISTS
 * races with itself without one.
 */
async function lockMigrations(client: pg.PoolClient): Promise<void> {
  await client.query('SELECT pg_advisory_xact_lock($1, 0)', [LOCK_NAMESPACE]);
  await client.query(
    `CREATE TABLE IF NOT EXISTS ${TABLE} (
       component text NOT NULL,
       version integer NOT NULL,
       name text NOT NULL,
       applied_at timestamptz NOT NULL DEFAULT now(),
       PRIMARY KEY (component, version))`,
  );
}

async function currentVersion(client: pg.PoolClient, component: string): Promise<number> {
  const r = await client.query<{ v: number | null }>(`SELECT max(version) AS v FROM ${TABLE} WHERE component = $1`, [component]);
  return r.rows[0]?.v ?? 0;
}

/** Applies the migrations of `component` not yet recorded, one transaction each; see the module comment. */
export async function migrate(
  pool: pg.Pool,
  component: string,
  migrations: readonly Migration[],
  opts: { log?: Logger } = {},
): Promise<MigrateResult> {
  checkList(component, migrations);
  const log = (opts.log ?? silentLogger()).child({ component });
  const applied: number[] = [];
  let version = 0;
  // bounded: at most one transaction per known migration, plus the one that finds nothing to do
  for (let step = 0; step <= migrations.length; step++) {
    const done = await withTransaction(pool, async (client) => {
      await lockMigrations(client);
      version = await currentVersion(client, component);
      if (version > migrations.length) {
        throw new FerryError(
          'FAILED_PRECONDITION',
          `database schema of ${component} is at version ${version}, newer than this program knows (${migrations.length}); upgrade ferry`,
        );
      }
      const next = migrations[version];
      if (!next) return true;
      try {
        if (typeof next.up === 'string') await client.query(next.up);
        else await next.up(client);
      } catch (err) {
        const msg = err instanceof Error ? err.message : String(err);
        throw new FerryError('INTERNAL', `migration ${next.version} (${next.name}) of ${component} failed: ${msg}`, { cause: err });
      }
      await client.query(`INSERT INTO ${TABLE} (component, version, name) VALUES ($1, $2, $3)`, [component, next.version, next.name]);
      version = next.version;
      applied.push(next.version);
      log.info({ version: next.version, name: next.name }, 'schema migration applied');
      return false;
    });
    if (done) break;
  }
  return { applied, version };
}
