/**
 * Layer tars → layer bootstraps → merged bootstrap, against independent references: GNU tar's
 * extraction (upstream fixture tar, a busybox rootfs) and OCI layer application done with GNU tar
 * plus whiteout handling in this file. Trees are compared through the kernel EROFS mount.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import {
  createReadStream,
  mkdtempSync,
  mkdirSync,
  writeFileSync,
  rmSync,
  symlinkSync,
  linkSync,
  readFileSync,
  cpSync,
  existsSync,
  lstatSync,
  readdirSync,
  utimesSync,
  chownSync,
  type Stats,
} from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join, dirname, basename } from 'node:path';
import { tmpdir } from 'node:os';
import { requirePrereqs } from '../../test/support/prereq.js';
import { fixture, FERRY_BIN } from '../../test/support/paths.js';
import { snapshot, diffSnapshots } from '../../test/support/fstree.js';
import { fsckErofs, kernelMount } from '../../test/support/erofs.js';
import { openBootstrap } from '../format/rafs/index.js';
import { buildLayer, mergeBootstraps, blobView } from './index.js';

let work: string;
before(() => {
  requirePrereqs({ root: true, commands: ['fsck.erofs', 'losetup', 'mount', 'getfattr', 'setfattr', 'tar', 'gzip', 'zstd', 'busybox'] });
  work = mkdtempSync(join(tmpdir(), 'ferry-layers-'));
});
after(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

async function views(boot: Buffer, blobDir: string): Promise<string[]> {
  const out: string[] = [];
  for (const b of openBootstrap(boot).blobs) {
    const v = join(work, `${b.blobId}.view`);
    if (!existsSync(v)) await blobView(join(blobDir, b.blobId), v, b.compressor);
    out.push(v);
  }
  return out;
}

/** Mounts `boot` through the kernel and compares with `ref`. */
async function assertImage(boot: Buffer, blobDir: string, ref: string, what: string): Promise<void> {
  const path = join(work, `${what.replace(/\W+/g, '-')}.boot`);
  writeFileSync(path, boot);
  const vs = await views(boot, blobDir);
  fsckErofs(path, vs);
  const m = kernelMount(path, vs);
  try {
    const d = diffSnapshots(snapshot(ref), snapshot(m.dir));
    assert.deepEqual(d, [], `${what}: trees differ:\n${d.slice(0, 20).join('\n')}`);
  } finally {
    m.cleanup();
  }
}

function tarDir(dir: string, out: string, compress?: 'gzip' | 'zstd'): string {
  execFileSync('tar', ['-C', dir, '--xattrs', '--xattrs-include=*', '--numeric-owner', '-cf', out, '.']);
  if (compress) {
    execFileSync(compress, ['-q', '-f', out]);
    return `${out}.${compress === 'gzip' ? 'gz' : 'zst'}`;
  }
  return out;
}

function extractTar(tar: string, dir: string): void {
  mkdirSync(dir, { recursive: true });
  execFileSync('tar', ['-C', dir, '--xattrs', '--xattrs-include=*', '--numeric-owner', '-xpf', tar]);
}

/** OCI layer application with GNU tar: whiteouts and type conflicts first, then extraction. */
function applyOciLayer(layerDir: string, rootfs: string): void {
  const walk = (rel: string): void => {
    for (const name of readdirSync(join(layerDir, rel))) {
      const target = join(rootfs, rel);
      if (name === '.wh..wh..opq') {
        if (existsSync(target)) for (const c of readdirSync(target)) rmSync(join(target, c), { recursive: true, force: true });
      } else if (name.startsWith('.wh.')) {
        rmSync(join(target, name.slice(4)), { recursive: true, force: true });
      }
    }
    for (const name of readdirSync(join(layerDir, rel))) {
      if (name.startsWith('.wh.')) continue;
      const r = rel ? `${rel}/${name}` : name;
      const isDir = lstatSync(join(layerDir, r)).isDirectory();
      const dst = join(rootfs, r);
      let st: Stats | undefined;
      try {
        st = lstatSync(dst);
      } catch {
        st = undefined;
      }
      if (st && (st.isDirectory() !== isDir || !isDir)) rmSync(dst, { recursive: true, force: true });
      if (isDir) walk(r);
    }
  };
  walk('');
  const r = spawnSync('sh', [
    '-c',
    `tar -C '${layerDir}' --exclude='.wh.*' --xattrs --xattrs-include='*' --numeric-owner -cf - . | tar -C '${rootfs}' --xattrs --xattrs-include='*' --numeric-owner -xpf -`,
  ]);
  assert.equal(r.status, 0, r.stderr.toString());
}

