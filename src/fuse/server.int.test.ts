import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { readFile, readdir, readlink, lstat, stat, statfs, writeFile } from 'node:fs/promises';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { requirePrereqs } from '../../test/support/prereq.js';
import { FuseSession, FUSE_ROOT_ID, FuseErrno, ERRNO, mountsAt, type FuseFilesystem, type FuseAttr } from './index.js';

const pexec = promisify(execFile);

interface Node {
  attr: FuseAttr;
  children?: Map<string, number>;
  data?: Buffer;
  target?: string;
  xattrs?: Map<string, Buffer>;
}

function memfs(): { fs: FuseFilesystem; reads: () => number } {
  const nodes = new Map<number, Node>();
  const big = Buffer.alloc(3 * 1024 * 1024 + 123);
  for (let i = 0; i < big.length; i++) big[i] = (i * 7 + (i >> 12)) & 0xff;
  const a = (ino: number, mode: number, size: number, nlink = 1): FuseAttr => ({
    ino,
    mode,
    size,
    blocks: Math.ceil(size / 512),
    mtime: 1700000000,
    nlink,
    uid: 1000,
    gid: 100,
    rdev: 0,
  });
  nodes.set(FUSE_ROOT_ID, {
    attr: a(1, 0o040755, 4096, 3),
    children: new Map([
      ['hello', 2],
      ['dir', 3],
      ['link', 4],
      ['big', 6],
    ]),
  });
  nodes.set(2, { attr: a(2, 0o100644, 6), data: Buffer.from('hello\n'), xattrs: new Map([['user.k', Buffer.from('v')]]) });
  nodes.set(3, { attr: a(3, 0o040700, 4096, 2), children: new Map([['inner', 5]]) });
  nodes.set(4, { attr: a(4, 0o120777, 5), target: 'hello' });
  nodes.set(5, { attr: a(5, 0o100600, 0), data: Buffer.alloc(0) });
  nodes.set(6, { attr: a(6, 0o100444, big.length), data: big });
  let reads = 0;
  const get = (n: number): Node => {
    const x = nodes.get(n);
    if (!x) throw new FuseErrno(ERRNO.ENOENT);
    return x;
  };
  return {
    reads: () => reads,
    fs: {
      async lookup(parent, name) {
        const c = get(parent).children?.get(name);
        return c === undefined ? null : { nodeid: c, attr: get(c).attr };
      },
      async getattr(n) {
        return get(n).attr;
      },
      async readdir(n) {
        return [...(get(n).children ?? new Map<string, number>())].map(([name, id]) => ({ name, nodeid: id, mode: get(id).attr.mode }));
      },
      async read(n, _fh, off, size) {
        reads++;
        const d = get(n).data ?? Buffer.alloc(0);
        return d.subarray(off, off + size);
      },
      async readlink(n) {
        return Buffer.from(get(n).target ?? '');
      },
      async getxattr(n, name) {
        return get(n).xattrs?.get(name) ?? null;
      },
      async listxattr(n) {
        return [...(get(n).xattrs?.keys() ?? [])];
      },
      async statfs() {
        return { blocks: 100, bfree: 0, bavail: 0, files: 6, ffree: 0, bsize: 4096, namelen: 255, frsize: 4096 };
      },
    },
  };
}

test('fuse server: tree, data, xattrs, caching, read-only, unmount', async () => {
  requirePrereqs({ root: true, devices: ['/dev/fuse'], commands: ['mount', 'umount', 'getfattr'] });
  const dir = mkdtempSync(join(tmpdir(), 'ferry-fuse-'));
  const mnt = join(dir, 'mnt');
  await pexec('mkdir', ['-p', mnt]);
  const m = memfs();
  const s = await FuseSession.mount({ mountpoint: mnt, fs: m.fs, readers: 3 });
  try {
    assert.equal(mountsAt(mnt).length, 1);
    assert.deepEqual((await readdir(mnt)).sort(), ['big', 'dir', 'hello', 'link']);
    assert.equal(await readFile(join(mnt, 'hello'), 'utf8'), 'hello\n');
    assert.equal(await readlink(join(mnt, 'link')), 'hello');
    const st = await lstat(join(mnt, 'dir'));
    assert.ok(st.isDirectory());
    assert.equal(st.mode & 0o7777, 0o700);
    assert.equal(st.uid, 1000);
    assert.equal((await stat(join(mnt, 'link'))).size, 6);
    assert.deepEqual(await readdir(join(mnt, 'dir')), ['inner']);
    await assert.rejects(stat(join(mnt, 'nope')), { code: 'ENOENT' });
    await assert.rejects(writeFile(join(mnt, 'hello'), 'x'), (e: NodeJS.ErrnoException) => e.code === 'EROFS' || e.code === 'EACCES');
    const { stdout } = await pexec('getfattr', ['-d', join(mnt, 'hello')]);
    assert.match(stdout, /user\.k="v"/);
    const big = await readFile(join(mnt, 'big'));
    const want = Buffer.alloc(3 * 1024 * 1024 + 123);
    for (let i = 0; i < want.length; i++) want[i] = (i * 7 + (i >> 12)) & 0xff;
    assert.ok(big.equals(want));
    const r1 = m.reads();
    assert.ok(r1 > 0);
    // Warm: the page cache is kept across opens, so a second read never reaches userspace.
    assert.ok((await readFile(join(mnt, 'big'))).equals(want));
    assert.equal(m.reads(), r1);
    // Several reads in flight at once.
    const many = await Promise.all(Array.from({ length: 16 }, () => pexec('cat', [join(mnt, 'hello')])));
    for (const r of many) assert.equal(r.stdout, 'hello\n');
    const sf = await statfs(mnt);
    assert.equal(sf.blocks, 100);
  } finally {
    await s.unmount();
    rmSync(dir, { recursive: true, force: true });
  }
  assert.equal(mountsAt(mnt).length, 0);
  await s.closed;
});

test('fuse server: a dead mount at the path is cleared before mounting', async () => {
  requirePrereqs({ root: true, devices: ['/dev/fuse'], commands: ['mount', 'umount'] });
  const dir = mkdtempSync(join(tmpdir(), 'ferry-fuse-'));
  const mnt = join(dir, 'mnt');
  await pexec('mkdir', ['-p', mnt]);
  const a = await FuseSession.mount({ mountpoint: mnt, fs: memfs().fs, readers: 1 });
  await a.abort(); // the connection dies, the mount stays (ENOTCONN) — as after a SIGKILL
  assert.equal(mountsAt(mnt).length, 1);
  await assert.rejects(stat(join(mnt, 'hello')), (e: NodeJS.ErrnoException) => e.code === 'ENOTCONN' || e.code === 'ECONNABORTED');
  const b = await FuseSession.mount({ mountpoint: mnt, fs: memfs().fs, readers: 1 });
  try {
    assert.equal(await readFile(join(mnt, 'hello'), 'utf8'), 'hello\n');
    assert.equal(mountsAt(mnt).length, 1);
  } finally {
    await b.unmount();
    rmSync(dir, { recursive: true, force: true });
  }
});
