/**
 * @module oci/attestation
 * Conversion attestations: an in-toto Statement v1 saying "this Nydus manifest was converted from
 * that source digest" (predicate: source digest, Nydus manifest digest, bootstrap layer digest, the
 * tool and when), signed in a DSSE envelope (Ed25519 or ECDSA P-256 with SHA-256, node:crypto keys)
 * and stored as an OCI artifact whose `subject` is the Nydus manifest (artifactType
 * `application/vnd.in-toto+json`, empty config, one `application/vnd.dsse.envelope.v1+json` layer).
 * Pure: statement, pre-authentication encoding, signing, verification and the artifact manifest.
 */
import { createHash, createPublicKey, sign, verify, type KeyObject } from 'node:crypto';
import { FerryError } from '../core/index.js';
import { MediaType } from './media-types.js';
import type { Descriptor, ImageManifest } from './types.js';

/** artifactType of the attestation manifest: the DSSE payload type of an in-toto statement. */
export const ATTESTATION_ARTIFACT_TYPE = 'application/vnd.in-toto+json';
/** Media type of the envelope layer. */
export const DSSE_ENVELOPE_MEDIA_TYPE = 'application/vnd.dsse.envelope.v1+json';
/** DSSE payloadType of an in-toto statement. */
export const IN_TOTO_PAYLOAD_TYPE = 'application/vnd.in-toto+json';
export const IN_TOTO_STATEMENT_TYPE = 'https://in-toto.io/Statement/v1';
/** Ferry's predicate: one conversion OCI → Nydus. */
export const CONVERSION_PREDICATE_TYPE = 'https://ferry.dev/attestation/nydus-conversion/v1';
/** Annotation of the attestation manifest and its envelope layer naming the predicate type (the key BuildKit's attestations use). */
export const ATTESTATION_PREDICATE_ANNOTATION = 'in-toto.io/predicate-type';
/** Largest envelope read from a registry. */
export const MAX_ENVELOPE_BYTES = 64 << 10;

const DIGEST = /^sha256:[a-f0-9]{64}$/;

export interface ConversionPredicate {
  /** the source image's manifest (or index) digest */
  sourceDigest: string;
  /** the source reference as converted (tag), informational */
  sourceReference?: string;
  /** the Nydus manifest digest (the statement's subject) */
  nydusDigest: string;
  /** the Nydus bootstrap layer's digest */
  bootstrapDigest: string;
  tool: { name: string; version: string };
  /** RFC 3339 time of the conversion */
  timestamp: string;
}

export interface ConversionStatement {
  _type: typeof IN_TOTO_STATEMENT_TYPE;
  subject: Array<{ name: string; digest: { sha256: string } }>;
  predicateType: typeof CONVERSION_PREDICATE_TYPE;
  predicate: ConversionPredicate;
}

export interface DsseEnvelope {
  payloadType: string;
  /** base64 of the statement's JSON */
  payload: string;
  signatures: Array<{ keyid?: string; sig: string }>;
}

/** The statement of one conversion; `name` is the repository the Nydus manifest lives in. */
export function conversionStatement(name: string, p: ConversionPredicate): ConversionStatement {
  for (const d of [p.sourceDigest, p.nydusDigest, p.bootstrapDigest]) {
    if (!DIGEST.test(d)) throw new FerryError('INVALID_ARGUMENT', `attestation: not a sha256 digest: ${JSON.stringify(d)}`);
  }
  return {
    _type: IN_TOTO_STATEMENT_TYPE,
    subject: [{ name, digest: { sha256: p.nydusDigest.slice('sha256:'.length) } }],
    predicateType: CONVERSION_PREDICATE_TYPE,
    predicate: p,
  };
}

/** DSSE's pre-authentication encoding: `DSSEv1 <len type> <type> <len body> <body>` (lengths in bytes). */
export function pae(payloadType: string, body: Buffer): Buffer {
  const type = Buffer.from(payloadType, 'utf8');
  return Buffer.concat([Buffer.from(`DSSEv1 ${type.length} `), type, Buffer.from(` ${body.length} `), body]);
}

/** The hash node:crypto's sign/verify takes for a key: none for Ed25519, SHA-256 for ECDSA P-256. */
function hashFor(key: KeyObject): 'sha256' | null {
  const t = key.asymmetricKeyType;
  if (t === 'ed25519') return null;
  if (t === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'prime256v1') return 'sha256';
  throw new FerryError(
    'INVALID_ARGUMENT',
    `attestation keys must be Ed25519 or ECDSA P-256, not ${t}${key.asymmetricKeyDetails?.namedCurve ? ` (${key.asymmetricKeyDetails.namedCurve})` : ''}`,
  );
}

/** A key id: sha256 of the public key's SubjectPublicKeyInfo DER (lets a verifier say which key signed). */
export function keyIdOf(key: KeyObject): string {
  const pub = key.type === 'private' ? createPublicKey(key) : key;
  const der = pub.export({ type: 'spki', format: 'der' });
  return `sha256:${createHash('sha256').update(der).digest('hex')}`;
}

/** Signs a statement with a private key into a DSSE envelope. */
export function signStatement(statement: ConversionStatement, privateKey: KeyObject): DsseEnvelope {
  if (privateKey.type !== 'private') throw new FerryError('INVALID_ARGUMENT', 'attestation: signing needs a private key');
  const body = Buffer.from(JSON.stringify(statement));
  const sig = sign(hashFor(privateKey), pae(IN_TOTO_PAYLOAD_TYPE, body), privateKey);
  return {
    payloadType: IN_TOTO_PAYLOAD_TYPE,
    payload: body.toString('base64'),
    signatures: [{ keyid: keyIdOf(privateKey), sig: sig.toString('base64') }],
  };
}