test('layers: upstream all-entry-type.tar builds into an image equal to GNU tar extraction', async () => {
  const blobDir = join(work, 'blobs');
  const r = await buildLayer({ source: createReadStream(fixture('nydus', 'all-entry-type.tar')), blobDir, compressor: 'zstd' });
  const ref = join(work, 'aet-ref');
  extractTar(fixture('nydus', 'all-entry-type.tar'), ref);
  await assertImage(r.bootstrap, blobDir, ref, 'all-entry-type');
  const bs = openBootstrap(r.bootstrap);
  const h = bs.lookup('/tar/dir1/dir3/hardlink1.txt')!;
  assert.equal(bs.lookup('/tar/dir2/hardlink3.txt'), h, 'hardlinks share one inode');
  assert.equal(bs.stat(h).nlink, 4);
});

test('layers: busybox rootfs as a gzip layer tar (with xattrs, devices) round-trips', async () => {
  const root = join(work, 'bb');
  mkdirSync(join(root, 'bin'), { recursive: true });
  cpSync('/usr/bin/busybox', join(root, 'bin/busybox'));
  execFileSync('chroot', [root, '/bin/busybox', '--install', '-s', '/bin']);
  mkdirSync(join(root, 'dev'));
  execFileSync('mknod', [join(root, 'dev/console'), 'c', '5', '1']);
  execFileSync('mknod', [join(root, 'dev/loop9'), 'b', '7', '9']);
  execFileSync('mkfifo', [join(root, 'dev/initctl')]);
  writeFileSync(join(root, 'etc-hostname'), 'bb\n');
  execFileSync('setfattr', ['-n', 'user.origin', '-v', 'busybox', join(root, 'bin/busybox')]);
  linkSync(join(root, 'bin/busybox'), join(root, 'bin/busybox.hard'));
  const tgz = tarDir(root, join(work, 'bb.tar'), 'gzip');
  const blobDir = join(work, 'blobs');
  const r = await buildLayer({ source: createReadStream(tgz), blobDir, compressor: 'lz4_block', chunkSize: 0x40000 });
  assert.ok(r.chunkCount >= 4);
  const ref = join(work, 'bb-ref');
  extractTar(tgz, ref);
  await assertImage(r.bootstrap, blobDir, ref, 'busybox-tar');
});

