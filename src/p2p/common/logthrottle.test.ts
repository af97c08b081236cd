import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LogThrottle } from './logthrottle.js';

test('log throttle: once per key per interval, and a budget over all keys', () => {
  const t = new LogThrottle(60_000, 3);
  assert.equal(t.allow('a', 0), true);
  assert.equal(t.allow('a', 1000), false);
  assert.equal(t.allow('b', 1000), true);
  assert.equal(t.allow('c', 1000), true);
  assert.equal(t.allow('d', 1000), false, 'budget of 3 spent');
  assert.equal(t.allow('a', 60_000), true, 'next interval');
  assert.equal(t.allow('d', 60_001), true);
});
