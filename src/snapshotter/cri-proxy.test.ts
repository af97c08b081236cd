/**
 * What the CRI keychain keeps of a PullImage's AuthConfig: username/password, else `auth`
 * (base64 user:password); tokens only, or nothing, is no credential.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { criCredentials } from './cri-proxy.js';

const empty = { username: '', password: '', auth: '', server_address: '', identity_token: '', registry_token: '' };

test('CRI AuthConfig → credentials', () => {
  assert.equal(criCredentials(undefined), undefined);
  assert.equal(criCredentials(empty), undefined);
  assert.deepEqual(criCredentials({ ...empty, username: 'u', password: 'p:w' }), { username: 'u', password: 'p:w' });
  const auth = Buffer.from('robot$x:secret:with:colons').toString('base64');
  assert.deepEqual(criCredentials({ ...empty, auth }), { username: 'robot$x', password: 'secret:with:colons' });
  assert.equal(criCredentials({ ...empty, auth: Buffer.from('nocolon').toString('base64') }), undefined);
  assert.equal(criCredentials({ ...empty, identity_token: 'tok' }), undefined);
  assert.equal(criCredentials({ ...empty, registry_token: 'tok' }), undefined);
  // a username without a password is not a credential (nor a half one)
  assert.equal(criCredentials({ ...empty, username: 'u' }), undefined);
});
