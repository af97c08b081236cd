import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readlinkSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { requirePrereqs } from '../../../test/support/prereq.js';
import { busyboxRootfs, debianMirror, debootstrapRootfs, rootfsKey, withDirLock } from './index.js';

describe('bench/env rootfs', () => {
  let work: string;
  before(async () => {
    requirePrereqs({ root: true, commands: ['debootstrap', 'busybox'] });
    work = await mkdtemp(join(tmpdir(), 'ferry-env-rootfs-'));
  });
  after(async () => {
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('builds a busybox rootfs with applet links and /etc files', async () => {
    const d = await busyboxRootfs(join(work, 'bb'));
    assert.equal(readlinkSync(join(d, 'bin/sh')), '/bin/busybox');
    assert.ok(existsSync(join(d, 'etc/passwd')));
  });

  it('keys the cache by package set, independent of order', () => {
    assert.equal(rootfsKey({ include: ['b', 'a'] }), rootfsKey({ include: ['a', 'b', 'a'] }));
    assert.notEqual(rootfsKey({ include: ['a'] }), rootfsKey({}));
    assert.match(debianMirror(), /^https?:\/\//);
  });

  it('serialises holders of a directory lock and breaks stale ones', async () => {
    const lock = join(work, 'x.lock');
    const order: string[] = [];
    await Promise.all(
      [1, 2].map((i) =>
        withDirLock(lock, 10_000, async () => {
          order.push(`in${i}`);
          await new Promise((r) => setTimeout(r, 100));
          order.push(`out${i}`);
        }),
      ),
    );
    assert.deepEqual(
      order.map((s) => s.slice(0, -1)),
      ['in', 'out', 'in', 'out'],
    );
    // a lock left by a process that no longer exists is broken
    const dead = spawnSync('true').pid;
    await mkdir(lock);
    await writeFile(join(lock, 'pid'), String(dead));
    assert.equal(await withDirLock(lock, 2_000, async () => 'got it'), 'got it');
    assert.equal(existsSync(lock), false);
  });

  it('builds a minbase rootfs once (cached, concurrent callers share it), apt caches removed', async () => {
    const [a, b] = await Promise.all([debootstrapRootfs({}), debootstrapRootfs({})]);
    assert.equal(a, b);
    assert.ok(existsSync(join(a, 'usr/bin/dpkg')));
    assert.ok(existsSync(join(a, 'bin/sh')));
    const debs = existsSync(join(a, 'var/cache/apt/archives'))
      ? readdirSync(join(a, 'var/cache/apt/archives')).filter((f) => f.endsWith('.deb'))
      : [];
    assert.deepEqual(debs, []);
    assert.deepEqual(
      existsSync(join(a, 'var/lib/apt/lists'))
        ? readdirSync(join(a, 'var/lib/apt/lists')).filter((f) => f !== 'partial' && f !== 'lock' && f !== 'auxfiles')
        : [],
      [],
    );
  });
});
