/**
 * The snapshots gRPC service over a unix socket, called with a grpc-js client built from the
 * same .proto files: every RPC, containerd's error codes, filters, labels, and the overlay mounts
 * it returns mounted for real (root).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtemp, mkdir, readFile, rm, writeFile, readdir, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { requirePrereqs } from '../../test/support/prereq.js';
import { FerryError } from '../core/index.js';
import { createMetricsRegistry } from '../observe/index.js';
import { GrpcConnection, SnapshotsClient } from '../containerd/index.js';
import { serveSnapshots, type SnapshotServer } from './server.js';
import { Snapshotter, type Mount } from './snapshotter.js';

async function code(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return 'OK';
  } catch (err) {
    assert.ok(FerryError.is(err), String(err));
    return err.code;
  }
}

function mountAll(mounts: Mount[], target: string): void {
  const m = mounts[0]!;
  execFileSync('mount', ['-t', m.type, '-o', m.options.join(','), m.source, target]);
}

describe('snapshots gRPC service', () => {
  let dir: string;
  let sn: Snapshotter;
  let server: SnapshotServer;
  let conn: GrpcConnection;
  let c: SnapshotsClient;
  const mounted: string[] = [];

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ferry-snap-'));
    sn = await Snapshotter.open({ root: join(dir, 'root') });
    const old = process.umask(0); // the socket must be owner-only whatever the umask
    try {
      server = await serveSnapshots({ snapshotter: sn, address: join(dir, 'snap.sock'), metrics: createMetricsRegistry() });
    } finally { process.umask(old); }
    conn = new GrpcConnection(server.address);
    c = new SnapshotsClient(conn, 'ferry');
  });

  test('the gRPC socket is owner-only (containerd, root, is its one client); a second server on it is refused', async () => {
    assert.equal((await stat(server.address)).mode & 0o777, 0o600);
    await assert.rejects(serveSnapshots({ snapshotter: sn, address: server.address }), /another process serves/);
  });
  after(async () => {
    for (const m of mounted.reverse()) { try { execFileSync('umount', [m]); } catch { /* already */ } }
    conn?.close();
    await server?.close();
    await sn?.close();
    await rm(dir, { recursive: true, force: true });
  });

  test('prepare → bind mount, commit, child → overlay with nearest parent first, view', async () => {
    const m0 = await c.prepare('ns/1/extract-1 sha256:aaa', '', { 'containerd.io/snapshot/x': 'y' });
    assert.equal(m0.length, 1);
    assert.equal(m0[0]!.type, 'bind');
    assert.deepEqual(m0[0]!.options, ['rw', 'rbind']);
    await writeFile(join(m0[0]!.source, 'a.txt'), 'layer0');
    await c.commit('ns/2/sha256:aaa', 'ns/1/extract-1 sha256:aaa');
    assert.equal(await code(c.stat('ns/1/extract-1 sha256:aaa')), 'NOT_FOUND');
    const i0 = await c.stat('ns/2/sha256:aaa');
    assert.equal(i0.kind, 'COMMITTED');
    assert.ok(i0.created > 0);
    const u0 = await c.usage('ns/2/sha256:aaa');
    assert.ok(u0.inodes >= 2 && u0.size > 0, JSON.stringify(u0));

    const m1 = await c.prepare('ns/3/extract-2 sha256:bbb', 'ns/2/sha256:aaa');
    assert.equal(m1[0]!.type, 'overlay');
    const upper1 = m1[0]!.options.find((o) => o.startsWith('upperdir='))!.slice(9);
    await writeFile(join(upper1, 'b.txt'), 'layer1');
    await c.commit('ns/4/sha256:bbb', 'ns/3/extract-2 sha256:bbb');

    const m2 = await c.prepare('ns/5/container', 'ns/4/sha256:bbb');
    const lower = m2[0]!.options.find((o) => o.startsWith('lowerdir='))!.slice(9).split(':');
    assert.equal(lower.length, 2);
    assert.match(lower[0]!, /snapshots\/\d+\/fs$/);
    assert.notEqual(lower[0], lower[1]);
    // really mount it: both layers visible, writes go to the upper dir only
    requirePrereqs({ root: true, commands: ['mount', 'umount'] });
    const target = join(dir, 'rootfs');
    await mkdir(target);
    mountAll(m2, target);
    mounted.push(target);
    assert.equal(await readFile(join(target, 'a.txt'), 'utf8'), 'layer0');
    assert.equal(await readFile(join(target, 'b.txt'), 'utf8'), 'layer1');
    await writeFile(join(target, 'c.txt'), 'container');
    execFileSync('umount', [target]);
    mounted.pop();
    const upper2 = m2[0]!.options.find((o) => o.startsWith('upperdir='))!.slice(9);
    assert.deepEqual(await readdir(upper2), ['c.txt']);
    assert.deepEqual((await c.mounts('ns/5/container'))[0], m2[0]);

    const v1 = await c.view('ns/6/view', 'ns/2/sha256:aaa');
    assert.equal(v1[0]!.type, 'bind');
    assert.deepEqual(v1[0]!.options, ['ro', 'rbind']);
    const v2 = await c.view('ns/7/view2', 'ns/4/sha256:bbb');
    assert.equal(v2[0]!.type, 'overlay');
    assert.ok(!v2[0]!.options.some((o) => o.startsWith('upperdir=')));
    assert.equal((await c.stat('ns/7/view2')).kind, 'VIEW');
  });

  test('containerd error codes', async () => {
    await c.prepare('e/1', '');
    assert.equal(await code(c.prepare('e/1', '')), 'ALREADY_EXISTS');
    assert.equal(await code(c.prepare('e/2', 'missing')), 'NOT_FOUND');
    assert.equal(await code(c.prepare('e/3', 'e/1')), 'FAILED_PRECONDITION'); // parent not committed
    assert.equal(await code(c.stat('nope')), 'NOT_FOUND');
    assert.equal(await code(c.mounts('nope')), 'NOT_FOUND');
    assert.equal(await code(c.remove('nope')), 'NOT_FOUND');
    assert.equal(await code(c.commit('x', 'nope')), 'NOT_FOUND');
    await c.commit('e/c1', 'e/1');
    assert.equal(await code(c.mounts('e/c1')), 'FAILED_PRECONDITION');
    await c.prepare('e/4', '');
    assert.equal(await code(c.commit('e/c1', 'e/4')), 'ALREADY_EXISTS');
    await c.view('e/v', '');
    assert.equal(await code(c.commit('e/cv', 'e/v')), 'FAILED_PRECONDITION');
    await c.prepare('e/child', 'e/c1');
    assert.equal(await code(c.remove('e/c1')), 'FAILED_PRECONDITION'); // has a child
    assert.equal(await code(c.prepare('e/big', '', { k: 'v'.repeat(4096) })), 'INVALID_ARGUMENT');
    assert.equal(await code(c.list(['name=="unterminated'])), 'INVALID_ARGUMENT');
    assert.equal(await code(c.update('e/c1', {}, ['parent'])), 'INVALID_ARGUMENT');
  });

  test('update with field masks, list with containerd filters', async () => {
    await c.prepare('l/1', '', { 'containerd.io/snapshot.ref': 'sha256:ccc', keep: 'a' });
    await c.commit('sha256:ccc', 'l/1', { 'containerd.io/snapshot.ref': 'sha256:ccc', keep: 'a', drop: 'b' });
    let i = await c.update('sha256:ccc', { extra: '1', drop: '' }, ['labels.extra', 'labels.drop']);
    assert.deepEqual(i.labels, { 'containerd.io/snapshot.ref': 'sha256:ccc', keep: 'a', extra: '1' });
    i = await c.update('sha256:ccc', { only: 'this' }, ['labels']);
    assert.deepEqual(i.labels, { only: 'this' });
    i = await c.update('sha256:ccc', { 'containerd.io/snapshot.ref': 'sha256:ccc' });
    assert.deepEqual(i.labels, { 'containerd.io/snapshot.ref': 'sha256:ccc' });
    assert.deepEqual(i.name, 'sha256:ccc');

    // the filter containerd's metadata layer sends after ALREADY_EXISTS
    const hit = await c.list([`labels."containerd.io/snapshot.ref"==sha256:ccc,parent==""`]);
    assert.deepEqual(hit.map((x) => x.name), ['sha256:ccc']);
    assert.equal((await c.list([`labels."containerd.io/snapshot.ref"==sha256:ccc,parent=="other"`])).length, 0);
    assert.deepEqual((await c.list(['kind==view'])).map((x) => x.name).sort(), ['e/v', 'ns/6/view', 'ns/7/view2']);
    assert.deepEqual((await c.list(['name~=^e/c', 'name==l/none'])).map((x) => x.name).sort(), ['e/c1', 'e/child']);
    const all = await c.list();
    assert.ok(all.length >= 10);
  });

  test('list streams more than one batch', async () => {
    for (let k = 0; k < 130; k++) await c.view(`many/${k}`, '');
    const got = await c.list(['name~=^many/']);
    assert.equal(got.length, 130);
  });

  test('remove deletes the directory, cleanup deletes strays, state survives a reopen', async () => {
    const m = await c.prepare('r/1', '');
    const src = m[0]!.source;
    await c.remove('r/1');
    await assert.rejects(readdir(src));
    const stray = join(dir, 'root', 'snapshots', '999999');
    await mkdir(join(stray, 'fs'), { recursive: true });
    await c.cleanup();
    await assert.rejects(readdir(stray));

    // reopen: a new Snapshotter over the same root sees everything
    conn.close();
    await server.close();
    await sn.close();
    sn = await Snapshotter.open({ root: join(dir, 'root') });
    server = await serveSnapshots({ snapshotter: sn, address: join(dir, 'snap.sock') });
    conn = new GrpcConnection(server.address);
    c = new SnapshotsClient(conn, 'ferry');
    assert.equal((await c.stat('ns/4/sha256:bbb')).parent, 'ns/2/sha256:aaa');
    assert.equal((await c.mounts('ns/5/container'))[0]!.type, 'overlay');
  });
});
