/**
 * @module accel/queue
 * The durable task queue behind the conversion service, one interface with two engines: SQLite
 * (queue-sqlite.ts, the embedded default, one process per work dir) and PostgreSQL (queue-pg.ts,
 * any number of worker processes on any number of machines).
 *
 * A worker claims a task with a lease (owner, expiry, and a fencing token that grows with every
 * claim) and renews it by heartbeats; a task whose lease expired (its worker died) is claimable
 * again, and counts another attempt. Every write a worker makes about its task (renew, complete,
 * fail, release) names its lease and is refused once someone else's claim changed the token: a
 * worker that lost its lease can neither finish nor overwrite the task. One target reference is
 * never converted by two leases at once (tasks with the same dedup key wait their turn).
 *
 * Time comes from the queue's Clock (ms since the epoch): claims, expiries and due times.
 */
import { createHash } from 'node:crypto';
import type { TaskStatus, TaskView } from './protocol.js';

export const ZERO_TIME = '0001-01-01T00:00:00Z';

export interface NewTask {
  source: string;
  sourceDigest?: string;
  target: string;
  /** Tasks with one dedup key run one at a time (the target reference). */
  dedupKey: string;
  /** Identity of the event that asked for the task: a second task with this key is never created. */
  eventKey?: string;
}

/** A worker's hold on a task: every write about the task names it (fencing). */
export interface Lease {
  readonly id: string;
  readonly worker: string;
  readonly token: number;
}

export interface ClaimedTask {
  lease: Lease;
  task: TaskView;
  dedupKey: string;
}

export interface TaskResult {
  sourceDigest: string;
  targetDigest: string;
  sourceSize: number;
  targetSize: number;
  reason?: string;
}

export interface TaskQueue {
  readonly engine: 'sqlite' | 'postgres';
  /**
   * Creates a task, unless one with the same eventKey exists (any status), or an identical one
   * (same source, digest and target) is still queued and not running: then that one is returned.
   */
  create(t: NewTask): Promise<{ task: TaskView; created: boolean }>;
  get(id: string): Promise<TaskView | undefined>;
  /** Newest first; with `hosts`, only the tasks whose source is on one of those registry hosts. */
  list(limit?: number, hosts?: readonly string[]): Promise<TaskView[]>;
  /** Claims the oldest due task no live lease holds (nor another task of its dedup key) for `leaseMs`. */
  claim(worker: string, leaseMs: number): Promise<ClaimedTask | undefined>;
  /** Extends the lease to now + leaseMs; false when it was lost (the task was claimed again, or finished). */
  renew(lease: Lease, leaseMs: number): Promise<boolean>;
  /** COMPLETED with its result; false (nothing written) when the lease was lost. */
  complete(lease: Lease, r: TaskResult): Promise<boolean>;
  /** A failed attempt: queued again at `nextRun`, or FAILED for good without one; false when the lease was lost. */
  fail(lease: Lease, reason: string, nextRun?: number): Promise<boolean>;
  /** Gives the task back without counting the attempt (the worker stops); false when the lease was lost. */
  release(lease: Lease): Promise<boolean>;
  /** Queues a FAILED task again with a fresh attempt count; NOT_FOUND / FAILED_PRECONDITION otherwise. */
  retry(id: string): Promise<TaskView>;
  /** When the next task may become claimable (a retry falling due, a lease running out), if any. */
  nextDue(): Promise<number | undefined>;
  /** Removes tasks that finished before `before` (ms since epoch); returns how many. */
  evictFinished(before: number): Promise<number>;
  countByStatus(): Promise<Record<TaskStatus, number>>;
  healthy(): Promise<boolean>;
  close(): Promise<void>;
}

/** A task row as both engines store it (integers as numbers). */
export interface TaskRow {
  seq: number;
  id: string;
  created: string;
  finished: string | null;
  source: string;
  source_digest: string | null;
  target: string;
  dedup_key: string;
  event_key: string | null;
  status: TaskStatus;
  attempts: number;
  next_run: number;
  lease_owner: string | null;
  lease_token: number;
  lease_expires: number;
  worker: string;
  reason: string;
  source_size: number;
  target_size: number;
  target_digest: string | null;
}

/** The API's view of a row at time `now` (running: a live lease holds it). */
export function taskView(r: TaskRow, now: number): TaskView {
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
    running: r.lease_owner !== null && r.lease_expires > now,
    worker: r.worker,
  };
}

/** Counts by status with every status present. */
export function statusCounts(rows: ReadonlyArray<{ status: string; n: number | string }>): Record<TaskStatus, number> {
  const out: Record<TaskStatus, number> = { PROCESSING: 0, COMPLETED: 0, FAILED: 0 };
  for (const r of rows) out[r.status as TaskStatus] = Number(r.n);
  return out;
}

/**
 * The event key of one resource of a webhook: the same event delivered twice (two registry
 * replicas, a retried delivery) names the same task.
 */
export function eventKeyOf(e: { type: string; occurAt: number; resourceUrl: string; digest?: string }): string {
  return createHash('sha256')
    .update(JSON.stringify([e.type, e.occurAt, e.resourceUrl, e.digest ?? '']))
    .digest('hex');
}
