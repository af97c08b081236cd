import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FakeClock } from '../../../test/support/clock.js';
import { SoloObjects } from './speculate.js';

test('objects read alone: noted by an answer, cleared by the next one that says otherwise, forgotten after the TTL', async () => {
  const clock = new FakeClock();
  const solo = new SoloObjects(2_000, clock);
  assert.equal(solo.alone('a'), false, 'nothing known: register first');
  solo.note('a', true);
  assert.equal(solo.alone('a'), true);
  assert.equal(solo.alone('b'), false, 'per object');
  await clock.advance(1_500);
  solo.note('a', true); // renewed by the next answer
  await clock.advance(1_500);
  assert.equal(solo.alone('a'), true, 'renewed');
  solo.note('a', false); // another host reads it now
  assert.equal(solo.alone('a'), false, 'cleared');
  solo.note('a', true);
  await clock.advance(2_001);
  assert.equal(solo.alone('a'), false, 'expired');
});
