import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FerryError } from '../core/index.js';
import { decodePrefetchTrace, parsePrefetchTrace, traceByBlob, traceOf, PREFETCH_TRACE_LIMITS } from './prefetch-trace.js';

const A = 'a'.repeat(64);
const B = 'b'.repeat(64);

test('trace: built from an access list in first-access order, without repeats; grouped back per blob', () => {
  const t = traceOf(
    [
      { blobId: A, chunkIndex: 5 },
      { blobId: B, chunkIndex: 1 },
      { blobId: A, chunkIndex: 5 },
      { blobId: A, chunkIndex: 2 },
    ],
    `sha256:${'c'.repeat(64)}`,
  );
  assert.deepEqual(t, {
    schemaVersion: 1,
    bootstrap: `sha256:${'c'.repeat(64)}`,
    blobs: [A, B],
    chunks: [
      [0, 5],
      [1, 1],
      [0, 2],
    ],
  });
  assert.deepEqual(
    [...traceByBlob(t)],
    [
      [A, [5, 2]],
      [B, [1]],
    ],
  );
  assert.deepEqual(decodePrefetchTrace(Buffer.from(JSON.stringify(t))), t);
});

test('trace: malformed traces are refused with the reason', () => {
  const bad = (u: unknown, re: RegExp): void => {
    assert.throws(
      () => parsePrefetchTrace(u),
      (e) => FerryError.hasCode(e, 'INVALID_ARGUMENT') && re.test((e as Error).message),
    );
  };
  bad({ schemaVersion: 2, blobs: [], chunks: [] }, /schemaVersion/);
  bad({ schemaVersion: 1, blobs: ['xyz'], chunks: [] }, /blobs\.0: a 64-hex blob id/);
  bad({ schemaVersion: 1, blobs: [A], chunks: [[1, 0]] }, /names blob 1 of 1/);
  bad({ schemaVersion: 1, blobs: [A], chunks: [[0, -1]] }, /chunks\.0\.1/);
  bad({ schemaVersion: 1, blobs: [A], chunks: [], extra: 1 }, /extra|unrecognized/i);
  bad({ schemaVersion: 1, blobs: [A], chunks: Array.from({ length: PREFETCH_TRACE_LIMITS.chunks + 1 }, () => [0, 0]) }, /chunks/);
  assert.throws(() => decodePrefetchTrace(Buffer.from('{')), /not JSON/);
});
