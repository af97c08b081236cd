import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import {
  blobDigestOfUrl,
  filterUrl,
  formatTaskRange,
  parseRangeHeader,
  parseTaskRange,
  pieceCount,
  pieceDigest,
  pieceLengthFor,
  pieceLengthForRange,
  pieceRange,
  piecesForRange,
  taskId,
} from './idgen.js';
import { HashRing } from './hashring.js';
import { TokenBucket } from '../../core/index.js';
import { FakeClock } from '../../../test/support/clock.js';

const MiB = 1024 * 1024;

test('task id: Dragonfly published test vectors', () => {
  assert.equal(
    taskId({ url: 'https://example.com', pieceLength: 1024, tag: 'foo', application: 'bar', contentForTaskId: undefined }),
    createHash('sha256').update('https://example.comfoobar1024STANDARD').digest('hex'),
  );
  assert.equal(
    taskId({ url: 'https://example.com', tag: 'foo', application: 'bar' }),
    '06408fbf247ddaca478f8cb9565fe5591c28efd0994b8fea80a6a87d3203c5ca',
  );
  assert.equal(
    taskId({ url: 'https://example.com', pieceLength: 1024 }),
    '9f7c9aafbc6f30f8f41a96ca77eeae80c5b60964b3034b0ee43ccf7b2f9e52b8',
  );
  assert.equal(
    taskId({ url: 'https://example.com?foo=foo&bar=bar', filteredQueryParams: ['foo', 'bar'] }),
    '457b4328cde278e422c9e243f7bfd1e97f511fec43a80f535cf6b0ef6b086776',
  );
  assert.equal(
    taskId({ url: 'https://x', contentForTaskId: 'This is a test file' }),
    'e2d0fe1585a63ec6009c8016ff8dda8b17719a637405a4e23c0ff81339148249',
  );
  const hex = '1234567890abcdef'.repeat(4);
  assert.equal(taskId({ url: `https://registry.example.com/v2/myorg/myrepo/blobs/sha256:${hex}`, blobDigest: true }), hex);
  // without blob-digest mode the same URL hashes normally
  assert.notEqual(taskId({ url: `https://registry.example.com/v2/myorg/myrepo/blobs/sha256:${hex}` }), hex);
});

test('task id: revision vector (revision concatenates after application)', () => {
  // The published vector with revision v1.0 is sha256("https://example.comfoobarv1.01024STANDARD"); we have no
  // revision input, so check the concatenation rule with our own inputs instead.
  assert.equal(
    taskId({ url: 'https://example.com', tag: 'foo', application: 'barv1.0', pieceLength: 1024 }),
    '5844f27a257287e9b734256bb25603d8005422ced8c0377f15063ec11963b25f',
  );
});

test('range task ids: the normalized range is hashed after the URL; whole-object ids are unchanged', () => {
  const url = `https://r.example/v2/a/blobs/sha256:${'ab'.repeat(32)}`;
  const sha = (x: string): string => createHash('sha256').update(x).digest('hex');
  // Absent range = Dragonfly's STANDARD id, byte for byte.
  assert.equal(taskId({ url, range: undefined }), taskId({ url }));
  assert.equal(
    taskId({ url: 'https://example.com', tag: 'foo', application: 'bar', range: undefined }),
    '06408fbf247ddaca478f8cb9565fe5591c28efd0994b8fea80a6a87d3203c5ca',
  );
  // URL ‖ bytes=<start>-<end> ‖ tag ‖ application ‖ [piece length] ‖ STANDARD
  assert.equal(taskId({ url, range: '0-99' }), sha(`${url}bytes=0-99STANDARD`));
  assert.equal(
    taskId({ url: 'https://example.com', tag: 'foo', application: 'bar', pieceLength: 4194304, range: '5-9' }),
    sha('https://example.combytes=5-9foobar4194304STANDARD'),
  );
  assert.equal(taskId({ url: `${url}?ns=r.example`, range: '0-99' }), taskId({ url, range: '0-99' }), 'filtered like whole-object ids');
  // Every range is its own task, distinct from the whole object.
  const ids = new Set([taskId({ url }), taskId({ url, range: '0-99' }), taskId({ url, range: '0-98' }), taskId({ url, range: '1-99' })]);
  assert.equal(ids.size, 4);
  // The bytes= separator keeps URL and range apart.
  assert.notEqual(taskId({ url: 'http://h/a1', range: '0-50' }), taskId({ url: 'http://h/a', range: '10-50' }));
  // Blob-digest and content modes stay range-specific.
  const hex = 'ab'.repeat(32);
  assert.equal(taskId({ url, blobDigest: true }), hex);
  assert.equal(taskId({ url, blobDigest: true, range: '0-99' }), sha(`${hex}bytes=0-99`));
  assert.equal(
    taskId({ url: `https://other.example/v2/b/blobs/sha256:${hex}`, blobDigest: true, range: '0-99' }),
    taskId({ url, blobDigest: true, range: '0-99' }),
    'the same range of the same layer from two registries is one task',
  );
  assert.equal(taskId({ url, contentForTaskId: 'x', range: '3-4' }), sha('xbytes=3-4'));
  // Only normalized ranges are accepted.
  for (const bad of ['', '5', '5-', '-5', '01-5', '5-3', 'bytes=0-1', '0-1,2-3', ' 0-1'])
    assert.throws(() => taskId({ url, range: bad }), /invalid task range/, bad);
});

