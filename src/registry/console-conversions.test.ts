/** How accel's tasks become the console's rows: states, times, durations, who may retry. */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { TaskView } from '../accel/protocol.js';
import { conversionView } from './console-conversions.js';

const task = (over: Partial<TaskView>): TaskView => ({
  id: 't',
  created: '2026-01-01T00:00:00Z',
  finished: '0001-01-01T00:00:00Z',
  source: 'reg:5000/p/app:v1',
  source_size: 0,
  target_size: 0,
  status: 'PROCESSING',
  reason: '',
  target: '',
  target_digest: '',
  source_digest: '',
  attempts: 0,
  next_run: 0,
  running: false,
  worker: '',
  ...over,
});
const T0 = Date.parse('2026-01-01T00:00:00Z');

describe('console conversion rows', () => {
  it('splits PROCESSING into queued and running; unfinished durations run to now', () => {
    const q = conversionView(task({}), new Set(['pull', 'push']), T0 + 5000);
    assert.equal(q.state, 'queued');
    assert.equal(q.finishedAt, undefined);
    assert.equal(q.durationMs, 5000);
    assert.equal(q.canRetry, false, 'nothing to retry while queued');
    assert.equal(conversionView(task({ running: true }), new Set(['pull']), T0).state, 'running');
  });

  it('finished tasks last from created to finished; a failed one may be retried only with push', () => {
    const failed = task({ status: 'FAILED', finished: '2026-01-01T00:00:02.500Z', reason: 'NOT_FOUND: manifest unknown' });
    const withPush = conversionView(failed, new Set(['pull', 'push']), T0 + 60_000);
    assert.equal(withPush.state, 'failed');
    assert.equal(withPush.durationMs, 2500);
    assert.equal(withPush.canRetry, true);
    assert.equal(conversionView(failed, new Set(['pull']), T0).canRetry, false);
    const done = conversionView(task({ status: 'COMPLETED', finished: '2026-01-01T00:00:01Z' }), new Set(['pull', 'push']), T0);
    assert.equal(done.state, 'completed');
    assert.equal(done.canRetry, false);
    assert.equal(done.durationMs, 1000);
  });
});
