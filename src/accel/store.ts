/**
 * @module accel/store
 * Durable conversion tasks in SQLite (`<work_dir>/accel.db`): a task survives restarts (one that was
 * running is picked up again), keeps its attempt count, next retry time and last error.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import Database from 'better-sqlite3';
import type { TaskStatus, TaskView } from './protocol.js';

export const ZERO_TIME = '0001-01-01T00:00:00Z';

interface Row {
  seq: number;
  id: string;
  created: string;
  finished: string | null;
  source: string;
  source_digest: string | null;
  target: string;
  dedup_key: string;
  status: TaskStatus;
  attempts: number;
  next_run: number;
  running: number;
  reason: string;
  source_size: number;
  target_size: number;
  target_digest: string | null;
}

function view(r: Row): TaskView {
  return {
    id: r.id,
    created: r.created,
    finished: r.finished ?? ZERO_TIME,
    source: r.source,
    source_size: r.source_size,
    target_size: r.target_size,
    status: r.status,
    reason: r.reason,
    target: r.target,
    target_digest: r.target_digest ?? '',
    source_digest: r.source_digest ?? '',
    attempts: r.attempts,
    next_run: r.next_run,
    running: r.running === 1,
  };
}

export class TaskStore {
  private readonly db: Database.Database;

  constructor(workDir: string) {
    mkdirSync(workDir, { recursive: true });
    this.db = new Database(join(workDir, 'accel.db'));
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = NORMAL');
    this.db.pragma('busy_timeout = 5000');
    this.db.exec(`CREATE TABLE IF NOT EXISTS tasks (
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
    CREATE INDEX IF NOT EXISTS tasks_runnable ON tasks(status, running, next_run);`);
  }

  /** Marks every task that was running when the process stopped as queued again; returns how many. */
  recover(): number {
    return this.db.prepare(`UPDATE tasks SET running = 0 WHERE status = 'PROCESSING' AND running = 1`).run().changes;
  }

  /**
   * Creates a task, unless an identical one (same source and digest) is still queued and not
   * running: then that one is returned (a duplicate webhook converts once).
   */
  create(t: { source: string; sourceDigest?: string; target: string; dedupKey: string }): { task: TaskView; created: boolean } {
    return this.db.transaction(() => {
      const dup = this.db
        .prepare(
          `SELECT * FROM tasks WHERE status = 'PROCESSING' AND running = 0 AND source = ? AND IFNULL(source_digest,'') = ? AND target = ?`,
        )
        .get(t.source, t.sourceDigest ?? '', t.target) as Row | undefined;
      if (dup) return { task: view(dup), created: false };
      const id = randomUUID();
      this.db
        .prepare(
          `INSERT INTO tasks (id, created, source, source_digest, target, dedup_key, status, next_run) VALUES (?,?,?,?,?,?,'PROCESSING',0)`,
        )
        .run(id, new Date().toISOString(), t.source, t.sourceDigest ?? null, t.target, t.dedupKey);
      return { task: this.get(id)!, created: true };
    })();
  }

  get(id: string): TaskView | undefined {
    const r = this.db.prepare('SELECT * FROM tasks WHERE id = ?').get(id) as Row | undefined;
    return r ? view(r) : undefined;
  }

  dedupKey(id: string): string | undefined {
    return (this.db.prepare('SELECT dedup_key FROM tasks WHERE id = ?').get(id) as { dedup_key: string } | undefined)?.dedup_key;
  }

  /** Newest first; with `hosts`, only the tasks whose source is on one of those registry hosts. */
  list(limit = 1000, hosts?: readonly string[]): TaskView[] {
    if (!hosts) return (this.db.prepare('SELECT * FROM tasks ORDER BY seq DESC LIMIT ?').all(limit) as Row[]).map(view);
    if (hosts.length === 0) return [];
    const prefixes = hosts.map((h) => `${h}/`);
    const where = prefixes.map(() => 'substr(source, 1, ?) = ?').join(' OR ');
    return (
      this.db
        .prepare(`SELECT * FROM tasks WHERE ${where} ORDER BY seq DESC LIMIT ?`)
        .all(...prefixes.flatMap((p) => [p.length, p]), limit) as Row[]
    ).map(view);
  }

  /** Queued tasks due now, oldest first, with their dedup keys. */
  runnable(now: number, limit: number): Array<{ id: string; dedupKey: string }> {
    return (
      this.db
        .prepare(`SELECT id, dedup_key FROM tasks WHERE status = 'PROCESSING' AND running = 0 AND next_run <= ? ORDER BY seq LIMIT ?`)
        .all(now, limit) as Array<{ id: string; dedup_key: string }>
    ).map((r) => ({ id: r.id, dedupKey: r.dedup_key }));
  }

  /** Earliest next_run among queued tasks, if any. */
  nextDue(): number | undefined {
    const r = this.db.prepare(`SELECT MIN(next_run) AS n FROM tasks WHERE status = 'PROCESSING' AND running = 0`).get() as {
      n: number | null;
    };
    return r.n ?? undefined;
  }

  /** Claims a queued task for running; false if someone else did. */
  claim(id: string): boolean {
    return (
      this.db
        .prepare(`UPDATE tasks SET running = 1, attempts = attempts + 1 WHERE id = ? AND status = 'PROCESSING' AND running = 0`)
        .run(id).changes === 1
    );
  }

  complete(id: string, r: { sourceDigest: string; targetDigest: string; sourceSize: number; targetSize: number; reason?: string }): void {
    this.db
      .prepare(
        `UPDATE tasks SET status = 'COMPLETED', running = 0, finished = ?, source_digest = ?, target_digest = ?, source_size = ?, target_size = ?, reason = ? WHERE id = ?`,
      )
      .run(new Date().toISOString(), r.sourceDigest, r.targetDigest, r.sourceSize, r.targetSize, r.reason ?? '', id);
  }

  /** A failed attempt: retry at `nextRun`, or FAILED for good when `nextRun` is undefined. */
  fail(id: string, reason: string, nextRun?: number): void {
    if (nextRun === undefined) {
      this.db
        .prepare(`UPDATE tasks SET status = 'FAILED', running = 0, finished = ?, reason = ? WHERE id = ?`)
        .run(new Date().toISOString(), reason, id);
    } else {
      this.db.prepare(`UPDATE tasks SET running = 0, next_run = ?, reason = ? WHERE id = ?`).run(nextRun, reason, id);
    }
  }

  /** Puts a running task back in the queue without counting the attempt (service stopping). */
  release(id: string): void {
    this.db.prepare(`UPDATE tasks SET running = 0, attempts = MAX(attempts - 1, 0) WHERE id = ? AND status = 'PROCESSING'`).run(id);
  }

  /** Removes finished tasks that finished before `before` (ms since epoch); returns how many. */
  evictFinished(before: number): number {
    return this.db
      .prepare(`DELETE FROM tasks WHERE status != 'PROCESSING' AND finished IS NOT NULL AND finished < ?`)
      .run(new Date(before).toISOString()).changes;
  }

  countByStatus(): Record<string, number> {
    const out: Record<string, number> = { PROCESSING: 0, COMPLETED: 0, FAILED: 0 };
    for (const r of this.db.prepare('SELECT status, COUNT(*) AS n FROM tasks GROUP BY status').all() as Array<{
      status: string;
      n: number;
    }>)
      out[r.status] = r.n;
    return out;
  }

  healthy(): boolean {
    return (this.db.prepare('SELECT 1 AS ok').get() as { ok: number }).ok === 1;
  }

  close(): void {
    this.db.close();
  }
}
