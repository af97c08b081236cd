import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FERRY_BIN, fixture } from '../../../test/support/paths.js';
import { requirePrereqs } from '../../../test/support/prereq.js';
import tarStream from 'tar-stream';
import { openBootstrap } from '../../format/rafs/index.js';

const NY = (...p: string[]): string => fixture('nydus', ...p);
const V6 = NY('rafs-v6-2.2.boot');
const BLOBS = NY('blobs');

function ferry(args: string[]): { code: number; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [FERRY_BIN, ...args], { encoding: 'utf8', maxBuffer: 64 << 20 });
  return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
}

/** path → description of every entry under dir (type, mode, size, content hash or link target). */
function snapshot(dir: string, opts: { owners?: boolean } = {}): Map<string, string> {
  const out = new Map<string, string>();
  const walk = (rel: string): void => {
    const p = rel ? join(dir, rel) : dir;
    const st = lstatSync(p);
    let d = `${(st.mode & 0o170000).toString(8)} ${(st.mode & 0o7777).toString(8)}`;
    if (opts.owners) d += ` ${st.uid}:${st.gid}`;
    if (st.isFile()) d += ` ${st.size} ${spawnSync('sha256sum', [p], { encoding: 'utf8' }).stdout.split(' ')[0]}`;
    else if (st.isSymbolicLink()) d += ` -> ${readlinkSync(p)}`;
    out.set(rel || '/', d);
    if (st.isDirectory()) for (const n of readdirSync(p).sort()) walk(rel ? `${rel}/${n}` : n);
  };
  walk('');
  return out;
}

test('rafs cli: inspect, check (valid and corrupted blob) on the upstream v6 image', () => {
  const r = ferry(['rafs', 'inspect', V6, '--json']);
  assert.equal(r.code, 0, r.stderr);
  const j = JSON.parse(r.stdout) as { summary: { version: number }; blobs: { blobId: string }[]; entries: { path: string }[] };
  assert.equal(j.summary.version, 6);
  assert.deepEqual(
    j.entries.map((e) => e.path),
    ['/', '/lib.rs', '/sync_io.rs'],
  );
  const t = ferry(['rafs', 'inspect', V6]);
  assert.equal(t.code, 0);
  assert.match(t.stdout, /-rw-r--r-- .* 16931 \/lib\.rs \(1 chunks\)/);
  const ok = ferry(['rafs', 'check', V6, '--blob-dir', BLOBS]);
  assert.equal(ok.code, 0, ok.stderr);
  assert.match(ok.stdout, /2 chunks verified/);
  const single = ferry(['rafs', 'check', V6, '--blob', join(BLOBS, j.blobs[0]!.blobId)]);
  assert.equal(single.code, 0, single.stderr);
  assert.match(single.stdout, /2 chunks verified/);
  const tmp = mkdtempSync(join(tmpdir(), 'ferry-rafs-check-'));
  try {
    const id = j.blobs[0]!.blobId;
    const blob = readFileSync(join(BLOBS, id));
    blob[100] = blob[100]! ^ 0xff;
    writeFileSync(join(tmp, id), blob);
    const bad = ferry(['rafs', 'check', V6, '--blob-dir', tmp]);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /chunk 0 of blob be7d77/);
    const missing = ferry(['rafs', 'check', V6, '--blob-dir', join(tmp, 'nowhere')]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /not found/);
    writeFileSync(join(tmp, 'trunc.boot'), readFileSync(V6).subarray(0, 9000));
    const trunc = ferry(['rafs', 'check', join(tmp, 'trunc.boot')]);
    assert.equal(trunc.code, 1);
    assert.match(trunc.stderr, /rafs bootstrap: .*(truncated|multiple)/);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});

