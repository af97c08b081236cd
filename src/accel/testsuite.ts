/**
 * @module accel/testsuite
 * The TaskQueue contract as a reusable suite, run by the SQLite engine (queue-sqlite.test.ts) and the
 * PostgreSQL engine (queue-pg.int.test.ts): creation and its coalescing, claims and leases, takeover
 * after a lease runs out, fencing of a lost lease, retries, and concurrent claimers. Time is a manual
 * clock the suite moves.
 */
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { FerryError, type Clock } from '../core/index.js';
import type { TaskQueue } from './queue.js';

/** A clock that only moves when told to (the queue reads now() only). */
export class ManualClock implements Clock {
  constructor(public t = Date.UTC(2030, 0, 1)) {}
  now(): number {
    return this.t;
  }
  advance(ms: number): void {
    this.t += ms;
  }
  setTimer(): () => void {
    throw new Error('ManualClock: timers are not used by the queue');
  }
  sleep(): Promise<void> {
    throw new Error('ManualClock: sleep is not used by the queue');
  }
}

export interface QueueFixture {
  queue: TaskQueue;
  /** Another handle on the same queue (another connection / process's view), sharing the clock. */
  another(): Promise<TaskQueue>;
  cleanup(): Promise<void>;
}

const LEASE = 30_000;
const task = (n: string, extra: { digest?: string; eventKey?: string; host?: string } = {}) => ({
  source: `${extra.host ?? 'reg.example'}/team/${n}:v1`,
  target: `${extra.host ?? 'reg.example'}/team/${n}:v1-nydus`,
  dedupKey: `${extra.host ?? 'reg.example'}/team/${n}:v1-nydus`,
  ...(extra.digest ? { sourceDigest: extra.digest } : {}),
  ...(extra.eventKey ? { eventKey: extra.eventKey } : {}),
});
const DIGEST = `sha256:${'a'.repeat(64)}`;

