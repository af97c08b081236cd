import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'node:http';
import { TaskStore, startAccel, ZERO_TIME } from './index.js';

test('TaskStore: coalesces queued duplicates, claims once, recovers running tasks, keeps reasons', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'ferry-accel-store-'));
  try {
    let s = new TaskStore(dir);
    const a = s.create({ source: 'h/r:t', target: 'h/r:t-nydus', dedupKey: 'h/r:t-nydus' });
    assert.ok(a.created);
    assert.equal(a.task.finished, ZERO_TIME);
    const dup = s.create({ source: 'h/r:t', target: 'h/r:t-nydus', dedupKey: 'h/r:t-nydus' });
    assert.equal(dup.created, false);
    assert.equal(dup.task.id, a.task.id);
    assert.deepEqual(s.runnable(Date.now(), 10).map((x) => x.id), [a.task.id]);
    assert.equal(s.claim(a.task.id), true);
    assert.equal(s.claim(a.task.id), false);
    // a running task does not absorb a new submission
    assert.equal(s.create({ source: 'h/r:t', target: 'h/r:t-nydus', dedupKey: 'h/r:t-nydus' }).created, true);
    s.close();
    s = new TaskStore(dir);
    assert.equal(s.recover(), 1);
    assert.equal(s.get(a.task.id)!.running, false);
    assert.equal(s.get(a.task.id)!.attempts, 1);
    s.fail(a.task.id, 'UNAVAILABLE: boom', Date.now() + 60_000);
    assert.equal(s.runnable(Date.now(), 10).some((x) => x.id === a.task.id), false, 'not due before its backoff');
    assert.equal(s.get(a.task.id)!.reason, 'UNAVAILABLE: boom');
    s.fail(a.task.id, 'NOT_FOUND: gone');
    assert.equal(s.get(a.task.id)!.status, 'FAILED');
    assert.notEqual(s.get(a.task.id)!.finished, ZERO_TIME);
    assert.deepEqual(s.countByStatus(), { PROCESSING: 1, COMPLETED: 0, FAILED: 1 });
    assert.equal(s.list()[0]!.id !== a.task.id, true, 'newest first');
    assert.equal(s.evictFinished(Date.now() - 60_000), 0, 'recently finished tasks stay');
    assert.equal(s.evictFinished(Date.now() + 1000), 1);
    assert.equal(s.get(a.task.id), undefined);
    s.close();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('startAccel listens on server.uds when configured', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'ferry-accel-uds-'));
  const sock = join(dir, 'accel.sock');
  const h = await startAccel({ config: { server: { uds: sock }, provider: { work_dir: join(dir, 'work') } } });
  try {
    assert.equal(h.url, `unix:${sock}`);
    const body = await new Promise<string>((resolve, reject) => {
      const req = request({ socketPath: sock, path: '/api/v1/health' }, (res) => {
        let b = '';
        res.on('data', (d: Buffer) => { b += d; });
        res.on('end', () => resolve(b));
      });
      req.on('error', reject);
      req.end();
    });
    assert.equal(body, 'Ok');
  } finally {
    await h.close();
    await rm(dir, { recursive: true, force: true });
  }
});
