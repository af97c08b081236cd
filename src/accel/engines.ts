/**
 * @module accel/engines
 * Opens the task queue the config names: `database.sqlite` (default `<work_dir>/accel.db`) or
 * `database.postgres` (pool from db/, password from a file or the environment, migrations applied).
 */
import { join } from 'node:path';
import { FerryError, systemClock, type Clock } from '../core/index.js';
import { createPool, redactUrl } from '../db/index.js';
import type { Logger } from '../observe/index.js';
import type { AccelConfig } from '../config/accel.js';
import { pgSettingsOf } from '../config/database.js';
import { PgTaskQueue } from './queue-pg.js';
import { SqliteTaskQueue } from './queue-sqlite.js';
import type { TaskQueue } from './queue.js';

export interface OpenQueueOptions {
  clock?: Clock;
  log: Logger;
  env?: NodeJS.ProcessEnv;
}

export async function openTaskQueue(cfg: AccelConfig, workDir: string, o: OpenQueueOptions): Promise<TaskQueue> {
  const clock = o.clock ?? systemClock;
  const db = cfg.database;
  if (db && 'postgres' in db) {
    const pool = createPool(
      { ...pgSettingsOf(db.postgres), applicationName: 'ferry-accel' },
      { log: o.log, ...(o.env ? { env: o.env } : {}) },
    );
    try {
      return await PgTaskQueue.open(pool, { clock, log: o.log });
    } catch (err) {
      await pool.end().catch(() => undefined);
      if (FerryError.is(err)) throw err;
      throw new FerryError('UNAVAILABLE', `task queue database ${redactUrl(db.postgres.url)}: ${(err as Error).message}`, { cause: err });
    }
  }
  const q = new SqliteTaskQueue(db?.sqlite ?? join(workDir, 'accel.db'), { clock });
  // one accel per work dir (and per SQLite file by that): the leases left there are a dead process's
  const resumed = q.recover();
  if (resumed) o.log.info({ tasks: resumed }, 'resuming tasks interrupted by the last stop');
  return q;
}
