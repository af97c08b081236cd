import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FakeClock } from '../../test/support/clock.js';
import { makeBlob } from '../../test/support/storage-blobs.js';
import { silentLogger } from '../observe/index.js';
import { LocalFsBackend, StorageDevice, type Backend, type DeviceChunk, type ReadProgress } from '../storage/index.js';
import { BackgroundFill, fillRate, type FillDevice } from './fill.js';

const KiB = 1024;

test('fillRate: the idle rate while it meets the deadline, raised when it would not, unlimited once late', () => {
  const now = 1_000_000;
  // 1 MiB in 60 s needs ~17 KiB/s: the idle 100 KiB/s is enough
  assert.equal(fillRate({ remainingBytes: 1024 * KiB, now, deadline: now + 60_000, idleRate: 100 * KiB }), 100 * KiB);
  // 10 MiB in 10 s needs 1 MiB/s: raised
  assert.equal(fillRate({ remainingBytes: 10 * 1024 * KiB, now, deadline: now + 10_000, idleRate: 100 * KiB }), 1024 * KiB);
  assert.equal(fillRate({ remainingBytes: 1, now, deadline: now, idleRate: 100 * KiB }), 0, 'deadline passed: unlimited');
  assert.equal(fillRate({ remainingBytes: 1, now, deadline: now + 1000, idleRate: 0 }), 0, 'no idle rate: unlimited');
});

/** A device of `n` chunks of `size` compressed bytes in one blob; prefetch caches them unless `down`. */
function fakeDevice(n: number, size: number): FillDevice & { down: boolean; requests: number; cached: Set<number>; lastRead: number } {
  const chunks: DeviceChunk[] = Array.from({ length: n }, (_, i) => ({
    chunkIndex: i,
    compressedOffset: i * size,
    compressedSize: size,
    uncompressedOffset: i * size,
    uncompressedSize: size,
    compressed: false,
    digest: Buffer.alloc(0),
  }));
  const cached = new Set<number>();
  let pending = Promise.resolve();
  const dev = {
    down: false,
    requests: 0,
    cached,
    cacheView: () => [{ blobId: 'b', chunks, cached: (i: number) => cached.has(i) }],
    prefetch(sel: Array<{ blobId: string; chunks: DeviceChunk[] }>) {
      dev.requests++;
      pending = Promise.resolve().then(() => {
        if (!dev.down) for (const s of sel) for (const c of s.chunks) cached.add(c.chunkIndex);
      });
    },
    prefetchIdle: () => pending,
    lastRead: 0,
    lastReadAt: () => dev.lastRead,
  };
  return dev;
}

test('fill at the idle rate: one batch per second at 100 KiB/s, status with progress and ETA, done', async () => {
  const clock = new FakeClock();
  const dev = fakeDevice(10, 100 * KiB);
  dev.cached.add(3); // read on demand before the fill: not fetched again
  const fill = new BackgroundFill({ device: dev, clock, deadlineMs: 600_000, rate: 100 * KiB, batchBytes: 100 * KiB, log: silentLogger() });
  const t0 = clock.now();
  fill.start();
  await clock.advance(0);
  assert.equal(fill.status().totalBytes, 1000 * KiB);
  await clock.advance(4000);
  const mid = fill.status();
  assert.equal(mid.state, 'filling');
  assert.equal(mid.filledBytes, 600 * KiB, 'the burst, one batch per second for 4 s, and the chunk read before');
  assert.equal(mid.rateBytesPerSecond, 100 * KiB);
  assert.equal(mid.etaSeconds, 4);
  assert.equal(mid.deadline, new Date(t0 + 600_000).toISOString());
  await clock.runUntil(fill.finished());
  const end = fill.status();
  assert.equal(end.state, 'done');
  assert.equal(end.percent, 100);
  assert.equal(end.etaSeconds, 0);
  assert.equal(clock.now() - t0, 8000, '9 batches: the first from the burst, then one per second');
  assert.equal(dev.requests, 9);
});

test('a deadline the idle rate cannot meet raises the rate: 2 MiB at an idle 10 KiB/s is done within 20 s', async () => {
  const clock = new FakeClock();
  const dev = fakeDevice(20, 100 * KiB);
  const fill = new BackgroundFill({ device: dev, clock, deadlineMs: 20_000, rate: 10 * KiB, batchBytes: 100 * KiB, log: silentLogger() });
  const t0 = clock.now();
  fill.start();
  await clock.advance(0);
  const r = fill.status().rateBytesPerSecond;
  assert.ok(r >= 90 * KiB && r <= 100 * KiB, `the ~1900 KiB left over 20 s, not the idle 10 KiB/s: ${r}`);
  await clock.runUntil(fill.finished());
  assert.equal(fill.status().state, 'done');
  assert.ok(clock.now() - t0 <= 20_000, `done after ${clock.now() - t0} ms`);
  assert.ok(clock.now() - t0 >= 15_000, `not faster than the deadline needs (${clock.now() - t0} ms)`);
});