/** Why an attestation does not hold (the snapshotter's refusal names it). */
function refuse(what: string, reason: string): never {
  throw new FerryError('FAILED_PRECONDITION', `${what}: ${reason}`);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/**
 * The envelope's statement, when one of its signatures verifies with `publicKey` over the
 * pre-authentication encoding of its payload (FAILED_PRECONDITION otherwise, and for anything that
 * is not a DSSE envelope of an in-toto statement). Only then is the payload parsed.
 */
export function openEnvelope(data: Buffer, publicKey: KeyObject, what: string): ConversionStatement {
  let env: unknown;
  try {
    env = JSON.parse(data.toString('utf8'));
  } catch {
    refuse(what, 'the envelope is not JSON');
  }
  if (!isObject(env) || typeof env.payloadType !== 'string' || typeof env.payload !== 'string' || !Array.isArray(env.signatures))
    refuse(what, 'not a DSSE envelope (payloadType, payload, signatures)');
  if (env.payloadType !== IN_TOTO_PAYLOAD_TYPE)
    refuse(what, `payloadType ${JSON.stringify(env.payloadType)} is not ${IN_TOTO_PAYLOAD_TYPE}`);
  const body = Buffer.from(env.payload, 'base64');
  const signed = pae(env.payloadType, body);
  const hash = hashFor(publicKey);
  const ok = env.signatures.some((s: unknown) => {
    if (!isObject(s) || typeof s.sig !== 'string') return false;
    try {
      return verify(hash, signed, publicKey, Buffer.from(s.sig, 'base64'));
    } catch {
      return false; // a malformed signature (wrong length, bad DER) is simply not a valid one
    }
  });
  if (!ok) refuse(what, `no signature verifies with the policy key ${keyIdOf(publicKey)}`);
  let st: unknown;
  try {
    st = JSON.parse(body.toString('utf8'));
  } catch {
    refuse(what, 'the signed payload is not JSON');
  }
  if (!isObject(st) || st._type !== IN_TOTO_STATEMENT_TYPE) refuse(what, `the payload is not an ${IN_TOTO_STATEMENT_TYPE}`);
  if (st.predicateType !== CONVERSION_PREDICATE_TYPE) refuse(what, `predicateType ${JSON.stringify(st.predicateType)} is not a conversion`);
  if (!Array.isArray(st.subject) || !isObject(st.predicate)) refuse(what, 'the statement has no subject list or no predicate');
  return st as unknown as ConversionStatement;
}

/**
 * Checks a verified statement against the manifest being run: a subject with its sha256, the
 * predicate naming it as the Nydus digest, a source digest present (and equal to the manifest's
 * own source annotation when it has one), and the bootstrap layer it mounts.
 */
export function checkConversionStatement(
  st: ConversionStatement,
  expected: { manifestDigest: string; bootstrapDigest: string; sourceDigest?: string },
  what: string,
): void {
  const hex = expected.manifestDigest.replace(/^sha256:/, '');
  if (!st.subject.some((s) => isObject(s) && isObject(s.digest) && s.digest.sha256 === hex))
    refuse(
      what,
      `its subject is not ${expected.manifestDigest} (signed for ${st.subject.map((s) => s?.digest?.sha256).join(', ') || 'nothing'})`,
    );
  const p = st.predicate;
  if (p.nydusDigest !== expected.manifestDigest)
    refuse(what, `its predicate names Nydus manifest ${p.nydusDigest}, not ${expected.manifestDigest}`);
  if (typeof p.sourceDigest !== 'string' || !DIGEST.test(p.sourceDigest)) refuse(what, 'its predicate has no source digest');
  if (expected.sourceDigest && p.sourceDigest !== expected.sourceDigest)
    refuse(what, `its source digest ${p.sourceDigest} is not the manifest's ${expected.sourceDigest}`);
  if (p.bootstrapDigest !== expected.bootstrapDigest)
    refuse(what, `its bootstrap ${p.bootstrapDigest} is not the manifest's ${expected.bootstrapDigest}`);
}

/** The artifact manifest of an attestation (empty config, the envelope as its one layer). */
export function attestationManifest(o: { config: Descriptor; envelope: Descriptor; subject: Descriptor; created: string }): ImageManifest {
  return {
    schemaVersion: 2,
    mediaType: MediaType.OCI_MANIFEST,
    artifactType: ATTESTATION_ARTIFACT_TYPE,
    config: o.config,
    layers: [{ ...o.envelope, annotations: { [ATTESTATION_PREDICATE_ANNOTATION]: CONVERSION_PREDICATE_TYPE } }],
    subject: { mediaType: o.subject.mediaType, digest: o.subject.digest, size: o.subject.size },
    annotations: { [ATTESTATION_PREDICATE_ANNOTATION]: CONVERSION_PREDICATE_TYPE, 'org.opencontainers.image.created': o.created },
  };
}

/** The envelope layer of an attestation manifest, if it is a conversion attestation of bounded size. */
export function envelopeLayer(man: ImageManifest): Descriptor | undefined {
  if (man.annotations?.[ATTESTATION_PREDICATE_ANNOTATION] !== CONVERSION_PREDICATE_TYPE) return undefined;
  const l = man.layers.find((d) => d.mediaType === DSSE_ENVELOPE_MEDIA_TYPE);
  return l && l.size <= MAX_ENVELOPE_BYTES ? l : undefined;
}
