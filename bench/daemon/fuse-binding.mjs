// Raw FUSE protocol (src/fuse) vs the npm fuse-native binding (libfuse 2): one 256 MiB file served
// from memory read with dd (cold page cache), and 2000 100-byte files read with cat.
// Run (root): mkdir /tmp/fn && (cd /tmp/fn && npm init -y && npm install fuse-native)
//   FUSE_NATIVE_DIR=/tmp/fn node bench/daemon/fuse-binding.mjs raw|native
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
// fuse-native is not a Ferry dependency: install it in a scratch dir and point FUSE_NATIVE_DIR there.
const require = createRequire(`${process.env.FUSE_NATIVE_DIR ?? process.cwd()}/package.json`);
const pexec = promisify(execFile);
const which = process.argv[2];
const SIZE = 256 * 1024 * 1024;
const data = Buffer.alloc(SIZE); for (let i = 0; i < SIZE; i += 4096) data.writeUInt32LE(i, i);
const NFILES = 2000;
const mnt = `${process.env.TMPDIR ?? '/tmp'}/ferry-fusebench-${which}`; mkdirSync(mnt, { recursive: true });
const now = new Date();
let session, fuse;
if (which === 'native') {
  const Fuse = require('fuse-native');
  const st = (mode, size) => ({ mtime: now, atime: now, ctime: now, nlink: 1, size, mode, uid: 0, gid: 0 });
  const ops = {
    readdir: (p, cb) => cb(0, p === '/' ? ['big', 'many'] : Array.from({ length: NFILES }, (_, i) => `f${i}`)),
    getattr: (p, cb) => {
      if (p === '/' || p === '/many') return cb(0, st(0o40755, 4096));
      if (p === '/big') return cb(0, st(0o100444, SIZE));
      if (/^\/many\/f\d+$/.test(p)) return cb(0, st(0o100444, 100));
      cb(Fuse.ENOENT);
    },
    open: (p, flags, cb) => cb(0, 42),
    release: (p, fd, cb) => cb(0),
    read: (p, fd, buf, len, pos, cb) => { const n = Math.max(0, Math.min(len, (p === '/big' ? SIZE : 100) - pos)); data.copy(buf, 0, pos, pos + n); cb(n); },
  };
  fuse = new Fuse(mnt, ops, { force: true, allowOther: true });
  await new Promise((r, j) => fuse.mount((e) => (e ? j(e) : r())));
} else {
  const { FuseSession } = await import(new URL('../../dist/src/fuse/index.js', import.meta.url).href);
  const a = (ino, mode, size) => ({ ino, mode, size, blocks: 0, mtime: now / 1000, nlink: 1, uid: 0, gid: 0, rdev: 0 });
  const fs = {
    async lookup(parent, name) {
      if (parent === 1) return name === 'big' ? { nodeid: 2, attr: a(2, 0o100444, SIZE) } : name === 'many' ? { nodeid: 3, attr: a(3, 0o40755, 4096) } : null;
      if (parent === 3 && /^f\d+$/.test(name)) { const id = 10 + Number(name.slice(1)); return { nodeid: id, attr: a(id, 0o100444, 100) }; }
      return null;
    },
    async getattr(n) { return n === 1 || n === 3 ? a(n, 0o40755, 4096) : n === 2 ? a(2, 0o100444, SIZE) : a(n, 0o100444, 100); },
    async readdir(n) { return n === 1 ? [{ name: 'big', nodeid: 2, mode: 0o100444 }, { name: 'many', nodeid: 3, mode: 0o40755 }] : Array.from({ length: NFILES }, (_, i) => ({ name: `f${i}`, nodeid: 10 + i, mode: 0o100444 })); },
    async read(n, fh, off, size) { const end = Math.min(n === 2 ? SIZE : 100, off + size); return data.subarray(off, Math.max(off, end)); },
  };
  session = await FuseSession.mount({ mountpoint: mnt, fs, readers: 4 });
}
const t0 = process.hrtime.bigint();
await pexec('dd', [`if=${mnt}/big`, 'of=/dev/null', 'bs=1M']);
const seq = Number(process.hrtime.bigint() - t0) / 1e9;
const t1 = process.hrtime.bigint();
await pexec('sh', ['-c', `cat ${mnt}/many/* > /dev/null`]);
const small = Number(process.hrtime.bigint() - t1) / 1e9;
console.log(JSON.stringify({ which, seqMBps: +(SIZE / 1e6 / seq).toFixed(0), smallFilesPerS: +(NFILES / small).toFixed(0) }));
if (session) await session.unmount(); else await new Promise((r) => fuse.unmount(() => r()));
process.exit(0);
