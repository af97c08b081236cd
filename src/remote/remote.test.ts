import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseReference, formatReference, parseChallenges, dockerConfigCredentials, TokenCache } from './index.js';

const D = `sha256:${'a'.repeat(64)}`;

test('parseReference applies docker.io normalisation', () => {
  assert.deepEqual(parseReference('busybox'), { registry: 'docker.io', repository: 'library/busybox', tag: 'latest' });
  assert.deepEqual(parseReference('user/app:1.0'), { registry: 'docker.io', repository: 'user/app', tag: '1.0' });
  assert.deepEqual(parseReference('index.docker.io/library/nginx'), { registry: 'docker.io', repository: 'library/nginx', tag: 'latest' });
  assert.deepEqual(parseReference('127.0.0.1:5000/library/app:v1'), { registry: '127.0.0.1:5000', repository: 'library/app', tag: 'v1' });
  assert.deepEqual(parseReference('localhost/a/b/c'), { registry: 'localhost', repository: 'a/b/c', tag: 'latest' });
  assert.deepEqual(parseReference(`reg.example.com:443/x@${D}`), { registry: 'reg.example.com:443', repository: 'x', digest: D });
  assert.deepEqual(parseReference(`h:1/x:t@${D}`), { registry: 'h:1', repository: 'x', tag: 't', digest: D });
  assert.deepEqual(parseReference('docker://quay.io/a/b:c'), { registry: 'quay.io', repository: 'a/b', tag: 'c' });
  assert.equal(formatReference(parseReference('busybox')), 'docker.io/library/busybox:latest');
  assert.throws(() => parseReference('Busybox'), { code: 'INVALID_ARGUMENT' });
  assert.throws(() => parseReference(''), { code: 'INVALID_ARGUMENT' });
  assert.throws(() => parseReference('a@sha256:123'), { code: 'INVALID_ARGUMENT' });
  assert.throws(() => parseReference('h:1/x:bad tag'), { code: 'INVALID_ARGUMENT' });
  assert.throws(() => parseReference('h:1/x//y'), { code: 'INVALID_ARGUMENT' });
});

test('parseChallenges reads Bearer and Basic challenges with quoted commas', () => {
  const c = parseChallenges('Bearer realm="https://h/service/token",service="harbor-registry",scope="repository:library/a:pull,push"');
  assert.equal(c.length, 1);
  assert.equal(c[0]!.scheme, 'bearer');
  assert.deepEqual(c[0]!.params, { realm: 'https://h/service/token', service: 'harbor-registry', scope: 'repository:library/a:pull,push' });
  const b = parseChallenges('Basic realm="harbor", Bearer realm="x"');
  assert.deepEqual(
    b.map((x) => x.scheme),
    ['basic', 'bearer'],
  );
  assert.deepEqual(parseChallenges(null), []);
});

test('dockerConfigCredentials reads auths (base64 auth, username/password, scheme keys)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ferry-dockercfg-'));
  try {
    const p = join(dir, 'config.json');
    writeFileSync(
      p,
      JSON.stringify({
        auths: {
          '127.0.0.1:5000': { auth: Buffer.from('admin:pa:ss').toString('base64') },
          'https://index.docker.io/v1/': { username: 'hub', password: 'pw' },
        },
      }),
    );
    assert.deepEqual(dockerConfigCredentials('127.0.0.1:5000', p), { username: 'admin', password: 'pa:ss' });
    assert.deepEqual(dockerConfigCredentials('docker.io', p), { username: 'hub', password: 'pw' });
    assert.equal(dockerConfigCredentials('other:1', p), undefined);
    assert.equal(dockerConfigCredentials('x', join(dir, 'missing.json')), undefined);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('TokenCache expires tokens before the server does', () => {
  const c = new TokenCache();
  c.set('h', 's', 'tok', 60, 0);
  assert.equal(c.get('h', 's', 1000), 'tok');
  assert.equal(c.get('h', 's', 55_000), undefined);
  assert.equal(c.get('h', 'other', 0), undefined);
});
