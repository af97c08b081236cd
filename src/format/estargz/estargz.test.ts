import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { gunzipSync, gzipSync } from 'node:zlib';
import { readLayer, type TarEntry } from '../tar/index.js';
import {
  EstargzWriter,
  FOOTER_SIZE,
  NO_PREFETCH_LANDMARK,
  PREFETCH_LANDMARK,
  TOC_TAR_NAME,
  encodeFooter,
  landmarkEntry,
  orderEntries,
  parseFooter,
  parseToc,
  type EstargzResult,
} from './index.js';

const sha = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;

function e(path: string, type: TarEntry['type'], extra: Partial<TarEntry> = {}): TarEntry {
  return { path, type, mode: type === 'dir' ? 0o755 : 0o644, uid: 0, gid: 0, mtime: 1700000000, size: 0, xattrs: {}, ...extra };
}

async function readAll(blob: Buffer): Promise<Array<{ entry: TarEntry; data: Buffer }>> {
  const out: Array<{ entry: TarEntry; data: Buffer }> = [];
  for await (const { entry, body } of readLayer(Readable.from([blob]))) {
    const parts: Buffer[] = [];
    for await (const c of body) parts.push(c as Buffer);
    out.push({ entry, data: Buffer.concat(parts) });
  }
  return out;
}

async function build(
  items: Array<{ entry: TarEntry; data?: Buffer }>,
  o: { chunkSize?: number } = {},
): Promise<{ blob: Buffer; res: EstargzResult }> {
  const parts: Buffer[] = [];
  const w = new EstargzWriter(async (b) => void parts.push(b), { ...o, level: 6 });
  const lm = landmarkEntry(false);
  await w.append(lm.entry, async (off, len) => lm.body.subarray(off, off + len));
  for (const it of items) await w.append(it.entry, it.data ? async (off, len) => it.data!.subarray(off, off + len) : undefined);
  const res = await w.finish();
  return { blob: Buffer.concat(parts), res };
}

const big = Buffer.from(Array.from({ length: 5000 }, (_, i) => i % 251));
const items = [
  { entry: e('', 'dir') },
  { entry: e('bin', 'dir') },
  { entry: e('bin/tool', 'file', { size: big.length, mode: 0o4755, uid: 1000, gid: 1000, uname: 'u', gname: 'g' }), data: big },
  { entry: e('bin/empty', 'file') },
  { entry: e('bin/small', 'file', { size: 5, xattrs: { 'user.k': Buffer.from([0, 1, 255]) } }), data: Buffer.from('hello') },
  { entry: e('bin/link', 'symlink', { linkname: 'tool', mode: 0o777 }) },
  { entry: e('bin/hard', 'hardlink', { linkname: 'bin/tool' }) },
  { entry: e('dev', 'dir') },
  { entry: e('dev/null', 'char', { devmajor: 1, devminor: 3 }) },
  { entry: e('dev/fifo', 'fifo') },
  { entry: e('.wh.gone', 'file') },
];

test('eStargz: one gzip stream whose tar holds the source entries, the landmark, then the TOC', async () => {
  const { blob, res } = await build(items, { chunkSize: 2048 });
  assert.equal(res.size, blob.length);
  const tar = gunzipSync(blob); // every member + the footer: one valid gzip stream
  assert.equal(res.uncompressedSize, tar.length);
  assert.equal(res.diffId, sha(tar));
  const got = await readAll(blob);
  assert.deepEqual(
    got.map((x) => x.entry.path),
    [NO_PREFETCH_LANDMARK, ...items.map((i) => i.entry.path), TOC_TAR_NAME],
  );
  for (const [k, it] of items.entries()) {
    const g = got[k + 1]!;
    const norm = (x: TarEntry): TarEntry =>
      JSON.parse(JSON.stringify({ ...x, xattrs: Object.entries(x.xattrs).map(([k, v]) => [k, [...v]]) }));
    assert.deepEqual(norm(g.entry), norm(it.entry), it.entry.path);
    assert.deepEqual(g.data, it.data ?? Buffer.alloc(0), it.entry.path);
  }
  assert.deepEqual(got[0]!.data, Buffer.from([0x0f]));
});

