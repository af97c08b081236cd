/**
 * The PostgreSQL helpers against a real, private PostgreSQL 15 (test/support/postgres.ts): the pool's
 * password handling, and migrations applied once per version even when replicas start together.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type pg from 'pg';
import { FerryError } from '../core/index.js';
import { startPostgres, type PostgresInstance } from '../../test/support/postgres.js';
import { createPool, migrate, redactUrl, type Migration, type PgSettings } from './index.js';

let db: PostgresInstance;
let dir: string;
const pools: pg.Pool[] = [];

/** The instance's URL without its password, and the password in an environment variable. */
function settings(extra: Partial<PgSettings> = {}): PgSettings {
  const u = new URL(db.url);
  u.password = '';
  return { url: u.toString(), passwordEnv: 'FERRY_TEST_DB_PASSWORD', ...extra };
}

function pool(extra: Partial<PgSettings> = {}): pg.Pool {
  const p = createPool(settings(extra), { env: { FERRY_TEST_DB_PASSWORD: db.password } });
  pools.push(p);
  return p;
}

before(async () => {
  db = await startPostgres();
  dir = mkdtempSync(join(tmpdir(), 'ferry-db-test-'));
});
after(async () => {
  await Promise.all(pools.map((p) => p.end()));
  rmSync(dir, { recursive: true, force: true });
  await db?.stop();
});