test('task range normalization and range-task piece length', () => {
  assert.equal(formatTaskRange({ start: 0, end: 0 }), '0-0');
  assert.equal(formatTaskRange(parseRangeHeader('bytes=-10', 100)!), '90-99');
  assert.equal(formatTaskRange(parseRangeHeader('bytes=95-', 100)!), '95-99');
  assert.equal(formatTaskRange(parseRangeHeader('bytes=95-1000', 100)!), '95-99');
  assert.deepEqual(parseTaskRange('4194300-4210683'), { start: 4194300, end: 4210683 });
  assert.throws(() => parseTaskRange('9-8'));
  // ≤ 4 MiB: one piece of exactly the range; larger: pieceLengthFor(range length).
  assert.equal(pieceLengthForRange(1), 1);
  assert.equal(pieceLengthForRange(16 * 1024), 16 * 1024);
  assert.equal(pieceLengthForRange(4 * MiB), 4 * MiB);
  assert.equal(pieceCount(4 * MiB + 1, pieceLengthForRange(4 * MiB + 1)), 2);
  assert.equal(pieceLengthForRange(64 * MiB), 4 * MiB);
  assert.equal(pieceLengthForRange(3000 * MiB), 8 * MiB);
  assert.throws(() => pieceLengthForRange(0));
});

test('URL filtering: default list drops signatures and containerd ns, keeps others, strips lone slash', () => {
  assert.equal(filterUrl('https://r.example/v2/a/blobs/sha256:00?ns=docker.io'), 'https://r.example/v2/a/blobs/sha256:00');
  assert.equal(filterUrl('https://s3.example/b?X-Amz-Signature=abc&keep=1&Expires=5'), 'https://s3.example/b?keep=1');
  assert.equal(filterUrl('https://example.com/'), 'https://example.com');
  assert.equal(filterUrl('https://example.com/?a=b%20c'), 'https://example.com/?a=b+c');
  const a = taskId({ url: 'http://127.0.0.1:5000/v2/x/blobs/sha256:aa?ns=127.0.0.1:5000' });
  const b = taskId({ url: 'http://127.0.0.1:5000/v2/x/blobs/sha256:aa' });
  assert.equal(a, b, 'mirror-mode ns must not change the task id (preheat must match runtime)');
  assert.throws(() => filterUrl('not a url'), /invalid URL/);
});

test('blob digest extraction', () => {
  const hex = 'ab'.repeat(32);
  assert.equal(blobDigestOfUrl(`http://h/v2/a/b/blobs/sha256:${hex}?x=1`), `sha256:${hex}`);
  assert.equal(blobDigestOfUrl(`http://h/v2/a/manifests/sha256:${hex}`), undefined);
  assert.equal(blobDigestOfUrl('http://h/v2/a/blobs/sha256:short'), undefined);
});

