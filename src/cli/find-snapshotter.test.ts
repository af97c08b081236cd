/**
 * Recognising a `ferry snapshotter` in a process's argv: its --root (relative to its working
 * directory), its --name, the `root:`/`name:` of its --config file, the defaults; print-config and
 * other commands are not snapshotters.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_ROOT, snapshotterOfArgv } from './find-snapshotter.js';

test('a ferry snapshotter argv: --root, --root=, relative roots, --name, a config file, defaults; others are not', () => {
  const node = '/usr/bin/node';
  assert.deepEqual(snapshotterOfArgv([node, '/opt/ferry/bin/ferry.js', 'snapshotter', '--root', '/r'], '/'), { name: 'ferry', root: '/r' });
  assert.deepEqual(snapshotterOfArgv(['/usr/local/bin/ferry', 'snapshotter', '--root=r', '--name', 'lazy'], '/srv'), {
    name: 'lazy',
    root: '/srv/r',
  });
  assert.deepEqual(snapshotterOfArgv([node, '/x/dist/src/cli/main.js', 'snapshotter'], '/'), { name: 'ferry', root: DEFAULT_ROOT });
  const dir = mkdtempSync(join(tmpdir(), 'ferry-find-'));
  try {
    writeFileSync(join(dir, 'snap.yaml'), 'root: /from/config\nname: cfg\n');
    assert.deepEqual(snapshotterOfArgv(['/usr/bin/ferry', 'snapshotter', '--config', 'snap.yaml'], dir), {
      name: 'cfg',
      root: '/from/config',
    });
    // a flag wins over the config file
    assert.deepEqual(snapshotterOfArgv(['/usr/bin/ferry', 'snapshotter', '--config', 'snap.yaml', '--root', '/flag'], dir), {
      name: 'cfg',
      root: '/flag',
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  assert.equal(snapshotterOfArgv(['/usr/bin/ferry', 'snapshotter', 'print-config'], '/'), undefined);
  assert.equal(snapshotterOfArgv(['/usr/bin/ferry', 'daemon', '--apisock', '/s'], '/'), undefined);
  assert.equal(snapshotterOfArgv(['/usr/bin/grep', 'snapshotter'], '/'), undefined);
});
