/**
 * Builder against external readers: Ferry-built RAFS v6 bootstraps are checked by erofs-utils
 * (`fsck.erofs`, `--extract`) and mounted by the Linux EROFS driver, for every compressor; trees are
 * compared in full (content, mode, owner, mtime, symlinks, devices, xattrs, hardlinks).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import {
  mkdtempSync,
  mkdirSync,
  writeFileSync,
  rmSync,
  symlinkSync,
  linkSync,
  chownSync,
  chmodSync,
  utimesSync,
  readFileSync,
  readdirSync,
  openSync,
  readSync,
  closeSync,
  cpSync,
  statSync,
} from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { tmpdir } from 'node:os';
import { requirePrereqs } from '../../test/support/prereq.js';
import { FERRY_BIN } from '../../test/support/paths.js';
import { snapshot, diffSnapshots } from '../../test/support/fstree.js';
import { fsckErofs, kernelMount } from '../../test/support/erofs.js';
import { FerryError } from '../core/index.js';
import { COMPRESSORS, decodeChunk } from '../format/compress/index.js';
import { openBootstrap, decodeBlobMetaHeader, decodeCiTable } from '../format/rafs/index.js';
import { buildLayer, mergeBootstraps, blobView } from './index.js';

let work: string;

before(() => {
  requirePrereqs({ root: true, commands: ['fsck.erofs', 'losetup', 'mount', 'getfattr', 'setfattr', 'mknod', 'busybox'] });
  work = mkdtempSync(join(tmpdir(), 'ferry-builder-'));
});
after(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

/** A directory exercising every entry type and the EROFS layout corner cases. */
function makeSourceTree(dir: string): void {
  mkdirSync(join(dir, 'etc/deep/deeper'), { recursive: true });
  writeFileSync(join(dir, 'etc/hostname'), 'ferry\n');
  writeFileSync(join(dir, 'etc/empty'), '');
  writeFileSync(join(dir, 'etc/deep/deeper/block4k'), Buffer.alloc(4096, 0x61));
  // multi-chunk file: compressible half, random half, and a duplicate of it (dedup)
  const big = Buffer.concat([Buffer.alloc(1 << 20, 'nydus '), randomBytes((1 << 20) + 12345), Buffer.alloc(700000, 'x')]);
  writeFileSync(join(dir, 'big.bin'), big);
  writeFileSync(join(dir, 'big-copy.bin'), big);
  writeFileSync(join(dir, 'random.bin'), randomBytes(5000));
  // hardlinks
  writeFileSync(join(dir, 'etc/hl-a'), 'shared inode\n');
  linkSync(join(dir, 'etc/hl-a'), join(dir, 'etc/hl-b'));
  linkSync(join(dir, 'etc/hl-a'), join(dir, 'hl-c'));
  // symlinks: short, long (plain layout), dangling, absolute
  symlinkSync('hostname', join(dir, 'etc/link'));
  symlinkSync(`${'a/'.repeat(1500)}end`, join(dir, 'longlink'));
  symlinkSync('/does/not/exist', join(dir, 'dangling'));
  // devices, fifo
  mkdirSync(join(dir, 'dev'));
  execFileSync('mknod', [join(dir, 'dev/null'), 'c', '1', '3']);
  execFileSync('mknod', [join(dir, 'dev/sda9'), 'b', '8', '9']);
  execFileSync('mknod', [join(dir, 'dev/bigminor'), 'c', '4', '300']);
  execFileSync('mkfifo', [join(dir, 'dev/fifo')]);
  // names sorting before '.', unicode, a multi-block directory
  writeFileSync(join(dir, '-dash'), 'd');
  writeFileSync(join(dir, '!bang'), 'b');
  writeFileSync(join(dir, 'ünïcødé'), 'u');
  mkdirSync(join(dir, 'many'));
  for (let i = 0; i < 400; i++) writeFileSync(join(dir, 'many', `entry-with-a-longish-name-${String(i).padStart(4, '0')}`), String(i));
  // ownership, permissions, times, xattrs
  chownSync(join(dir, 'etc/hostname'), 1234, 5678);
  chmodSync(join(dir, 'random.bin'), 0o4755);
  chmodSync(join(dir, 'etc/deep'), 0o1777);
  execFileSync('setfattr', ['-n', 'user.greeting', '-v', 'hello', join(dir, 'etc/hostname')]);
  execFileSync('setfattr', ['-n', 'trusted.overlay.x', '-v', 'y', join(dir, 'etc/deep')]);
  execFileSync('setfattr', ['-n', 'security.capability', '-v', '0sAQAAAgAgAAAAAAAAAAAAAAAAAAA=', join(dir, 'random.bin')]);
  execFileSync('setfattr', ['-n', 'user.big', '-v', 'v'.repeat(1000), join(dir, 'many')]);
  execFileSync('setfattr', ['-h', '-n', 'trusted.on-symlink', '-v', 'yes', join(dir, 'etc/link')]);
  utimesSync(join(dir, 'etc/hostname'), 1_600_000_000, 1_600_000_000);
}

