/**
 * Snapshotter restarts with lazy images, with `ferry daemon` and `ferry snapshotter` as separate
 * processes (the daemon reached through its API socket): a running container keeps running and
 * keeps reading not-yet-fetched files while the snapshotter is down; after the restart the
 * snapshotter re-attaches to the daemon's mount and new containers start. Then the in-process
 * daemon variant: killing the snapshotter (kill -9) leaves dead mounts behind; starting it again
 * detaches them and restores the mounts of the existing snapshots, so new containers start
 * without another pull. kill -9 of the snapshotter (in-process daemon) and of a separate daemon
 * with a container running: the next process takes over the EROFS mount and the container reads a
 * file it never touched.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { requirePrereqs } from '../support/prereq.js';
import { pseudoRandom } from './convert-support.js';
import { busyboxRootfs, buildOciImage, pushImage, startContainerd, type Containerd } from '../../src/bench/env/index.js';
import { startRegistry, type RegistryHandle } from '../../src/registry/index.js';
import { ferry, reconnected, startFerryChild, type Child } from './snapshotter-support.js';

const PW = 'pw-restart-e2e';
let dir: string;
let reg: RegistryHandle;
let ref: string;
const children: Child[] = [];
const containerds: Containerd[] = [];

before(async () => {
  requirePrereqs({
    root: true,
    commands: ['containerd', 'ctr', 'runc', 'skopeo', 'busybox', 'fusermount3', 'losetup', 'perl'],
    devices: ['/dev/fuse'],
  });
  dir = await mkdtemp(join(tmpdir(), 'ferry-lrs-'));
  reg = await startRegistry({ listen: '127.0.0.1:0', dataDir: join(dir, 'reg'), adminPassword: PW });
  const l0 = await busyboxRootfs(join(dir, 'l0'));
  const l1 = join(dir, 'l1');
  await mkdir(join(l1, 'data'), { recursive: true });
  await writeFile(join(l1, 'data/first.txt'), 'read before the restart\n');
  const big = pseudoRandom(6 * 1024 * 1024, 'restart');
  await writeFile(join(l1, 'data/later.bin'), big);
  await writeFile(join(l1, 'data/later.sha256'), `${createHash('sha256').update(big).digest('hex')}  /data/later.bin\n`);
  const spare = pseudoRandom(2 * 1024 * 1024, 'spare');
  await writeFile(join(l1, 'data/spare.bin'), spare);
  await writeFile(join(l1, 'data/spare.sha256'), `${createHash('sha256').update(spare).digest('hex')}  /data/spare.bin\n`);
  const img = await buildOciImage({ layers: [l0, l1], outDir: join(dir, 'oci') });
  const src = `${reg.host}/library/rs:v1`;
  ref = `${reg.host}/library/rs:v1-nydus`;
  await pushImage(img.layoutDir, src, { creds: `admin:${PW}` });
  // the credentials from a file: nothing secret on the command line, and so no warning
  const credsFile = join(dir, 'creds');
  await writeFile(credsFile, `admin:${PW}\n`, { mode: 0o600 });
  const conv = await ferry([
    'convert',
    '--source',
    src,
    '--target',
    ref,
    '--source-creds-file',
    credsFile,
    '--target-creds-file',
    credsFile,
  ]);
  assert.equal(conv.code, 0, conv.stderr);
  assert.doesNotMatch(conv.stderr, /warning/);
});

after(async () => {
  for (const c of containerds) await c.stop();
  for (const c of children.reverse()) await c.stop();
  await reg?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function killTask(cd: Containerd, id: string): Promise<void> {
  await cd.ctr(['tasks', 'kill', '-s', 'SIGKILL', id]);
  for (let i = 0; i < 50 && (await cd.ctr(['tasks', 'delete', id])).code !== 0; i++) await new Promise((r) => setTimeout(r, 100));
  await cd.ctr(['containers', 'delete', id]);
}

test('separate daemon: a running container survives a snapshotter restart; new containers start after it', async () => {
  const d = join(dir, 'sep');
  await mkdir(d, { recursive: true });
  const apisock = join(d, 'daemon.sock');
  const daemon = await startFerryChild(['daemon', '--apisock', apisock, '--data-dir', join(d, 'daemon')], apisock);
  children.push(daemon);
  const sock = join(d, 'snap.sock');
  const snapArgs = ['snapshotter', '--address', sock, '--root', join(d, 'root'), '--daemon-apisock', apisock];
  let snap = await startFerryChild(snapArgs, sock);
  children.push(snap);
  const cd = await startContainerd({ dir: join(d, 'cd'), snapshotters: { ferry: sock } });
  containerds.push(cd);

  const pull = await ferry(['pull', '--local', '--address', cd.address, '--namespace', cd.namespace, '--plain-http', '--json', ref]);
  assert.equal(pull.code, 0, pull.stderr);
  assert.ok((JSON.parse(pull.stdout) as { layers: Array<{ how: string }> }).layers.every((l) => l.how === 'remote'));
  const start = await cd.ctr(['run', '-d', '--snapshotter', 'ferry', ref, 'keep', '/bin/sleep', '300']);
  assert.equal(start.code, 0, start.stderr);
  try {
    const r1 = await cd.ctr(['tasks', 'exec', '--exec-id', 'e1', 'keep', '/bin/cat', '/data/first.txt']);
    assert.equal(r1.stdout, 'read before the restart\n');

    await snap.stop();
    // snapshotter down: the container still reads data it never read before (fetched by the daemon now)
    const r2 = await cd.ctr(['tasks', 'exec', '--exec-id', 'e2', 'keep', '/usr/bin/sha256sum', '-c', '/data/later.sha256']);
    assert.equal(r2.code, 0, `${r2.stdout}${r2.stderr}`);
    assert.match(r2.stdout, /OK/);

    snap = await startFerryChild(snapArgs, sock);
    children.push(snap);
    await reconnected(cd);
    const run = await cd.ctr(['run', '--rm', '--snapshotter', 'ferry', ref, 'after-restart', '/bin/cat', '/data/first.txt']);
    assert.equal(run.code, 0, `${run.stderr}\n${snap.output().slice(-2000)}`);
    assert.equal(run.stdout, 'read before the restart\n');
    const r3 = await cd.ctr(['tasks', 'exec', '--exec-id', 'e3', 'keep', '/bin/cat', '/data/first.txt']);
    assert.equal(r3.stdout, 'read before the restart\n');
  } finally {
    await killTask(cd, 'keep');
  }
  await cd.stop();
  await snap.stop();
  await daemon.stop();
});

test('in-process daemon: after the snapshotter is killed, a new one restores the lazy mount and new containers start', async () => {
  const d = join(dir, 'inp');
  await mkdir(d, { recursive: true });
  const sock = join(d, 'snap.sock');
  const snapArgs = ['snapshotter', '--address', sock, '--root', join(d, 'root')];
  let snap = await startFerryChild(snapArgs, sock);
  children.push(snap);
  const cd = await startContainerd({ dir: join(d, 'cd'), snapshotters: { ferry: sock } });
  containerds.push(cd);
  const pull = await ferry(['pull', '--local', '--address', cd.address, '--namespace', cd.namespace, '--plain-http', ref]);
  assert.equal(pull.code, 0, pull.stderr);
  const run1 = await cd.ctr(['run', '--rm', '--snapshotter', 'ferry', ref, 'inp-1', '/bin/cat', '/data/first.txt']);
  assert.equal(run1.code, 0, run1.stderr);
  await snap.kill(); // leaves a dead FUSE mount behind
  await rm(sock, { force: true });
  snap = await startFerryChild(snapArgs, sock);
  children.push(snap);
  await reconnected(cd);
  const run2 = await cd.ctr(['run', '--rm', '--snapshotter', 'ferry', ref, 'inp-2', '/usr/bin/sha256sum', '-c', '/data/later.sha256']);
  assert.equal(run2.code, 0, `${run2.stdout}${run2.stderr}\n${snap.output().slice(-2000)}`);
  assert.match(run2.stdout, /OK/);
  await cd.stop();
  await snap.stop();
});

/** Starts `keep` (sleep) on the image and reads a small file through it, so its lazy mount is in use. */
async function runKeep(cd: Containerd, id: string): Promise<void> {
  const pull = await ferry(['pull', '--local', '--address', cd.address, '--namespace', cd.namespace, '--plain-http', ref]);
  assert.equal(pull.code, 0, pull.stderr);
  const start = await cd.ctr(['run', '-d', '--snapshotter', 'ferry', ref, id, '/bin/sleep', '300']);
  assert.equal(start.code, 0, start.stderr);
  const r = await cd.ctr(['tasks', 'exec', '--exec-id', 'first', id, '/bin/cat', '/data/first.txt']);
  assert.equal(r.stdout, 'read before the restart\n');
}