function makeLayers(): string[] {
  const l1 = join(work, 'l1');
  const l2 = join(work, 'l2');
  const l3 = join(work, 'l3');
  for (const d of [l1, l2, l3]) mkdirSync(d);
  // layer 1: base
  mkdirSync(join(l1, 'a'));
  writeFileSync(join(l1, 'a/file1'), 'one');
  writeFileSync(join(l1, 'a/file2'), 'two');
  mkdirSync(join(l1, 'b/dir'), { recursive: true });
  writeFileSync(join(l1, 'b/dir/x'), 'x');
  writeFileSync(join(l1, 'b/y'), 'y');
  writeFileSync(join(l1, 'c'), 'c is a file');
  mkdirSync(join(l1, 'd'));
  writeFileSync(join(l1, 'd/keep'), 'gone with d');
  writeFileSync(join(l1, 'h1'), randomBytes(70000));
  linkSync(join(l1, 'h1'), join(l1, 'h2'));
  symlinkSync('a/file2', join(l1, 'sym'));
  writeFileSync(join(l1, 'dup'), 'same bytes in every layer');
  chownSync(join(l1, 'a/file2'), 10, 20);
  // layer 2: whiteout, opaque dir, file → dir, new file, duplicate content
  mkdirSync(join(l2, 'a'));
  writeFileSync(join(l2, 'a/.wh.file1'), '');
  mkdirSync(join(l2, 'b'));
  writeFileSync(join(l2, 'b/.wh..wh..opq'), '');
  writeFileSync(join(l2, 'b/new'), 'new in b');
  mkdirSync(join(l2, 'c'));
  writeFileSync(join(l2, 'c/inner'), 'c is a dir now');
  writeFileSync(join(l2, 'e'), 'e');
  writeFileSync(join(l2, 'dup'), 'same bytes in every layer');
  execFileSync('setfattr', ['-n', 'user.layer', '-v', '2', join(l2, 'e')]);
  // layer 3: remove a directory, replace a hardlink member, modify a file, opaque new dir
  writeFileSync(join(l3, '.wh.d'), '');
  writeFileSync(join(l3, '.wh.h2'), '');
  mkdirSync(join(l3, 'a'));
  writeFileSync(join(l3, 'a/file2'), 'two, modified');
  mkdirSync(join(l3, 'fresh'));
  writeFileSync(join(l3, 'fresh/.wh..wh..opq'), '');
  writeFileSync(join(l3, 'fresh/f'), 'f');
  for (const d of [l1, l2, l3]) {
    for (const p of ['', 'a', 'b', 'c', 'd', 'fresh']) if (existsSync(join(d, p))) utimesSync(join(d, p), 1_700_000_000, 1_700_000_000);
  }
  return [l1, l2, l3];
}

test('layers: multi-layer image with whiteouts and opaque dirs — merge equals OCI layer application', async () => {
  const dirs = makeLayers();
  const tars = [
    tarDir(dirs[0]!, join(work, 'l1.tar')),
    tarDir(dirs[1]!, join(work, 'l2.tar'), 'gzip'),
    tarDir(dirs[2]!, join(work, 'l3.tar'), 'zstd'),
  ];
  const blobDir = join(work, 'ml-blobs');
  const boots: Buffer[] = [];
  const ids: string[] = [];
  for (const t of tars) {
    const r = await buildLayer({ source: createReadStream(t), blobDir, compressor: 'zstd', chunkSize: 0x10000 });
    boots.push(r.bootstrap);
    ids.push(r.blobId);
    // layer bootstraps keep their whiteouts verbatim (as nydus-image --whiteout-spec none)
  }
  assert.notEqual(openBootstrap(boots[1]!).lookup('/a/.wh.file1'), undefined);
  const merged = mergeBootstraps(boots);
  const mb = openBootstrap(merged);
  assert.deepEqual(
    mb.blobs.map((b) => b.blobId),
    ids,
  );
  assert.equal(mb.lookup('/a/.wh.file1'), undefined, 'whiteouts are consumed by the merge');
  const ref = join(work, 'ml-ref');
  mkdirSync(ref);
  for (const d of dirs) applyOciLayer(d, ref);
  assert.ok(
    !existsSync(join(ref, 'd')) && existsSync(join(ref, 'c/inner')) && !existsSync(join(ref, 'b/y')),
    'reference applied whiteouts',
  );
  await assertImage(merged, blobDir, ref, 'merged');

  // merged into a RAFS v5 bootstrap: unpacked through the reader, the same tree
  const v5 = join(work, 'merged-v5.boot');
  writeFileSync(v5, mergeBootstraps(boots, { fsVersion: 5 }));
  const un = spawnSync(
    process.execPath,
    [FERRY_BIN, 'rafs', 'unpack', '--bootstrap', v5, '--blob-dir', blobDir, '--output', join(work, 'merged-v5')],
    { encoding: 'utf8' },
  );
  assert.equal(un.status, 0, un.stderr);
  const d5 = diffSnapshots(snapshot(ref), snapshot(join(work, 'merged-v5')));
  assert.deepEqual(d5, [], `v5 merge: trees differ:\n${d5.slice(0, 20).join('\n')}`);

  // the same through --parent-bootstrap: each layer built on top of the previous result
  let parent: Buffer | undefined;
  for (const t of tars) {
    const r = await buildLayer({
      source: createReadStream(t),
      blobDir: join(work, 'pb-blobs'),
      compressor: 'zstd',
      chunkSize: 0x10000,
      ...(parent ? { parentBootstrap: parent } : {}),
    });
    parent = r.bootstrap;
  }
  await assertImage(parent!, join(work, 'pb-blobs'), ref, 'parent-bootstrap chain');
});

