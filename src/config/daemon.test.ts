import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseDaemonConfig } from './daemon.js';

test('daemon config: nydusd v1 JSON as the snapshotter writes it', () => {
  const c = parseDaemonConfig({
    device: {
      backend: {
        type: 'registry',
        config: {
          scheme: 'http',
          host: 'r:5000',
          repo: 'library/x',
          auth: 'dTpw',
          timeout: 5,
          connect_timeout: 5,
          retry_limit: 2,
          proxy: { url: 'http://127.0.0.1:4001', fallback: true, ping_url: 'http://127.0.0.1:4003/healthy', check_interval: 5 },
        },
      },
      cache: { type: 'blobcache', config: { work_dir: '/var/lib/ferry/cache' } },
    },
    mode: 'direct',
    digest_validate: false,
    iostats_files: false,
    enable_xattr: true,
    amplify_io: 1048576,
    fs_prefetch: { enable: true, threads_count: 8, merging_size: 131072, bandwidth_rate: 10485760, prefetch_all: true },
  });
  assert.equal(c.device.backend?.config.timeout, 5000);
  assert.equal(c.device.backend?.config.proxy?.url, 'http://127.0.0.1:4001');
  assert.equal(c.device.cache?.config.work_dir, '/var/lib/ferry/cache');
  assert.equal(c.fs_prefetch.bandwidth_rate, 10485760);
  assert.equal(c.ferry.mode, 'erofs');
  assert.equal(parseDaemonConfig({}).amplify_io, 1024 * 1024);
  assert.equal(parseDaemonConfig({ amplify_io: '512KiB' }).amplify_io, 512 * 1024);
});

test('daemon config: unknown keys and bad values are errors naming the key', () => {
  assert.throws(() => parseDaemonConfig({ device: { backend: { type: 'registry', config: { hots: 'x' } } } }), /device\.backend\.config/);
  assert.throws(() => parseDaemonConfig({ fs_prefetch: { enable: 'yes' } }), /fs_prefetch\.enable/);
  assert.throws(() => parseDaemonConfig({ ferry: { mode: 'nbd' } }), /ferry\.mode/);
});

test('daemon config: the background fill is off unless a deadline is given; durations and sizes parse', () => {
  const off = parseDaemonConfig({});
  assert.equal(off.ferry.fill_deadline, 0);
  assert.equal(off.ferry.fill_rate, 4 * 1024 * 1024);
  const on = parseDaemonConfig({ ferry: { fill_deadline: '10m', fill_rate: '1MiB' } });
  assert.equal(on.ferry.fill_deadline, 600_000);
  assert.equal(on.ferry.fill_rate, 1024 * 1024);
  assert.equal(parseDaemonConfig({ ferry: { fill_deadline: 90 } }).ferry.fill_deadline, 90_000, 'a number is seconds (nydusd style)');
  assert.throws(() => parseDaemonConfig({ ferry: { fill_deadline: 'soon' } }), /fill_deadline/);
  assert.throws(() => parseDaemonConfig({ ferry: { fill_deadline: -1 } }), /fill_deadline/);
});