/** The running container reads the 6 MiB file it never touched, against its checksum list. */
async function readsUntouched(cd: Containerd, id: string, why: () => string): Promise<void> {
  const r = await cd.ctr(['tasks', 'exec', '--exec-id', 'untouched', id, '/usr/bin/sha256sum', '-c', '/data/later.sha256']);
  assert.equal(r.code, 0, `${r.stdout}${r.stderr}\n${why()}`);
  assert.match(r.stdout, /later\.bin: OK/);
}

test('in-process daemon (the default): a running container survives kill -9 of the snapshotter', async () => {
  const d = join(dir, 'k9s');
  await mkdir(d, { recursive: true });
  const sock = join(d, 'snap.sock');
  const snapArgs = ['snapshotter', '--address', sock, '--root', join(d, 'root')];
  let snap = await startFerryChild(snapArgs, sock);
  children.push(snap);
  const cd = await startContainerd({ dir: join(d, 'cd'), snapshotters: { ferry: sock } });
  containerds.push(cd);
  try {
    await runKeep(cd, 'k9s');
    await snap.kill(); // the FUSE blob views die with it; the kernel's EROFS mount under the container stays
    await rm(sock, { force: true });
    snap = await startFerryChild(snapArgs, sock);
    children.push(snap);
    await reconnected(cd);
    assert.match(snap.output(), /taking over the EROFS mount of a previous daemon/);
    await readsUntouched(cd, 'k9s', () => snap.output().slice(-2000));
    const run = await cd.ctr(['run', '--rm', '--snapshotter', 'ferry', ref, 'k9s-2', '/bin/cat', '/data/first.txt']);
    assert.equal(run.code, 0, run.stderr);
    await killTask(cd, 'k9s');
  } finally {
    await cd.stop();
    await snap.stop();
  }
});

