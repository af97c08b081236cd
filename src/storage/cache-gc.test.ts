import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync, readFileSync, statSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FakeClock } from '../../test/support/clock.js';
import { makeBlob } from '../../test/support/storage-blobs.js';
import { NodeCache, StorageDevice, LocalFsBackend, planEviction, type Backend, type CachedBlob, type ReadProgress } from './index.js';

const blob = (blobId: string, bytes: number, lastUsed: number, mounted: boolean): CachedBlob => ({
  blobId,
  dir: '/c',
  bytes,
  lastUsed,
  mounted,
});

test('cache gc policy: unused blobs go first (oldest first), then mounted ones least recently used, down to the low watermark', () => {
  const blobs = [blob('m-new', 400, 50, true), blob('u-new', 100, 40, false), blob('m-old', 300, 10, true), blob('u-old', 100, 5, false)];
  // 900 bytes, quota 1000: nothing to do unless unused blobs are collected on request
  assert.deepEqual(planEviction(blobs, 1000), { remove: [], empty: [], before: 900, after: 900 });
  const asked = planEviction(blobs, 1000, { collectUnused: true });
  assert.deepEqual(
    asked.remove.map((b) => b.blobId),
    ['u-old', 'u-new'],
  );
  assert.equal(asked.empty.length, 0, 'under quota: mounted blobs stay');
  // quota 700 → target 630: both unused (200) are not enough, the least recently used mounted one goes
  const p = planEviction(blobs, 700);
  assert.deepEqual(
    p.remove.map((b) => b.blobId),
    ['u-old', 'u-new'],
  );
  assert.deepEqual(
    p.empty.map((b) => b.blobId),
    ['m-old'],
  );
  assert.equal(p.after, 400);
  // quota 890 → target 801: the oldest unused one is enough
  assert.deepEqual(
    planEviction(blobs, 890).remove.map((b) => b.blobId),
    ['u-old'],
  );
  assert.equal(planEviction(blobs, 890).empty.length, 0);
  // no quota: only collection on request
  assert.equal(planEviction(blobs, 0).remove.length, 0);
});

class SlowBackend implements Backend {
  readonly kind = 'slow';
  calls = 0;
  gate: Promise<void> = Promise.resolve();
  constructor(private readonly inner: Backend) {}
  async read(id: string, off: number, len: number, signal: AbortSignal, progress?: ReadProgress): Promise<Buffer> {
    this.calls++;
    await this.gate;
    return this.inner.read(id, off, len, signal, progress);
  }
  fallbacks(): number {
    return 0;
  }
  async close(): Promise<void> {
    await this.inner.close();
  }
}

const onDisk = (p: string): number => statSync(p).blocks * 512;

