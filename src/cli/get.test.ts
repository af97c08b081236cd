import assert from 'node:assert/strict';
import { test } from 'node:test';
import { requestHeaders } from './get.js';

const files = (m: Record<string, string>) => (p: string) => {
  const t = m[p];
  if (t === undefined) throw new Error('ENOENT: no such file');
  return t;
};

test('ferry get headers: -H and --header-file merge; a secret on the command line warns, from a file it does not', () => {
  const warnings: string[] = [];
  const warn = (l: string) => warnings.push(l);
  const h = requestHeaders(
    ['Range: bytes=0-9'],
    '/h',
    files({ '/h': '# token for the registry\nAuthorization: Bearer abc\n\nX-Trace:  1 \n' }),
    warn,
  );
  assert.deepEqual(h, { authorization: 'Bearer abc', 'x-trace': '1', range: 'bytes=0-9' });
  assert.deepEqual(warnings, []);
  const h2 = requestHeaders(['authorization: Basic eDp5'], undefined, files({}), warn);
  assert.equal(h2.authorization, 'Basic eDp5');
  assert.equal(warnings.length, 1);
  assert.match(warnings[0]!, /--header-file/);
  assert.doesNotMatch(warnings[0]!, /eDp5/, 'the warning must not repeat the secret');
});

test('ferry get headers: malformed lines and unreadable files are clear errors that do not echo a secret', () => {
  assert.throws(() => requestHeaders(['novalue'], undefined, files({})), /bad header "novalue" in -H/);
  assert.throws(() => requestHeaders([], '/missing', files({})), /--header-file \/missing: ENOENT/);
  assert.throws(
    () => requestHeaders([], '/h', files({ '/h': 'Bearer-supersecret-token-without-colon\n' })),
    (e: Error) => /--header-file \/h/.test(e.message) && !e.message.includes('without-colon'),
  );
});
