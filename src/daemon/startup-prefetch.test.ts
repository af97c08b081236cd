import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildLayer } from '../builder/index.js';
import { openBootstrap } from '../format/rafs/index.js';
import { parseElfHeaders, elfHeadersLength, loaderRanges, parseDynamic, cString, interpSegment } from '../format/elf/index.js';
import { resolveInImage, startupRanges, type FileRange } from './startup-prefetch.js';

/**
 * A minimal x86-64 ELF: R segment [0, 0x1000) holding headers, .interp and the dynamic strings;
 * RX [0x1000, 0x3000); RW [0x3000, 0x3800) holding the dynamic section.
 */
function elf(opts: { interp?: string; needed: string[]; runpath?: string; static?: boolean }): Buffer {
  const f = Buffer.alloc(0x3800);
  f.writeUInt32BE(0x7f454c46, 0);
  f[4] = 2;
  f[5] = 1;
  f[6] = 1;
  f.writeUInt16LE(3, 16);
  f.writeUInt16LE(62, 18);
  f.writeUInt32LE(1, 20);
  f.writeBigUInt64LE(64n, 32);
  f.writeUInt16LE(64, 52);
  f.writeUInt16LE(56, 54);
  const ph: Array<[number, number, number, number, number]> = [
    // type, flags, offset, vaddr, filesz
    [1, 4, 0, 0, 0x1000],
    [1, 5, 0x1000, 0x1000, 0x2000],
    [1, 6, 0x3000, 0x13000, 0x800],
  ];
  if (!opts.static) ph.push([2, 6, 0x3000, 0x13000, 0x100]);
  if (opts.interp) ph.push([3, 4, 0x238, 0x238, opts.interp.length + 1]);
  f.writeUInt16LE(ph.length, 56);
  ph.forEach(([type, flags, off, vaddr, size], i) => {
    const p = 64 + i * 56;
    f.writeUInt32LE(type, p);
    f.writeUInt32LE(flags, p + 4);
    f.writeBigUInt64LE(BigInt(off), p + 8);
    f.writeBigUInt64LE(BigInt(vaddr), p + 16);
    f.writeBigUInt64LE(BigInt(vaddr), p + 24);
    f.writeBigUInt64LE(BigInt(size), p + 32);
    f.writeBigUInt64LE(BigInt(size), p + 40);
    f.writeBigUInt64LE(0x1000n, p + 48);
  });
  if (opts.interp) f.write(`${opts.interp}\0`, 0x238);
  // dynamic strings at 0x400 (vaddr 0x400)
  let strs = '\0';
  const at = (s: string): number => {
    const o = strs.length;
    strs += `${s}\0`;
    return o;
  };
  const dyn: Array<[number, number]> = opts.needed.map((n) => [1, at(n)]);
  if (opts.runpath) dyn.push([29, at(opts.runpath)]);
  dyn.push([5, 0x400], [10, strs.length], [0, 0]);
  f.write(strs, 0x400, 'latin1');
  dyn.forEach(([tag, val], i) => {
    f.writeBigInt64LE(BigInt(tag), 0x3000 + i * 16);
    f.writeBigUInt64LE(BigInt(val), 0x3008 + i * 16);
  });
  return f;
}

test('format/elf: headers, loader ranges, interpreter and DT_NEEDED of a 64-bit ELF; anything else is null', () => {
  const f = elf({ interp: '/lib64/ld-linux-x86-64.so.2', needed: ['libc.so.6', 'libm.so.6'], runpath: '$ORIGIN/../lib' });
  const len = elfHeadersLength(f)!;
  assert.equal(len, 64 + 5 * 56);
  const h = parseElfHeaders(f)!;
  assert.equal(h.machine, 62);
  assert.deepEqual(loaderRanges(h, len), [
    { offset: 0, length: 0x1000 },
    { offset: 0x3000, length: 0x800 },
  ]);
  const ip = interpSegment(h)!;
  assert.equal(cString(f.subarray(ip.offset, ip.offset + ip.filesz), 0), '/lib64/ld-linux-x86-64.so.2');
  const dyn = parseDynamic(h, f.subarray(0x3000, 0x3100));
  const tab = f.subarray(dyn.strtab!.offset, dyn.strtab!.offset + dyn.strtab!.size);
  assert.deepEqual(
    dyn.needed.map((o) => cString(tab, o)),
    ['libc.so.6', 'libm.so.6'],
  );
  assert.deepEqual(
    dyn.runpath.map((o) => cString(tab, o)),
    ['$ORIGIN/../lib'],
  );
  assert.equal(parseElfHeaders(Buffer.from('#!/bin/sh\necho hi\n'.padEnd(80))), null);
  const be = Buffer.from(f);
  be[5] = 2; // big-endian
  assert.equal(parseElfHeaders(be), null);
  assert.equal(parseElfHeaders(f.subarray(0, 100)), null, 'program headers cut off');
});