async function viewsFor(boot: Buffer, blobDir: string, out: string): Promise<string[]> {
  const bs = openBootstrap(boot);
  const views: string[] = [];
  for (const b of bs.blobs) {
    const v = join(out, `${b.blobId}.view`);
    await blobView(join(blobDir, b.blobId), v, b.compressor);
    views.push(v);
  }
  return views;
}

function assertSame(a: string, b: string, opts: Parameters<typeof snapshot>[1], what: string): void {
  const d = diffSnapshots(snapshot(a, opts), snapshot(b, opts));
  assert.deepEqual(d, [], `${what}: trees differ:\n${d.slice(0, 20).join('\n')}`);
}

/** Every chunk of every file decodes and matches its digest (through the RAFS reader). */
function verifyAllChunks(boot: Buffer, blobDir: string): number {
  const bs = openBootstrap(boot);
  let n = 0;
  for (const e of bs.walk()) {
    if ((e.stat.mode & 0o170000) !== 0o100000) continue;
    for (const c of bs.chunks(e.ino)) {
      const blob = bs.blobs[c.blobIndex]!;
      const fd = openSync(join(blobDir, blob.blobId), 'r');
      const raw = Buffer.alloc(c.compressedSize);
      readSync(fd, raw, 0, raw.length, c.compressedOffset);
      closeSync(fd);
      decodeChunk(blob, c, raw);
      n++;
    }
  }
  return n;
}

let src: string;

