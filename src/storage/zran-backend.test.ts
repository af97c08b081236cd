import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { FerryError } from '../core/index.js';
import { GzipIndexer, contextsOf, type ZranBlob, type ZranChunk } from '../format/zran/index.js';
import { LocalFsBackend, StorageDevice, ZranBackend, type Backend, type DeviceBlob, type DeviceChunk } from './index.js';

function sample(size: number): Buffer {
  const out = Buffer.alloc(size);
  let x = 99;
  for (let i = 0; i < size; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    out[i] = (x >>> 9) % 5 === 0 ? (x >>> 17) & 0xff : 65 + ((x >>> 12) % 20);
  }
  return out;
}

const LAYER = sample(2 << 20);
const GZ = gzipSync(LAYER);
const LAYER_HEX = createHash('sha256').update(GZ).digest('hex');
const SIZE = 40_000;

/** A blob whose chunks are pieces of the layer, in another order than the layer's (as after dedup/merge). */
function fixture(): { zran: ZranBlob; blob: DeviceBlob; expect: Buffer } {
  const ix = new GzipIndexer(128 * 1024, () => {});
  ix.push(GZ);
  const gz = ix.finish();
  const contexts = contextsOf(gz.checkpoints, gz.compressedSize, gz.uncompressedSize);
  const n = 30;
  const chunks: ZranChunk[] = [];
  const dev: DeviceChunk[] = [];
  const parts: Buffer[] = [];
  for (let i = 0; i < n; i++) {
    const at = ((i * 7919) % n) * 65_000 + 333;
    const data = LAYER.subarray(at, at + SIZE);
    const context = contexts.findLastIndex((c) => c.outOffset <= at);
    chunks.push({ offset: i * SIZE, size: SIZE, context, contextOffset: at - contexts[context]!.outOffset });
    dev.push({
      chunkIndex: i,
      compressedOffset: i * SIZE,
      compressedSize: SIZE,
      uncompressedOffset: i * 40_960,
      uncompressedSize: SIZE,
      compressed: false,
      digest: createHash('sha256').update(data).digest(),
    });
    parts.push(data);
  }
  const blobId = 'e'.repeat(64);
  const zran: ZranBlob = {
    blobId,
    layerDigest: `sha256:${LAYER_HEX}`,
    compressedSize: gz.compressedSize,
    uncompressedSize: gz.uncompressedSize,
    contexts,
    chunks,
  };
  const blob: DeviceBlob = {
    blobId,
    uncompressedSize: n * 40_960,
    chunkCount: n,
    chunks: dev,
    codec: { compressor: 'none', digester: 'sha256' },
  };
  return { zran, blob, expect: Buffer.concat(parts) };
}

class Counting implements Backend {
  readonly kind = 'counting';
  bytes = 0;
  constructor(private readonly inner: Backend) {}
  async read(id: string, off: number, len: number, signal: AbortSignal): Promise<Buffer> {
    const b = await this.inner.read(id, off, len, signal);
    this.bytes += b.length;
    return b;
  }
  fallbacks(): number {
    return 0;
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}

async function withDevice(
  zran: ZranBlob,
  blob: DeviceBlob,
  fn: (dev: StorageDevice, be: Counting, z: ZranBackend) => Promise<void>,
): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'ferry-zran-'));
  writeFileSync(join(dir, LAYER_HEX), GZ);
  const be = new Counting(new LocalFsBackend(dir));
  const z = new ZranBackend(be, [zran]);
  const dev = await StorageDevice.open({ blobs: [blob], backend: z, cacheDir: join(dir, 'cache'), decodeThreads: 0 });
  try {
    await fn(dev, be, z);
  } finally {
    await dev.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

test('chunks of a zran blob are read out of the gzip layer by range, verified and cached', async () => {
  const { zran, blob, expect } = fixture();
  await withDevice(zran, blob, async (dev, be, z) => {
    const c = blob.chunks[17]!;
    const one = await dev.read(blob.blobId, c.uncompressedOffset + 100, 5000);
    assert.ok(one.equals(expect.subarray(17 * SIZE + 100, 17 * SIZE + 5100)));
    assert.ok(be.bytes > 0 && be.bytes < GZ.length / 3, `one chunk read ${be.bytes} of ${GZ.length} compressed bytes`);
    assert.equal(z.layerBytes, be.bytes);
    for (const ch of blob.chunks) {
      const got = await dev.read(blob.blobId, ch.uncompressedOffset, SIZE);
      assert.ok(got.equals(expect.subarray(ch.chunkIndex * SIZE, (ch.chunkIndex + 1) * SIZE)), `chunk ${ch.chunkIndex}`);
    }
    const before = be.bytes;
    await dev.read(blob.blobId, 0, 40_000);
    assert.equal(be.bytes, before, 'cached chunks are not read again');
  });
});

test('a damaged index (window, offset, bit count) is caught by the chunk digest: the read fails, nothing wrong is served', async () => {
  const damage: Array<(z: ZranBlob) => void> = [
    (z) => {
      for (const c of z.contexts) if (c.window.length) c.window = Buffer.alloc(c.window.length, 0x41);
    },
    (z) => {
      for (const c of z.chunks) c.contextOffset += 1;
    },
    (z) => {
      for (const c of z.contexts) c.bits = (c.bits + 3) % 8;
    },
  ];
  for (const [i, hurt] of damage.entries()) {
    const { zran, blob } = fixture();
    hurt(zran);
    await withDevice(zran, blob, async (dev) => {
      // the chunk nearest after a checkpoint (its first bytes are inflated from that checkpoint's window)
      const near = zran.chunks.filter((x) => zran.contexts[x.context]!.outOffset > 0).sort((x, y) => x.contextOffset - y.contextOffset)[0]!;
      const c = blob.chunks[near.offset / SIZE]!;
      await assert.rejects(dev.read(blob.blobId, c.uncompressedOffset, 1000), (err: unknown) => {
        assert.ok(FerryError.hasCode(err, 'DATA_LOSS'), `damage ${i}: ${(err as Error).message}`);
        return true;
      });
    });
  }
});

test('blobs without an index go to the inner backend unchanged', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ferry-zran-'));
  try {
    writeFileSync(join(dir, 'f'.repeat(64)), Buffer.from('plain blob bytes'));
    const z = new ZranBackend(new LocalFsBackend(dir), []);
    assert.equal((await z.read('f'.repeat(64), 6, 4, AbortSignal.timeout(5000))).toString(), 'blob');
    await z.close();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