test('separate daemon: a running container survives kill -9 of the daemon once a new one starts', async () => {
  const d = join(dir, 'k9d');
  await mkdir(d, { recursive: true });
  const apisock = join(d, 'daemon.sock');
  const daemonArgs = ['daemon', '--apisock', apisock, '--data-dir', join(d, 'daemon')];
  let daemon = await startFerryChild(daemonArgs, apisock);
  children.push(daemon);
  const sock = join(d, 'snap.sock');
  const snap = await startFerryChild(['snapshotter', '--address', sock, '--root', join(d, 'root'), '--daemon-apisock', apisock], sock);
  children.push(snap);
  const cd = await startContainerd({ dir: join(d, 'cd'), snapshotters: { ferry: sock } });
  containerds.push(cd);
  try {
    await runKeep(cd, 'k9d');
    await daemon.kill();
    await rm(apisock, { force: true });
    daemon = await startFerryChild(daemonArgs, apisock);
    children.push(daemon);
    assert.match(daemon.output(), /taking over the EROFS mount of a previous daemon/);
    await readsUntouched(cd, 'k9d', () => daemon.output().slice(-2000));
    const run = await cd.ctr(['run', '--rm', '--snapshotter', 'ferry', ref, 'k9d-2', '/bin/cat', '/data/first.txt']);
    assert.equal(run.code, 0, run.stderr);
    await killTask(cd, 'k9d');
  } finally {
    await cd.stop();
    await snap.stop();
    await daemon.stop();
  }
});