test('builder: every compressor → fsck.erofs passes, --extract and a kernel mount reproduce the tree', async () => {
  src = join(work, 'src');
  mkdirSync(src);
  makeSourceTree(src);
  const snap = snapshot(src);
  assert.equal(snap['/etc/hostname']!.xattrs!['user.greeting'], '0x68656c6c6f', 'the comparison sees xattrs');
  assert.equal(snap['/etc/link']!.xattrs!['trusted.on-symlink'], '0x796573', 'the comparison sees symlink xattrs');
  assert.equal(snap['/etc/link']!.xattrs!['user.greeting'], undefined, 'and does not follow symlinks');
  assert.deepEqual(snap['/etc/hl-a']!.links, ['/etc/hl-a', '/etc/hl-b', '/hl-c'], 'the comparison sees hardlinks');
  for (const compressor of COMPRESSORS) {
    const chunkSize = compressor === 'gzip' ? 0x10000 : compressor === 'none' ? 0x1000 : 0x100000;
    const digester = compressor === 'lz4_block' ? 'blake3' : 'sha256';
    const out = join(work, `out-${compressor}`);
    const blobDir = join(out, 'blobs');
    mkdirSync(blobDir, { recursive: true });
    const r = await buildLayer({
      source: { dir: src },
      blobDir,
      compressor,
      chunkSize,
      digester,
      prefetchPatterns: ['/etc/hostname', '/many'],
    });
    assert.match(r.blobId, /^[0-9a-f]{64}$/);
    assert.equal(statSync(r.blobPath).size, r.blobSize);
    // the nydusd cache form of the CI table, for `image/<id>.blob.meta` in bootstrap layers
    assert.equal(r.blobMeta.length % 4096, 0);
    const metaHdr = decodeBlobMetaHeader(r.blobMeta, r.blobMeta.length - 4096);
    assert.equal(metaHdr.ciEntries, r.chunkCount);
    assert.equal(
      decodeCiTable(r.blobMeta, metaHdr.ciEntries, metaHdr.features).at(-1)!.uncompressedOffset + 4096 <= r.uncompressedSize,
      true,
    );
    assert.ok(r.stats.chunksDeduped > 0, `${compressor}: the duplicate file's chunks are deduplicated`);
    const boot = join(out, 'boot');
    writeFileSync(boot, r.bootstrap);
    assert.equal(r.bootstrap.length % 4096, 0);
    const bs = openBootstrap(r.bootstrap);
    assert.equal(bs.blobs[0]!.compressor, compressor);
    assert.equal(bs.blobs[0]!.digester, digester);
    assert.deepEqual(bs.prefetchInodes, [bs.lookup('/etc/hostname'), bs.lookup('/many')]);
    // contiguous multi-chunk files announce one extent of next_power_of_two(size) to the kernel
    const iu = (path: string): number => r.bootstrap.readUInt32LE(r.bootstrap.readUInt32LE(1024 + 40) * 4096 + 32 * bs.lookup(path)! + 16);
    if (chunkSize === 0x100000)
      assert.equal(iu('/big.bin'), 0x20 | (22 - 12), `${compressor}: big.bin (3.7 MiB, contiguous) is one 4 MiB extent`);
    else assert.equal(iu('/big.bin') & 0x1f, Math.log2(chunkSize) - 12, 'repeating content dedups: chunks not contiguous');
    if (chunkSize > 5000) assert.equal(iu('/random.bin') & 0x1f, Math.log2(chunkSize) - 12, 'a one-chunk file keeps the plain header');
    else assert.equal(iu('/random.bin') & 0x1f, 13 - 12, 'two contiguous 4 KiB chunks: one 8 KiB extent');
    // prefetch-matched files are stored first, in pattern order
    assert.equal(bs.chunks(bs.lookup('/etc/hostname')!)[0]!.compressedOffset, 0);
    const manyEnd = Math.max(...bs.readdir(bs.lookup('/many')!).map((e) => bs.chunks(e.ino)[0]!.compressedOffset));
    assert.ok(manyEnd < bs.chunks(bs.lookup('/big.bin')!)[0]!.compressedOffset, 'files under /many precede the rest');
    assert.ok(verifyAllChunks(r.bootstrap, blobDir) > 0);

    // compression in worker threads writes the very same blob and bootstrap
    const threaded = await buildLayer({
      source: { dir: src },
      blobDir: join(out, 'threaded'),
      compressor,
      chunkSize,
      digester,
      prefetchPatterns: ['/etc/hostname', '/many'],
      threads: 2,
    });
    assert.equal(threaded.blobId, r.blobId, `${compressor}: same blob with worker threads`);
    assert.deepEqual(threaded.bootstrap, r.bootstrap, `${compressor}: same bootstrap with worker threads`);
    const views = await viewsFor(r.bootstrap, blobDir, out);
    fsckErofs(boot, views);
    const ex = join(out, 'extract');
    fsckErofs(boot, views, ex);
    // fsck.erofs 1.5 --extract restores neither hardlinks nor xattrs, and chowns after chmod (which
    // drops set-id bits): compare those through the kernel mount below
    assertSame(src, ex, { xattrs: false, hardlinks: false, permMask: 0o1777 }, `${compressor} fsck.erofs --extract`);
    const m = kernelMount(boot, views);
    try {
      assertSame(src, m.dir, {}, `${compressor} kernel mount`);
    } finally {
      m.cleanup();
    }
  }
});

test('builder: RAFS v5 bootstrap of the same tree unpacks identically (ferry rafs check + unpack)', async () => {
  const out = join(work, 'v5');
  const blobDir = join(out, 'blobs');
  mkdirSync(blobDir, { recursive: true });
  const r = await buildLayer({
    source: { dir: src },
    blobDir,
    fsVersion: 5,
    compressor: 'zstd',
    chunkSize: 0x40000,
    prefetchPatterns: ['/etc'],
  });
  assert.equal(r.bootstrap.readUInt32LE(0), 0x52414653);
  const bs = openBootstrap(r.bootstrap);
  assert.equal(bs.version, 5);
  assert.deepEqual(bs.prefetchInodes, [bs.lookup('/etc')]);
  assert.ok(verifyAllChunks(r.bootstrap, blobDir) > 0);
  const boot = join(out, 'v5.boot');
  writeFileSync(boot, r.bootstrap);
  const ck = spawnSync(process.execPath, [FERRY_BIN, 'rafs', 'check', boot, '--blob-dir', blobDir], { encoding: 'utf8' });
  assert.equal(ck.status, 0, ck.stderr + ck.stdout);
  const un = spawnSync(
    process.execPath,
    [FERRY_BIN, 'rafs', 'unpack', '--bootstrap', boot, '--blob-dir', blobDir, '--output', join(out, 'tree')],
    { encoding: 'utf8' },
  );
  assert.equal(un.status, 0, un.stderr);
  assertSame(src, join(out, 'tree'), {}, 'v5 unpack');
});

