import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseSnapshotterConfig } from './snapshotter.js';

test('snapshotter config: daemon.fillDeadline is off by default, "off" or a duration; fillRate a size', () => {
  assert.equal(parseSnapshotterConfig({}).daemon.fillDeadline, 0);
  assert.equal(parseSnapshotterConfig({}).daemon.fillRate, 4 * 1024 * 1024);
  assert.equal(parseSnapshotterConfig({ daemon: { fillDeadline: 'off' } }).daemon.fillDeadline, 0);
  assert.equal(parseSnapshotterConfig({ daemon: { fillDeadline: '10m', fillRate: '8MiB' } }).daemon.fillDeadline, 600_000);
  assert.equal(parseSnapshotterConfig({ daemon: { fillRate: '8MiB' } }).daemon.fillRate, 8 * 1024 * 1024);
  assert.throws(() => parseSnapshotterConfig({ daemon: { fillDeadline: 'later' } }), /fillDeadline/);
});
