import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SqliteTaskQueue } from './queue-sqlite.js';
import { ManualClock, taskQueueSuite } from './testsuite.js';

describe('TaskQueue on SQLite', () => {
  taskQueueSuite('sqlite', async (clock) => {
    const dir = await mkdtemp(join(tmpdir(), 'ferry-accel-queue-'));
    const path = join(dir, 'accel.db');
    const handles = [new SqliteTaskQueue(path, { clock })];
    return {
      queue: handles[0]!,
      another: async () => {
        const q = new SqliteTaskQueue(path, { clock });
        handles.push(q);
        return q;
      },
      cleanup: async () => {
        for (const h of handles) await h.close();
        await rm(dir, { recursive: true, force: true });
      },
    };
  });
});

test('sqlite: reopening drops the leases of the previous process at once (one process per database)', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'ferry-accel-queue-'));
  const clock = new ManualClock();
  try {
    let q = new SqliteTaskQueue(join(dir, 'accel.db'), { clock });
    const t = await q.create({ source: 'h/r:t', target: 'h/r:t-nydus', dedupKey: 'h/r:t-nydus' });
    const held = (await q.claim('killed', 60_000))!;
    await q.close();
    q = new SqliteTaskQueue(join(dir, 'accel.db'), { clock });
    assert.equal(q.recover(), 1);
    const again = (await q.claim('next', 60_000))!;
    assert.deepEqual([again.task.id, again.task.attempts], [t.task.id, 2], 'claimed without waiting for the lease');
    assert.equal(await q.complete(held.lease, { sourceDigest: '', targetDigest: '', sourceSize: 0, targetSize: 0 }), false);
    await q.close();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
