/**
 * `ferry pull` says where the pull runs: through a snapshotter's pull API (a real one on a unix
 * socket, its pull function a stand-in: containerd is exercised in test/e2e/lazy-pull.test.ts) or
 * in this process, and why.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ferry } from '../../test/support/ferry.js';
import { servePullApi } from '../snapshotter/pull-api.js';
import type { PullResult } from '../snapshotter/protocol.js';
import { DEFAULT_API, pullMode } from './pull.js';
import { findRunningSnapshotters, type RunningSnapshotter } from './find-snapshotter.js';
import { startFerryChild } from '../../test/e2e/snapshotter-support.js';

test('pull mode: --local, an explicit socket, the default socket, and none (the reason names --snapshotter-api for another --root)', () => {
  assert.deepEqual(pullMode({ local: true, snapshotterApi: '/x.sock', defaultApiExists: true }), { why: '--local' });
  assert.deepEqual(pullMode({ snapshotterApi: '/r/api.sock', defaultApiExists: true }), { api: '/r/api.sock', why: '--snapshotter-api' });
  assert.deepEqual(pullMode({ snapshotterApi: '/r/api.sock', fromEnv: true, defaultApiExists: false }), {
    api: '/r/api.sock',
    why: 'FERRY_SNAPSHOTTER_API',
  });
  assert.deepEqual(pullMode({ defaultApiExists: true }), { api: DEFAULT_API, why: 'the default socket' });
  const none = pullMode({ defaultApiExists: false });
  assert.equal(none.api, undefined);
  assert.match(
    none.why,
    /^no snapshotter pull API at \/var\/lib\/ferry\/snapshotter\/api\.sock, and no running `ferry snapshotter` named "ferry" with a pull API found; a snapshotter started with --root DIR listens at DIR\/api\.sock: pass --snapshotter-api DIR\/api\.sock/,
  );
  const run = (pid: number, name: string): RunningSnapshotter => ({ pid, name, root: `/r${pid}`, api: `/r${pid}/api.sock` });
  assert.deepEqual(pullMode({ defaultApiExists: false, running: [run(7, 'ferry'), run(8, 'other')] }), {
    api: '/r7/api.sock',
    why: 'the running ferry snapshotter "ferry", pid 7, --root /r7',
  });
  const two = pullMode({ defaultApiExists: false, snapshotter: 'other', running: [run(8, 'other'), run(9, 'other')] });
  assert.equal(two.api, undefined);
  assert.match(
    two.why,
    /^2 ferry snapshotters named "other" run \(pid 8: \/r8\/api\.sock, pid 9: \/r9\/api\.sock\); pass --snapshotter-api/,
  );
});

test('a running `ferry snapshotter --root DIR` is found in /proc with its pull API socket', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ferry-find-snap-'));
  const child = await startFerryChild(
    ['snapshotter', '--no-lazy', '--name', 'findme', '--root', join(dir, 'root'), '--address', join(dir, 'snap.sock')],
    join(dir, 'root', 'api.sock'),
  );
  try {
    const found = findRunningSnapshotters().filter((r) => r.name === 'findme');
    assert.deepEqual(found, [{ pid: child.proc.pid, name: 'findme', root: join(dir, 'root'), api: join(dir, 'root', 'api.sock') }]);
    // ferry pull uses it when no socket is given (its pull then fails: no containerd there)
    const pull = await ferry(['pull', '--snapshotter', 'findme', '--address', '/nonexistent/containerd.sock', '127.0.0.1:9/x:1'], {
      env: { FERRY_SNAPSHOTTER_API: '' },
    });
    assert.match(
      pull.stderr,
      new RegExp(
        `^ferry pull: through the snapshotter pull API at ${join(dir, 'root', 'api.sock')} \\(the running ferry snapshotter "findme", pid ${child.proc.pid}`,
      ),
    );
  } finally {
    await child.stop();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('ferry pull prints which way it pulled (stderr, and via/viaReason in --json); an explicit socket nobody serves is an error', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ferry-pull-mode-'));
  const result: PullResult = { name: 'r/x:1', manifestDigest: 'sha256:m', configDigest: 'sha256:c', layers: [], bytesFetched: 42, ms: 7 };
  const api = await servePullApi({ path: join(dir, 'root', 'api.sock'), pull: async () => result });
  try {
    const via = await ferry(['pull', '--address', '/nonexistent/containerd.sock', '--snapshotter-api', api.path, '127.0.0.1:9/x:1']);
    assert.equal(via.code, 0, via.stderr);
    assert.equal(via.stderr, `ferry pull: through the snapshotter pull API at ${api.path} (--snapshotter-api)\n`);
    const viaJson = await ferry(['pull', '--address', '/nonexistent/containerd.sock', '--json', '127.0.0.1:9/x:1'], {
      env: { FERRY_SNAPSHOTTER_API: api.path },
    });
    assert.equal(viaJson.code, 0, viaJson.stderr);
    assert.deepEqual(JSON.parse(viaJson.stdout), { ...result, via: 'snapshotter', viaReason: `${api.path} (FERRY_SNAPSHOTTER_API)` });

    // in this process: the pull itself fails (nothing listens on 127.0.0.1:9), the line comes first
    const env = { FERRY_LOG_LEVEL: 'error', FERRY_SNAPSHOTTER_API: '' };
    const local = await ferry(['pull', '--local', '--address', '/nonexistent/containerd.sock', '--plain-http', '127.0.0.1:9/x:1'], { env });
    assert.equal(local.code, 1);
    assert.equal(local.stderr.split('\n')[0], 'ferry pull: in this process (--local)');
    // --quiet: nothing but the error
    const quiet = await ferry(
      ['pull', '--local', '--quiet', '--address', '/nonexistent/containerd.sock', '--plain-http', '127.0.0.1:9/x:1'],
      { env },
    );
    assert.match(quiet.stderr, /^ferry pull: (?!in this process)/);
    // an explicit socket nobody listens on is an error, not a silent fallback
    writeFileSync(join(dir, 'stale.sock'), '');
    const stale = await ferry(
      ['pull', '--address', '/nonexistent/containerd.sock', '--snapshotter-api', join(dir, 'stale.sock'), '127.0.0.1:9/x:1'],
      { env },
    );
    assert.equal(stale.code, 1);
    assert.match(stale.stderr, /ECONNREFUSED \(is `ferry snapshotter` running there\? --local pulls without it\)/);
  } finally {
    await api.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