test('builder: busybox rootfs round trip through the kernel', async () => {
  const root = join(work, 'busybox');
  mkdirSync(join(root, 'bin'), { recursive: true });
  cpSync('/usr/bin/busybox', join(root, 'bin/busybox'));
  execFileSync('chroot', [root, '/bin/busybox', '--install', '-s', '/bin']);
  for (const d of ['etc', 'tmp', 'proc', 'sys', 'dev', 'root']) mkdirSync(join(root, d), { recursive: true });
  writeFileSync(join(root, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/sh\n');
  const blobDir = join(work, 'bb-blobs');
  const r = await buildLayer({ source: { dir: root }, blobDir, compressor: 'zstd' });
  const boot = join(work, 'bb.boot');
  writeFileSync(boot, r.bootstrap);
  const views = await viewsFor(r.bootstrap, blobDir, work);
  fsckErofs(boot, views);
  const m = kernelMount(boot, views);
  try {
    assertSame(root, m.dir, {}, 'busybox');
    assert.equal(execFileSync(join(m.dir, 'bin/busybox'), ['echo', 'lazy']).toString(), 'lazy\n');
  } finally {
    m.cleanup();
  }
});

test('builder: chunk dictionary chunks are referenced, not stored', async () => {
  const a = join(work, 'dict-a');
  const b = join(work, 'dict-b');
  mkdirSync(a);
  mkdirSync(b);
  const shared = randomBytes(3 << 20);
  writeFileSync(join(a, 'shared.bin'), shared);
  writeFileSync(join(b, 'renamed.bin'), shared);
  writeFileSync(join(b, 'own.bin'), randomBytes(100000));
  const blobDir = join(work, 'dict-blobs');
  const ra = await buildLayer({ source: { dir: a }, blobDir, compressor: 'lz4_block' });
  const rb = await buildLayer({ source: { dir: b }, blobDir, compressor: 'lz4_block', chunkDict: ra.bootstrap });
  assert.equal(rb.stats.chunksFromDict, 3);
  assert.equal(rb.chunkCount, 1);
  assert.ok(rb.blobSize < 200000, `blob B holds only its own data (${rb.blobSize} bytes)`);
  const bs = openBootstrap(rb.bootstrap);
  assert.deepEqual(bs.blobs.map((x) => x.blobId).sort(), [ra.blobId, rb.blobId].sort());
  assert.equal(verifyAllChunks(rb.bootstrap, blobDir), 4);
  const boot = join(work, 'dict-b.boot');
  writeFileSync(boot, rb.bootstrap);
  const views = await viewsFor(rb.bootstrap, blobDir, work);
  fsckErofs(boot, views);
  const m = kernelMount(boot, views);
  try {
    assertSame(b, m.dir, {}, 'chunk dict image');
  } finally {
    m.cleanup();
  }
  // a dictionary with another digester is refused
  await assert.rejects(buildLayer({ source: { dir: b }, blobDir, digester: 'blake3', chunkDict: ra.bootstrap }), /digests/);
});

test('builder: bad options give clear errors and leave nothing behind', async () => {
  const blobDir = join(work, 'bad-blobs');
  const bad: [object, RegExp][] = [
    [{ chunkSize: 3000 }, /invalid chunk size 3000 .*power of two/],
    [{ chunkSize: 0x2000000 }, /invalid chunk size/],
    [{ chunkSize: 0x800 }, /invalid chunk size/],
    [{ compressor: 'lz5' }, /unknown compressor "lz5"/],
    [{ digester: 'md5' }, /unknown digester "md5"/],
    [{ fsVersion: 7 }, /unsupported fs version 7/],
  ];
  for (const [o, re] of bad) {
    await assert.rejects(
      buildLayer({ source: { dir: src ?? work }, blobDir, ...o } as Parameters<typeof buildLayer>[0]),
      (e: unknown) => FerryError.hasCode(e, 'INVALID_ARGUMENT') && re.test((e as Error).message),
    );
  }
  await assert.rejects(buildLayer({ source: { dir: join(work, 'missing') }, blobDir }), /does not exist|missing|NOT_FOUND|ENOENT/);
  assert.deepEqual(
    readdirSync(work).filter((n) => n.endsWith('.tmp')),
    [],
  );
  assert.throws(() => mergeBootstraps([]), /at least one/);
  assert.throws(
    () => mergeBootstraps([Buffer.alloc(4096)]),
    (e: unknown) => FerryError.is(e),
  );
  void readFileSync;
});