test('layers: ferry rafs create / merge CLI', async (t) => {
  if (!existsSync(join(dirname(FERRY_BIN), '..', 'dist', 'src', 'cli', 'rafs.js'))) {
    assert.fail('missing prerequisite: src/cli/rafs.ts dispatcher (ferry rafs) is not built');
  }
  const dirs = [join(work, 'l1'), join(work, 'l2')];
  if (!existsSync(dirs[0]!)) makeLayers();
  const out = join(work, 'cli');
  const boots: string[] = [];
  for (const [i, d] of dirs.entries()) {
    const tarPath = tarDir(d, join(work, `cli-l${i}.tar`));
    const boot = join(out, `l${i}.boot`);
    const r = spawnSync(
      process.execPath,
      [
        FERRY_BIN,
        'rafs',
        'create',
        tarPath,
        '--bootstrap',
        boot,
        '--blob-dir',
        join(out, 'blobs'),
        '--compressor',
        'lz4_block',
        '--chunk-size',
        '0x10000',
        '--output-json',
        join(out, `l${i}.json`),
      ],
      { encoding: 'utf8' },
    );
    assert.equal(r.status, 0, r.stderr);
    const j = JSON.parse(readFileSync(join(out, `l${i}.json`), 'utf8')) as { blobId: string; blobSize: number };
    assert.match(j.blobId, /^[0-9a-f]{64}$/);
    assert.equal(lstatSync(join(out, 'blobs', j.blobId)).size, j.blobSize);
    assert.deepEqual(JSON.parse(r.stdout.trim()).blobId, j.blobId);
    // the same tar on stdin builds the same blob (the build is deterministic)
    const viaStdin = spawnSync(
      process.execPath,
      [
        FERRY_BIN,
        'rafs',
        'create',
        '-',
        '--bootstrap',
        join(out, `stdin${i}.boot`),
        '--blob-dir',
        join(out, 'blobs'),
        '--compressor',
        'lz4_block',
        '--chunk-size',
        '0x10000',
      ],
      { encoding: 'utf8', input: readFileSync(tarPath) },
    );
    assert.equal(viaStdin.status, 0, viaStdin.stderr);
    assert.equal(JSON.parse(viaStdin.stdout.trim()).blobId, j.blobId);
    assert.deepEqual(readFileSync(join(out, `stdin${i}.boot`)), readFileSync(boot));
    boots.push(boot);
  }
  const merged = join(out, 'merged.boot');
  const m = spawnSync(process.execPath, [FERRY_BIN, 'rafs', 'merge', '--bootstrap', merged, ...boots], { encoding: 'utf8' });
  assert.equal(m.status, 0, m.stderr);
  const ref = join(work, 'cli-ref');
  mkdirSync(ref);
  for (const d of dirs) applyOciLayer(d, ref);
  await assertImage(readFileSync(merged), join(out, 'blobs'), ref, 'cli merged');
  // bad options: clear message, exit code 2, nothing written
  const bad = spawnSync(
    process.execPath,
    [FERRY_BIN, 'rafs', 'create', dirs[0]!, '--bootstrap', join(out, 'bad.boot'), '--blob-dir', join(out, 'bad'), '--chunk-size', '0x3000'],
    { encoding: 'utf8' },
  );
  assert.equal(bad.status, 2);
  assert.match(bad.stderr, /invalid chunk size .*power of two/);
  assert.ok(!existsSync(join(out, 'bad.boot')));
  const bad2 = spawnSync(
    process.execPath,
    [FERRY_BIN, 'rafs', 'create', dirs[0]!, '--bootstrap', join(out, 'bad.boot'), '--blob-dir', join(out, 'bad'), '--compressor', 'brotli'],
    { encoding: 'utf8' },
  );
  assert.equal(bad2.status, 2);
  assert.match(bad2.stderr, /unknown compressor "brotli"/);
  void t;
  void basename;
});

