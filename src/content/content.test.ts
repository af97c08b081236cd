import { mkdtemp, rm, readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { once } from 'node:events';
import { createHash, randomBytes } from 'node:crypto';
import { blobStoreSuite } from './testsuite.js';
import { LocalBlobStore, MemoryBlobStore } from './index.js';

function sha(data: Buffer): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

async function readAll(r: Readable): Promise<Buffer> {
  const out: Buffer[] = [];
  for await (const c of r) out.push(c as Buffer);
  return Buffer.concat(out);
}

blobStoreSuite('memory', async () => ({ store: new MemoryBlobStore(), cleanup: async () => undefined }));
blobStoreSuite('local', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'ferry-content-'));
  const store = new LocalBlobStore(dir);
  return {
    store,
    cleanup: async () => {
      await store.close();
      await rm(dir, { recursive: true, force: true });
    },
  };
});

it('local: upload ids that could escape the directory are rejected', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'ferry-content-'));
  try {
    const s = new LocalBlobStore(dir);
    for (const id of ['../x', '..', 'a/b', '', 'x'.repeat(100)]) {
      await assert.rejects(s.startUpload(id), { code: 'INVALID_ARGUMENT' });
      await assert.rejects(s.append(id, 0, Readable.from([Buffer.from('a')])), { code: 'INVALID_ARGUMENT' });
    }
    assert.deepEqual(await readdir(join(dir, 'uploads')), []);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

it('local: a streamed read cut off by its reader leaves the blob readable and never serves another blob', async () => {
  // Reads beyond the single-read limit (8 MiB) stream; destroying such a stream must not close a
  // descriptor the store keeps for later reads (its number would be reused by the next open).
  const dir = await mkdtemp(join(tmpdir(), 'ferry-content-'));
  const s = new LocalBlobStore(dir, { fsync: false });
  const put = async (id: string, data: Buffer): Promise<string> => {
    await s.startUpload(id);
    await s.append(id, 0, Readable.from([data]));
    return (await s.commitUpload(id, sha(data))).digest;
  };
  try {
    const big = randomBytes(9 * 1024 * 1024 + 1);
    const bigDigest = await put('aaaaaaaa-0001', big);
    const others = await Promise.all(
      [1, 2, 3, 4].map(async (i) => {
        const data = randomBytes(i % 2 === 0 ? 9 * 1024 * 1024 + i : 64 * 1024 + i);
        return { data, digest: await put(`bbbbbbbb-000${i}`, data) };
      }),
    );
    for (let round = 0; round < 3; round++) {
      const stream = await s.read(bigDigest);
      await once(stream, 'data');
      stream.destroy();
      await once(stream, 'close');
      // Other blobs opened now would take a freed descriptor number.
      for (const o of others) {
        assert.equal(sha(s.readBuffer ? await s.readBuffer(o.digest) : await readAll(await s.read(o.digest))), o.digest);
        assert.equal(sha(await readAll(await s.read(o.digest))), o.digest);
      }
      assert.equal(sha(await readAll(await s.read(bigDigest))), bigDigest, `round ${round}: the big blob's own bytes`);
      assert.equal(sha(await readAll(await s.read(bigDigest, { start: 1, end: big.length - 1 }))), sha(big.subarray(1)));
      assert.deepEqual(await s.readBuffer!(bigDigest, { start: 0, end: 99 }), big.subarray(0, 100));
    }
  } finally {
    await s.close();
    await rm(dir, { recursive: true, force: true });
  }
});
