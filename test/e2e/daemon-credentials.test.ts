/**
 * `ferry daemon` with a private image: the mount request carries the registry credentials; they
 * are never in listings or in the mount record, only in an owner-only (0600) file in an 0700
 * directory beside it, so a daemon killed and started again mounts the image again and keeps
 * reading it; `PUT /mounts/{id}/auth` replaces them; umount removes the file.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { requirePrereqs } from '../support/prereq.js';
import { FERRY_BIN } from '../support/paths.js';
import { busyboxRootfs } from '../../src/bench/env/index.js';
import { DaemonClient, type MountRequest } from '../../src/daemon/index.js';
import { mountsAt } from '../../src/fuse/index.js';
import { startTestRegistry, ADMIN_PASSWORD, type TestRegistry } from '../../src/registry/testing/client.js';
import { buildAndPush, type PushedImage } from './daemon-support.js';
import { pseudoRandom } from './convert-support.js';

const pexec = promisify(execFile);
let dir: string;
let reg: TestRegistry;
let img: PushedImage;
let robot: { name: string; secret: string };
const children: ChildProcess[] = [];

before(async () => {
  requirePrereqs({ root: true, devices: ['/dev/fuse'], commands: ['mount', 'umount'] });
  dir = await mkdtemp(join(tmpdir(), 'ferry-daemon-creds-'));
  reg = await startTestRegistry({ dataDir: join(dir, 'reg') });
  await reg.createProject('priv');
  robot = await reg.createRobot('priv', 'daemon');
  const src = join(dir, 'rootfs');
  await busyboxRootfs(src);
  await writeFile(join(src, 'etc/greeting'), 'hello from a private image\n');
  await writeFile(join(src, 'first'), pseudoRandom(2 << 20, 'first'));
  await writeFile(join(src, 'second'), pseudoRandom(2 << 20, 'second'));
  const work = join(dir, 'work');
  await mkdir(work);
  img = await buildAndPush({ rootfs: src, host: reg.host, repo: 'priv/img', tag: 'v1', password: ADMIN_PASSWORD, workDir: work });
});

after(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  if (dir) {
    const mnt = join(dir, 'mnt');
    if (mountsAt(mnt).length) await pexec('umount', ['-l', mnt]).catch(() => undefined);
    await reg?.destroy();
    await rm(dir, { recursive: true, force: true }).catch(() => undefined);
  }
});

function startDaemon(sock: string, dataDir: string): ChildProcess {
  const c = spawn(process.execPath, [FERRY_BIN, 'daemon', '--apisock', sock, '--data-dir', dataDir, '--no-docker-config'], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let err = '';
  c.stderr!.on('data', (d: Buffer) => {
    err += d;
  });
  (c as ChildProcess & { output: () => string }).output = () => err;
  children.push(c);
  return c;
}

async function waitReady(client: DaemonClient): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if (
      await client.info().then(
        () => true,
        () => false,
      )
    )
      return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('ferry daemon did not answer');
}

const exited = (c: ChildProcess): Promise<number | null> =>
  c.exitCode !== null || c.signalCode !== null ? Promise.resolve(c.exitCode) : new Promise((r) => c.once('exit', (code) => r(code)));

test('ferry daemon: credentials with the mount request, 0600 beside the record, redacted, kept across a restart, replaced, removed', async () => {
  const sock = join(dir, 'daemon.sock');
  const data = join(dir, 'data');
  let d = startDaemon(sock, data);
  const client = new DaemonClient(sock);
  await waitReady(client);
  const auth = Buffer.from(`${robot.name}:${robot.secret}`).toString('base64');
  const req: MountRequest = {
    id: 'priv',
    image: img.ref,
    mountpoint: join(dir, 'mnt'),
    bootstrapPath: img.bootstrapPath,
    mode: 'fuse',
    backend: { type: 'registry', host: reg.host, repo: img.repo, auth },
  };
  // without credentials the registry refuses: EIO, never a hang
  await client.mount({ ...req, backend: { type: 'registry', host: reg.host, repo: img.repo } });
  await assert.rejects(readFile(join(req.mountpoint, 'etc/greeting')), (e: NodeJS.ErrnoException) => e.code === 'EIO');
  // new credentials for the mounted image: reads work from the next token request on
  await client.setAuth('priv', auth);
  assert.equal(await readFile(join(req.mountpoint, 'etc/greeting'), 'utf8'), 'hello from a private image\n');
  await client.umount('priv');
  await assert.rejects(stat(join(data, 'mounts', 'priv.auth')), { code: 'ENOENT' });
  // mounted with credentials in the request
  await client.mount(req);
  assert.equal((await readFile(join(req.mountpoint, 'first'))).length, 2 << 20);

  const shown = JSON.stringify(await client.list());
  assert.doesNotMatch(shown, new RegExp(robot.secret));
  assert.doesNotMatch(shown, new RegExp(auth));
  const info = await client.get('priv');
  assert.equal(info.backend.type === 'registry' ? info.backend.auth : '', '<redacted>');
  const record = await readFile(join(data, 'mounts', 'priv.json'), 'utf8');
  assert.doesNotMatch(record, new RegExp(auth));
  assert.doesNotMatch(record, /"auth"/);
  assert.equal((await stat(join(data, 'mounts', 'priv.auth'))).mode & 0o777, 0o600);
  assert.equal((await stat(join(data, 'mounts'))).mode & 0o777, 0o700);
  assert.equal(await readFile(join(data, 'mounts', 'priv.auth'), 'utf8'), auth);

  // killed and started again: the image is mounted again with the kept credentials; an uncached file reads
  d.kill('SIGKILL');
  await exited(d);
  d = startDaemon(sock, data);
  await waitReady(client);
  assert.deepEqual(
    (await client.list()).map((m) => m.id),
    ['priv'],
    (d as ChildProcess & { output: () => string }).output(),
  );
  assert.equal((await readFile(join(req.mountpoint, 'second'))).length, 2 << 20);
  assert.ok((await client.get('priv')).metrics.bytesFetched >= 2 << 20, 'the second file came from the registry after the restart');

  await client.umount('priv');
  await assert.rejects(stat(join(data, 'mounts', 'priv.auth')), { code: 'ENOENT' });
  d.kill('SIGTERM');
  assert.equal(await exited(d), 0);
});
