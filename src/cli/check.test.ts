import { test } from 'node:test';
import assert from 'node:assert/strict';
import { checkReport } from './check.js';

const S = `sha256:${'a'.repeat(64)}`;
const T = `sha256:${'b'.repeat(64)}`;

test('ferry check report: source before target, labelled, as --source/--target and the DIFF lines have them', () => {
  const ok = checkReport({
    ok: true,
    differences: [],
    checked: [{ sourceDigest: S, targetDigest: T, entries: 10, files: 4, bytes: 2048 }],
  });
  assert.equal(ok.split('\n')[0], `source ${S} vs nydus ${T}: 10 entries, 4 files, 2.0 KiB of data verified`);
  assert.ok(ok.endsWith('check passed\n'));
  const bad = checkReport({
    ok: false,
    checked: [{ platform: 'linux/amd64', sourceDigest: S, targetDigest: T, entries: 1, files: 1, bytes: 0 }],
    differences: [{ platform: 'linux/amd64', path: 'etc/x', what: 'size', source: '3', target: '4' }],
  });
  assert.deepEqual(bad.trimEnd().split('\n'), [
    `linux/amd64: source ${S} vs nydus ${T}: 1 entries, 1 files, 0 B of data verified`,
    'DIFF [linux/amd64] /etc/x: size (source 3, nydus 4)',
    'check FAILED: 1 difference(s)',
  ]);
});
