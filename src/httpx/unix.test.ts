import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:net';
import { mkdtemp, rm, stat, writeFile, readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { listenPrivate } from './unix.js';

async function withDir(fn: (dir: string) => Promise<void>): Promise<void> {
  const dir = await mkdtemp(join(tmpdir(), 'ferry-unix-'));
  try {
    await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

const close = (s: ReturnType<typeof createServer>): Promise<void> => new Promise((r) => s.close(() => r()));

test('a private socket is 0600 even under umask 0, and nothing is left beside it', () =>
  withDir(async (dir) => {
    const old = process.umask(0);
    const s = createServer();
    try {
      await listenPrivate(s, join(dir, 'api.sock'));
    } finally {
      process.umask(old);
    }
    try {
      assert.equal((await stat(join(dir, 'api.sock'))).mode & 0o777, 0o600);
      assert.deepEqual(await readdir(dir), ['api.sock']);
    } finally {
      await close(s);
    }
  }));

test('a live socket is refused, a stale one replaced, a file refused', () =>
  withDir(async (dir) => {
    const path = join(dir, 'api.sock');
    const first = createServer();
    await listenPrivate(first, path);
    const second = createServer();
    await assert.rejects(listenPrivate(second, path, '--apisock'), (err: Error) => /another process serves .*--apisock/.test(err.message));
    assert.equal(second.listening, false);
    // A socket file nobody answers on (its server gone without unlinking it) is replaced.
    const stale = createServer();
    await listenPrivate(stale, join(dir, 'stale.sock'));
    await new Promise<void>((r) => {
      stale.close(() => r());
    });
    await writeFile(join(dir, 'plain'), 'x');
    await assert.rejects(listenPrivate(createServer(), join(dir, 'plain')), /is not a socket/);
    await close(first);
    const third = createServer();
    await listenPrivate(third, path);
    assert.equal(third.listening, true);
    await close(third);
  }));
