import { test } from 'node:test';
import assert from 'node:assert/strict';
import { REGIONS_KEPT, Speculation } from './speculation.js';

const K = 1024;

test('speculation: only a region that missed before is amplified; the window grows while read, shrinks while not', () => {
  const s = new Speculation({ window: 64 * K, max: 256 * K, budget: 10_000 * K });
  assert.equal(s.onMiss(10 * K), 0, 'a first miss in region 0');
  assert.equal(s.onMiss(300 * K), 0, 'region 1 is its own');
  assert.equal(s.onMiss(20 * K), 64 * K, 'region 0 again: the starting window');
  s.fetched(20 * K, 64 * K);
  s.read(20 * K, 40 * K);
  assert.equal(s.onMiss(100 * K), 128 * K, 'over half of it read: doubled');
  assert.equal(s.onMiss(100 * K), 128 * K, 'less than a window fetched ahead since: not judged yet');
  s.fetched(100 * K, 128 * K);
  s.read(100 * K, 100 * K);
  assert.equal(s.onMiss(100 * K), 256 * K, '140 of 192 KiB read: doubled to the largest');
  assert.equal(s.onMiss(100 * K), 256 * K, 'never past the largest');
  s.fetched(100 * K, 600 * K);
  assert.ok(s.used / s.issued < 0.25);
  assert.equal(s.onMiss(120 * K), 128 * K, 'under a quarter read: halved');
  assert.equal(s.onMiss(120 * K), 64 * K);
  assert.equal(s.onMiss(120 * K), 32 * K);
  assert.equal(s.onMiss(120 * K), 16 * K, 'a quarter of the starting window');
  assert.equal(s.onMiss(120 * K), 16 * K, 'and no less');
  assert.equal(s.windowAt(300 * K), 64 * K, 'region 1 was not touched by region 0');
});

test('speculation: the bytes fetched ahead and not read are bounded by the budget', () => {
  const s = new Speculation({ window: 64 * K, max: 64 * K, budget: 100 * K });
  s.onMiss(0);
  assert.equal(s.onMiss(0), 64 * K);
  s.fetched(0, 64 * K);
  s.read(0, 32 * K);
  s.fetched(0, 32 * K);
  assert.equal(s.outstanding, 64 * K);
  assert.equal(s.onMiss(0), 36 * K, 'what is left of the budget');
  s.fetched(0, 36 * K);
  assert.equal(s.onMiss(0), 0, 'spent');
  s.read(0, 50 * K);
  assert.equal(s.outstanding, 50 * K);
  assert.equal(s.onMiss(0), 50 * K, 'what was read frees the budget again');
  assert.equal(new Speculation({ window: 0, max: 64 * K, budget: 100 * K }).onMiss(0), 0, 'window 0: off');
});

test('speculation: regions are forgotten least recently missed first', () => {
  const s = new Speculation({ window: 1, max: 1, budget: 100 });
  s.onMiss(0);
  for (let i = 1; i <= REGIONS_KEPT; i++) s.onMiss(i);
  assert.equal(s.windowAt(0), undefined, 'region 0 forgotten');
  assert.equal(s.onMiss(0), 0, 'so it counts as a first miss again');
});
