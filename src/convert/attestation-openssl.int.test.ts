/**
 * Interoperability with an independent tool: keys made by the `openssl` CLI as docs/convert-accel.md
 * says load as signing and policy keys, and the DSSE signatures Ferry writes verify with `openssl`
 * over the pre-authentication encoding rebuilt here from the envelope (not with Ferry's verifier).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { requirePrereqs } from '../../test/support/prereq.js';
import { conversionStatement, keyIdOf, signStatement } from '../oci/index.js';
import { loadSigningKey, loadVerifyKey } from './attestation.js';

const d = (c: string): string => `sha256:${c.repeat(64)}`;
const openssl = (args: string[]): string => execFileSync('openssl', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });

for (const [name, gen] of [
  ['Ed25519', ['genpkey', '-algorithm', 'ed25519']],
  ['ECDSA P-256 (SEC1 PEM)', ['ecparam', '-name', 'prime256v1', '-genkey', '-noout']],
] as const) {
  test(`openssl ${name} keys sign attestations that openssl verifies over DSSE's PAE`, () => {
    requirePrereqs({ commands: ['openssl'] });
    const dir = mkdtempSync(join(tmpdir(), 'ferry-attest-openssl-'));
    try {
      const key = join(dir, 'conv.key');
      const pub = join(dir, 'conv.pub');
      openssl([...gen, '-out', key]);
      openssl(['pkey', '-in', key, '-pubout', '-out', pub]);
      execFileSync('chmod', ['600', key]); // as the docs say (OpenSSL 3 writes new keys 0600 already)
      const signer = loadSigningKey(key);
      assert.equal(keyIdOf(signer), keyIdOf(loadVerifyKey(pub)));
      const st = conversionStatement('r/app', {
        sourceDigest: d('a'),
        nydusDigest: d('b'),
        bootstrapDigest: d('c'),
        tool: { name: 'ferry', version: 't' },
        timestamp: new Date(0).toISOString(),
      });
      const env = signStatement(st, signer);
      const body = Buffer.from(env.payload, 'base64');
      // DSSEv1 SP len(type) SP type SP len(body) SP body, built independently of oci/attestation.pae
      const paeFile = join(dir, 'pae');
      writeFileSync(paeFile, Buffer.concat([Buffer.from(`DSSEv1 ${env.payloadType.length} ${env.payloadType} ${body.length} `), body]));
      const sigFile = join(dir, 'sig');
      writeFileSync(sigFile, Buffer.from(env.signatures[0]!.sig, 'base64'));
      const out = name.startsWith('Ed25519')
        ? openssl(['pkeyutl', '-verify', '-pubin', '-inkey', pub, '-rawin', '-in', paeFile, '-sigfile', sigFile])
        : openssl(['dgst', '-sha256', '-verify', pub, '-signature', sigFile, paeFile]);
      assert.match(out, /Verified OK|Signature Verified Successfully/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
}