test('layers: hostile or broken layer tars give clear errors and leave no blob behind', async () => {
  const { encodeTarHeader } = await import('../format/rafs/index.js');
  const { Readable } = await import('node:stream');
  const entry = (name: string, body: Buffer, type = 0x30, linkname = ''): Buffer => {
    const h = encodeTarHeader(name, body.length);
    h[156] = type;
    h.write(linkname, 157, 'utf8');
    h.fill(0x20, 148, 156);
    let sum = 0;
    for (const b of h) sum += b;
    h.write(`${sum.toString(8).padStart(7, '0')}\0`, 148, 'latin1');
    const pad = Buffer.alloc((512 - (body.length % 512)) % 512);
    return Buffer.concat([h, body, pad]);
  };
  const tarOf = (...parts: Buffer[]): Buffer => Buffer.concat([...parts, Buffer.alloc(1024)]);
  const blobDir = join(work, 'hostile-blobs');
  mkdirSync(blobDir, { recursive: true });
  const cases: [string, Buffer, RegExp][] = [
    ['../ escape', tarOf(entry('ok', randomBytes(5000)), entry('../evil', Buffer.from('x'))), /escapes the layer root/],
    [
      '.. above the root further in',
      tarOf(entry('ok', randomBytes(5000)), entry('a/b/../../../evil', Buffer.from('x'))),
      /escapes the layer root/,
    ],
    [
      'hardlink to a missing file',
      tarOf(entry('a', randomBytes(5000)), entry('b', Buffer.alloc(0), 0x31, 'missing')),
      /hardlink b → missing: target not found/,
    ],
    ['truncated body', Buffer.concat([entry('big', randomBytes(600000)).subarray(0, 100000)]), /truncat|ended|short|unexpected end/i],
  ];
  for (const [what, tar, re] of cases) {
    await assert.rejects(
      buildLayer({ source: Readable.from([tar]), blobDir, compressor: 'lz4_block' }),
      (e: Error) => re.test(e.message),
      what,
    );
  }
  assert.deepEqual(readdirSync(blobDir), [], 'no blob or temporary file left after failures');
  // absolute and dangling symlinks are data, kept verbatim (what the container sees)
  const sym = entry('bin/sh', Buffer.alloc(0), 0x32, '/bin/busybox');
  const r = await buildLayer({ source: Readable.from([tarOf(sym)]), blobDir, compressor: 'lz4_block' });
  assert.equal(r.blobId, '', 'a layer without file data writes no blob');
  const bs = openBootstrap(r.bootstrap);
  assert.equal(bs.readlink(bs.lookup('/bin/sh')!), '/bin/busybox');
  assert.equal(bs.blobs.length, 0);
  // absolute names are taken relative to the layer root (as tar does), `..` inside it resolved
  const abs = await buildLayer({
    source: Readable.from([tarOf(entry('/etc/passwd', Buffer.from('x')), entry('usr/./lib/../bin//env', Buffer.from('y')))]),
    blobDir,
    compressor: 'lz4_block',
  });
  const ab = openBootstrap(abs.bootstrap);
  assert.ok(ab.lookup('/etc/passwd') !== undefined && ab.lookup('/usr/bin/env') !== undefined);
  assert.equal(ab.lookup('/usr/lib'), undefined);
});