test('eStargz: footer holds the TOC offset; the TOC member holds the TOC whose sha256 is the TOC digest', async () => {
  const { blob, res } = await build(items, { chunkSize: 2048 });
  const footer = blob.subarray(blob.length - FOOTER_SIZE);
  assert.equal(parseFooter(footer), res.tocOffset);
  const tocTar = await readAll(gzipSync(gunzipSync(blob.subarray(res.tocOffset, blob.length - FOOTER_SIZE))));
  assert.deepEqual(
    tocTar.map((x) => x.entry.path),
    [TOC_TAR_NAME],
  );
  assert.equal(sha(tocTar[0]!.data), res.tocDigest);
  assert.deepEqual(parseToc(tocTar[0]!.data), res.toc);
  // fields as upstream names them
  const tool = res.toc.entries.find((x) => x.name === 'bin/tool' && x.type === 'reg')!;
  assert.equal(tool.mode, 0o4755);
  assert.equal(tool.size, big.length);
  assert.equal(tool.modtime, '2023-11-14T22:13:20Z');
  assert.equal(tool.userName, 'u');
  assert.equal(tool.digest, sha(big));
  assert.equal(res.toc.entries.find((x) => x.name === 'bin/hard')!.linkName, 'bin/tool');
  assert.equal(res.toc.entries.find((x) => x.name === 'dev/null')!.devMinor, 3);
  assert.deepEqual(res.toc.entries.find((x) => x.name === 'bin/small')!.xattrs, { 'user.k': Buffer.from([0, 1, 255]).toString('base64') });
});

test('eStargz: every payload entry points at a gzip member starting with its bytes; big files are chunked', async () => {
  const { blob, res } = await build(items, { chunkSize: 2048 });
  const data = res.toc.entries.filter((x) => x.offset !== undefined);
  const chunks = res.toc.entries.filter((x) => x.name === 'bin/tool');
  assert.deepEqual(
    chunks.map((c) => [c.type, c.chunkOffset ?? 0, c.chunkSize ?? 0]),
    [
      ['reg', 0, 2048],
      ['chunk', 2048, 2048],
      ['chunk', 4096, 0],
    ],
  );
  for (const [i, ent] of data.entries()) {
    const next = data[i + 1]?.offset ?? res.tocOffset;
    assert.deepEqual([...blob.subarray(ent.offset!, ent.offset! + 3)], [0x1f, 0x8b, 0x08], `${ent.name} at ${ent.offset}`);
    const plain = gunzipSync(blob.subarray(ent.offset!, next));
    const size = ent.chunkSize ?? (ent.type === 'reg' ? ent.size! : big.length - ent.chunkOffset!);
    assert.equal(sha(plain.subarray(0, size)), ent.chunkDigest, `${ent.name} chunk at ${ent.chunkOffset ?? 0}`);
  }
  assert.equal(data.length, 5); // landmark, 3 chunks, small — the empty file has no payload
});

test('eStargz footer: 51 bytes, round trip, and a clear error for anything else', () => {
  const f = encodeFooter(0x1234_5678_9a);
  assert.equal(f.length, 51);
  assert.equal(gunzipSync(f).length, 0);
  assert.equal(parseFooter(f), 0x1234_5678_9a);
  const bad = Buffer.from(f);
  bad[12] = 0x45; // subfield id
  assert.throws(() => parseFooter(bad), /subfield "EG", not "SG"/);
  assert.throws(() => parseFooter(f.subarray(1)), /50 bytes, not 51/);
  assert.throws(() => parseToc(Buffer.from('{"version":2,"entries":[]}')), /unsupported 2/);
});

test('eStargz order: prioritized files first with their parents and hardlink targets; missing ones reported', () => {
  const ents = [
    { path: '' },
    { path: 'a' },
    { path: 'a/x' },
    { path: 'b' },
    { path: 'b/y' },
    { path: 'c' },
    { path: 'c/h', hardlink: 'a/x' },
    { path: 'b/y' },
  ];
  const o = orderEntries(ents, ['/c/h', 'b/y', 'nope']);
  assert.deepEqual(o.order, [0, 5, 1, 2, 6, 3, 4, 7]);
  assert.equal(o.prioritized, 8);
  assert.deepEqual(o.missed, ['nope']);
  const none = orderEntries(ents, []);
  assert.deepEqual(none.order, [0, 1, 2, 3, 4, 5, 6, 7]);
  assert.equal(none.prioritized, 0);
  assert.equal(landmarkEntry(true).entry.path, PREFETCH_LANDMARK);
});
