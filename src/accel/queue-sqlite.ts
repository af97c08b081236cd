/**
 * @module accel/queue-sqlite
 * The task queue in SQLite (`<work_dir>/accel.db` by default): the embedded engine, for one accel
 * process (the work dir lock keeps a second one away, accel/workdir.ts). At open, leases left by the
 * previous process are dropped at once: nobody else can hold them. Semantics in queue.ts.
 */
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { randomUUID } from 'node:crypto';
import Database from 'better-sqlite3';
import { FerryError, systemClock, type Clock } from '../core/index.js';
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

const SCHEMA = `CREATE TABLE IF NOT EXISTS tasks (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  id TEXT NOT NULL UNIQUE,
  created TEXT NOT NULL,
  finished TEXT,
  source TEXT NOT NULL,
  source_digest TEXT,
  target TEXT NOT NULL,
  dedup_key TEXT NOT NULL,
  status TEXT NOT NULL,
  attempts INTEGER NOT NULL DEFAULT 0,
  next_run INTEGER NOT NULL DEFAULT 0,
  running INTEGER NOT NULL DEFAULT 0,
  reason TEXT NOT NULL DEFAULT '',
  source_size INTEGER NOT NULL DEFAULT 0,
  target_size INTEGER NOT NULL DEFAULT 0,
  target_digest TEXT
);
CREATE INDEX IF NOT EXISTS tasks_runnable ON tasks(status, running, next_run);`;

/** Columns added after the first release (a database of an older ferry gets them at open). */
const ADDED_COLUMNS: ReadonlyArray<[string, string]> = [
  ['event_key', 'TEXT'],
  ['lease_owner', 'TEXT'],
  ['lease_token', 'INTEGER NOT NULL DEFAULT 0'],
  ['lease_expires', 'INTEGER NOT NULL DEFAULT 0'],
  ['worker', "TEXT NOT NULL DEFAULT ''"],
];

const FREE = '(lease_owner IS NULL OR lease_expires <= @now)';
const FENCE = "id = @id AND lease_owner = @worker AND lease_token = @token AND status = 'PROCESSING'";

export class SqliteTaskQueue implements TaskQueue {
  readonly engine = 'sqlite' as const;
  private readonly db: Database.Database;
  private readonly clock: Clock;

  constructor(path: string, opts: { clock?: Clock } = {}) {
    this.clock = opts.clock ?? systemClock;
    mkdirSync(dirname(path), { recursive: true });
    this.db = new Database(path);
    try {
      this.db.pragma('journal_mode = WAL');
      this.db.pragma('synchronous = NORMAL');
      this.db.pragma('busy_timeout = 5000');
      this.db.exec(SCHEMA);
      const have = new Set((this.db.prepare('PRAGMA table_info(tasks)').all() as Array<{ name: string }>).map((c) => c.name));
      for (const [name, type] of ADDED_COLUMNS) if (!have.has(name)) this.db.exec(`ALTER TABLE tasks ADD COLUMN ${name} ${type}`);
      this.db.exec('CREATE UNIQUE INDEX IF NOT EXISTS tasks_event ON tasks(event_key) WHERE event_key IS NOT NULL');
    } catch (err) {
      this.db.close();
      throw err;
    }
  }

  private now(): number {
    return this.clock.now();
  }

  private row(id: string): TaskRow | undefined {
    return this.db.prepare('SELECT * FROM tasks WHERE id = ?').get(id) as TaskRow | undefined;
  }

  /** Drops the leases of the previous process (and the old `running` flag); returns how many tasks resume. */
  recover(): number {
    return this.db
      .prepare(`UPDATE tasks SET running = 0, lease_owner = NULL WHERE status = 'PROCESSING' AND (running = 1 OR lease_owner IS NOT NULL)`)
      .run().changes;
  }

  async create(t: NewTask): Promise<{ task: TaskView; created: boolean }> {
    const now = this.now();
    return this.db.transaction(() => {
      const byEvent = t.eventKey
        ? (this.db.prepare('SELECT * FROM tasks WHERE event_key = ?').get(t.eventKey) as TaskRow | undefined)
        : undefined;
      const dup =
        byEvent ??
        (this.db
          .prepare(
            `SELECT * FROM tasks WHERE status = 'PROCESSING' AND ${FREE} AND source = @source AND IFNULL(source_digest,'') = @digest AND target = @target`,
          )
          .get({ now, source: t.source, digest: t.sourceDigest ?? '', target: t.target }) as TaskRow | undefined);
      if (dup) return { task: taskView(dup, now), created: false };
      const id = randomUUID();
      this.db
        .prepare(
          `INSERT INTO tasks (id, created, source, source_digest, target, dedup_key, event_key, status, next_run) VALUES (?,?,?,?,?,?,?,'PROCESSING',0)`,
        )
        .run(id, new Date(now).toISOString(), t.source, t.sourceDigest ?? null, t.target, t.dedupKey, t.eventKey ?? null);
      return { task: taskView(this.row(id)!, now), created: true };
    })();
  }

  async get(id: string): Promise<TaskView | undefined> {
    const r = this.row(id);
    return r ? taskView(r, this.now()) : undefined;
  }

