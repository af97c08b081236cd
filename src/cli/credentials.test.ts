/**
 * The credential flags of `ferry pull` (and the servers): --user with or without a password,
 * --password-stdin (one trailing newline dropped, an empty input refused), and the chain
 * configuration --pull-secret / --docker-config / --no-docker-config describe.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chainConfig, explicitCredentials, mayHaveCredentials, sideCredentials } from './credentials.js';

const stdin = (s: string) => () => s;

test('explicit credentials: --user U:P, --user U --password-stdin, and the malformed combinations', () => {
  assert.equal(explicitCredentials({}), undefined);
  assert.deepEqual(explicitCredentials({ user: 'robot$p+r:s3:cret' }), { username: 'robot$p+r', password: 's3:cret' });
  assert.throws(() => explicitCredentials({ user: 'nocolon' }), /USER:PASSWORD/);

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

test('--user USER:PASSWORD still works but warns that the password is visible; --password-stdin does not warn', () => {
  const warnings: string[] = [];
  const warn = (l: string) => warnings.push(l);
  assert.deepEqual(explicitCredentials({ user: 'robot:pw' }, stdin(''), warn), { username: 'robot', password: 'pw' });
  assert.equal(warnings.length, 1);
  assert.match(warnings[0]!, /--password-stdin/);
  assert.doesNotMatch(warnings[0]!, /pw\b/);
  explicitCredentials({ user: 'robot', passwordStdin: true }, stdin('pw'), warn);
  assert.equal(warnings.length, 1);
});

test('convert/check side credentials: from a file without a warning, inline with one, never both', () => {
  const warnings: string[] = [];
  const warn = (l: string) => warnings.push(l);
  const read = (p: string) => {
    if (p === '/c') return 'robot$proj+ci:s3:cret\n';
    throw new Error('ENOENT');
  };
  assert.deepEqual(sideCredentials({ sourceCredsFile: '/c' }, 'source', warn, read), { username: 'robot$proj+ci', password: 's3:cret' });
  assert.deepEqual(warnings, []);
  assert.equal(sideCredentials({}, 'target', warn, read), undefined);
  assert.deepEqual(sideCredentials({ targetCreds: 'u:p' }, 'target', warn, read), { username: 'u', password: 'p' });
  assert.equal(warnings.length, 1);
  assert.match(warnings[0]!, /--target-creds-file/);
  assert.throws(() => sideCredentials({ sourceCreds: 'u:p', sourceCredsFile: '/c' }, 'source', warn, read), /not both/);
  assert.throws(() => sideCredentials({ sourceCredsFile: '/nope' }, 'source', warn, read), /--source-creds-file \/nope: ENOENT/);
  assert.throws(() => sideCredentials({ sourceCredsFile: '/c' }, 'source', warn, () => 'nocolon'), /USER:PASSWORD/);
});

test('the chain is loaded only when it may find credentials: a flag source, or a Docker config file on disk', () => {
  const present = () => true;
  const absent = () => false;
  assert.equal(mayHaveCredentials({}, absent), false);
  assert.equal(mayHaveCredentials({}, present), true);
  assert.equal(mayHaveCredentials({ dockerConfig: false }, present), false);
  assert.equal(mayHaveCredentials({ dockerConfig: '/etc/x.json' }, absent), true);
  assert.equal(mayHaveCredentials({ user: 'u:p', dockerConfig: false }, absent), true);
  assert.equal(mayHaveCredentials({ user: 'u', passwordStdin: true }, absent), true);
  assert.equal(mayHaveCredentials({ pullSecret: ['/s'] }, absent), true);
  assert.equal(mayHaveCredentials({ pullSecret: [] }, absent), false);
});
