/**
 * @module snapshotter/testsuite
 * The snapshotter contract as containerd's snapshots API expects it, as a reusable test suite run
 * against the `Snapshotter` class in process and over gRPC through `SnapshotsClient`
 * (snapshotter/server.int.test.ts): prepare / view / mounts / commit / remove / stat / update / list
 * (containerd's Walk) / usage / cleanup, their error codes, the overlay mounts (mounted for real:
 * root), and state that survives a restart.
 */
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdir, readdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { FerryError, type ErrorCode } from '../core/index.js';
import type { Mount, SnapshotInfo } from '../containerd/index.js';
import type { Snapshotter } from './snapshotter.js';

/** containerd's snapshots API, as both the in-process class and the gRPC client offer it. */
export interface SnapshotOps {
  prepare(key: string, parent: string, labels?: Record<string, string>): Promise<Mount[]>;
  view(key: string, parent: string, labels?: Record<string, string>): Promise<Mount[]>;
  mounts(key: string): Promise<Mount[]>;
  commit(name: string, key: string, labels?: Record<string, string>): Promise<void>;
  remove(key: string): Promise<void>;
  stat(key: string): Promise<SnapshotInfo>;
  update(name: string, labels: Record<string, string>, paths?: string[]): Promise<SnapshotInfo>;
  list(filters?: string[]): Promise<SnapshotInfo[]>;
  usage(key: string): Promise<{ size: number; inodes: number }>;
  cleanup(): Promise<void>;
}

/** The in-process Snapshotter seen through SnapshotOps (its synchronous calls as promises). */
export function snapshotterOps(sn: Snapshotter): SnapshotOps {
  return {
    prepare: (key, parent, labels = {}) => sn.prepare(key, parent, labels),
    view: (key, parent, labels = {}) => sn.view(key, parent, labels),
    mounts: (key) => sn.mounts(key),
    commit: (name, key, labels = {}) => sn.commit(name, key, labels),
    remove: (key) => sn.remove(key),
    stat: async (key) => sn.stat(key),
    update: async (name, labels, paths = []) => sn.update({ name, labels }, paths),
    list: async (filters = []) => sn.list(filters),
    usage: (key) => sn.usage(key),
    cleanup: async () => {
      await sn.cleanup();
    },
  };
}

/** What a test gets: the API, the snapshotter's root dir, and a restart (same root, new process state). */
export interface SnapshotterUnderTest {
  ops: SnapshotOps;
  root: string;
  reopen(): Promise<SnapshotOps>;
  cleanup(): Promise<void>;
}

/** Snapshots listed by one `list` call in more than one gRPC message (the server batches 100). */
const MANY = 130;

async function code(p: Promise<unknown>): Promise<ErrorCode | 'OK'> {
  try {
    await p;
    return 'OK';
  } catch (err) {
    assert.ok(FerryError.is(err), String(err));
    return err.code;
  }
}

const option = (m: Mount, key: string): string | undefined => m.options.find((o) => o.startsWith(`${key}=`))?.slice(key.length + 1);

