import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createReadStream, readFileSync } from 'node:fs';
import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { compress as zstdCompress } from 'zstd-napi';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fixture } from '../../../test/support/paths.js';
import { FerryError } from '../../core/index.js';
import {
  readLayer,
  parseLayer,
  writeTar,
  whiteoutOf,
  overlayWhiteoutOf,
  encodeTarHeaders,
  normalizeTarPath,
  type TarEntry,
} from './index.js';

async function collect(input: Readable): Promise<{ entry: TarEntry; data: Buffer }[]> {
  const out: { entry: TarEntry; data: Buffer }[] = [];
  for await (const { entry, body } of readLayer(input)) {
    const parts: Buffer[] = [];
    for await (const c of body) parts.push(c as Buffer);
    out.push({ entry, data: Buffer.concat(parts) });
  }
  return out;
}

async function toBuffer(r: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of r) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

function e(path: string, type: TarEntry['type'], extra: Partial<TarEntry> = {}): TarEntry {
  return { path, type, mode: type === 'dir' ? 0o755 : 0o644, uid: 0, gid: 0, mtime: 1700000000, size: 0, xattrs: {}, ...extra };
}

test('tar: upstream all-entry-type.tar lists every entry type', async () => {
  const list = await collect(createReadStream(fixture('nydus', 'all-entry-type.tar')));
  const byPath = new Map(list.map((x) => [x.entry.path, x]));
  assert.equal(byPath.get('tar/dir1/dir3/hardlink1.txt')!.entry.type, 'file');
  assert.equal(byPath.get('tar/dir1/dir3/hardlink1.txt')!.data.length, 15);
  assert.equal(byPath.get('tar/dir2/hardlink3.txt')!.entry.type, 'hardlink');
  assert.equal(byPath.get('tar/dir2/hardlink3.txt')!.entry.linkname, 'tar/dir1/dir3/hardlink1.txt');
  assert.equal(byPath.get('tar/dir2/symlink1.txt')!.entry.linkname, '../dir1/dir3/file1.txt');
  assert.equal(byPath.get('tar/dir1')!.entry.type, 'dir');
  assert.deepEqual(await collect(createReadStream(fixture('nydus', 'empty.tar'))), []);
});

