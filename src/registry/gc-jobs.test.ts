/**
 * gc-jobs with a fake clock on SQLite + memory blobs: a due schedule becomes one SCHEDULE run that
 * is executed and moves the schedule on; a run left Running by a dead replica is marked Error when
 * it goes stale; a stop request stops a run.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { createHash } from 'node:crypto';
import { MemoryBlobStore } from '../content/index.js';
import { silentLogger } from '../observe/index.js';
import { FakeClock } from '../../test/support/clock.js';
import { SqliteMetadata } from './metadata/sqlite.js';
import { GcJobs, nextScheduled } from './gc-jobs.js';

const OPTS = { pollIntervalMs: 1000, minAgeMs: 0, uploadMaxAgeMs: 60_000, staleAfterMs: 300_000 };

async function setup(): Promise<{ meta: SqliteMetadata; store: MemoryBlobStore; clock: FakeClock; jobs: GcJobs; done(): Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'ferry-gcjobs-'));
  const meta = new SqliteMetadata(join(dir, 'r.db'));
  const store = new MemoryBlobStore();
  const clock = new FakeClock(Date.now());
  const jobs = new GcJobs({ meta, store, log: silentLogger(), clock }, OPTS);
  return {
    meta,
    store,
    clock,
    jobs,
    done: async () => {
      await meta.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

test('a due schedule makes one SCHEDULE run, executed, and the schedule moves on', async () => {
  const { meta, store, clock, jobs, done } = await setup();
  try {
    const data = Buffer.from('orphan');
    const digest = `sha256:${createHash('sha256').update(data).digest('hex')}`;
    await store.startUpload('aaaaaaaa-1');
    await store.append('aaaaaaaa-1', 0, Readable.from([data]));
    await store.commitUpload('aaaaaaaa-1', digest);
    await meta.setGcSchedule({ type: 'Hourly', cron: '0 0 * * * *', parameters: '{}', nextRun: clock.now() + 60_000 }, clock.now());
    assert.equal(await jobs.tick(), undefined, 'not due yet');
    await clock.advance(61_000);
    const run = await jobs.tick();
    assert.equal(run?.trigger, 'SCHEDULE');
    assert.equal(run?.status, 'Success');
    assert.match(run!.log, /deleted blob/);
    assert.equal(await store.stat(digest), undefined);
    assert.equal((await meta.getGcSchedule())?.nextRun, nextScheduled('0 0 * * * *', clock.now()));
    assert.equal(await jobs.tick(), undefined, 'taken once');
    assert.equal((await meta.listGcRuns(0, 10)).total, 1);
  } finally {
    await done();
  }
});

test('a run left Running by a dead replica is marked Error once stale; a stopped Pending run never runs', async () => {
  const { meta, clock, jobs, done } = await setup();
  try {
    const lost = await meta.createGcRun('MANUAL', '{}');
    assert.equal((await meta.claimGcRun('dead-replica', clock.now(), clock.now() - OPTS.staleAfterMs))?.id, lost.id);
    const next = await meta.createGcRun('MANUAL', '{}');
    assert.equal(await jobs.tick(), undefined, 'one run at a time: the lost one still counts as running');
    await clock.advance(OPTS.staleAfterMs + 1);
    const ran = await jobs.tick();
    assert.equal(ran?.id, next.id);
    assert.equal(ran?.status, 'Success');
    const gone = await meta.getGcRun(lost.id);
    assert.equal(gone?.status, 'Error');
    assert.match(gone!.log, /run lost/);
    const stopped = await meta.createGcRun('MANUAL', '{}');
    assert.equal(await meta.requestGcStop(stopped.id), true);
    assert.equal(await jobs.tick(), undefined);
    assert.equal((await meta.getGcRun(stopped.id))?.status, 'Stopped');
  } finally {
    await done();
  }
});

test('schedule times: Harbor crons, UTC', () => {
  const t = Date.UTC(2030, 0, 1, 10, 15, 30);
  assert.equal(nextScheduled('0 0 * * * *', t), Date.UTC(2030, 0, 1, 11, 0, 0));
  assert.equal(nextScheduled('0 0 0 * * *', t), Date.UTC(2030, 0, 2));
  assert.equal(nextScheduled('0 0 0 * * 0', t), Date.UTC(2030, 0, 6), 'next Sunday');
  assert.equal(nextScheduled('0 */20 * * * *', t), Date.UTC(2030, 0, 1, 10, 20));
  assert.throws(() => nextScheduled('0 0 0 * *', t), /6 fields/);
  assert.throws(() => nextScheduled('1 0 0 * * *', t), /must be 0/);
});