test('layers: 12 layers merge into one bootstrap with 12 devices (blob table past the first block)', async () => {
  const blobDir = join(work, 'many-blobs');
  const ref = join(work, 'many-ref');
  mkdirSync(ref);
  const boots: Buffer[] = [];
  for (let i = 0; i < 12; i++) {
    const d = join(work, `many-l${i}`);
    mkdirSync(join(d, 'data'), { recursive: true });
    writeFileSync(join(d, 'data', `f${i}`), randomBytes(3000 + i));
    writeFileSync(join(d, 'shared'), `layer ${i}\n`);
    utimesSync(join(d, 'data'), 1_700_000_000, 1_700_000_000);
    const r = await buildLayer({ source: createReadStream(tarDir(d, join(work, `many-l${i}.tar`))), blobDir, compressor: 'lz4_block' });
    boots.push(r.bootstrap);
    applyOciLayer(d, ref);
  }
  const merged = mergeBootstraps(boots);
  const bs = openBootstrap(merged);
  assert.equal(bs.blobs.length, 12);
  assert.equal(merged.readBigUInt64LE(1152 + 8), 8192n, 'blob table offset ≥ 1408 + 256 × 12');
  await assertImage(merged, blobDir, ref, 'twelve layers');
});

test('layers: rebuilding a layer on top of itself keeps one blob-table entry (unique device ids)', async () => {
  const d = join(work, 'self');
  mkdirSync(d);
  writeFileSync(join(d, 'f'), randomBytes(10000));
  const t = tarDir(d, join(work, 'self.tar'));
  const blobDir = join(work, 'self-blobs');
  const a = await buildLayer({ source: createReadStream(t), blobDir, compressor: 'none' });
  const b = await buildLayer({ source: createReadStream(t), blobDir, compressor: 'none', parentBootstrap: a.bootstrap });
  assert.equal(b.blobId, '', 'every chunk came from the parent: no new blob');
  assert.deepEqual(
    openBootstrap(b.bootstrap).blobs.map((x) => x.blobId),
    [a.blobId],
  );
  const twice = mergeBootstraps([a.bootstrap, a.bootstrap]);
  assert.deepEqual(
    openBootstrap(twice).blobs.map((x) => x.blobId),
    [a.blobId],
  );
  const ref = join(work, 'self-ref');
  mkdirSync(ref);
  applyOciLayer(d, ref);
  await assertImage(twice, blobDir, ref, 'same layer twice');
});

test('layers: an upstream nydus 2.2 bootstrap works as chunk dictionary and as a lower layer', async () => {
  const upstreamBoot = readFileSync(fixture('nydus', 'rafs-v6-2.2.boot'));
  const upstreamBlobs = fixture('nydus', 'blobs');
  // reference tree of the upstream image, through the reader (every chunk digest verified)
  const lowerRef = join(work, 'up-ref');
  const un = spawnSync(
    process.execPath,
    [FERRY_BIN, 'rafs', 'unpack', '--bootstrap', fixture('nydus', 'rafs-v6-2.2.boot'), '--blob-dir', upstreamBlobs, '--output', lowerRef],
    { encoding: 'utf8' },
  );
  assert.equal(un.status, 0, un.stderr);
  // our layer: one file identical to an upstream file (dedups against the dictionary), one new file, a whiteout
  const d = join(work, 'up-layer');
  mkdirSync(d);
  cpSync(join(lowerRef, 'lib.rs'), join(d, 'copy-of-lib.rs'));
  writeFileSync(join(d, 'ours.txt'), 'ferry on top of nydus\n');
  writeFileSync(join(d, '.wh.sync_io.rs'), '');
  utimesSync(d, 1_700_000_000, 1_700_000_000);
  const blobDir = join(work, 'up-blobs');
  mkdirSync(blobDir);
  for (const f of readdirSync(upstreamBlobs)) cpSync(join(upstreamBlobs, f), join(blobDir, f));
  const r = await buildLayer({
    source: createReadStream(tarDir(d, join(work, 'up-layer.tar'))),
    blobDir,
    compressor: 'zstd',
    digester: 'blake3',
    chunkDict: upstreamBoot,
  });
  assert.equal(r.stats.chunksFromDict, 1, 'the copied file is referenced in the upstream blob');
  const merged = mergeBootstraps([upstreamBoot, r.bootstrap]);
  const ids = openBootstrap(merged).blobs.map((b) => b.blobId);
  assert.deepEqual(ids, ['be7d77eeb719f70884758d1aa800ed0fb09d701aaec469964e9d54325f0d5fef', r.blobId]);
  const ref = join(work, 'up-merged-ref');
  cpSync(lowerRef, ref, { recursive: true, preserveTimestamps: true });
  applyOciLayer(d, ref);
  await assertImage(merged, blobDir, ref, 'upstream + ferry');
});

