import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Op } from '../fuse/index.js';
import { init } from './view-fast-path.js';

function readBody(offset: number, size: number): Buffer {
  const b = Buffer.alloc(40);
  b.writeBigUInt64LE(BigInt(offset), 8);
  b.writeUInt32LE(size, 16);
  return b;
}

test('view fast path: reads whose chunks are all ready come from the cache file; anything else goes on', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ferry-viewfp-'));
  try {
    // a 3-chunk view: [0, 8192) chunk 5, [8192, 12288) chunk 1, a hole, [16384, 20480) chunk 2
    const data = Buffer.alloc(20480);
    for (let i = 0; i < data.length; i++) data[i] = (i * 7) & 0xff;
    writeFileSync(join(dir, 'blob.data'), data);
    const bitmap = new SharedArrayBuffer(1);
    const bits = new Uint8Array(bitmap);
    const ready = (i: number): void => {
      bits[0] = bits[0]! | (0x80 >> i);
    };
    const triggers = new SharedArrayBuffer(1);
    const trig = new Uint8Array(triggers);
    const fast = init({
      blobs: [
        {
          blobId: 'b',
          size: data.length,
          dataPath: join(dir, 'blob.data'),
          bitmap,
          triggers,
          generation: new SharedArrayBuffer(4),
          starts: Float64Array.from([0, 8192, 16384]),
          ends: Float64Array.from([8192, 12288, 20480]),
          index: Uint32Array.from([5, 1, 2]),
        },
      ],
    });
    assert.equal(fast(Op.READ, 2, readBody(100, 50)), null, 'chunk 5 not ready');
    ready(5);
    const r = fast(Op.READ, 2, readBody(100, 50));
    assert.ok(r && Buffer.concat(r.parts).equals(data.subarray(100, 150)));
    assert.equal(r.hits, 1);
    assert.equal(fast(Op.READ, 2, readBody(8000, 4096)), null, 'spans chunk 1, not ready');
    ready(1);
    assert.equal(fast(Op.READ, 2, readBody(8000, 16384)), null, 'reaches chunk 2, not ready');
    ready(2);
    const all = fast(Op.READ, 2, readBody(0, 1 << 20));
    assert.ok(all && Buffer.concat(all.parts).equals(data), 'clamped to the view size, hole included');
    assert.equal(all.hits, 3);
    // a read-ahead trigger on a cached chunk sends the read to the main thread; cleared, it is fast again
    trig[0] = 0x80 >> 2;
    assert.equal(fast(Op.READ, 2, readBody(16384, 100)), null, 'chunk 2 is a read-ahead trigger');
    assert.ok(fast(Op.READ, 2, readBody(0, 100)), 'other chunks stay fast');
    trig[0] = 0;
    assert.ok(fast(Op.READ, 2, readBody(16384, 100)), 'trigger cleared');
    assert.deepEqual(fast(Op.READ, 2, readBody(data.length, 10)), { parts: [] }, 'past the end: empty');
    assert.equal(fast(Op.READ, 3, readBody(0, 10)), null, 'unknown node');
    assert.equal(fast(Op.GETATTR, 2, Buffer.alloc(16)), null, 'not a read');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