test('node cache: over quota the least recently read blob of a mounted image is emptied (map cleared first) and refetched on read; unused blobs are deleted', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ferry-cachegc-'));
  const cacheDir = join(dir, 'cache');
  const clock = new FakeClock();
  try {
    const a = makeBlob(16);
    const b = makeBlob(12);
    const stale = makeBlob(8);
    for (const x of [a, b, stale]) writeFileSync(join(dir, x.id), x.bytes);
    const be = new SlowBackend(new LocalFsBackend(dir));
    // a blob a released image left behind
    const old = await StorageDevice.open({ blobs: [stale.blob], backend: new LocalFsBackend(dir), cacheDir, clock });
    await old.read(stale.id, 0, stale.view.length);
    await old.close();
    const dev = await StorageDevice.open({ blobs: [a.blob, b.blob], backend: be, cacheDir, clock, amplifyBytes: 0 });
    const users = [dev];
    const cache = new NodeCache({ quota: 0, dirs: () => [cacheDir], users: () => users });
    assert.ok((await dev.read(a.id, 0, a.view.length)).equals(a.view));
    await clock.advance(60_000);
    assert.ok((await dev.read(b.id, 0, b.view.length)).equals(b.view));
    const used = await cache.usedBytes();
    const aBytes = onDisk(join(cacheDir, `${a.id}.blob.data`));
    assert.ok(aBytes >= a.view.length - 8192, `blob a is on disk (${aBytes})`);

    // asked to collect: only the blob no mount uses goes
    const r0 = await cache.gc({ collectUnused: true });
    assert.equal(r0.removedBlobs, 1);
    assert.equal(r0.emptiedBlobs, 0);
    assert.ok(!existsSync(join(cacheDir, `${stale.id}.blob.data`)) && !existsSync(join(cacheDir, `${stale.id}.chunk_map`)));

    // a quota below what both mounted blobs take: a (read a minute before b) is emptied, b stays
    const both = await cache.usedBytes();
    assert.ok(both < used, 'the stale blob no longer counts');
    const tight = new NodeCache({ quota: both - Math.floor(aBytes / 2), dirs: () => [cacheDir], users: () => users });
    const r = await tight.gc();
    assert.equal(r.emptiedBlobs, 1, JSON.stringify(r));
    assert.ok(r.after <= tight.quota, `after ${r.after} <= quota ${tight.quota}`);
    assert.ok(onDisk(join(cacheDir, `${a.id}.blob.data`)) < 8192, 'a: bytes dropped');
    assert.ok(onDisk(join(cacheDir, `${b.id}.blob.data`)) >= b.view.length - 8192, 'b: kept');
    const map = readFileSync(join(cacheDir, `${a.id}.chunk_map`));
    assert.equal(map.readUInt32LE(12), 0, 'a: all_ready cleared');
    assert.ok(
      map.subarray(4096).every((x) => x === 0),
      'a: persisted ready bits cleared',
    );
    assert.equal(dev.chunksCached(), 12, 'only b is cached');

    // reading a again refetches it: correct bytes, backend asked again, counted as refetched
    const calls = be.calls;
    assert.ok((await dev.read(a.id, 1000, 100_000)).equals(a.view.subarray(1000, 101_000)));
    assert.ok(be.calls > calls, 'fetched from the backend again');
    assert.ok(tight.refetchedBytes() > 0);
    assert.ok((await dev.read(b.id, 0, b.view.length)).equals(b.view));
    assert.equal(be.calls - calls, 1, 'b read from the cache');
    await dev.close();
    assert.ok(tight.refetchedBytes() > 0, 'refetched bytes survive the device');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('node cache: a blob with a fetch in flight is passed over; a read arriving during an eviction waits for it and gets the right bytes', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ferry-cachegc-'));
  const cacheDir = join(dir, 'cache');
  try {
    const a = makeBlob(10);
    writeFileSync(join(dir, a.id), a.bytes);
    const be = new SlowBackend(new LocalFsBackend(dir));
    // no miss amplification: a read returns before what came along with it arrives (still in flight)
    const dev = await StorageDevice.open({ blobs: [a.blob], backend: be, cacheDir, amplifyBytes: 0, missWindow: 0 });
    await dev.read(a.id, 0, 70_000);
    const cache = new NodeCache({ quota: 1, dirs: () => [cacheDir], users: () => [dev] });
    // a fetch in flight: the blob is not touched this round
    let open!: () => void;
    be.gate = new Promise<void>((r) => {
      open = r;
    });
    const pending = dev.read(a.id, 300_000, 10_000);
    const busy = await cache.gc();
    assert.equal(busy.busyBlobs, 1);
    assert.equal(busy.emptiedBlobs, 0);
    open();
    assert.ok((await pending).equals(a.view.subarray(300_000, 310_000)));

    // held for eviction: a read waits, the cache is emptied, then the read fetches again
    let release!: () => void;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    assert.equal(dev.holdForEviction(a.id, gate), true);
    assert.equal(dev.holdForEviction(a.id, gate), false, 'already held');
    const calls = be.calls;
    const during = dev.read(a.id, 0, 70_000);
    await dev.emptyCache(a.id);
    assert.equal(dev.chunksCached(), 0);
    release();
    assert.ok((await during).equals(a.view.subarray(0, 70_000)));
    assert.ok(be.calls > calls, 'the read fetched the dropped chunks again');
    assert.ok((await dev.read(a.id, 0, a.view.length)).equals(a.view), 'and the cache holds them (not a hole behind a ready bit)');
    await dev.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
