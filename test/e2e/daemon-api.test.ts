/**
 * `ferry daemon --apisock` driven through DaemonClient (mount, list, metrics, umount, errors),
 * SIGKILL then restart (the dead mount is cleaned up and mounted again), SIGTERM (everything
 * unmounted, loop devices detached); and `ferry mount` in the foreground until SIGTERM.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { requirePrereqs } from '../support/prereq.js';
import { FERRY_BIN } from '../support/paths.js';
import { buildLayer } from '../../src/builder/index.js';
import { busyboxRootfs } from '../../src/bench/env/index.js';
import { Daemon, DaemonClient } from '../../src/daemon/index.js';
import { silentLogger } from '../../src/observe/index.js';
import { mountsAt } from '../../src/fuse/index.js';

const pexec = promisify(execFile);
let dir: string;
let boot: string;
let blobs: string;
let src: string;
const children: ChildProcess[] = [];

before(async () => {
  requirePrereqs({ root: true, devices: ['/dev/fuse', '/dev/loop-control'], commands: ['mount', 'umount', 'losetup', 'busybox'] });
  dir = await mkdtemp(join(tmpdir(), 'ferry-daemon-api-'));
  src = join(dir, 'rootfs');
  await busyboxRootfs(src);
  await writeFile(join(src, 'etc', 'greeting'), 'hello from ferry\n');
  blobs = join(dir, 'blobs');
  await mkdir(blobs);
  const r = await buildLayer({
    source: { dir: src },
    blobDir: blobs,
    fsVersion: 6,
    compressor: 'lz4_block',
    chunkSize: 256 * 1024,
    digester: 'sha256',
  });
  boot = join(dir, 'image.boot');
  await writeFile(boot, r.bootstrap);
});

after(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  if (dir) {
    for (const m of ['mnt-a', 'mnt-b', 'mnt-cli', 'mnt-pf', 'mnt-pf2'])
      if (mountsAt(join(dir, m)).length) await pexec('umount', ['-l', join(dir, m)]).catch(() => undefined);
    const { stdout } = await pexec('losetup', ['-J', '-l']).catch(() => ({ stdout: '' }));
    for (const l of stdout.trim()
      ? (JSON.parse(stdout) as { loopdevices: Array<{ name: string; 'back-file'?: string }> }).loopdevices
      : []) {
      if (l['back-file']?.startsWith(dir)) await pexec('losetup', ['-d', l.name]).catch(() => undefined);
    }
    await rm(dir, { recursive: true, force: true }).catch(() => undefined);
  }
});

function startDaemon(sock: string, dataDir: string): ChildProcess {
  const c = spawn(process.execPath, [FERRY_BIN, 'daemon', '--apisock', sock, '--data-dir', dataDir], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  c.stderr!.resume();
  children.push(c);
  return c;
}

async function waitReady(client: DaemonClient): Promise<void> {
  for (let i = 0; i < 100; i++) {
    try {
      await client.info();
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  throw new Error('daemon did not come up');
}

const exited = (c: ChildProcess): Promise<number | null> =>
  new Promise((r) => {
    if (c.exitCode !== null || c.signalCode !== null) r(c.exitCode);
    else c.once('exit', (code) => r(code));
  });

test('ferry daemon: API mount/list/metrics/umount, SIGKILL + restart restores, SIGTERM unmounts', async () => {
  const sock = join(dir, 'daemon.sock');
  const data = join(dir, 'daemon-data');
  let d = startDaemon(sock, data);
  const client = new DaemonClient(sock);
  await waitReady(client);
  const a = {
    id: 'a',
    mountpoint: join(dir, 'mnt-a'),
    bootstrapPath: boot,
    mode: 'erofs' as const,
    backend: { type: 'localfs' as const, dir: blobs },
  };
  const b = {
    id: 'b',
    mountpoint: join(dir, 'mnt-b'),
    bootstrapPath: boot,
    mode: 'fuse' as const,
    backend: { type: 'localfs' as const, dir: blobs },
  };
  const ia = await client.mount(a);
  assert.equal(ia.activeMode, 'erofs');
  assert.equal((await client.mount(b)).activeMode, 'fuse');
  for (const m of [a, b]) {
    assert.equal((await pexec('cat', [join(m.mountpoint, 'etc/greeting')])).stdout, 'hello from ferry\n');
    const { stdout } = await pexec('chroot', [m.mountpoint, '/bin/busybox', 'echo', 'ok']);
    assert.equal(stdout, 'ok\n');
  }
  const list = await client.list();
  assert.deepEqual(list.map((m) => m.id).sort(), ['a', 'b']);
  for (const m of list) assert.ok(m.metrics.bytesFetched > 0 && m.metrics.chunksCached > 0);
  const metrics = await client.metricsText();
  assert.match(metrics, /ferry_daemon_bytes_fetched_total\{mount="a"\} [1-9]/);
  assert.match(metrics, /ferry_daemon_cache_hit_ratio\{mount="b"\}/);
  await assert.rejects(client.mount({ ...a, id: 'bad id!' }), { code: 'INVALID_ARGUMENT' });
  await assert.rejects(client.mount({ ...a, id: 'c' }), { code: 'ALREADY_EXISTS' });
  await assert.rejects(client.umount('nope'), { code: 'NOT_FOUND' });

  // SIGKILL: the mounts are left dead behind; a new daemon cleans them up and mounts again.
  d.kill('SIGKILL');
  await exited(d);
  await assert.rejects(readFile(join(b.mountpoint, 'etc/greeting')));
  d = startDaemon(sock, data);
  await waitReady(client);
  assert.deepEqual((await client.list()).map((m) => m.id).sort(), ['a', 'b']);
  for (const m of [a, b]) {
    assert.equal(mountsAt(m.mountpoint).length, 1, `exactly one mount at ${m.mountpoint}`);
    assert.equal(await readFile(join(m.mountpoint, 'etc/greeting'), 'utf8'), 'hello from ferry\n');
  }
  // The warm cache survived the crash: nothing fetched for what was read before.
  assert.equal((await client.get('a')).metrics.bytesFetched, 0);

  await client.umount('a');
  assert.equal(mountsAt(a.mountpoint).length, 0);
  d.kill('SIGTERM');
  assert.equal(await exited(d), 0);
  assert.equal(mountsAt(b.mountpoint).length, 0);
  const { stdout } = await pexec('losetup', ['-J', '-l']);
  assert.ok(!stdout.includes(data), 'no loop device left over');
});

test('ferry mount: foreground until SIGTERM', async () => {
  const mnt = join(dir, 'mnt-cli');
  const c = spawn(
    process.execPath,
    [
      FERRY_BIN,
      'mount',
      '--bootstrap',
      boot,
      '--blob-dir',
      blobs,
      '--mountpoint',
      mnt,
      '--mode',
      'fuse',
      '--data-dir',
      join(dir, 'cli-data'),
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  children.push(c);
  c.stderr!.resume();
  const line = await new Promise<string>((resolve, reject) => {
    let out = '';
    c.stdout!.on('data', (x: Buffer) => {
      out += x.toString();
      if (out.includes('\n')) resolve(out.split('\n')[0]!);
    });
    c.once('exit', (code) => reject(new Error(`ferry mount exited ${code}`)));
  });
  assert.equal(JSON.parse(line).mode, 'fuse');
  assert.equal(await readFile(join(mnt, 'etc/greeting'), 'utf8'), 'hello from ferry\n');
  c.kill('SIGTERM');
  assert.equal(await exited(c), 0);
  assert.equal(mountsAt(mnt).length, 0);
});

test('prefetch: the whole image, or a path list, lands in the cache in the background', async () => {
  const daemon = new Daemon({
    log: silentLogger(),
    dataDir: join(dir, 'pf-data'),
    config: { fs_prefetch: { enable: true, bandwidth_rate: '64MiB' } },
  });
  try {
    const all = await daemon.mount({
      id: 'pf',
      mountpoint: join(dir, 'mnt-pf'),
      bootstrapPath: boot,
      mode: 'fuse',
      prefetch: true,
      cacheDir: join(dir, 'pf-cache'),
      backend: { type: 'localfs', dir: blobs },
    });
    await daemon.prefetchIdle(all.id);
    const m = await daemon.get(all.id);
    assert.ok(m.stats!.chunksTotal > 0);
    assert.equal(m.metrics.chunksCached, m.stats!.chunksTotal, 'every referenced chunk prefetched');
    assert.ok(m.stats!.prefetchedBytes > 0);
    const fetched = m.metrics.bytesFetched;
    assert.equal(await readFile(join(all.mountpoint, 'etc/greeting'), 'utf8'), 'hello from ferry\n');
    assert.equal((await daemon.get(all.id)).metrics.bytesFetched, fetched, 'reads after prefetch fetch nothing');

    const some = await daemon.mount({
      id: 'pf2',
      mountpoint: join(dir, 'mnt-pf2'),
      bootstrapPath: boot,
      mode: 'erofs',
      prefetch: ['/etc'],
      cacheDir: join(dir, 'pf2-cache'),
      backend: { type: 'localfs', dir: blobs },
    });
    await daemon.prefetchIdle(some.id);
    const m2 = await daemon.get(some.id);
    assert.ok(
      m2.metrics.chunksCached > 0 && m2.metrics.chunksCached < m2.stats!.chunksTotal,
      `only /etc prefetched (${m2.metrics.chunksCached}/${m2.stats!.chunksTotal})`,
    );
  } finally {
    await daemon.close();
  }
});
