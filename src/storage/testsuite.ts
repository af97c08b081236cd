/**
 * @module storage/testsuite
 * The `Backend` contract (storage/backend.ts) as a reusable test suite: the registry, P2P-proxy and
 * local-directory backends run it, and any new chunk backend must. A backend moves compressed
 * bytes of data blobs by (blob id, offset, length) and nothing else: exactly the bytes asked for or
 * a FerryError, never a short or padded buffer.
 */
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { FerryError } from '../core/index.js';
import type { Backend } from './backend.js';

/** Sizes of the blobs every test gets: one small, one over a megabyte, one of a single byte. */
const BLOB_SIZES = [70_000, (1 << 20) + 4097, 1];

/** Blobs keyed by blob id (the sha256 hex of their bytes), as a data directory or registry holds them. */
export type BlobSet = ReadonlyMap<string, Buffer>;

function blobSet(): BlobSet {
  const m = new Map<string, Buffer>();
  for (const n of BLOB_SIZES) {
    const b = randomBytes(n);
    m.set(createHash('sha256').update(b).digest('hex'), b);
  }
  return m;
}

const live = (): AbortSignal => new AbortController().signal;

/**
 * Registers the contract tests. `make` gets the blobs the backend must serve (it stores them where
 * the backend reads: a directory, a registry repository) and returns the backend.
 */
export function backendSuite(name: string, make: (blobs: BlobSet) => Promise<{ backend: Backend; cleanup(): Promise<void> }>): void {
  const withBackend = (title: string, fn: (b: Backend, blobs: BlobSet) => Promise<void>): void => {
    it(`${name}: ${title}`, async () => {
      const blobs = blobSet();
      const { backend, cleanup } = await make(blobs);
      try {
        await fn(backend, blobs);
      } finally {
        await backend.close();
        await cleanup();
      }
    });
  };

  withBackend('reads exactly the bytes asked for: the first byte, a middle range, the last byte, a whole blob', async (b, blobs) => {
    const [id, data] = [...blobs].find(([, d]) => d.length > 1 << 20)!;
    assert.deepEqual(await b.read(id, 0, 1, live()), data.subarray(0, 1));
    assert.deepEqual(await b.read(id, 12_345, 600_000, live()), data.subarray(12_345, 612_345));
    assert.deepEqual(await b.read(id, data.length - 1, 1, live()), data.subarray(data.length - 1));
    assert.deepEqual(await b.read(id, 0, data.length, live()), data);
    for (const [small, bytes] of blobs) if (bytes.length < 1 << 20) assert.deepEqual(await b.read(small, 0, bytes.length, live()), bytes);
  });

  withBackend('concurrent reads of several blobs each get their own bytes', async (b, blobs) => {
    const reads = [...blobs].flatMap(([id, data]) =>
      [0, Math.floor(data.length / 2)].map((off) => ({ id, data, off, len: data.length - off })),
    );
    const got = await Promise.all(reads.map((r) => b.read(r.id, r.off, r.len, live())));
    reads.forEach((r, i) => {
      assert.deepEqual(got[i], r.data.subarray(r.off), `${r.id.slice(0, 8)} @${r.off}`);
    });
  });

  withBackend('a blob it does not have is NOT_FOUND', async (b) => {
    await assert.rejects(b.read('0'.repeat(64), 0, 10, live()), (e: unknown) => FerryError.hasCode(e, 'NOT_FOUND'));
  });

  withBackend('a range reaching past the end of the blob is a FerryError, never a short buffer', async (b, blobs) => {
    const [id, data] = [...blobs].find(([, d]) => d.length > 1 && d.length < 1 << 20)!;
    await assert.rejects(b.read(id, data.length - 10, 20, live()), (e: unknown) => FerryError.is(e));
    await assert.rejects(b.read(id, data.length + 100, 10, live()), (e: unknown) => FerryError.is(e));
  });

  withBackend('kind names it; nothing falls back while the primary source serves; a failed read leaves it usable', async (b, blobs) => {
    assert.match(b.kind, /^[a-z]+$/);
    const [id, data] = [...blobs][0]!;
    assert.deepEqual(await b.read(id, 5, 100, live()), data.subarray(5, 105));
    assert.equal(b.fallbacks(), 0);
    await assert.rejects(b.read('0'.repeat(64), 0, 1, live()));
    assert.deepEqual(await b.read(id, 7, 100, live()), data.subarray(7, 107));
  });
}