/** Registers the contract tests for a fresh queue from `make(clock)`. */
export function taskQueueSuite(name: string, make: (clock: Clock) => Promise<QueueFixture>): void {
  const withQueue = (title: string, fn: (f: QueueFixture, clock: ManualClock) => Promise<void>): void => {
    it(`${name}: ${title}`, async () => {
      const clock = new ManualClock();
      const f = await make(clock);
      try {
        await fn(f, clock);
      } finally {
        await f.cleanup();
      }
    });
  };

  withQueue('creates tasks, lists newest first and by host, coalesces a queued duplicate and a repeated event', async ({ queue: q }) => {
    const a = await q.create(task('a', { digest: DIGEST }));
    assert.equal(a.created, true);
    assert.equal(a.task.status, 'PROCESSING');
    assert.equal(a.task.finished, '0001-01-01T00:00:00Z');
    assert.equal(a.task.running, false);
    assert.equal(a.task.worker, '');
    const dup = await q.create(task('a', { digest: DIGEST }));
    assert.deepEqual([dup.created, dup.task.id], [false, a.task.id], 'a queued identical task absorbs the new one');
    const other = await q.create(task('a', { digest: `sha256:${'b'.repeat(64)}` }));
    assert.equal(other.created, true, 'another digest is another task');
    const ev = await q.create(task('e', { eventKey: 'event-1' }));
    const c = await q.create(task('c', { host: 'other.example' }));
    assert.deepEqual(
      (await q.list()).map((t) => t.id),
      [c.task.id, ev.task.id, other.task.id, a.task.id],
    );
    assert.deepEqual(
      (await q.list(1000, ['other.example'])).map((t) => t.id),
      [c.task.id],
    );
    assert.deepEqual(await q.list(1000, []), []);
    assert.equal((await q.list(2)).length, 2);
    assert.equal(await q.get('no-such-id'), undefined);
    assert.deepEqual(await q.countByStatus(), { PROCESSING: 4, COMPLETED: 0, FAILED: 0 });
    // the same event again, even once its task is done: no second task
    for (let i = 0; i < 10; i++) {
      const c = await q.claim('w1', LEASE);
      if (!c) break;
      assert.ok(await q.complete(c.lease, { sourceDigest: DIGEST, targetDigest: DIGEST, sourceSize: 1, targetSize: 1 }));
    }
    assert.deepEqual(await q.countByStatus(), { PROCESSING: 0, COMPLETED: 4, FAILED: 0 });
    const again = await q.create(task('e', { eventKey: 'event-1' }));
    assert.deepEqual([again.created, again.task.id, again.task.status], [false, ev.task.id, 'COMPLETED']);
  });

  withQueue('claims the oldest due task once, counts the attempt, one lease per target at a time', async ({ queue: q }, clock) => {
    const a1 = await q.create(task('a', { digest: DIGEST }));
    const a2 = await q.create(task('a', { digest: `sha256:${'b'.repeat(64)}` })); // same target, later push
    const b = await q.create(task('b'));
    const first = await q.claim('w1', LEASE);
    assert.equal(first?.task.id, a1.task.id);
    assert.deepEqual([first.task.attempts, first.task.running, first.task.worker], [1, true, 'w1']);
    assert.equal(first.dedupKey, task('a').dedupKey);
    assert.equal((await q.get(a1.task.id))?.running, true);
    // a running task does not absorb a new submission
    assert.equal((await q.create(task('a', { digest: DIGEST }))).created, true);
    const second = await q.claim('w2', LEASE);
    assert.equal(second?.task.id, b.task.id, 'a2 waits: its target is being converted');
    assert.equal(await q.claim('w3', LEASE), undefined);
    assert.ok(await q.complete(first.lease, { sourceDigest: DIGEST, targetDigest: DIGEST, sourceSize: 10, targetSize: 20 }));
    const third = await q.claim('w3', LEASE);
    assert.equal(third?.task.id, a2.task.id, 'the target is free again');
    const done = (await q.get(a1.task.id))!;
    assert.deepEqual(
      [done.status, done.running, done.source_size, done.target_size, done.target_digest, done.worker],
      ['COMPLETED', false, 10, 20, DIGEST, 'w1'],
    );
    assert.notEqual(done.finished, '0001-01-01T00:00:00Z');
    assert.equal(done.finished, new Date(clock.now()).toISOString(), 'finished by the queue clock');
  });

  withQueue('a lease that runs out is taken over, and the old holder is fenced off', async ({ queue: q }, clock) => {
    const t = await q.create(task('a'));
    const old = (await q.claim('dead', LEASE))!;
    clock.advance(LEASE - 1);
    assert.equal(await q.claim('w2', LEASE), undefined, 'not before the lease runs out');
    assert.equal(await q.nextDue(), clock.now() + 1, 'due when the lease runs out');
    clock.advance(1);
    assert.equal((await q.get(t.task.id))?.running, false, 'an expired lease is not running');
    const taken = (await q.claim('w2', LEASE))!;
    assert.equal(taken.task.id, t.task.id);
    assert.equal(taken.task.attempts, 2, 'the lost attempt counts');
    assert.ok(taken.lease.token > old.lease.token, 'the fencing token grows');
    // the old holder (a worker that was paused, not dead) can write nothing about the task
    assert.equal(await q.renew(old.lease, LEASE), false);
    assert.equal(await q.complete(old.lease, { sourceDigest: DIGEST, targetDigest: DIGEST, sourceSize: 1, targetSize: 1 }), false);
    assert.equal(await q.fail(old.lease, 'old: boom'), false);
    assert.equal(await q.fail(old.lease, 'old: boom', clock.now()), false);
    assert.equal(await q.release(old.lease), false);
    const mid = (await q.get(t.task.id))!;
    assert.deepEqual([mid.status, mid.worker, mid.reason, mid.attempts], ['PROCESSING', 'w2', '', 2]);
    // even a worker that reuses its name cannot pass an old token
    assert.equal(await q.renew({ ...old.lease, worker: 'w2' }, LEASE), false);
    assert.ok(await q.complete(taken.lease, { sourceDigest: DIGEST, targetDigest: DIGEST, sourceSize: 1, targetSize: 2 }));
    assert.equal((await q.get(t.task.id))?.status, 'COMPLETED');
    assert.equal(await q.renew(taken.lease, LEASE), false, 'a finished task has no lease');
  });

  withQueue('heartbeats keep a lease: a renewed task is not taken over', async ({ queue: q }, clock) => {
    await q.create(task('a'));
    const held = (await q.claim('w1', LEASE))!;
    for (let i = 0; i < 5; i++) {
      clock.advance(LEASE / 3);
      assert.ok(await q.renew(held.lease, LEASE));
    }
    clock.advance(LEASE - 1);
    assert.equal(await q.claim('w2', LEASE), undefined);
    clock.advance(1);
    assert.equal((await q.claim('w2', LEASE))?.task.id, held.task.id);
  });

  withQueue('failed attempts back off, fail for good, and a FAILED task can be retried', async ({ queue: q }, clock) => {
    const t = await q.create(task('a'));
    let c = (await q.claim('w1', LEASE))!;
    assert.ok(await q.fail(c.lease, 'UNAVAILABLE: boom', clock.now() + 5000));
    let v = (await q.get(t.task.id))!;
    assert.deepEqual([v.status, v.running, v.reason, v.next_run], ['PROCESSING', false, 'UNAVAILABLE: boom', clock.now() + 5000]);
    assert.equal(await q.claim('w1', LEASE), undefined, 'not before its backoff');
    assert.equal(await q.nextDue(), clock.now() + 5000);
    clock.advance(5000);
    c = (await q.claim('w1', LEASE))!;
    assert.equal(c.task.attempts, 2);
    assert.ok(await q.fail(c.lease, 'NOT_FOUND: gone'));
    v = (await q.get(t.task.id))!;
    assert.deepEqual([v.status, v.reason], ['FAILED', 'NOT_FOUND: gone']);
    assert.equal(await q.nextDue(), undefined);
    assert.deepEqual(await q.countByStatus(), { PROCESSING: 0, COMPLETED: 0, FAILED: 1 });
    const r = await q.retry(t.task.id);
    assert.deepEqual([r.status, r.attempts, r.finished], ['PROCESSING', 0, '0001-01-01T00:00:00Z']);
    c = (await q.claim('w2', LEASE))!;
    assert.equal(c.task.id, t.task.id);
    await assert.rejects(q.retry(t.task.id), (e: unknown) => FerryError.hasCode(e, 'FAILED_PRECONDITION'));
    await assert.rejects(q.retry('no-such-task'), (e: unknown) => FerryError.hasCode(e, 'NOT_FOUND'));
  });

  withQueue('a released task is claimable at once and its attempt is not counted', async ({ queue: q }) => {
    const t = await q.create(task('a'));
    const c = (await q.claim('w1', LEASE))!;
    assert.ok(await q.release(c.lease));
    const again = (await q.claim('w2', LEASE))!;
    assert.deepEqual([again.task.id, again.task.attempts], [t.task.id, 1]);
  });

  withQueue('finished tasks are evicted after their retention; health answers', async ({ queue: q }, clock) => {
    await q.create(task('a'));
    const c = (await q.claim('w1', LEASE))!;
    await q.fail(c.lease, 'NOT_FOUND: x');
    await q.create(task('b'));
    assert.equal(await q.evictFinished(clock.now() - 60_000), 0, 'recently finished tasks stay');
    assert.equal(await q.evictFinished(clock.now() + 1000), 1);
    assert.deepEqual(await q.countByStatus(), { PROCESSING: 1, COMPLETED: 0, FAILED: 0 });
    assert.equal(await q.healthy(), true);
  });

  withQueue('concurrent claimers on separate connections take every task exactly once', async ({ queue: q, another }) => {
    const n = 12;
    for (let i = 0; i < n; i++) await q.create(task(`t${i}`));
    const handles = [q, await another(), await another()];
    const claims = await Promise.all(Array.from({ length: 18 }, (_, i) => handles[i % handles.length]!.claim(`w${i}`, LEASE)));
    const ids = claims.flatMap((c) => (c ? [c.task.id] : []));
    assert.equal(ids.length, n, 'every task claimed');
    assert.equal(new Set(ids).size, n, 'none claimed twice');
    assert.equal(await q.claim('late', LEASE), undefined);
  });
}