test('piece length from content length: clamp(nextPow2(len/500), 4 MiB, 64 MiB)', () => {
  assert.equal(pieceLengthFor(0), 4 * MiB);
  assert.equal(pieceLengthFor(64 * MiB), 4 * MiB);
  assert.equal(pieceLengthFor(2000 * MiB), 4 * MiB);
  assert.equal(pieceLengthFor(2001 * MiB), 8 * MiB);
  assert.equal(pieceLengthFor(4000 * MiB), 8 * MiB);
  assert.equal(pieceLengthFor(8000 * MiB), 16 * MiB);
  assert.equal(pieceLengthFor(16000 * MiB), 32 * MiB);
  assert.equal(pieceLengthFor(100_000 * MiB), 64 * MiB);
  assert.throws(() => pieceLengthFor(-1));
  assert.equal(pieceCount(64 * MiB + 1, 4 * MiB), 17);
  assert.deepEqual(pieceRange(16, 64 * MiB + 1, 4 * MiB), { offset: 64 * MiB, length: 1 });
  assert.throws(() => pieceRange(17, 64 * MiB + 1, 4 * MiB));
  assert.deepEqual(piecesForRange(4 * MiB - 1, 8 * MiB, 4 * MiB), [0, 1, 2]);
});

test('piece digest is crc32 (IEEE) in decimal', () => {
  assert.equal(pieceDigest(Buffer.from('hello world')), 'crc32:222957957');
  assert.equal(pieceDigest(Buffer.alloc(0)), 'crc32:0');
});

test('range header parsing', () => {
  assert.deepEqual(parseRangeHeader('bytes=0-9', 100), { start: 0, end: 9 });
  assert.deepEqual(parseRangeHeader('bytes=90-', 100), { start: 90, end: 99 });
  assert.deepEqual(parseRangeHeader('bytes=-10', 100), { start: 90, end: 99 });
  assert.deepEqual(parseRangeHeader('bytes=50-500', 100), { start: 50, end: 99 });
  assert.equal(parseRangeHeader(undefined, 100), undefined);
  assert.throws(() => parseRangeHeader('bytes=100-', 100));
  assert.throws(() => parseRangeHeader('bytes=0-1,5-6', 100));
});

test('hash ring: stable owner, fail-over order, minimal movement', () => {
  const ring = new HashRing<string>(['http://a', 'http://b', 'http://c']);
  const keys = Array.from({ length: 300 }, (_, i) => `task-${i}`);
  const before = keys.map((k) => ring.get(k));
  const counts = new Map<string, number>();
  for (const o of before) counts.set(o!, (counts.get(o!) ?? 0) + 1);
  for (const n of ['http://a', 'http://b', 'http://c']) assert.ok((counts.get(n) ?? 0) > 50, `balanced: ${n} ${counts.get(n)}`);
  assert.deepEqual(new Set(ring.walk('task-1')), new Set(['http://a', 'http://b', 'http://c']));
  ring.add('http://d');
  const after = keys.map((k) => ring.get(k));
  const moved = keys.filter((_, i) => before[i] !== after[i]);
  assert.ok(
    moved.every((_, i) => after[keys.indexOf(moved[i]!)] === 'http://d'),
    'keys only move to the new node',
  );
  assert.ok(moved.length < 150);
  assert.equal(new HashRing([]).get('x'), undefined);
});

test('token bucket limits throughput', async () => {
  const clock = new FakeClock();
  const b = new TokenBucket(4 * MiB, 256 * 1024, clock);
  const t0 = clock.now();
  // 2 MiB at 4 MiB/s with a 256 KiB burst: the first take is the burst, each further 256 KiB waits 62.5 ms
  const takes = Promise.all(Array.from({ length: 8 }, () => b.take(256 * 1024)));
  await clock.runUntil(takes);
  assert.deepEqual(
    clock.history.map((t) => t.ms),
    Array(7).fill(63),
    'one pause per take after the burst (62.5 ms, rounded up)',
  );
  assert.equal(clock.now() - t0, 7 * 63);
  // a bucket that refilled while idle lends its burst at once
  await clock.advance(1000);
  await clock.runUntil(b.take(256 * 1024));
  assert.equal(clock.history.length, 7, 'no pause');
  // unlimited: never waits
  const u = new TokenBucket(0, undefined, clock);
  await u.take(1e9);
  assert.equal(clock.history.length, 7);
});