test('tar: writer round trip through readLayer, GNU tar, gzip and zstd (PAX long names, binary xattrs, devices)', async () => {
  const longName = `d/${'x'.repeat(150)}/${'ü'.repeat(80)}`;
  const cap = Buffer.from([0x01, 0x00, 0x00, 0x02, 0x00, 0x20, 0x00, 0x00, 0xff, 0xfe, 0x80, 0x00]);
  const entries = [
    { entry: e('', 'dir') },
    { entry: e('d', 'dir', { mode: 0o1777, xattrs: { 'trusted.overlay.opaque': Buffer.from('y') } }) },
    {
      entry: e(longName, 'file', {
        size: 5,
        uid: 3_000_000,
        gid: 70_000,
        mtime: 1700000000.5,
        xattrs: { 'security.capability': cap, 'user.k': Buffer.from('v') },
      }),
      body: Buffer.from('hello'),
    },
    { entry: e('d/hl', 'hardlink', { linkname: longName }) },
    { entry: e('d/sl', 'symlink', { linkname: `/usr/bin/${'y'.repeat(120)}` }) },
    { entry: e('d/null', 'char', { devmajor: 1, devminor: 3, mode: 0o666 }) },
    { entry: e('d/loop', 'block', { devmajor: 7, devminor: 300 }) },
    { entry: e('d/fifo', 'fifo') },
    { entry: e('d/empty', 'file'), body: Buffer.alloc(0) },
  ];
  const tar = await toBuffer(writeTar(entries));
  assert.equal(tar.length % 512, 0);
  for (const buf of [tar, gzipSync(tar), zstdCompress(tar)]) {
    const got = await collect(Readable.from([buf.subarray(0, 700), buf.subarray(700)]));
    assert.equal(got.length, entries.length);
    got.forEach((g, i) => {
      const want = entries[i]!.entry;
      assert.equal(g.entry.path, want.path);
      assert.equal(g.entry.type, want.type);
      assert.equal(g.entry.mode, want.mode);
      assert.equal(g.entry.uid, want.uid);
      assert.equal(g.entry.gid, want.gid);
      assert.equal(g.entry.mtime, want.mtime);
      assert.equal(g.entry.linkname, want.linkname);
      assert.equal(g.entry.devmajor, want.devmajor);
      assert.equal(g.entry.devminor, want.devminor);
      assert.deepEqual(g.entry.xattrs, want.xattrs);
    });
    assert.equal(got[2]!.data.toString(), 'hello');
  }
  // GNU tar reads it too
  const dir = mkdtempSync(join(tmpdir(), 'ferry-tar-'));
  try {
    writeFileSync(join(dir, 'a.tar'), tar);
    const r = spawnSync('tar', ['-tvf', join(dir, 'a.tar')], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /d\/sl -> \/usr\/bin\/y+/);
    assert.ok(r.stdout.includes(longName), r.stdout);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('tar: sizes above 8 GiB via PAX and base-256 headers', async () => {
  const big = 9 * 2 ** 30 + 7;
  const hdr = encodeTarHeaders(e('big', 'file', { size: big }));
  const it = readLayer(Readable.from([hdr, Buffer.alloc(1024)]));
  const first = await it.next();
  assert.equal(first.done, false);
  assert.equal((first.value as { entry: TarEntry }).entry.size, big);
  (first.value as { body: Readable }).body.resume();
  await assert.rejects(it.next(), (err) => FerryError.hasCode(err, 'DATA_LOSS'));
  // base-256 size field (GNU)
  const h = Buffer.from(encodeTarHeaders(e('b2', 'file', { size: 1 })));
  h.fill(0, 124, 136);
  h[124] = 0x80;
  h.writeUIntBE(big, 136 - 6, 6);
  h.fill(0x20, 148, 156);
  let sum = 0;
  for (const b of h) sum += b;
  h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 8, 'latin1');
  const it2 = readLayer(Readable.from([h]));
  const r2 = await it2.next();
  assert.equal((r2.value as { entry: TarEntry }).entry.size, big);
  (r2.value as { body: Readable }).body.resume();
  await assert.rejects(it2.next(), (err) => FerryError.hasCode(err, 'DATA_LOSS'));
});

test('tar: hostile tars are refused with clear errors', async () => {
  const cases: [string, TarEntry[], string][] = [
    ['dotdot', [e('a/../../etc/passwd', 'file')], 'INVALID_ARGUMENT'],
    ['leading dotdot', [e('../x', 'file')], 'INVALID_ARGUMENT'],
    ['absolute dotdot', [e('/../x', 'file')], 'INVALID_ARGUMENT'],
    ['hardlink outside', [e('x', 'hardlink', { linkname: '../../etc/shadow' })], 'INVALID_ARGUMENT'],
    ['through symlink', [e('evil', 'symlink', { linkname: '/etc' }), e('evil/passwd', 'file')], 'INVALID_ARGUMENT'],
    // lexically `x`, but on disk `evil/..` is the parent of the link's target
    ['dotdot out of a symlink', [e('evil', 'symlink', { linkname: '/etc/ssl' }), e('evil/../x', 'file')], 'INVALID_ARGUMENT'],
    [
      'dotdot out of a nested symlink',
      [e('d', 'dir'), e('d/l', 'symlink', { linkname: '/' }), e('d/l/y/../../x', 'file')],
      'INVALID_ARGUMENT',
    ],
    [
      'hardlink target out of a symlink',
      [e('l', 'symlink', { linkname: '/etc' }), e('h', 'hardlink', { linkname: 'l/../x' })],
      'INVALID_ARGUMENT',
    ],
  ];
  for (const [what, list, code] of cases) {
    // build with the writer (which writes names verbatim) — craft raw headers for names it would normalise
    const tar = Buffer.concat([...list.map((x) => rawHeader(x)), Buffer.alloc(1024)]);
    await assert.rejects(collect(Readable.from([tar])), (err) => FerryError.hasCode(err, code as never), what);
  }
  // corrupt checksum / truncated header / truncated body
  const good = await toBuffer(writeTar([{ entry: e('f', 'file', { size: 600 }), body: Buffer.alloc(600, 1) }]));
  const bad = Buffer.from(good);
  bad[0] = bad[0]! ^ 0xff;
  await assert.rejects(collect(Readable.from([bad])), (err) => FerryError.hasCode(err, 'DATA_LOSS'));
  await assert.rejects(collect(Readable.from([good.subarray(0, 300)])), (err) => FerryError.hasCode(err, 'DATA_LOSS'));
  await assert.rejects(collect(Readable.from([good.subarray(0, 700)])), (err) => FerryError.hasCode(err, 'DATA_LOSS'));
  await assert.rejects(collect(Readable.from([gzipSync(good).subarray(0, 30)])), (err) => FerryError.hasCode(err, 'DATA_LOSS'));
  assert.equal(normalizeTarPath('./a//b/./c/'), 'a/b/c');
});

test('tar: names are normalised lexically; only real escapes are refused', async () => {
  const accepted: Array<[string, string]> = [
    ['a//b/./c/../d', 'a/b/d'],
    ['./x/', 'x'],
    ['/etc/passwd', 'etc/passwd'],
    ['//abs//x', 'abs/x'],
    ['a/b/../../c', 'c'],
    ['a/..', ''],
    ['./', ''],
    ['/', ''],
    ['a/./b/.', 'a/b'],
  ];
  for (const [name, want] of accepted) assert.equal(normalizeTarPath(name), want, name);
  for (const name of ['..', '../x', 'a/../../x', '/../x', './../x', 'a/b/../../../x', '/a/../..']) {
    assert.throws(
      () => normalizeTarPath(name),
      (err: unknown) => FerryError.hasCode(err, 'INVALID_ARGUMENT') && /'\.\.' escapes the layer root/.test((err as Error).message),
      name,
    );
  }
  // through the parser: names and hardlink targets as they come
  const tar = Buffer.concat([
    rawHeader(e('a//b/./c/../d', 'file')),
    rawHeader(e('/etc/passwd', 'file')),
    rawHeader(e('l', 'symlink', { linkname: '../outside/is/fine/for/a/symlink/target' })),
    rawHeader(e('h', 'hardlink', { linkname: '/etc//passwd' })),
    rawHeader(e('q/../r', 'hardlink', { linkname: 'a/b/x/../d' })),
    Buffer.alloc(1024),
  ]);
  const got = (await collect(Readable.from([tar]))).map(
    (x) => `${x.entry.path}${x.entry.linkname !== undefined ? ` -> ${x.entry.linkname}` : ''}`,
  );
  assert.deepEqual(got, ['a/b/d', 'etc/passwd', 'l -> ../outside/is/fine/for/a/symlink/target', 'h -> etc/passwd', 'r -> a/b/d']);
});

function rawHeader(x: TarEntry): Buffer {
  const h = Buffer.alloc(512);
  h.write(x.path, 0, 100, 'latin1');
  h.write('0000644\0', 100, 'latin1');
  h.write('0000000\0', 108, 'latin1');
  h.write('0000000\0', 116, 'latin1');
  h.write('00000000000\0', 124, 'latin1');
  h.write('00000000000\0', 136, 'latin1');
  h.write({ file: '0', hardlink: '1', symlink: '2', dir: '5', char: '3', block: '4', fifo: '6' }[x.type], 156, 'latin1');
  h.write(x.linkname ?? '', 157, 100, 'latin1');
  h.write('ustar\x0000', 257, 'latin1');
  h.fill(0x20, 148, 156);
  let sum = 0;
  for (const b of h) sum += b;
  h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 8, 'latin1');
  return h;
}

test('tar: whiteout classification', () => {
  assert.deepEqual(whiteoutOf('a/b/.wh.c'), { kind: 'whiteout', target: 'a/b/c' });
  assert.deepEqual(whiteoutOf('.wh.top'), { kind: 'whiteout', target: 'top' });
  assert.deepEqual(whiteoutOf('a/.wh..wh..opq'), { kind: 'opaque', dir: 'a' });
  assert.deepEqual(whiteoutOf('.wh..wh..opq'), { kind: 'opaque', dir: '' });
  assert.equal(whiteoutOf('a/.wh..wh.plnk'), null);
  assert.equal(whiteoutOf('a/b.wh.c'), null);
  assert.deepEqual(overlayWhiteoutOf(e('x/y', 'char', { devmajor: 0, devminor: 0 })), { kind: 'whiteout', target: 'x/y' });
  assert.equal(overlayWhiteoutOf(e('x/y', 'char', { devmajor: 1, devminor: 3 })), null);
  assert.deepEqual(overlayWhiteoutOf(e('x', 'dir', { xattrs: { 'trusted.overlay.opaque': Buffer.from('y') } })), {
    kind: 'opaque',
    dir: 'x',
  });
  assert.ok(readFileSync(fixture('nydus', 'all-entry-type.tar')).length > 0);
});

test('tar: mutated tars (plain and gzip) never raise anything but FerryError', async () => {
  const entries = [
    { entry: e('', 'dir') },
    { entry: e(`d/${'n'.repeat(120)}`, 'file', { size: 700, xattrs: { 'user.a': Buffer.from([1, 2, 3]) } }), body: Buffer.alloc(700, 7) },
    { entry: e('d/l', 'symlink', { linkname: 'x'.repeat(130) }) },
    { entry: e('d/h', 'hardlink', { linkname: `d/${'n'.repeat(120)}` }) },
    { entry: e('d/c', 'char', { devmajor: 4, devminor: 64 }) },
  ];
  const tar = await toBuffer(writeTar(entries));
  let seed = 42;
  const rnd = (n: number): number => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return seed % n;
  };
  let refused = 0;
  for (let it = 0; it < 400; it++) {
    const m = Buffer.from(tar);
    for (let k = 0; k < 1 + rnd(3); k++) m[rnd(m.length)] = rnd(256);
    const input = it % 4 === 3 ? gzipSync(m) : m;
    if (it % 4 === 3) input[10 + rnd(input.length - 10)] = rnd(256);
    try {
      await collect(Readable.from([input]));
    } catch (err) {
      assert.ok(FerryError.is(err), `iteration ${it}: ${String(err)}`);
      refused++;
    }
  }
  assert.ok(refused > 0);
});