test('rafs cli: unpack of the upstream v6 image equals fsck.erofs --extract and a kernel EROFS mount over the uncompressed blob view', () => {
  requirePrereqs({ root: true, commands: ['fsck.erofs', 'sha256sum', 'losetup', 'mount', 'umount'] });
  const tmp = mkdtempSync(join(tmpdir(), 'ferry-rafs-unpack-'));
  try {
    // uncompressed blob view (what EROFS addresses), from our own chunk decoding
    const bs = openBootstrap(readFileSync(V6));
    const blob = bs.blobs[0]!;
    const raw = readFileSync(join(BLOBS, blob.blobId));
    const view = Buffer.alloc(blob.uncompressedSize);
    for (const e of bs.walk()) {
      if ((e.stat.mode & 0o170000) !== 0o100000) continue;
      for (const c of bs.chunks(e.ino)) {
        bs.decodeChunk(blob, c, raw.subarray(c.compressedOffset, c.compressedOffset + c.compressedSize)).copy(view, c.uncompressedOffset);
      }
    }
    writeFileSync(join(tmp, 'view'), view);
    const fsck = spawnSync('fsck.erofs', [`--device=${join(tmp, 'view')}`, `--extract=${join(tmp, 'fsck')}`, V6], { encoding: 'utf8' });
    assert.equal(fsck.status, 0, fsck.stderr + fsck.stdout);
    const u = ferry(['rafs', 'unpack', '--bootstrap', V6, '--blob-dir', BLOBS, '--output', join(tmp, 'ours')]);
    assert.equal(u.code, 0, u.stderr);
    assert.deepEqual(snapshot(join(tmp, 'ours')), snapshot(join(tmp, 'fsck')));
    // the kernel's EROFS driver sees the same tree, owners and mtimes included
    const loops: string[] = [];
    const mnt = join(tmp, 'mnt');
    mkdirSync(mnt);
    let mounted = false;
    try {
      for (const f of [V6, join(tmp, 'view')]) {
        const l = spawnSync('losetup', ['-f', '--show', '-r', f], { encoding: 'utf8' });
        assert.equal(l.status, 0, l.stderr);
        loops.push(l.stdout.trim());
      }
      const m = spawnSync('mount', ['-t', 'erofs', '-o', `ro,device=${loops[1]}`, loops[0]!, mnt], { encoding: 'utf8' });
      assert.equal(m.status, 0, m.stderr);
      mounted = true;
      const withTimes = (dir: string): Map<string, string> => {
        const snap = snapshot(dir, { owners: true });
        for (const [k, v] of snap) if (k !== '/') snap.set(k, `${v} ${Math.floor(lstatSync(join(dir, k)).mtimeMs / 1000)}`);
        return snap;
      };
      assert.deepEqual(withTimes(join(tmp, 'ours')), withTimes(mnt));
    } finally {
      if (mounted) spawnSync('umount', [mnt]);
      for (const l of loops) spawnSync('losetup', ['-d', l]);
    }
    // tar output extracts to the same tree
    const t = ferry(['rafs', 'unpack', '--bootstrap', V6, '--blob-dir', BLOBS, '--output', join(tmp, 'out.tar')]);
    assert.equal(t.code, 0, t.stderr);
    mkdirSync(join(tmp, 'fromtar'));
    const x = spawnSync('tar', ['-xpf', join(tmp, 'out.tar'), '-C', join(tmp, 'fromtar')], { encoding: 'utf8' });
    assert.equal(x.status, 0, x.stderr);
    assert.deepEqual(snapshot(join(tmp, 'fromtar'), { owners: true }), snapshot(join(tmp, 'ours'), { owners: true }));
    // refuses a non-empty output directory
    const again = ferry(['rafs', 'unpack', '--bootstrap', V6, '--blob-dir', BLOBS, '--output', join(tmp, 'ours')]);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /not empty/);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});

