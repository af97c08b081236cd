/**
 * @module accel/queue-pg
 * The task queue in PostgreSQL: any number of accel processes, on any number of machines, share it.
 * A claim picks the oldest due task with `FOR UPDATE SKIP LOCKED` (two workers never wait on, nor
 * take, one row) and then takes a transaction advisory lock on the task's dedup key, so two tasks of
 * one target are never leased at once even when claimed at the same instant. Writes about a task are
 * fenced by its lease (queue.ts). The schema is versioned (db/migrate.ts, component `accel`).
 */
import { randomUUID } from 'node:crypto';
import type pg from 'pg';
import { FerryError, systemClock, type Clock } from '../core/index.js';
import { migrate, withTransaction, type Migration } from '../db/index.js';
import type { Logger } from '../observe/index.js';
import type { TaskStatus, TaskView } from './protocol.js';
import {
  statusCounts,
  taskView,
  type ClaimedTask,
  type Lease,
  type NewTask,
  type TaskQueue,
  type TaskResult,
  type TaskRow,
} from './queue.js';

export const ACCEL_MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'accel_tasks',
    up: `CREATE TABLE accel_tasks (
      seq bigserial PRIMARY KEY,
      id text NOT NULL UNIQUE,
      created text NOT NULL,
      finished text,
      source text NOT NULL,
      source_digest text,
      target text NOT NULL,
      dedup_key text NOT NULL,
      event_key text UNIQUE,
      status text NOT NULL CHECK (status IN ('PROCESSING', 'COMPLETED', 'FAILED')),
      attempts integer NOT NULL DEFAULT 0,
      next_run bigint NOT NULL DEFAULT 0,
      lease_owner text,
      lease_token bigint NOT NULL DEFAULT 0,
      lease_expires bigint NOT NULL DEFAULT 0,
      worker text NOT NULL DEFAULT '',
      reason text NOT NULL DEFAULT '',
      source_size bigint NOT NULL DEFAULT 0,
      target_size bigint NOT NULL DEFAULT 0,
      target_digest text
    );
    CREATE INDEX accel_tasks_due ON accel_tasks (next_run, seq) WHERE status = 'PROCESSING';
    CREATE INDEX accel_tasks_dedup ON accel_tasks (dedup_key) WHERE status = 'PROCESSING';`,
  },
];

/** First key of this queue's advisory locks (second: hash of a dedup key). */
const LOCK_NAMESPACE = 0x41434345; // 'ACCE'
const FREE = '(lease_owner IS NULL OR lease_expires <= $1)';
const FENCE = "id = $1 AND lease_owner = $2 AND lease_token = $3 AND status = 'PROCESSING'";
/** Candidates one claim looks at before giving up (their targets busy). */
const CLAIM_CANDIDATES = 32;

/** pg returns bigint as strings: numbers here (ms and byte counts fit in 2^53). */
function toRow(r: Record<string, unknown>): TaskRow {
  const n = (k: string): number => Number(r[k]);
  return {
    ...(r as unknown as TaskRow),
    seq: n('seq'),
    attempts: n('attempts'),
    next_run: n('next_run'),
    lease_token: n('lease_token'),
    lease_expires: n('lease_expires'),
    source_size: n('source_size'),
    target_size: n('target_size'),
  };
}

export class PgTaskQueue implements TaskQueue {
  readonly engine = 'postgres' as const;
  private readonly clock: Clock;

  private constructor(
    private readonly pool: pg.Pool,
    opts: { clock?: Clock },
  ) {
    this.clock = opts.clock ?? systemClock;
  }

  /** Applies the accel migrations (once, whichever replica starts first) and returns the queue. */
  static async open(pool: pg.Pool, opts: { clock?: Clock; log?: Logger } = {}): Promise<PgTaskQueue> {
    await migrate(pool, 'accel', ACCEL_MIGRATIONS, opts.log ? { log: opts.log } : {});
    return new PgTaskQueue(pool, opts);
  }

  private now(): number {
    return this.clock.now();
  }

  private async row(q: pg.Pool | pg.PoolClient, id: string): Promise<TaskRow | undefined> {
    const r = await q.query('SELECT * FROM accel_tasks WHERE id = $1', [id]);
    return r.rows[0] ? toRow(r.rows[0]) : undefined;
  }