async function collectParsed(input: Readable): Promise<{ entry: TarEntry; data: Buffer }[]> {
  const out: { entry: TarEntry; data: Buffer }[] = [];
  let parts: Buffer[] = [];
  await parseLayer(input, {
    entry(entry) {
      out.push({ entry, data: Buffer.alloc(0) });
      parts = [];
    },
    data(piece) {
      parts.push(Buffer.from(piece));
    },
    end() {
      out[out.length - 1]!.data = Buffer.concat(parts);
    },
  });
  return out;
}

function pieces(buf: Buffer, size: number): Buffer[] {
  const out: Buffer[] = [];
  for (let p = 0; p < buf.length; p += size) out.push(buf.subarray(p, p + size));
  return out;
}

async function outcome(f: () => Promise<{ entry: TarEntry; data: Buffer }[]>): Promise<unknown> {
  try {
    return await f();
  } catch (err) {
    assert.ok(FerryError.is(err), String(err));
    return { error: err.code };
  }
}

test('tar: parseLayer (sync push parser) gives what readLayer gives, whatever the piece boundaries', async () => {
  const long = `d/${'n'.repeat(120)}/${'ü'.repeat(70)}`;
  const tar = await toBuffer(
    writeTar([
      { entry: e('', 'dir') },
      { entry: e('d', 'dir', { xattrs: { 'user.x': Buffer.from([0, 255, 1]) } }) },
      { entry: e(long, 'file', { size: 1500, mtime: 1700000000.25 }), body: Buffer.alloc(1500, 9) },
      { entry: e('d/empty', 'file'), body: Buffer.alloc(0) },
      { entry: e('d/512', 'file', { size: 512 }), body: Buffer.alloc(512, 3) },
      { entry: e('d/l', 'symlink', { linkname: 'x'.repeat(130) }) },
      { entry: e('d/h', 'hardlink', { linkname: long }) },
      { entry: e('d/c', 'char', { devmajor: 4, devminor: 64 }) },
    ]),
  );
  const fixtureTar = readFileSync(fixture('nydus', 'all-entry-type.tar'));
  for (const input of [tar, fixtureTar]) {
    const want = await collect(Readable.from([input]));
    assert.ok(want.length > 5);
    for (const size of [1, 7, 100, 511, 512, 513, 4096, input.length]) {
      assert.deepEqual(await collectParsed(Readable.from(pieces(input, size))), want, `pieces of ${size}`);
    }
    assert.deepEqual(await collectParsed(Readable.from([gzipSync(input)])), want, 'gzip');
  }
  // truncations and mutations: the same entries or the same error code
  let seed = 7;
  const rnd = (n: number): number => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return seed % n;
  };
  for (let it = 0; it < 200; it++) {
    let m = Buffer.from(tar);
    if (it % 2) m = m.subarray(0, rnd(m.length));
    else for (let k = 0; k < 1 + rnd(3); k++) m[rnd(m.length)] = rnd(256);
    const a = await outcome(() => collect(Readable.from([m])));
    const b = await outcome(() => collectParsed(Readable.from(pieces(m, 1 + rnd(1000)))));
    assert.deepEqual(b, a, `iteration ${it}`);
  }
});
