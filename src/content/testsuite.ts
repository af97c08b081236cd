/**
 * @module content/testsuite
 * The BlobStore contract as a reusable test suite: every implementation (local directory, memory,
 * a future S3 one) runs it.
 */
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { Readable } from 'node:stream';
import type { BlobStore } from './content.js';

function sha(data: Buffer, alg: 'sha256' | 'sha512' = 'sha256'): string {
  return `${alg}:${createHash(alg).update(data).digest('hex')}`;
}

async function readAll(r: Readable): Promise<Buffer> {
  const out: Buffer[] = [];
  for await (const c of r) out.push(c as Buffer);
  return Buffer.concat(out);
}

/** Registers the contract tests for a fresh store from `make`. */
export function blobStoreSuite(name: string, make: () => Promise<{ store: BlobStore; cleanup(): Promise<void> }>): void {
  const withStore = (title: string, fn: (s: BlobStore) => Promise<void>): void => {
    it(`${name}: ${title}`, async () => {
      const { store, cleanup } = await make();
      try {
        await fn(store);
      } finally {
        await cleanup();
      }
    });
  };

  withStore('commits a verified upload made of several appends and reads it back, also by range', async (s) => {
    const data = randomBytes(300_000);
    await s.startUpload('11111111-aaaa');
    let off = await s.append('11111111-aaaa', 0, Readable.from([data.subarray(0, 100_000)]));
    assert.equal(off, 100_000);
    off = await s.append('11111111-aaaa', off, Readable.from([data.subarray(100_000)]));
    assert.equal(await s.uploadSize('11111111-aaaa'), data.length);
    const c = await s.commitUpload('11111111-aaaa', sha(data), { size: data.length });
    assert.deepEqual(c, { digest: sha(data), size: data.length });
    assert.equal((await s.stat(sha(data)))?.size, data.length);
    assert.deepEqual(await readAll(await s.read(sha(data))), data);
    assert.deepEqual(await readAll(await s.read(sha(data), { start: 10, end: 19 })), data.subarray(10, 20));
    await assert.rejects(s.uploadSize('11111111-aaaa'), { code: 'NOT_FOUND' });
  });

  withStore('serves large blobs as streams, concurrent reads, and forgets deleted blobs', async (s) => {
    const data = randomBytes(9 * 1024 * 1024 + 17);
    await s.startUpload('88888888-1111');
    await s.append('88888888-1111', 0, Readable.from([data]));
    const d = sha(data);
    await s.commitUpload('88888888-1111', d);
    const reads = await Promise.all([s.read(d), s.read(d, { start: 5, end: data.length - 2 }), s.read(d, { start: 100, end: 199 })]);
    const [a, b, c] = await Promise.all(reads.map(readAll));
    assert.deepEqual(a, data);
    assert.deepEqual(b, data.subarray(5, data.length - 1));
    assert.deepEqual(c, data.subarray(100, 200));
    if (s.readBuffer) {
      assert.deepEqual(await s.readBuffer(d, { start: 100, end: 199 }), data.subarray(100, 200));
      assert.deepEqual(await s.readBuffer(d), data);
    }
    assert.equal(await s.delete(d), true);
    if (s.readBuffer) await assert.rejects(s.readBuffer(d), { code: 'NOT_FOUND' });
    await assert.rejects(s.read(d), { code: 'NOT_FOUND' });
    await s.close?.();
  });

  withStore('rejects an append at the wrong offset', async (s) => {
    await s.startUpload('22222222-bbbb');
    await s.append('22222222-bbbb', 0, Readable.from([Buffer.from('abc')]));
    await assert.rejects(s.append('22222222-bbbb', 0, Readable.from([Buffer.from('abc')])), { code: 'FAILED_PRECONDITION' });
    await assert.rejects(s.append('22222222-bbbb', 5, Readable.from([Buffer.from('abc')])), { code: 'FAILED_PRECONDITION' });
    assert.equal(await s.uploadSize('22222222-bbbb'), 3);
  });

  withStore('a digest mismatch removes the upload and creates no blob', async (s) => {
    const data = Buffer.from('hello');
    await s.startUpload('33333333-cccc');
    await s.append('33333333-cccc', 0, Readable.from([data]));
    const wrong = sha(Buffer.from('other'));
    await assert.rejects(s.commitUpload('33333333-cccc', wrong), { code: 'DATA_LOSS' });
    assert.equal(await s.stat(wrong), undefined);
    assert.equal(await s.stat(sha(data)), undefined);
    await assert.rejects(s.uploadSize('33333333-cccc'), { code: 'NOT_FOUND' });
  });

  withStore('supports sha512 digests and rejects malformed ones', async (s) => {
    const data = randomBytes(1000);
    await s.startUpload('44444444-dddd');
    await s.append('44444444-dddd', 0, Readable.from([data]));
    await s.commitUpload('44444444-dddd', sha(data, 'sha512'));
    assert.equal((await s.stat(sha(data, 'sha512')))?.size, 1000);
    await assert.rejects(s.stat('sha256:../../etc/passwd'), { code: 'INVALID_ARGUMENT' });
    await assert.rejects(s.read(sha(Buffer.from('absent'))), { code: 'NOT_FOUND' });
  });

  withStore('enforces the append limit', async (s) => {
    await s.startUpload('55555555-eeee');
    await assert.rejects(s.append('55555555-eeee', 0, Readable.from([randomBytes(100)]), { limit: 50 }), { code: 'RESOURCE_EXHAUSTED' });
  });

  withStore('lists, deletes, aborts; critical sections wrap publish and delete', async (s) => {
    const data = randomBytes(10);
    await s.startUpload('66666666-ffff');
    await s.append('66666666-ffff', 0, Readable.from([data]));
    let inside = false;
    await s.commitUpload('66666666-ffff', sha(data), {
      critical: async (act) => {
        assert.equal(await s.stat(sha(data)), undefined, 'not visible before publish');
        inside = true;
        const out = await act();
        assert.equal((await s.stat(sha(data)))?.size, 10, 'visible once publish resolved');
        return out;
      },
    });
    assert.ok(inside);
    const listed = [];
    for await (const b of s.list()) listed.push(b.digest);
    assert.deepEqual(listed, [sha(data)]);
    assert.equal(await s.delete(sha(data), { critical: (act) => act() }), true);
    assert.equal(await s.stat(sha(data)), undefined);
    assert.equal(await s.delete(sha(data)), false);
    await s.startUpload('77777777-0000');
    assert.deepEqual(
      (await s.listUploads()).map((u) => u.id),
      ['77777777-0000'],
    );
    await s.abortUpload('77777777-0000');
    await s.abortUpload('77777777-0000');
    assert.deepEqual(await s.listUploads(), []);
  });
}
