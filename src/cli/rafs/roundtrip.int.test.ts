import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { createWriteStream, lstatSync, mkdirSync, mkdtempSync, readdirSync, readlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { FERRY_BIN } from '../../../test/support/paths.js';
import { requirePrereqs } from '../../../test/support/prereq.js';
import { writeTar, type TarEntry } from '../../format/tar/index.js';

function ferry(args: string[]): { code: number; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [FERRY_BIN, ...args], { encoding: 'utf8', maxBuffer: 64 << 20 });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** Everything `rafs unpack` promises: type, mode, owner, mtime, size+content, link target, rdev, xattrs, hardlink groups. */
function snapshot(dir: string): Map<string, string> {
  const out = new Map<string, string>();
  const inodes = new Map<number, string>();
  const walk = (rel: string): void => {
    const p = rel ? join(dir, rel) : dir;
    const st = lstatSync(p);
    let d = `${(st.mode & 0o170000).toString(8)} ${(st.mode & 0o7777).toString(8)} ${st.uid}:${st.gid}`;
    if (!st.isDirectory() || rel !== '') d += ` mtime=${Math.floor(st.mtimeMs / 1000)}`;
    if (st.isFile()) {
      d += ` ${st.size} ${spawnSync('sha256sum', [p], { encoding: 'utf8' }).stdout.split(' ')[0]}`;
      if (st.nlink > 1) {
        const first = inodes.get(st.ino);
        if (first === undefined) inodes.set(st.ino, rel);
        d += ` link-group=${first ?? rel} nlink=${st.nlink}`;
      }
    } else if (st.isSymbolicLink()) d += ` -> ${readlinkSync(p)}`;
    else if (st.isCharacterDevice() || st.isBlockDevice()) d += ` rdev=${st.rdev}`;
    const x = spawnSync('getfattr', ['-h', '-d', '-m', '-', '-e', 'hex', '--absolute-names', p], { encoding: 'utf8' });
    const attrs = x.stdout
      .split('\n')
      .filter((l) => l.includes('='))
      .sort();
    if (attrs.length) d += ` xattrs=${attrs.join(',')}`;
    out.set(rel || '/', d);
    if (st.isDirectory()) for (const n of readdirSync(p).sort()) walk(rel ? `${rel}/${n}` : n);
  };
  walk('');
  return out;
}

function e(path: string, type: TarEntry['type'], extra: Partial<TarEntry> = {}): TarEntry {
  return { path, type, mode: type === 'dir' ? 0o755 : 0o644, uid: 0, gid: 0, mtime: 1_600_000_000, size: 0, xattrs: {}, ...extra };
}

test('rafs round trip: layer tar → rafs create → rafs unpack (dir and tar) equals the tar extracted by GNU tar', async () => {
  requirePrereqs({ root: true, commands: ['tar', 'getfattr', 'setfattr', 'mknod', 'sha256sum'] });
  const tmp = mkdtempSync(join(tmpdir(), 'ferry-rafs-rt-'));
  try {
    const big = Buffer.alloc(3 * 1024 * 1024 + 123);
    for (let i = 0; i + 4 <= big.length; i += 4) big.writeUInt32LE((i * 2654435761) >>> 0, i);
    const cap = Buffer.from('0100000200200000000000000000000000000000', 'hex');
    const entries: { entry: TarEntry; body?: Buffer }[] = [
      { entry: e('', 'dir', { mode: 0o755 }) },
      { entry: e('bin', 'dir', { uid: 1, gid: 2 }) },
      { entry: e('bin/ping', 'file', { size: 4, mode: 0o4755, xattrs: { 'security.capability': cap } }), body: Buffer.from('ping') },
      { entry: e('bin/big', 'file', { size: big.length, uid: 1000, gid: 1000, mtime: 1_700_000_123 }), body: big },
      { entry: e('bin/big-link', 'hardlink', { linkname: 'bin/big' }) },
      { entry: e('bin/sh', 'symlink', { linkname: '/bin/busybox', mode: 0o777 }) },
      { entry: e('dev', 'dir') },
      { entry: e('dev/null', 'char', { devmajor: 1, devminor: 3, mode: 0o666 }) },
      { entry: e('dev/sda', 'block', { devmajor: 8, devminor: 0, mode: 0o660, gid: 6 }) },
      { entry: e('dev/fifo', 'fifo', { mode: 0o600 }) },
      { entry: e('etc', 'dir', { xattrs: { 'user.note': Buffer.from('dir xattr'), 'trusted.x': Buffer.from([0, 1, 2, 255]) } }) },
      { entry: e('etc/empty', 'file', { mode: 0o600 }), body: Buffer.alloc(0) },
      { entry: e(`etc/${'long-name-'.repeat(20)}`, 'file', { size: 3 }), body: Buffer.from('abc') },
      { entry: e('tmp', 'dir', { mode: 0o1777 }) },
    ];
    const src = join(tmp, 'layer.tar');
    await pipeline(writeTar(entries), createWriteStream(src));
    mkdirSync(join(tmp, 'want'));
    const x = spawnSync('tar', ['--xattrs', '--xattrs-include=*', '--same-owner', '-xpf', src, '-C', join(tmp, 'want')], {
      encoding: 'utf8',
    });
    assert.equal(x.status, 0, x.stderr);
    const want = snapshot(join(tmp, 'want'));
    for (const [fsVersion, compressor] of [
      ['6', 'zstd'],
      ['6', 'lz4_block'],
      ['6', 'none'],
      ['6', 'gzip'],
      ['5', 'lz4_block'],
      ['5', 'zstd'],
    ] as const) {
      const dir = join(tmp, `${fsVersion}-${compressor}`);
      mkdirSync(join(dir, 'blobs'), { recursive: true });
      const c = ferry([
        'rafs',
        'create',
        src,
        '--bootstrap',
        join(dir, 'boot'),
        '--blob-dir',
        join(dir, 'blobs'),
        '--fs-version',
        fsVersion,
        '--compressor',
        compressor,
        '--chunk-size',
        '0x100000',
        '--digester',
        compressor === 'lz4_block' ? 'blake3' : 'sha256',
      ]);
      assert.equal(c.code, 0, `create ${fsVersion}/${compressor}: ${c.stderr}`);
      const chk = ferry(['rafs', 'check', join(dir, 'boot'), '--blob-dir', join(dir, 'blobs')]);
      assert.equal(chk.code, 0, chk.stderr);
      const u = ferry(['rafs', 'unpack', '--bootstrap', join(dir, 'boot'), '--blob-dir', join(dir, 'blobs'), '--output', join(dir, 'out')]);
      assert.equal(u.code, 0, u.stderr);
      assert.deepEqual(snapshot(join(dir, 'out')), want, `unpack dir ${fsVersion}/${compressor}`);
      const t = ferry([
        'rafs',
        'unpack',
        '--bootstrap',
        join(dir, 'boot'),
        '--blob-dir',
        join(dir, 'blobs'),
        '--output',
        join(dir, 'out.tar'),
      ]);
      assert.equal(t.code, 0, t.stderr);
      mkdirSync(join(dir, 'fromtar'));
      const xt = spawnSync(
        'tar',
        ['--xattrs', '--xattrs-include=*', '--same-owner', '-xpf', join(dir, 'out.tar'), '-C', join(dir, 'fromtar')],
        { encoding: 'utf8' },
      );
      assert.equal(xt.status, 0, xt.stderr);
      assert.deepEqual(snapshot(join(dir, 'fromtar')), want, `unpack tar ${fsVersion}/${compressor}`);
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});
