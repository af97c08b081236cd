import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FakeClock } from '../../test/support/clock.js';
import { TokenBucket } from './token-bucket.js';

const KiB = 1024;

test('setRate: the new rate paces the next takes; the budget accrued before is kept', async () => {
  const clock = new FakeClock();
  const b = new TokenBucket(64 * KiB, 64 * KiB, clock);
  await clock.runUntil(b.take(64 * KiB)); // the burst
  const t0 = clock.now();
  await clock.runUntil(b.take(64 * KiB));
  assert.equal(clock.now() - t0, 1000, '64 KiB at 64 KiB/s');
  await clock.advance(500); // half the burst back at the old rate
  b.setRate(640 * KiB);
  const t1 = clock.now();
  await clock.runUntil(b.take(64 * KiB));
  assert.equal(clock.now() - t1, 50, 'the missing 32 KiB at 640 KiB/s');
  b.setRate(0);
  const t2 = clock.now();
  await clock.runUntil(b.take(10 * 1024 * KiB));
  assert.equal(clock.now() - t2, 0, 'unlimited');
});
