import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mountRequestSchema } from './protocol.js';

test('mount request schema', () => {
  const ok = { id: 'a-1', mountpoint: '/m', bootstrapPath: '/b', backend: { type: 'localfs', dir: '/d' } };
  assert.ok(mountRequestSchema.safeParse(ok).success);
  assert.ok(!mountRequestSchema.safeParse({ ...ok, id: '../x' }).success);
  assert.ok(!mountRequestSchema.safeParse({ ...ok, mountpoint: 'rel' }).success);
  assert.ok(!mountRequestSchema.safeParse({ ...ok, backend: { type: 'registry', host: 'h' } }).success);
  assert.ok(!mountRequestSchema.safeParse({ ...ok, extra: 1 }).success);
});
