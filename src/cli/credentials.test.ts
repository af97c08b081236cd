/**
 * The credential flags of `ferry pull` (and the servers): --user with or without a password,
 * --password-stdin (one trailing newline dropped, an empty input refused), and the chain
 * configuration --pull-secret / --docker-config / --no-docker-config describe.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chainConfig, explicitCredentials } from './credentials.js';

test('explicit credentials: --user U:P, --user U --password-stdin, and the malformed combinations', () => {
  assert.equal(explicitCredentials({}), undefined);
  assert.deepEqual(explicitCredentials({ user: 'robot$p+r:s3:cret' }), { username: 'robot$p+r', password: 's3:cret' });
  assert.throws(() => explicitCredentials({ user: 'nocolon' }), /USER:PASSWORD/);
  const stdin = (s: string) => () => s;
  assert.deepEqual(explicitCredentials({ user: 'robot', passwordStdin: true }, stdin('pw\n')), { username: 'robot', password: 'pw' });
  assert.deepEqual(explicitCredentials({ user: 'robot', passwordStdin: true }, stdin('pw')), { username: 'robot', password: 'pw' });
  assert.throws(() => explicitCredentials({ passwordStdin: true }, stdin('pw')), /needs --user/);
  assert.throws(() => explicitCredentials({ user: 'robot:pw', passwordStdin: true }, stdin('pw')), /without a password/);
  assert.throws(() => explicitCredentials({ user: 'robot', passwordStdin: true }, stdin('\n')), /empty/);
});

test('chain configuration from the flags', () => {
  assert.deepEqual(chainConfig({}), {});
  assert.deepEqual(chainConfig({ pullSecret: ['/a', '/b'], dockerConfig: false }), { pullSecrets: ['/a', '/b'], dockerConfig: false });
  assert.deepEqual(chainConfig({ dockerConfig: '/c/config.json' }), { dockerConfig: '/c/config.json' });
});