test('rafs cli: unpack of upstream v5 images reproduces the expected file digests, hardlinks and symlinks', () => {
  requirePrereqs({ root: true, commands: ['md5sum', 'tar'] });
  const tmp = mkdtempSync(join(tmpdir(), 'ferry-rafs-v5-'));
  try {
    for (const name of ['sha256-nocompress-repeatable', 'blake3-lz4_block-non_repeatable']) {
      const boot = NY('more', 'repeatable', name);
      const out = join(tmp, name);
      const u = ferry(['rafs', 'unpack', '-B', boot, '-D', NY('more', 'repeatable', 'blobs'), '-o', out]);
      assert.equal(u.code, 0, u.stderr);
      const text = readFileSync(`${boot}.result`, 'utf8');
      const sums = text
        .slice(text.indexOf('\n]\n') + 3)
        .trim()
        .split('\n')
        .map((l) => l.split(/\s+/));
      for (const [sum, path] of sums) {
        const got = spawnSync('md5sum', [join(out, path!)], { encoding: 'utf8' }).stdout.split(' ')[0];
        assert.equal(got, sum, path);
      }
      assert.equal(lstatSync(join(out, 'hardlink-test/foo')).ino, lstatSync(join(out, 'hardlink-test/test.sh')).ino);
      assert.equal(lstatSync(join(out, 'hardlink-test/foo')).nlink, 3);
      assert.equal(readlinkSync(join(out, 'symlink-test/root-1')), '/////////////////');
      const c = ferry(['rafs', 'check', boot, '-D', NY('more', 'repeatable', 'blobs')]);
      assert.equal(c.code, 0, c.stderr);
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});

test('rafs cli: a failing unpack (corrupt blob) leaves no partial tree or tar behind; the rerun works', () => {
  const tmp = mkdtempSync(join(tmpdir(), 'ferry-rafs-unpack-fail-'));
  try {
    const id = openBootstrap(readFileSync(V6)).blobs[0]!.blobId;
    const bad = join(tmp, 'bad-blobs');
    mkdirSync(bad);
    const blob = readFileSync(join(BLOBS, id));
    blob[100] = blob[100]! ^ 0xff;
    writeFileSync(join(bad, id), blob);
    const leftovers = (): string[] => readdirSync(tmp).filter((n) => n.includes('ferry-unpack'));

    // a new output directory
    const out = join(tmp, 'tree');
    const failed = ferry(['rafs', 'unpack', '-B', V6, '-D', bad, '-o', out]);
    assert.equal(failed.code, 1);
    assert.match(failed.stderr, /chunk 0 of blob be7d77/);
    assert.doesNotMatch(failed.stderr, /\n\s+at /, 'no stack trace');
    assert.equal(existsSync(out), false, 'no partial tree');
    assert.deepEqual(leftovers(), []);
    const ok = ferry(['rafs', 'unpack', '-B', V6, '-D', BLOBS, '-o', out]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.deepEqual(readdirSync(out).sort(), ['lib.rs', 'sync_io.rs']);

    // an existing empty output directory stays empty, and is then filled
    const empty = join(tmp, 'empty');
    mkdirSync(empty);
    assert.equal(ferry(['rafs', 'unpack', '-B', V6, '-D', bad, '-o', empty]).code, 1);
    assert.deepEqual(readdirSync(empty), []);
    assert.equal(ferry(['rafs', 'unpack', '-B', V6, '-D', BLOBS, '-o', empty]).code, 0);
    assert.deepEqual(snapshot(empty), snapshot(out));

    // a tar file
    const tar = join(tmp, 'image.tar');
    assert.equal(ferry(['rafs', 'unpack', '-B', V6, '-D', bad, '-o', tar]).code, 1);
    assert.equal(existsSync(tar), false, 'no partial tar');
    assert.deepEqual(leftovers(), []);
    const t = ferry(['rafs', 'unpack', '-B', V6, '-D', BLOBS, '-o', tar]);
    assert.equal(t.code, 0, t.stderr);
    assert.ok(readFileSync(tar).length > 16931);
    const again = ferry(['rafs', 'unpack', '-B', V6, '-D', BLOBS, '-o', tar]);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /image\.tar exists/);
    assert.deepEqual(leftovers(), []);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});

/** A tar with these names written verbatim (tar-stream does not normalise them). */
async function tarWithNames(names: string[]): Promise<Buffer> {
  const pack = tarStream.pack();
  for (const n of names) pack.entry({ name: n, mode: 0o644, mtime: new Date(1700000000000) }, `content of ${n}\n`);
  pack.finalize();
  const parts: Buffer[] = [];
  for await (const c of pack) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

test('rafs cli: create normalises tar names lexically (a//b/./c/../d, absolute names) and refuses only escapes', async () => {
  const tmp = mkdtempSync(join(tmpdir(), 'ferry-rafs-names-'));
  try {
    writeFileSync(join(tmp, 'ok.tar'), await tarWithNames(['a//b/./c/../d', '/etc/passwd', './x/../y']));
    const ok = ferry(['rafs', 'create', join(tmp, 'ok.tar'), '-B', join(tmp, 'ok.boot'), '-D', join(tmp, 'blobs'), '--no-progress']);
    assert.equal(ok.code, 0, ok.stderr);
    const inspect = ferry(['rafs', 'inspect', join(tmp, 'ok.boot'), '--json']);
    assert.deepEqual(
      (JSON.parse(inspect.stdout) as { entries: { path: string }[] }).entries.map((e) => e.path),
      ['/', '/a', '/a/b', '/a/b/d', '/etc', '/etc/passwd', '/y'],
    );
    for (const bad of ['../x', 'a/../../x', '/../etc/passwd']) {
      writeFileSync(join(tmp, 'bad.tar'), await tarWithNames(['fine', bad]));
      const r = ferry(['rafs', 'create', join(tmp, 'bad.tar'), '-B', join(tmp, 'bad.boot'), '-D', join(tmp, 'blobs'), '--no-progress']);
      assert.equal(r.code, 2, `${bad}: ${r.stderr}`);
      assert.equal(r.stderr, `ferry rafs create: tar entry ${JSON.stringify(bad)}: '..' escapes the layer root\n`);
    }
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
});