test('startup prefetch: command through PATH, symlinks and #! env; loader, RUNPATH and multiarch libraries; loader ranges only', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ferry-startup-'));
  try {
    const root = join(dir, 'root');
    for (const d of ['usr/bin', 'usr/local/bin', 'lib/x86_64-linux-gnu', 'lib64', 'opt/app/bin', 'opt/app/lib', 'etc'])
      mkdirSync(join(root, d), { recursive: true });
    writeFileSync(
      join(root, 'opt/app/bin/app'),
      elf({ interp: '/lib64/ld-linux-x86-64.so.2', needed: ['libapp.so', 'libc.so.6'], runpath: '$ORIGIN/../lib' }),
    );
    // 4 KiB bigger than the other ELF files (0x3800 bytes): over the whole-file limit below
    writeFileSync(
      join(root, 'opt/app/lib/libapp.so'),
      Buffer.concat([elf({ needed: ['libc.so.6', 'libmissing.so'] }), Buffer.alloc(0x1000)]),
    );
    writeFileSync(join(root, 'lib/x86_64-linux-gnu/libc.so.6'), elf({ needed: [] }));
    writeFileSync(join(root, 'lib/x86_64-linux-gnu/ld-2.36.so'), elf({ needed: [] }));
    symlinkSync('../lib/x86_64-linux-gnu/ld-2.36.so', join(root, 'lib64/ld-linux-x86-64.so.2'));
    symlinkSync('/opt/app/bin/app', join(root, 'usr/bin/app'));
    writeFileSync(join(root, 'usr/local/bin/run.sh'), '#!/usr/bin/env app\nhello\n');
    writeFileSync(join(root, 'usr/bin/env'), elf({ interp: '/lib64/ld-linux-x86-64.so.2', needed: ['libc.so.6'] }));
    writeFileSync(join(root, 'etc/big'), Buffer.alloc(100_000));
    writeFileSync(join(root, 'usr/bin/static'), elf({ needed: [], static: true }));
    for (const f of ['opt/app/bin/app', 'usr/local/bin/run.sh', 'usr/bin/env']) chmodSync(join(root, f), 0o755);
    mkdirSync(join(dir, 'blobs'));
    const built = await buildLayer({ source: { dir: root }, blobDir: join(dir, 'blobs'), chunkSize: 0x1000 });
    const bs = openBootstrap(built.bootstrap);
    const pathOf = new Map<number, string>();
    for (const e of bs.walk()) pathOf.set(e.ino, e.path);
    const reads: string[] = [];
    const read = async (ino: number, off: number, len: number): Promise<Buffer> => {
      reads.push(pathOf.get(ino)!);
      return readFileSync(join(root, pathOf.get(ino)!)).subarray(off, off + len);
    };

    assert.equal(resolveInImage(bs, '/usr/bin/app')?.path, '/opt/app/bin/app');
    assert.equal(resolveInImage(bs, 'lib64/ld-linux-x86-64.so.2', '/')?.path, '/lib/x86_64-linux-gnu/ld-2.36.so');
    assert.equal(resolveInImage(bs, '/usr/bin/../../etc/big')?.path, '/etc/big');
    assert.equal(resolveInImage(bs, '/nope'), undefined);

    const got: FileRange[] = [];
    const n = await startupRanges(bs, read, { argv: ['run.sh', 'arg'], env: ['PATH=/usr/local/bin:/usr/bin'] }, (r) => got.push(...r));
    const byFile = new Map<string, Array<[number, number]>>();
    for (const r of got) byFile.set(r.path, [...(byFile.get(r.path) ?? []), [r.offset, r.length]]);
    assert.deepEqual([...byFile.keys()].sort(), [
      '/lib/x86_64-linux-gnu/ld-2.36.so',
      '/lib/x86_64-linux-gnu/libc.so.6',
      '/opt/app/bin/app',
      '/opt/app/lib/libapp.so',
      '/usr/bin/env',
      '/usr/local/bin/run.sh',
    ]);
    assert.equal(n, 6);
    assert.deepEqual(byFile.get('/usr/local/bin/run.sh'), [[0, 25]], 'a script is read whole');
    assert.deepEqual(
      byFile.get('/opt/app/bin/app'),
      [
        [0, 0x1000],
        [0x3000, 0x800],
      ],
      'headers+tables segment and the data segment, not the code',
    );
    assert.ok(!reads.includes('etc/big'));

    // ELF files up to the whole-file limit: fetched whole, after every file's loader ranges
    const all: FileRange[] = [];
    await startupRanges(bs, read, { argv: ['run.sh'], env: ['PATH=/usr/local/bin:/usr/bin'] }, (r) => all.push(...r), undefined, 0x3800);
    const loaderPart = all.slice(0, got.length);
    assert.deepEqual(loaderPart, got, 'the loader ranges come first, as without the limit');
    assert.deepEqual(
      all.slice(got.length).map((r) => [r.path, r.offset, r.length]),
      [
        ['/usr/bin/env', 0, 0x3800],
        ['/opt/app/bin/app', 0, 0x3800],
        ['/lib/x86_64-linux-gnu/ld-2.36.so', 0, 0x3800],
        ['/lib/x86_64-linux-gnu/libc.so.6', 0, 0x3800],
      ],
      'each ELF file up to the limit whole, in the order found; libapp.so (0x4800) and the script are not',
    );
    const st: FileRange[] = [];
    await startupRanges(bs, read, { argv: ['/usr/bin/static'] }, (r) => st.push(...r), undefined, 0x3800);
    assert.deepEqual(
      st.map((r) => [r.path, r.offset, r.length]),
      [
        ['/usr/bin/static', 0, 0x1000],
        ['/usr/bin/static', 0x3000, 0x800],
      ],
      'a static binary (no PT_DYNAMIC): its loader ranges, never whole',
    );

    // no command, an unknown command, a directory: nothing, no error
    assert.equal(await startupRanges(bs, read, { argv: ['nope'] }, () => assert.fail('no ranges')), 0);
    assert.equal(await startupRanges(bs, read, { argv: ['/usr'] }, () => assert.fail('no ranges')), 0);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
