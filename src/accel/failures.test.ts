import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DigestMismatchError, FerryError } from '../core/index.js';
import { classifyFailure } from './failures.js';

test('permanent failures: refused, missing or forbidden sources', () => {
  for (const code of [
    'INVALID_ARGUMENT',
    'NOT_FOUND',
    'FAILED_PRECONDITION',
    'UNAUTHENTICATED',
    'PERMISSION_DENIED',
    'NOT_IMPLEMENTED',
  ] as const) {
    const c = classifyFailure(new FerryError(code, 'why'));
    assert.equal(c.permanent, true, code);
    assert.equal(c.reason, `${code}: why`);
  }
});

test('transient failures: unavailable, timeouts, rate limits, lost bytes, internal and foreign errors', () => {
  for (const code of ['UNAVAILABLE', 'DEADLINE_EXCEEDED', 'RESOURCE_EXHAUSTED', 'DATA_LOSS', 'ABORTED', 'INTERNAL'] as const) {
    assert.equal(classifyFailure(new FerryError(code, 'why')).permanent, false, code);
  }
  assert.equal(classifyFailure(new DigestMismatchError('sha256:a', 'sha256:b')).permanent, false);
  const plain = classifyFailure(new Error('socket hang up'));
  assert.deepEqual([plain.permanent, plain.reason, plain.error.code], [false, 'INTERNAL: socket hang up', 'INTERNAL']);
});