  async create(t: NewTask): Promise<{ task: TaskView; created: boolean }> {
    const now = this.now();
    return withTransaction(this.pool, async (c) => {
      // creations of one target are serialized, so two replicas given one event make one task
      await c.query('SELECT pg_advisory_xact_lock($1, hashtext($2))', [LOCK_NAMESPACE, t.dedupKey]);
      let dup: Record<string, unknown> | undefined;
      if (t.eventKey) dup = (await c.query('SELECT * FROM accel_tasks WHERE event_key = $1', [t.eventKey])).rows[0];
      dup ??= (
        await c.query(
          `SELECT * FROM accel_tasks WHERE status = 'PROCESSING' AND ${FREE} AND source = $2 AND COALESCE(source_digest, '') = $3 AND target = $4 LIMIT 1`,
          [now, t.source, t.sourceDigest ?? '', t.target],
        )
      ).rows[0];
      if (dup) return { task: taskView(toRow(dup), now), created: false };
      const r = await c.query(
        `INSERT INTO accel_tasks (id, created, source, source_digest, target, dedup_key, event_key, status, next_run)
         VALUES ($1, $2, $3, $4, $5, $6, $7, 'PROCESSING', 0) RETURNING *`,
        [randomUUID(), new Date(now).toISOString(), t.source, t.sourceDigest ?? null, t.target, t.dedupKey, t.eventKey ?? null],
      );
      return { task: taskView(toRow(r.rows[0]), now), created: true };
    });
  }

  async get(id: string): Promise<TaskView | undefined> {
    const r = await this.row(this.pool, id);
    return r ? taskView(r, this.now()) : undefined;
  }

  async list(limit = 1000, hosts?: readonly string[]): Promise<TaskView[]> {
    const now = this.now();
    if (hosts && hosts.length === 0) return [];
    const r = hosts
      ? await this.pool.query(
          'SELECT * FROM accel_tasks WHERE EXISTS (SELECT 1 FROM unnest($1::text[]) AS p WHERE starts_with(source, p)) ORDER BY seq DESC LIMIT $2',
          [hosts.map((h) => `${h}/`), limit],
        )
      : await this.pool.query('SELECT * FROM accel_tasks ORDER BY seq DESC LIMIT $1', [limit]);
    return r.rows.map((x) => taskView(toRow(x), now));
  }

  async claim(worker: string, leaseMs: number): Promise<ClaimedTask | undefined> {
    const now = this.now();
    return withTransaction(this.pool, async (c) => {
      const passed: string[] = []; // candidates whose target is busy (kept locked until the end: others skip them too)
      for (let i = 0; i < CLAIM_CANDIDATES; i++) {
        // one row at a time: a row locked here is invisible to the other claimers (SKIP LOCKED)
        const cand = (
          await c.query<{ id: string; seq: string; dedup_key: string; lease_token: string }>(
            `SELECT id, seq, dedup_key, lease_token FROM accel_tasks
              WHERE status = 'PROCESSING' AND next_run <= $1 AND ${FREE} AND NOT (seq = ANY($2::bigint[]))
              ORDER BY seq LIMIT 1 FOR UPDATE SKIP LOCKED`,
            [now, passed],
          )
        ).rows[0];
        if (!cand) return undefined;
        passed.push(cand.seq);
        if (!(await this.targetFree(c, cand.dedup_key, cand.seq, now))) continue;
        const token = Number(cand.lease_token) + 1;
        const r = await c.query(
          `UPDATE accel_tasks SET lease_owner = $2, lease_token = $3, lease_expires = $4, worker = $2, attempts = attempts + 1
            WHERE id = $1 RETURNING *`,
          [cand.id, worker, token, now + leaseMs],
        );
        return { lease: { id: cand.id, worker, token }, task: taskView(toRow(r.rows[0]), now), dedupKey: cand.dedup_key };
      }
      return undefined;
    });
  }

