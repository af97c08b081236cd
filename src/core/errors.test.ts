import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FerryError, DigestMismatchError, asFerryError } from './errors.js';
import { parseDigest, isDigest, sha256Digest } from './digest.js';
import { parseDuration, parseSize } from './units.js';

test('FerryError carries a code and is recognised across copies by brand', () => {
  const e = new FerryError('NOT_FOUND', 'blob sha256:x');
  assert.equal(e.code, 'NOT_FOUND');
  assert.ok(FerryError.is(e));
  assert.ok(FerryError.hasCode(e, 'NOT_FOUND'));
  assert.ok(!FerryError.is(new Error('x')));
  const m = new DigestMismatchError('sha256:a', 'sha256:b');
  assert.equal(m.code, 'DATA_LOSS');
  assert.ok(FerryError.is(m));
  assert.equal(asFerryError(new Error('boom'), 'UNAVAILABLE', 'fetch').message, 'fetch: boom');
});

test('parseDigest accepts sha256/sha512 and rejects malformed or unsupported digests', () => {
  const d = sha256Digest('hello');
  assert.equal(parseDigest(d).algorithm, 'sha256');
  assert.ok(isDigest(d));
  assert.throws(() => parseDigest('sha256:abc'), { code: 'INVALID_ARGUMENT' });
  assert.throws(() => parseDigest('../etc/passwd'), { code: 'INVALID_ARGUMENT' });
  assert.throws(() => parseDigest(`md5:${'a'.repeat(32)}`), { code: 'NOT_IMPLEMENTED' });
  assert.throws(() => parseDigest(`sha256:${'A'.repeat(64)}`), { code: 'INVALID_ARGUMENT' });
});

test('parseDuration and parseSize read the units used in configs and flags', () => {
  assert.equal(parseDuration('30s'), 30_000);
  assert.equal(parseDuration('250ms'), 250);
  assert.equal(parseDuration(5), 5);
  assert.throws(() => parseDuration('soon'), { code: 'INVALID_ARGUMENT' });
  assert.equal(parseSize('0x100000'), 1 << 20);
  assert.equal(parseSize('512MiB'), 512 * 1024 * 1024);
  assert.equal(parseSize('4096'), 4096);
  assert.throws(() => parseSize('lots'), { code: 'INVALID_ARGUMENT' });
});