test('layers: --blob-inline-meta stores the layer bootstrap in the blob (image.boot), usable through merge', async () => {
  const { walkReverseTar, decodeToc } = await import('../format/rafs/index.js');
  const { getCodec } = await import('../format/compress/index.js');
  const { createHash } = await import('node:crypto');
  const d = join(work, 'inline');
  mkdirSync(join(d, 'etc'), { recursive: true });
  writeFileSync(join(d, 'etc/motd'), 'inline meta\n');
  writeFileSync(join(d, 'big'), randomBytes(300000));
  utimesSync(join(d, 'etc'), 1_700_000_000, 1_700_000_000);
  const blobDir = join(work, 'inline-blobs');
  const r = await buildLayer({
    source: createReadStream(tarDir(d, join(work, 'inline.tar'))),
    blobDir,
    compressor: 'zstd',
    inlineBootstrap: true,
  });
  const blob = readFileSync(r.blobPath);
  assert.equal(createHash('sha256').update(blob).digest('hex'), r.blobId, 'blob id = sha256 of the whole blob');
  const secs = walkReverseTar((o, l) => blob.subarray(o, o + l), blob.length);
  assert.deepEqual(
    secs.map((x) => x.name),
    ['rafs.blob.toc', 'image.boot', 'blob.digest', 'blob.meta', 'image.blob'],
  );
  const toc = decodeToc(blob.subarray(secs[0]!.offset, secs[0]!.offset + secs[0]!.size));
  const e = toc.find((x) => x.name === 'image.boot')!;
  const raw = blob.subarray(e.compressedOffset, e.compressedOffset + e.compressedSize);
  const embedded = e.flags === 0x2 ? getCodec('zstd').decompress(raw, e.uncompressedSize) : raw;
  assert.deepEqual(createHash('sha256').update(embedded).digest(), e.digest);
  const eb = openBootstrap(embedded);
  assert.equal(eb.blobs[0]!.blobId, 'x'.repeat(64), 'upstream placeholder id in the embedded bootstrap');
  assert.equal(eb.blobs[0]!.features, 0x70000023);
  assert.equal(eb.blobs[0]!.compressedSize, e.compressedOffset, 'compressed size = blob length before the bootstrap');
  assert.equal(openBootstrap(r.bootstrap).blobs[0]!.features, 0x70000021, 'the returned bootstrap clears INLINED_FS_META');
  // the embedded bootstrap merges once its blob id is supplied (nydusify names it by the layer digest)
  const merged = mergeBootstraps([embedded], { blobIds: [[r.blobId]] });
  const ref = join(work, 'inline-ref');
  mkdirSync(ref);
  applyOciLayer(d, ref);
  await assertImage(merged, blobDir, ref, 'inline meta');
});