  /**
   * True when no other task of `dedupKey` holds a live lease. The advisory lock (held to the end of
   * the claim's transaction) makes two claimers of one target see each other's committed lease.
   */
  private async targetFree(c: pg.PoolClient, dedupKey: string, seq: string, now: number): Promise<boolean> {
    const locked = await c.query<{ ok: boolean }>('SELECT pg_try_advisory_xact_lock($1, hashtext($2)) AS ok', [LOCK_NAMESPACE, dedupKey]);
    if (!locked.rows[0]?.ok) return false; // another worker is claiming a task of this target right now
    const busy = await c.query(
      `SELECT 1 FROM accel_tasks WHERE dedup_key = $1 AND seq <> $2 AND status = 'PROCESSING' AND lease_owner IS NOT NULL AND lease_expires > $3 LIMIT 1`,
      [dedupKey, seq, now],
    );
    return !busy.rowCount;
  }

  private async fenced(set: string, lease: Lease, extra: unknown[] = []): Promise<boolean> {
    const r = await this.pool.query(`UPDATE accel_tasks SET ${set} WHERE ${FENCE}`, [lease.id, lease.worker, lease.token, ...extra]);
    return r.rowCount === 1;
  }

  async renew(lease: Lease, leaseMs: number): Promise<boolean> {
    return this.fenced('lease_expires = $4', lease, [this.now() + leaseMs]);
  }

  async complete(lease: Lease, r: TaskResult): Promise<boolean> {
    return this.fenced(
      "status = 'COMPLETED', lease_owner = NULL, finished = $4, source_digest = $5, target_digest = $6, source_size = $7, target_size = $8, reason = $9",
      lease,
      [new Date(this.now()).toISOString(), r.sourceDigest, r.targetDigest, r.sourceSize, r.targetSize, r.reason ?? ''],
    );
  }

  async fail(lease: Lease, reason: string, nextRun?: number): Promise<boolean> {
    if (nextRun === undefined) {
      return this.fenced("status = 'FAILED', lease_owner = NULL, finished = $4, reason = $5", lease, [
        new Date(this.now()).toISOString(),
        reason,
      ]);
    }
    return this.fenced('lease_owner = NULL, next_run = $4, reason = $5', lease, [nextRun, reason]);
  }

  async release(lease: Lease): Promise<boolean> {
    return this.fenced('lease_owner = NULL, attempts = GREATEST(attempts - 1, 0)', lease);
  }

  async retry(id: string): Promise<TaskView> {
    const now = this.now();
    const r = await this.pool.query(
      `UPDATE accel_tasks SET status = 'PROCESSING', attempts = 0, next_run = 0, finished = NULL, lease_owner = NULL
        WHERE id = $1 AND status = 'FAILED' RETURNING *`,
      [id],
    );
    if (r.rows[0]) return taskView(toRow(r.rows[0]), now);
    const cur = await this.row(this.pool, id);
    if (!cur) throw new FerryError('NOT_FOUND', `task ${id} not found`);
    throw new FerryError('FAILED_PRECONDITION', `task ${id} is ${cur.status}: only a FAILED task can be retried`);
  }

  async nextDue(): Promise<number | undefined> {
    const r = await this.pool.query<{ n: string | null }>(
      `SELECT MIN(CASE WHEN lease_owner IS NULL THEN next_run ELSE GREATEST(next_run, lease_expires) END) AS n
         FROM accel_tasks WHERE status = 'PROCESSING'`,
    );
    const n = r.rows[0]?.n;
    return n === null || n === undefined ? undefined : Number(n);
  }

  async evictFinished(before: number): Promise<number> {
    const r = await this.pool.query(`DELETE FROM accel_tasks WHERE status <> 'PROCESSING' AND finished IS NOT NULL AND finished < $1`, [
      new Date(before).toISOString(),
    ]);
    return r.rowCount ?? 0;
  }

  async countByStatus(): Promise<Record<TaskStatus, number>> {
    const r = await this.pool.query<{ status: string; n: string }>('SELECT status, COUNT(*) AS n FROM accel_tasks GROUP BY status');
    return statusCounts(r.rows);
  }

  async healthy(): Promise<boolean> {
    try {
      return (await this.pool.query('SELECT 1 AS ok')).rows[0]?.ok === 1;
    } catch {
      return false;
    }
  }

  async close(): Promise<void> {
    await this.pool.end();
  }
}