/** Registers the contract tests for a fresh snapshotter from `make` (one per test). */
export function snapshotterSuite(name: string, make: () => Promise<SnapshotterUnderTest>): void {
  const withSn = (title: string, fn: (t: SnapshotterUnderTest) => Promise<void>): void => {
    it(`${name}: ${title}`, async () => {
      const t = await make();
      try {
        await fn(t);
      } finally {
        await t.cleanup();
      }
    });
  };

  withSn('prepare → rw bind mount; commit; a child → overlay, nearest parent first; views read-only', async ({ ops, root }) => {
    const m0 = await ops.prepare('ns/1/extract-1 sha256:aaa', '', { 'containerd.io/snapshot/x': 'y' });
    assert.equal(m0.length, 1);
    assert.equal(m0[0]!.type, 'bind');
    assert.deepEqual(m0[0]!.options, ['rw', 'rbind']);
    await writeFile(join(m0[0]!.source, 'a.txt'), 'layer0');
    await ops.commit('ns/2/sha256:aaa', 'ns/1/extract-1 sha256:aaa');
    assert.equal(await code(ops.stat('ns/1/extract-1 sha256:aaa')), 'NOT_FOUND', 'commit consumes the active snapshot');
    const i0 = await ops.stat('ns/2/sha256:aaa');
    assert.equal(i0.kind, 'COMMITTED');
    assert.equal(i0.parent, '');
    assert.ok(i0.created > 0 && i0.updated >= i0.created);

    const m1 = await ops.prepare('ns/3/extract-2 sha256:bbb', 'ns/2/sha256:aaa');
    assert.equal(m1[0]!.type, 'overlay');
    await writeFile(join(option(m1[0]!, 'upperdir')!, 'b.txt'), 'layer1');
    await ops.commit('ns/4/sha256:bbb', 'ns/3/extract-2 sha256:bbb');
    assert.equal((await ops.stat('ns/4/sha256:bbb')).parent, 'ns/2/sha256:aaa');

    const m2 = await ops.prepare('ns/5/container', 'ns/4/sha256:bbb');
    const lower = option(m2[0]!, 'lowerdir')!.split(':');
    assert.equal(lower.length, 2);
    assert.ok(lower[0]!.startsWith(join(root, 'snapshots')), lower[0]);
    assert.notEqual(lower[0], lower[1]);
    assert.deepEqual(await ops.mounts('ns/5/container'), m2);
    // really mount it: both layers visible, writes go to the upper dir only
    const target = join(root, '..', `rootfs-${Date.now()}`);
    await mkdir(target);
    execFileSync('mount', ['-t', m2[0]!.type, '-o', m2[0]!.options.join(','), m2[0]!.source, target]);
    try {
      assert.equal(await readFile(join(target, 'a.txt'), 'utf8'), 'layer0');
      assert.equal(await readFile(join(target, 'b.txt'), 'utf8'), 'layer1');
      await writeFile(join(target, 'c.txt'), 'container');
    } finally {
      execFileSync('umount', [target]);
    }
    assert.deepEqual(await readdir(option(m2[0]!, 'upperdir')!), ['c.txt']);

    const v1 = await ops.view('ns/6/view', 'ns/2/sha256:aaa');
    assert.equal(v1[0]!.type, 'bind');
    assert.deepEqual(v1[0]!.options, ['ro', 'rbind']);
    const v2 = await ops.view('ns/7/view2', 'ns/4/sha256:bbb');
    assert.equal(v2[0]!.type, 'overlay');
    assert.equal(option(v2[0]!, 'upperdir'), undefined);
    assert.equal((await ops.stat('ns/7/view2')).kind, 'VIEW');
  });

  withSn("containerd's error codes: ALREADY_EXISTS, NOT_FOUND, FAILED_PRECONDITION, INVALID_ARGUMENT", async ({ ops }) => {
    await ops.prepare('e/1', '');
    assert.equal(await code(ops.prepare('e/1', '')), 'ALREADY_EXISTS');
    assert.equal(await code(ops.prepare('e/2', 'missing')), 'NOT_FOUND');
    assert.equal(await code(ops.prepare('e/3', 'e/1')), 'FAILED_PRECONDITION', 'the parent is not committed');
    assert.equal(await code(ops.stat('nope')), 'NOT_FOUND');
    assert.equal(await code(ops.mounts('nope')), 'NOT_FOUND');
    assert.equal(await code(ops.remove('nope')), 'NOT_FOUND');
    assert.equal(await code(ops.commit('x', 'nope')), 'NOT_FOUND');
    assert.equal(await code(ops.usage('nope')), 'NOT_FOUND');
    await ops.commit('e/c1', 'e/1');
    assert.equal(await code(ops.mounts('e/c1')), 'FAILED_PRECONDITION', 'a committed snapshot has no mounts');
    await ops.prepare('e/4', '');
    assert.equal(await code(ops.commit('e/c1', 'e/4')), 'ALREADY_EXISTS');
    await ops.view('e/v', '');
    assert.equal(await code(ops.commit('e/cv', 'e/v')), 'FAILED_PRECONDITION', 'a view cannot be committed');
    await ops.prepare('e/child', 'e/c1');
    assert.equal(await code(ops.remove('e/c1')), 'FAILED_PRECONDITION', 'it has a child');
    assert.equal(await code(ops.prepare('e/big', '', { k: 'v'.repeat(4096) })), 'INVALID_ARGUMENT');
    assert.equal(await code(ops.prepare('', '')), 'INVALID_ARGUMENT');
    assert.equal(await code(ops.list(['name=="unterminated'])), 'INVALID_ARGUMENT');
    assert.equal(await code(ops.update('e/c1', {}, ['parent'])), 'INVALID_ARGUMENT');
  });

  withSn("update with field masks; list with containerd's filters", async ({ ops }) => {
    await ops.prepare('l/1', '', { 'containerd.io/snapshot.ref': 'sha256:ccc', keep: 'a' });
    await ops.commit('sha256:ccc', 'l/1', { 'containerd.io/snapshot.ref': 'sha256:ccc', keep: 'a', drop: 'b' });
    let i = await ops.update('sha256:ccc', { extra: '1', drop: '' }, ['labels.extra', 'labels.drop']);
    assert.deepEqual(i.labels, { 'containerd.io/snapshot.ref': 'sha256:ccc', keep: 'a', extra: '1' });
    i = await ops.update('sha256:ccc', { only: 'this' }, ['labels']);
    assert.deepEqual(i.labels, { only: 'this' });
    i = await ops.update('sha256:ccc', { 'containerd.io/snapshot.ref': 'sha256:ccc' });
    assert.deepEqual(i.labels, { 'containerd.io/snapshot.ref': 'sha256:ccc' });
    assert.equal(i.name, 'sha256:ccc');
    assert.deepEqual((await ops.stat('sha256:ccc')).labels, i.labels);
    await ops.prepare('e/c', '');
    await ops.commit('e/c1', 'e/c');
    await ops.prepare('e/child', 'e/c1');
    await ops.view('e/v', '');
    await ops.view('v/2', '');

    // the filter containerd's metadata layer sends after ALREADY_EXISTS
    const hit = await ops.list([`labels."containerd.io/snapshot.ref"==sha256:ccc,parent==""`]);
    assert.deepEqual(
      hit.map((x) => x.name),
      ['sha256:ccc'],
    );
    assert.equal((await ops.list([`labels."containerd.io/snapshot.ref"==sha256:ccc,parent=="other"`])).length, 0);
    assert.deepEqual((await ops.list(['kind==view'])).map((x) => x.name).sort(), ['e/v', 'v/2']);
    assert.deepEqual((await ops.list(['name~=^e/c', 'name==l/none'])).map((x) => x.name).sort(), ['e/c1', 'e/child']);
    assert.equal((await ops.list()).length, 5);
  });

  withSn(`list (containerd's Walk) returns every snapshot, ${MANY} of them`, async ({ ops }) => {
    for (let k = 0; k < MANY; k++) await ops.view(`many/${k}`, '');
    assert.equal((await ops.list(['name~=^many/'])).length, MANY);
  });

  withSn('usage: measured for an active snapshot, recorded at commit for a committed one', async ({ ops }) => {
    const m = await ops.prepare('u/1', '');
    assert.equal((await ops.usage('u/1')).inodes, 1, 'an empty snapshot: its directory');
    await writeFile(join(m[0]!.source, 'f'), Buffer.alloc(10_000, 1));
    const active = await ops.usage('u/1');
    assert.ok(active.size >= 10_000 && active.inodes === 2, JSON.stringify(active));
    await ops.commit('u/c', 'u/1');
    assert.deepEqual(await ops.usage('u/c'), active);
  });

  withSn('remove deletes the directory, cleanup deletes strays, state survives a restart', async ({ ops, root, reopen }) => {
    const m = await ops.prepare('r/1', '');
    await ops.remove('r/1');
    await assert.rejects(readdir(m[0]!.source));
    const stray = join(root, 'snapshots', '999999');
    await mkdir(join(stray, 'fs'), { recursive: true });
    await ops.cleanup();
    await assert.rejects(readdir(stray));

    await ops.prepare('r/2', '', { a: 'b' });
    await ops.commit('r/c', 'r/2');
    const child = await ops.prepare('r/3', 'r/c');
    const again = await reopen();
    assert.equal((await again.stat('r/3')).parent, 'r/c');
    assert.deepEqual((await again.stat('r/c')).labels, {});
    assert.deepEqual(await again.mounts('r/3'), child);
    assert.deepEqual((await again.list()).map((x) => x.name).sort(), ['r/3', 'r/c']);
  });
}
