import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { keyIdOf } from '../oci/index.js';
import { loadSigningKey, loadVerifyKey } from './attestation.js';

function withDir(fn: (dir: string) => void): void {
  const dir = mkdtempSync(join(tmpdir(), 'ferry-attest-keys-'));
  try {
    fn(dir);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

test('signing keys: owner-only PEM files of Ed25519 and P-256 keys load; the public key file verifies as the same key', () => {
  withDir((dir) => {
    for (const [name, k] of [
      ['ed', generateKeyPairSync('ed25519')],
      ['p256', generateKeyPairSync('ec', { namedCurve: 'P-256' })],
    ] as const) {
      const priv = join(dir, `${name}.key`);
      const pub = join(dir, `${name}.pub`);
      writeFileSync(priv, k.privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
      writeFileSync(pub, k.publicKey.export({ type: 'spki', format: 'pem' }), { mode: 0o644 });
      assert.equal(keyIdOf(loadSigningKey(priv)), keyIdOf(k.publicKey));
      assert.equal(keyIdOf(loadVerifyKey(pub)), keyIdOf(k.publicKey));
    }
  });
});

test('signing keys: a group/world-readable key file, a missing file, a non-key and an RSA key are refused with the path', () => {
  withDir((dir) => {
    const k = generateKeyPairSync('ed25519');
    const open = join(dir, 'open.key');
    writeFileSync(open, k.privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o640 });
    assert.throws(() => loadSigningKey(open), /attestation signing key .*open\.key is readable by group or others \(chmod 600 it\)/);
    assert.throws(() => loadSigningKey(join(dir, 'none.key')), /none\.key: ENOENT/);
    const junk = join(dir, 'junk.key');
    writeFileSync(junk, 'not a key', { mode: 0o600 });
    assert.throws(() => loadSigningKey(junk), /junk\.key is not a private key/);
    const rsa = join(dir, 'rsa.key');
    writeFileSync(rsa, generateKeyPairSync('rsa', { modulusLength: 1024 }).privateKey.export({ type: 'pkcs8', format: 'pem' }), {
      mode: 0o600,
    });
    assert.throws(() => loadSigningKey(rsa), /an Ed25519 or ECDSA P-256 key is needed, this is rsa/);
    const pub = join(dir, 'k.pub');
    writeFileSync(pub, 'garbage');
    assert.throws(() => loadVerifyKey(pub), /k\.pub is not a public key/);
  });
});

test('signing keys: an encrypted PKCS#8 key needs its passphrase (which never appears in the error)', () => {
  withDir((dir) => {
    const k = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const enc = join(dir, 'enc.key');
    const passphrase = 'correct horse battery staple';
    writeFileSync(enc, k.privateKey.export({ type: 'pkcs8', format: 'pem', cipher: 'aes-256-cbc', passphrase }), { mode: 0o600 });
    assert.throws(() => loadSigningKey(enc), /enc\.key is not a private key \(encrypted: set its passphrase environment variable\)/);
    assert.throws(
      () => loadSigningKey(enc, 'hunter2-not-it'),
      (err: Error) => /is not a private key \(encrypted: wrong passphrase\?\)/.test(err.message) && !err.message.includes('hunter2'),
    );
    assert.equal(keyIdOf(loadSigningKey(enc, passphrase)), keyIdOf(k.publicKey));
  });
});
