/**
 * The TaskQueue contract on a real, private PostgreSQL 15: each test gets its own schema (the
 * migrations run in it), `another()` is a second pool, as another accel process would have.
 */
import { after, before, describe } from 'node:test';
import pg from 'pg';
import { startPostgres, type PostgresInstance } from '../../test/support/postgres.js';
import { PgTaskQueue } from './queue-pg.js';
import { taskQueueSuite } from './testsuite.js';

let db: PostgresInstance;
let n = 0;

before(async () => {
  db = await startPostgres();
});
after(async () => {
  await db?.stop();
});

describe('TaskQueue on PostgreSQL', () => {
  taskQueueSuite('postgres', async (clock) => {
    const schema = `q${++n}`;
    const admin = new pg.Client({ connectionString: db.url });
    await admin.connect();
    await admin.query(`CREATE SCHEMA ${schema}`);
    const pool = (): pg.Pool => new pg.Pool({ connectionString: db.url, options: `-c search_path=${schema}`, max: 4 });
    const queues = [await PgTaskQueue.open(pool(), { clock })];
    return {
      queue: queues[0]!,
      another: async () => {
        const q = await PgTaskQueue.open(pool(), { clock });
        queues.push(q);
        return q;
      },
      cleanup: async () => {
        for (const q of queues) await q.close();
        await admin.query(`DROP SCHEMA ${schema} CASCADE`);
        await admin.end();
      },
    };
  });
});