describe('createPool', () => {
  test('logs in with the password from an environment variable', async () => {
    const r = await pool().query<{ u: string }>('SELECT current_user AS u');
    assert.equal(r.rows[0]?.u, db.user);
  });

  test('logs in with the password from an owner-only file, and refuses a file others can read', async () => {
    const file = join(dir, 'pw');
    writeFileSync(file, `${db.password}\n`, { mode: 0o600 });
    const { passwordEnv: _unused, ...viaFile } = settings({ passwordFile: file });
    const fromFile = createPool(viaFile);
    pools.push(fromFile);
    const r = await fromFile.query('SELECT 1 AS one');
    assert.equal(r.rows[0].one, 1);
    chmodSync(file, 0o644);
    assert.throws(
      () => createPool(viaFile),
      (err: unknown) => FerryError.hasCode(err, 'FAILED_PRECONDITION') && /readable by group or others/.test((err as Error).message),
    );
  });

  test('refuses a password inside the URL, a missing variable, a non-postgres URL; redacts URLs', () => {
    assert.throws(() => createPool({ url: db.url }), /carries a password; put it in password_file/);
    assert.throws(() => createPool({ ...settings(), passwordEnv: 'FERRY_TEST_UNSET_VARIABLE' }, { env: {} }), /FERRY_TEST_UNSET_VARIABLE/);
    assert.throws(() => createPool({ url: 'mysql://x@127.0.0.1/db' }), /must start with postgres:\/\//);
    assert.equal(redactUrl(db.url).includes(db.password), false);
    assert.match(redactUrl(db.url), /:\*\*\*@127\.0\.0\.1/);
  });

  test('a wrong password fails to log in, and the error does not carry the password', async () => {
    const wrong = createPool(settings(), { env: { FERRY_TEST_DB_PASSWORD: 'not-the-password-42' } });
    pools.push(wrong);
    await assert.rejects(wrong.query('SELECT 1'), (err: Error) => {
      assert.match(err.message, /password authentication failed/);
      assert.equal(err.message.includes('not-the-password-42'), false);
      return true;
    });
  });

  test('a checked-out connection whose server process is killed fails its query, not the process', async () => {
    const p = pool();
    const client = await p.connect();
    const pid = (await client.query<{ pid: number }>('SELECT pg_backend_pid() AS pid')).rows[0]!.pid;
    let uncaught: unknown;
    const onUncaught = (err: unknown): void => {
      uncaught = err;
    };
    process.on('uncaughtException', onUncaught);
    try {
      await pool().query('SELECT pg_terminate_backend($1)', [pid]); // what a server restart does to it
      // the idle, checked-out client hears of it on its own (bounded wait: 50 × 20 ms)
      for (let i = 0; i < 50 && uncaught === undefined && !(client as unknown as { _ending?: boolean })._ending; i++) {
        await new Promise((r) => setTimeout(r, 20));
      }
      await assert.rejects(client.query('SELECT 1'));
      assert.equal(uncaught, undefined, `the process would have crashed: ${String(uncaught)}`);
    } finally {
      process.off('uncaughtException', onUncaught);
      client.release(true);
    }
    assert.equal((await p.query<{ one: number }>('SELECT 1 AS one')).rows[0]?.one, 1, 'the pool reconnects');
  });
});

describe('migrate', () => {
  const widgets: Migration[] = [
    { version: 1, name: 'widgets table', up: 'CREATE TABLE widgets (id integer PRIMARY KEY, note text)' },
    { version: 2, name: 'first widget', up: "INSERT INTO widgets VALUES (1, 'one')" },
    // a slow step widens the window in which a second replica would run it too, were it not locked out
    {
      version: 3,
      name: 'slow second widget',
      up: async (c) => {
        await c.query('SELECT pg_sleep(0.3)');
        await c.query("INSERT INTO widgets VALUES (2, 'two')");
      },
    },
  ];

  test('replicas starting at once apply each version exactly once', async () => {
    const replicas = [pool(), pool(), pool(), pool()];
    const results = await Promise.all(replicas.map((p) => migrate(p, 'widgets', widgets)));
    assert.deepEqual(results.flatMap((r) => r.applied).sort(), [1, 2, 3], 'every version applied by exactly one replica');
    assert.deepEqual(
      results.map((r) => r.version),
      [3, 3, 3, 3],
    );
    const rows = await replicas[0]!.query('SELECT id FROM widgets ORDER BY id');
    assert.deepEqual(
      rows.rows.map((r) => r.id),
      [1, 2],
    );
    const recorded = await replicas[0]!.query(
      "SELECT version, name FROM ferry_schema_migrations WHERE component = 'widgets' ORDER BY version",
    );
    assert.deepEqual(
      recorded.rows.map((r) => [r.version, r.name]),
      widgets.map((m) => [m.version, m.name]),
    );
    // a restart with the same list does nothing; a longer list applies only what is new
    assert.deepEqual(await migrate(replicas[1]!, 'widgets', widgets), { applied: [], version: 3 });
    const more = [...widgets, { version: 4, name: 'note column', up: 'ALTER TABLE widgets ADD COLUMN size integer' }];
    assert.deepEqual(await migrate(replicas[2]!, 'widgets', more), { applied: [4], version: 4 });
  });

  test('components are versioned apart', async () => {
    const p = pool();
    const a = await migrate(p, 'comp_a', [{ version: 1, name: 'a', up: 'CREATE TABLE comp_a_t (x int)' }]);
    const b = await migrate(p, 'comp_b', [
      { version: 1, name: 'b1', up: 'CREATE TABLE comp_b_t (x int)' },
      { version: 2, name: 'b2', up: 'ALTER TABLE comp_b_t ADD COLUMN y int' },
    ]);
    assert.deepEqual([a.version, b.version], [1, 2]);
  });

  test('a failing migration leaves nothing of itself behind, names itself, and keeps the earlier ones', async () => {
    const p = pool();
    const list: Migration[] = [
      { version: 1, name: 'good', up: 'CREATE TABLE failing_t (x int)' },
      { version: 2, name: 'half then broken', up: 'CREATE TABLE failing_half (x int); SELECT no_such_function()' },
    ];
    await assert.rejects(migrate(p, 'failing', list), (err: unknown) => {
      assert.ok(FerryError.hasCode(err, 'INTERNAL'));
      assert.match((err as Error).message, /migration 2 \(half then broken\) of failing failed: .*no_such_function/);
      return true;
    });
    const tables = await p.query("SELECT tablename FROM pg_tables WHERE tablename LIKE 'failing%' ORDER BY 1");
    assert.deepEqual(
      tables.rows.map((r) => r.tablename),
      ['failing_t'],
    );
    const fixed = [list[0]!, { version: 2, name: 'fixed', up: 'CREATE TABLE failing_half (x int)' }];
    assert.deepEqual(await migrate(p, 'failing', fixed), { applied: [2], version: 2 });
  });

  test('a schema newer than the program is refused; a malformed list is refused', async () => {
    const p = pool();
    await migrate(p, 'newer', [
      { version: 1, name: 'one', up: 'SELECT 1' },
      { version: 2, name: 'two', up: 'SELECT 1' },
    ]);
    await assert.rejects(
      migrate(p, 'newer', [{ version: 1, name: 'one', up: 'SELECT 1' }]),
      (err: unknown) =>
        FerryError.hasCode(err, 'FAILED_PRECONDITION') && /version 2, newer than this program knows \(1\)/.test(String(err)),
    );
    await assert.rejects(migrate(p, 'gaps', [{ version: 2, name: 'x', up: 'SELECT 1' }]), /entry 0 has version 2, expected 1/);
    await assert.rejects(migrate(p, 'Bad-Name', []), /bad component name/);
  });
});