test('--spawn-daemon: the snapshotter starts a detached ferry daemon that keeps serving across a restart, and replaces it after kill -9', async () => {
  const d = join(dir, 'spw');
  await mkdir(d, { recursive: true });
  const sock = join(d, 'snap.sock');
  const snapArgs = ['snapshotter', '--address', sock, '--root', join(d, 'root'), '--spawn-daemon'];
  let snap = await startFerryChild(snapArgs, sock);
  children.push(snap);
  let daemonPid = Number(/"daemonPid":(\d+)/.exec(snap.output())?.[1]);
  assert.ok(daemonPid > 0, `no spawned daemon pid in: ${snap.output().slice(-1500)}`);
  const cd = await startContainerd({ dir: join(d, 'cd'), snapshotters: { ferry: sock } });
  containerds.push(cd);
  try {
    const pull = await ferry(['pull', '--local', '--address', cd.address, '--namespace', cd.namespace, '--plain-http', ref]);
    assert.equal(pull.code, 0, pull.stderr);
    const start = await cd.ctr(['run', '-d', '--snapshotter', 'ferry', ref, 'spw', '/bin/sleep', '300']);
    assert.equal(start.code, 0, start.stderr);
    await snap.stop();
    const r = await cd.ctr(['tasks', 'exec', '--exec-id', 's1', 'spw', '/usr/bin/sha256sum', '-c', '/data/later.sha256']);
    assert.equal(r.code, 0, `${r.stdout}${r.stderr}`);
    snap = await startFerryChild(snapArgs, sock);
    children.push(snap);
    assert.match(snap.output(), /using the running ferry daemon/);
    await reconnected(cd);
    const run = await cd.ctr(['run', '--rm', '--snapshotter', 'ferry', ref, 'spw-2', '/bin/cat', '/data/first.txt']);
    assert.equal(run.code, 0, run.stderr);
    assert.equal(run.stdout, 'read before the restart\n');
    // kill -9 of the daemon: the snapshotter's watch spawns a new one, which takes over the mount
    process.kill(daemonPid, 'SIGKILL');
    let respawned = 0;
    for (let i = 0; i < 150 && !respawned; i++) {
      await new Promise((res) => setTimeout(res, 200));
      respawned = [...snap.output().matchAll(/"daemonPid":(\d+)/g)].map((x) => Number(x[1])).find((p) => p !== daemonPid) ?? 0;
    }
    assert.ok(respawned > 0, `no new daemon spawned: ${snap.output().slice(-1500)}`);
    daemonPid = respawned;
    const r4 = await cd.ctr(['tasks', 'exec', '--exec-id', 's4', 'spw', '/usr/bin/sha256sum', '-c', '/data/spare.sha256']);
    assert.equal(r4.code, 0, `${r4.stdout}${r4.stderr}\n${snap.output().slice(-1500)}`);
    assert.match(r4.stdout, /spare\.bin: OK/);
    await killTask(cd, 'spw');
  } finally {
    await cd.stop();
    await snap.stop();
    try {
      process.kill(daemonPid, 'SIGTERM');
    } catch {
      /* gone */
    }
    for (let i = 0; i < 100; i++) {
      try {
        process.kill(daemonPid, 0);
      } catch {
        break;
      }
      await new Promise((res) => setTimeout(res, 100));
    }
  }
});