test('a backend that fetches nothing: retried with a doubling backoff, done once it is back', async () => {
  const clock = new FakeClock();
  const dev = fakeDevice(4, 100 * KiB);
  dev.down = true;
  const fill = new BackgroundFill({ device: dev, clock, deadlineMs: 600_000, rate: 0, batchBytes: 100 * KiB, log: silentLogger() });
  fill.start();
  await clock.advance(0);
  assert.equal(fill.status().state, 'retrying');
  await clock.advance(1000 + 2000 + 4000);
  assert.equal(dev.requests, 4, 'one try, then after 1 s, 2 s and 4 s');
  assert.equal(fill.status().filledBytes, 0);
  dev.down = false;
  await clock.runUntil(fill.finished());
  assert.equal(fill.status().state, 'done');
  assert.equal(dev.cached.size, 4);
});

test('close stops a fill waiting on its backoff', async () => {
  const clock = new FakeClock();
  const dev = fakeDevice(4, 100 * KiB);
  dev.down = true;
  const fill = new BackgroundFill({ device: dev, clock, deadlineMs: 600_000, rate: 0, log: silentLogger() });
  fill.start();
  await clock.advance(0);
  await fill.close();
  assert.equal(fill.status().state, 'stopped');
});

/** A local backend whose first request waits for `release()`: an on-demand read held in flight. */
class HeldBackend implements Backend {
  readonly kind = 'held';
  calls = 0;
  private open!: () => void;
  private readonly gate = new Promise<void>((r) => {
    this.open = r;
  });
  constructor(private readonly inner: Backend) {}
  release(): void {
    this.open();
  }
  async read(id: string, off: number, len: number, signal: AbortSignal, progress?: ReadProgress): Promise<Buffer> {
    if (this.calls++ === 0) await this.gate;
    return this.inner.read(id, off, len, signal, progress);
  }
  fallbacks(): number {
    return 0;
  }
  async close(): Promise<void> {
    await this.inner.close();
  }
}

test('a real device: the fill sends nothing while an on-demand read is in flight, then fills every chunk with the right bytes', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'ferry-fill-'));
  const clock = new FakeClock();
  try {
    const { id, bytes, blob, view } = makeBlob(8);
    await writeFile(join(dir, id), bytes);
    const backend = new HeldBackend(new LocalFsBackend(dir));
    const dev = await StorageDevice.open({ blobs: [blob], backend, cacheDir: join(dir, 'cache'), amplifyBytes: 0, missWindow: 0, clock });
    const read = dev.read(id, 0, 4096);
    const fill = new BackgroundFill({ device: dev, clock, deadlineMs: 60_000, rate: 0, log: silentLogger() });
    fill.start();
    for (let i = 0; i < 20; i++) await clock.advance(50);
    assert.equal(backend.calls, 1, 'only the on-demand read went out; the fill waits behind it');
    assert.equal(fill.status().filledBytes, 0);
    backend.release();
    assert.deepEqual(await read, view.subarray(0, 4096));
    await clock.runUntil(fill.finished(), { maxStepMs: 1000 });
    const st = fill.status();
    assert.equal(st.state, 'done');
    assert.equal(st.filledBytes, bytes.length);
    assert.equal(dev.chunksCached(), 8);
    const calls = backend.calls;
    assert.deepEqual(await dev.read(id, 0, view.length), view);
    assert.equal(backend.calls, calls, 'everything is read from the cache');
    await dev.close();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('a batch waits for 200 ms without reads', async () => {
  const clock = new FakeClock();
  const dev = fakeDevice(2, 100 * KiB);
  dev.lastRead = clock.now(); // a read just now
  const fill = new BackgroundFill({ device: dev, clock, deadlineMs: 600_000, rate: 0, log: silentLogger() });
  const t0 = clock.now();
  fill.start();
  await clock.advance(150);
  dev.lastRead = clock.now(); // another read before the quiet period ended
  await clock.advance(100);
  assert.equal(dev.requests, 0, 'nothing sent while reads keep coming');
  await clock.runUntil(fill.finished());
  assert.equal(clock.now() - t0, 350, 'sent 200 ms after the last read');
  assert.equal(dev.requests, 1);
});
