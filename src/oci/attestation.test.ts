import { test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import {
  CONVERSION_PREDICATE_TYPE,
  IN_TOTO_PAYLOAD_TYPE,
  checkConversionStatement,
  conversionStatement,
  keyIdOf,
  openEnvelope,
  pae,
  signStatement,
  type ConversionPredicate,
  type DsseEnvelope,
} from './attestation.js';

const d = (c: string): string => `sha256:${c.repeat(64)}`;
const predicate: ConversionPredicate = {
  sourceDigest: d('a'),
  sourceReference: 'r.example/app:v1',
  nydusDigest: d('b'),
  bootstrapDigest: d('c'),
  tool: { name: 'ferry', version: '0.1.0' },
  timestamp: '2026-12-07T20:00:00.000Z',
};
const expected = { manifestDigest: d('b'), bootstrapDigest: d('c'), sourceDigest: d('a') };
const ed = (): { privateKey: KeyObject; publicKey: KeyObject } => generateKeyPairSync('ed25519');
const p256 = (): { privateKey: KeyObject; publicKey: KeyObject } => generateKeyPairSync('ec', { namedCurve: 'P-256' });
const enc = (e: DsseEnvelope): Buffer => Buffer.from(JSON.stringify(e));

test("DSSE's pre-authentication encoding counts bytes, not characters", () => {
  assert.equal(pae('t/x', Buffer.from('héllo')).toString(), 'DSSEv1 3 t/x 6 héllo');
});

for (const [name, keys] of [
  ['Ed25519', ed],
  ['ECDSA P-256', p256],
] as const) {
  test(`${name}: a signed conversion statement opens with the public key and matches its manifest`, () => {
    const k = keys();
    const env = signStatement(conversionStatement('r.example/app', predicate), k.privateKey);
    assert.equal(env.payloadType, IN_TOTO_PAYLOAD_TYPE);
    assert.equal(env.signatures[0]!.keyid, keyIdOf(k.publicKey));
    const st = openEnvelope(enc(env), k.publicKey, 'att');
    assert.equal(st.predicateType, CONVERSION_PREDICATE_TYPE);
    assert.deepEqual(st.subject, [{ name: 'r.example/app', digest: { sha256: 'b'.repeat(64) } }]);
    checkConversionStatement(st, expected, 'att');
  });
}

test('another key, a changed payload or a payload signed without DSSE framing does not verify', () => {
  const k = ed();
  const env = signStatement(conversionStatement('r/app', predicate), k.privateKey);
  assert.throws(() => openEnvelope(enc(env), ed().publicKey, 'att'), /no signature verifies with the policy key/);
  const forged = JSON.parse(Buffer.from(env.payload, 'base64').toString()) as { predicate: ConversionPredicate };
  forged.predicate.sourceDigest = d('e');
  assert.throws(
    () => openEnvelope(enc({ ...env, payload: Buffer.from(JSON.stringify(forged)).toString('base64') }), k.publicKey, 'att'),
    /no signature verifies/,
  );
  // a signature over the bare payload (no PAE) is not a DSSE signature
  const bare = Buffer.from(env.payload, 'base64');
  const raw = sign(null, bare, k.privateKey).toString('base64');
  assert.throws(() => openEnvelope(enc({ ...env, signatures: [{ sig: raw }] }), k.publicKey, 'att'), /no signature verifies/);
  // garbage signatures are refusals, not crashes
  assert.throws(
    () => openEnvelope(enc({ ...env, signatures: [{ sig: 'AAAA' }, { sig: 7 as never }] }), k.publicKey, 'att'),
    /no signature/,
  );
});

test('envelopes that are not DSSE in-toto conversion statements are refused with the reason', () => {
  const k = p256();
  assert.throws(() => openEnvelope(Buffer.from('{'), k.publicKey, 'att'), /att: the envelope is not JSON/);
  assert.throws(() => openEnvelope(Buffer.from('{"payload":"x"}'), k.publicKey, 'att'), /not a DSSE envelope/);
  const env = signStatement(conversionStatement('r/app', predicate), k.privateKey);
  assert.throws(() => openEnvelope(enc({ ...env, payloadType: 'text/plain' }), k.publicKey, 'att'), /payloadType "text\/plain"/);
  // correctly signed, but another predicate
  const other = { ...conversionStatement('r/app', predicate), predicateType: 'https://slsa.dev/provenance/v1' };
  const body = Buffer.from(JSON.stringify(other));
  const sig = sign('sha256', pae(IN_TOTO_PAYLOAD_TYPE, body), k.privateKey).toString('base64');
  const signedOther: DsseEnvelope = { payloadType: IN_TOTO_PAYLOAD_TYPE, payload: body.toString('base64'), signatures: [{ sig }] };
  assert.throws(() => openEnvelope(enc(signedOther), k.publicKey, 'att'), /is not a conversion/);
});

test('a verified statement about another manifest, bootstrap or source is refused', () => {
  const k = ed();
  const st = openEnvelope(enc(signStatement(conversionStatement('r/app', predicate), k.privateKey)), k.publicKey, 'att');
  assert.throws(
    () => checkConversionStatement(st, { ...expected, manifestDigest: d('f') }, 'att'),
    /its subject is not sha256:f+ \(signed for b+\)/,
  );
  const predOnly = { ...st, subject: [{ name: 'r/app', digest: { sha256: 'f'.repeat(64) } }] };
  assert.throws(() => checkConversionStatement(predOnly, { ...expected, manifestDigest: d('f') }, 'att'), /predicate names Nydus manifest/);
  assert.throws(() => checkConversionStatement(st, { ...expected, bootstrapDigest: d('f') }, 'att'), /its bootstrap sha256:c+ is not/);
  assert.throws(() => checkConversionStatement(st, { ...expected, sourceDigest: d('f') }, 'att'), /its source digest sha256:a+ is not/);
  const noSource = { ...st, predicate: { ...st.predicate, sourceDigest: '' } };
  assert.throws(() => checkConversionStatement(noSource, expected, 'att'), /has no source digest/);
});

test('keys other than Ed25519 and ECDSA P-256 are refused for signing and verifying', () => {
  const rsa = generateKeyPairSync('rsa', { modulusLength: 1024 });
  assert.throws(() => signStatement(conversionStatement('r/app', predicate), rsa.privateKey), /Ed25519 or ECDSA P-256, not rsa/);
  const p384 = generateKeyPairSync('ec', { namedCurve: 'P-384' });
  assert.throws(() => signStatement(conversionStatement('r/app', predicate), p384.privateKey), /not ec \(secp384r1\)/);
  assert.throws(() => signStatement(conversionStatement('r/app', predicate), ed().publicKey), /needs a private key/);
  assert.throws(() => conversionStatement('r/app', { ...predicate, sourceDigest: 'sha256:zz' }), /not a sha256 digest/);
});