  async list(limit = 1000, hosts?: readonly string[]): Promise<TaskView[]> {
    const now = this.now();
    if (!hosts)
      return (this.db.prepare('SELECT * FROM tasks ORDER BY seq DESC LIMIT ?').all(limit) as TaskRow[]).map((r) => taskView(r, now));
    if (hosts.length === 0) return [];
    const prefixes = hosts.map((h) => `${h}/`);
    const where = prefixes.map(() => 'substr(source, 1, ?) = ?').join(' OR ');
    const rows = this.db
      .prepare(`SELECT * FROM tasks WHERE ${where} ORDER BY seq DESC LIMIT ?`)
      .all(...prefixes.flatMap((p) => [p.length, p]), limit) as TaskRow[];
    return rows.map((r) => taskView(r, now));
  }

  async claim(worker: string, leaseMs: number): Promise<ClaimedTask | undefined> {
    const now = this.now();
    return this.db.transaction(() => {
      const r = this.db
        .prepare(
          `SELECT * FROM tasks t WHERE status = 'PROCESSING' AND next_run <= @now AND ${FREE}
             AND NOT EXISTS (SELECT 1 FROM tasks o WHERE o.dedup_key = t.dedup_key AND o.seq != t.seq AND o.status = 'PROCESSING' AND o.lease_owner IS NOT NULL AND o.lease_expires > @now)
           ORDER BY seq LIMIT 1`,
        )
        .get({ now }) as TaskRow | undefined;
      if (!r) return undefined;
      const token = r.lease_token + 1;
      this.db
        .prepare(
          'UPDATE tasks SET lease_owner = @worker, lease_token = @token, lease_expires = @until, worker = @worker, attempts = attempts + 1 WHERE id = @id',
        )
        .run({ worker, token, until: now + leaseMs, id: r.id });
      return { lease: { id: r.id, worker, token }, task: taskView(this.row(r.id)!, now), dedupKey: r.dedup_key };
    })();
  }

  private fenced(sql: string, lease: Lease, extra: Record<string, unknown> = {}): boolean {
    return (
      this.db.prepare(`UPDATE tasks SET ${sql} WHERE ${FENCE}`).run({ ...extra, id: lease.id, worker: lease.worker, token: lease.token })
        .changes === 1
    );
  }

  async renew(lease: Lease, leaseMs: number): Promise<boolean> {
    return this.fenced('lease_expires = @until', lease, { until: this.now() + leaseMs });
  }

  async complete(lease: Lease, r: TaskResult): Promise<boolean> {
    return this.fenced(
      "status = 'COMPLETED', lease_owner = NULL, finished = @finished, source_digest = @sd, target_digest = @td, source_size = @ss, target_size = @ts, reason = @reason",
      lease,
      {
        finished: new Date(this.now()).toISOString(),
        sd: r.sourceDigest,
        td: r.targetDigest,
        ss: r.sourceSize,
        ts: r.targetSize,
        reason: r.reason ?? '',
      },
    );
  }

  async fail(lease: Lease, reason: string, nextRun?: number): Promise<boolean> {
    if (nextRun === undefined) {
      return this.fenced("status = 'FAILED', lease_owner = NULL, finished = @finished, reason = @reason", lease, {
        finished: new Date(this.now()).toISOString(),
        reason,
      });
    }
    return this.fenced('lease_owner = NULL, next_run = @next, reason = @reason', lease, { next: nextRun, reason });
  }

  async release(lease: Lease): Promise<boolean> {
    return this.fenced('lease_owner = NULL, attempts = MAX(attempts - 1, 0)', lease);
  }

  async retry(id: string): Promise<TaskView> {
    const now = this.now();
    return this.db.transaction(() => {
      const r = this.row(id);
      if (!r) throw new FerryError('NOT_FOUND', `task ${id} not found`);
      if (r.status !== 'FAILED')
        throw new FerryError('FAILED_PRECONDITION', `task ${id} is ${r.status}: only a FAILED task can be retried`);
      this.db
        .prepare("UPDATE tasks SET status = 'PROCESSING', attempts = 0, next_run = 0, finished = NULL, lease_owner = NULL WHERE id = ?")
        .run(id);
      return taskView(this.row(id)!, now);
    })();
  }

  async nextDue(): Promise<number | undefined> {
    const r = this.db
      .prepare(
        `SELECT MIN(CASE WHEN lease_owner IS NULL THEN next_run ELSE MAX(next_run, lease_expires) END) AS n FROM tasks WHERE status = 'PROCESSING'`,
      )
      .get() as { n: number | null };
    return r.n ?? undefined;
  }

  async evictFinished(before: number): Promise<number> {
    return this.db
      .prepare(`DELETE FROM tasks WHERE status != 'PROCESSING' AND finished IS NOT NULL AND finished < ?`)
      .run(new Date(before).toISOString()).changes;
  }

  async countByStatus(): Promise<Record<TaskStatus, number>> {
    return statusCounts(
      this.db.prepare('SELECT status, COUNT(*) AS n FROM tasks GROUP BY status').all() as Array<{ status: string; n: number }>,
    );
  }

  async healthy(): Promise<boolean> {
    return (this.db.prepare('SELECT 1 AS ok').get() as { ok: number }).ok === 1;
  }

  async close(): Promise<void> {
    if (this.db.open) this.db.close();
  }
}
