/**
 * `ferry daemon --metrics-address`: the daemon's Prometheus metrics on a TCP listener (loopback),
 * scraped as Prometheus would; a non-loopback address without a token file, or a token file others
 * can read, stops the start with a message naming the option.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FERRY_BIN } from '../../test/support/paths.js';
import { ferry } from '../../test/support/ferry.js';
import { DaemonClient } from '../daemon/index.js';

test('ferry daemon serves its metrics on 127.0.0.1:<port> in Prometheus text, the node cache among them; a gc asked for deletes what no mount uses', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'ferry-daemon-metrics-'));
  // a blob a released image left in the default cache dir
  const blob = join(dir, 'data', 'cache', `${'ab'.repeat(32)}.blob.data`);
  await mkdir(join(dir, 'data', 'cache'), { recursive: true });
  await writeFile(blob, Buffer.alloc(256 * 1024, 1));
  const p = spawn(
    process.execPath,
    [
      FERRY_BIN,
      'daemon',
      '--apisock',
      join(dir, 'd.sock'),
      '--data-dir',
      join(dir, 'data'),
      '--metrics-address',
      '127.0.0.1:0',
      '--cache-quota',
      '64m',
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  const exited = new Promise<number | null>((resolve) => p.on('close', (code) => resolve(code)));
  try {
    const address = await new Promise<string>((resolve, reject) => {
      let err = '';
      const t = setTimeout(() => reject(new Error(`no "metrics listening" line in 30 s: ${err}`)), 30_000);
      p.stderr.on('data', (d: Buffer) => {
        err += d;
        const m = /"metrics":"(127\.0\.0\.1:\d+)"/.exec(err);
        if (m) {
          clearTimeout(t);
          resolve(m[1]!);
        }
      });
      p.on('close', () => reject(new Error(`daemon exited: ${err}`)));
    });
    const r = await fetch(`http://${address}/metrics`);
    assert.equal(r.status, 200);
    const text = await r.text();
    assert.match(text, /# TYPE ferry_daemon_mounts gauge\nferry_daemon_mounts 0\n/);
    assert.match(text, /process_cpu_seconds_total/);
    assert.match(text, /ferry_node_cache_quota_bytes\{store="daemon"\} 64000000\n/);
    const used = Number(/ferry_node_cache_bytes\{store="daemon"\} (\d+)/.exec(text)?.[1]);
    assert.ok(used >= 256 * 1024, `ferry_node_cache_bytes ${used}`);
    // under quota nothing is collected by itself; asked for, the unused blob goes
    const client = new DaemonClient(join(dir, 'd.sock'));
    assert.equal((await client.cache()).blobs, 1);
    const gc = await client.gc();
    assert.equal(gc.removedBlobs, 1, JSON.stringify(gc));
    assert.equal(gc.after, 0);
    assert.equal(await stat(blob).catch(() => null), null, 'blob file deleted');
    const after = await (await fetch(`http://${address}/metrics`)).text();
    assert.match(after, /ferry_node_cache_bytes\{store="daemon"\} 0\n/);
    assert.match(after, /ferry_node_cache_evicted_bytes_total\{store="daemon"\} [1-9]\d*\n/);
  } finally {
    p.kill('SIGTERM');
    assert.equal(await exited, 0, 'the daemon stops cleanly');
    await rm(dir, { recursive: true, force: true });
  }
});

test('a non-loopback metrics address needs a token file, and the file must be private', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'ferry-daemon-metrics-'));
  try {
    const args = (extra: string[]) => ['daemon', '--apisock', join(dir, 'd.sock'), '--data-dir', join(dir, 'data'), ...extra];
    const open = await ferry(args(['--metrics-address', '0.0.0.0:0']), { timeoutMs: 30_000 });
    assert.equal(open.code, 2);
    assert.match(open.stderr, /--metrics-address 0\.0\.0\.0:0 is not a loopback address/);
    const tokenFile = join(dir, 'token');
    await writeFile(tokenFile, 'a-scrape-token-of-some-length\n', { mode: 0o644 });
    const loose = await ferry(args(['--metrics-address', '127.0.0.1:0', '--metrics-token-file', tokenFile]), { timeoutMs: 30_000 });
    assert.equal(loose.code, 2);
    assert.match(loose.stderr, /readable by group or others/);
    const badQuota = await ferry(args(['--cache-quota', 'lots']), { timeoutMs: 30_000 });
    assert.equal(badQuota.code, 2, badQuota.stderr);
    assert.match(badQuota.stderr, /lots/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
