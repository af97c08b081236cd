/**
 * @module convert/attestation
 * Conversion provenance in the registry (the statement, envelope and artifact are oci/attestation):
 * - signing: after a conversion, each Nydus manifest it produced gets a signed attestation pushed as
 *   its OCI referrer (referrers API, or the tag schema on registries without it), then looked up as
 *   a node would — an attestation no node can find is an error;
 * - verifying: the attestations listed for a manifest are read and the first whose signature verifies
 *   with the policy key and whose statement matches the manifest (subject, bootstrap, source digest)
 *   is the answer; none → FAILED_PRECONDITION with every reason.
 * Keys are PEM/DER files read by node:crypto: Ed25519 or ECDSA P-256. A private key file must be
 * owner-only; an encrypted PKCS#8 key takes its passphrase from an environment variable.
 */
import { createPrivateKey, createPublicKey, type KeyObject } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import { FerryError } from '../core/index.js';
import {
  ATTESTATION_ARTIFACT_TYPE,
  MediaType,
  DSSE_ENVELOPE_MEDIA_TYPE,
  MAX_ENVELOPE_BYTES,
  NydusAnnotation,
  attestationManifest,
  checkConversionStatement,
  conversionStatement,
  envelopeLayer,
  keyIdOf,
  openEnvelope,
  parseImageManifest,
  parseManifestDocument,
  signStatement,
  type ImageManifest,
} from '../oci/index.js';
import { silentLogger, type Logger } from '../observe/index.js';
import { formatReference, pushReferrer, withDigest, type ImageReference, type RegistryClient } from '../remote/index.js';

/** Attestations looked at per manifest (a registry could list thousands). */
const MAX_CANDIDATES = 16;

function readKeyFile(path: string, what: string, ownerOnly: boolean): Buffer {
  try {
    if (ownerOnly && (statSync(path).mode & 0o077) !== 0)
      throw new FerryError('INVALID_ARGUMENT', `${what} ${path} is readable by group or others (chmod 600 it)`);
    return readFileSync(path);
  } catch (err) {
    if (err instanceof FerryError) throw err;
    throw new FerryError('INVALID_ARGUMENT', `${what} ${path}: ${(err as Error).message}`, { cause: err });
  }
}

/** Checks a key is of a kind attestations use (by signing nothing with it: node says no otherwise). */
function checkKeyKind(key: KeyObject, what: string): KeyObject {
  const t = key.asymmetricKeyType;
  if (t === 'ed25519' || (t === 'ec' && key.asymmetricKeyDetails?.namedCurve === 'prime256v1')) return key;
  throw new FerryError('INVALID_ARGUMENT', `${what}: an Ed25519 or ECDSA P-256 key is needed, this is ${t ?? 'unknown'}`);
}

/**
 * The signing key of attestations: a PEM (PKCS#8 or SEC1) or DER PKCS#8 file, mode 0600; encrypted
 * PKCS#8 needs `passphrase` (from an environment variable — never a flag or a config value).
 */
export function loadSigningKey(path: string, passphrase?: string): KeyObject {
  const what = 'attestation signing key';
  const data = readKeyFile(path, what, true);
  let key: KeyObject;
  try {
    const pem = data.includes('-----BEGIN');
    key = createPrivateKey(
      pem
        ? { key: data, format: 'pem', ...(passphrase ? { passphrase } : {}) }
        : { key: data, format: 'der', type: 'pkcs8', ...(passphrase ? { passphrase } : {}) },
    );
  } catch (err) {
    const encrypted = data.includes('-----BEGIN ENCRYPTED PRIVATE KEY-----');
    const hint = !encrypted ? '' : passphrase ? ' (encrypted: wrong passphrase?)' : ' (encrypted: set its passphrase environment variable)';
    throw new FerryError('INVALID_ARGUMENT', `${what} ${path} is not a private key${hint}`, { cause: err });
  }
  return checkKeyKind(key, `${what} ${path}`);
}

/** The public key attestations must verify with (PEM SubjectPublicKeyInfo, or a private key's public half). */
export function loadVerifyKey(path: string): KeyObject {
  const what = 'attestation public key';
  const data = readKeyFile(path, what, false);
  let key: KeyObject;
  try {
    key = createPublicKey(data.includes('-----BEGIN') ? { key: data, format: 'pem' } : { key: data, format: 'der', type: 'spki' });
  } catch (err) {
    throw new FerryError('INVALID_ARGUMENT', `${what} ${path} is not a public key`, { cause: err });
  }
  return checkKeyKind(key, `${what} ${path}`);
}

function bootstrapOf(man: ImageManifest): string | undefined {
  return [...man.layers].reverse().find((l) => l.annotations?.[NydusAnnotation.BOOTSTRAP] === 'true')?.digest;
}

export interface AttestOptions {
  client: RegistryClient;
  /** the target repository (its tag is not used) */
  target: ImageReference;
  /** the source as converted */
  source: string;
  /** the converter, `name version` (convert.ts BUILDER_VERSION) */
  tool: string;
  /** the Nydus manifests of the conversion (one per platform) */
  manifests: ReadonlyArray<{ digest: string; sourceDigest: string }>;
  key: KeyObject;
  /** time of the conversion (default now) */
  now?: Date;
  log?: Logger;
}

export interface Attested {
  /** Nydus manifest digest → attestation manifest digest */
  subject: string;
  attestation: string;
  via: 'referrers-api' | 'tag-schema';
}

/** Signs and pushes one attestation per Nydus manifest; FAILED_PRECONDITION when the registry does not list one. */
export async function attestConversion(o: AttestOptions): Promise<Attested[]> {
  const { client, target } = o;
  const log = o.log ?? silentLogger();
  const created = (o.now ?? new Date()).toISOString();
  const out: Attested[] = [];
  for (const m of o.manifests) {
    const fetched = await client.getManifest(withDigest(target, m.digest));
    const man = parseImageManifest(fetched.body, fetched.mediaType, `Nydus manifest ${m.digest}`);
    const bootstrapDigest = bootstrapOf(man);
    if (!bootstrapDigest) throw new FerryError('INVALID_ARGUMENT', `${m.digest} has no Nydus bootstrap layer: nothing to attest`);
    const statement = conversionStatement(`${target.registry}/${target.repository}`, {
      sourceDigest: man.annotations?.[NydusAnnotation.SOURCE_DIGEST] ?? m.sourceDigest,
      sourceReference: o.source,
      nydusDigest: m.digest,
      bootstrapDigest,
      tool: { name: o.tool.split(' ')[0]!, version: o.tool.split(' ').slice(1).join(' ') || 'unknown' },
      timestamp: created,
    });
    const envelope = Buffer.from(JSON.stringify(signStatement(statement, o.key)));
    const layer = await client.pushBuffer(target.registry, target.repository, envelope, DSSE_ENVELOPE_MEDIA_TYPE);
    const config = await client.pushBuffer(target.registry, target.repository, Buffer.from('{}'), MediaType.OCI_EMPTY);
    const subject = { mediaType: fetched.mediaType, digest: m.digest, size: fetched.body.length };
    const body = Buffer.from(JSON.stringify(attestationManifest({ config, envelope: layer, subject, created })));
    const pushed = await pushReferrer(client, target, body, MediaType.OCI_MANIFEST, m.digest);
    const listed = await client.referrers(target.registry, target.repository, m.digest, ATTESTATION_ARTIFACT_TYPE);
    if (!listed.some((d) => d.digest === pushed.digest))
      throw new FerryError(
        'FAILED_PRECONDITION',
        `pushed attestation ${pushed.digest}, but ${target.registry}/${target.repository} does not list it as a referrer of ${m.digest}`,
      );
    log.info({ subject: m.digest, attestation: pushed.digest, via: pushed.via, key: keyIdOf(o.key) }, 'conversion attestation pushed');
    out.push({ subject: m.digest, attestation: pushed.digest, via: pushed.via });
  }
  return out;
}

/**
 * Attests the Nydus manifests of an existing conversion (`targetDigest`: a Nydus manifest, or an
 * index holding them) that have no attestation verifying with the public half of `key` — a target
 * converted before signing was turned on. Children without a bootstrap layer (an index's OCI entries) are skipped.
 */
export async function attestMissing(o: Omit<AttestOptions, 'manifests'> & { targetDigest: string }): Promise<Attested[]> {
  const top = await o.client.getManifest(withDigest(o.target, o.targetDigest));
  const doc = parseManifestDocument(top.body, top.mediaType, `target ${o.targetDigest}`);
  const children = doc.kind === 'index' ? doc.index.manifests.map((d) => d.digest) : [o.targetDigest];
  const pub = createPublicKey(o.key);
  const missing: Array<{ digest: string; sourceDigest: string }> = [];
  for (const digest of children.slice(0, MAX_CANDIDATES)) {
    const m = await o.client.getManifest(withDigest(o.target, digest));
    const man = parseManifestDocument(m.body, m.mediaType, `target manifest ${digest}`);
    if (man.kind !== 'manifest' || !bootstrapOf(man.manifest)) continue;
    const ok = await verifyConversionAttestation(o.client, o.target, digest, man.manifest, pub).then(
      () => true,
      () => false,
    );
    if (!ok) missing.push({ digest, sourceDigest: man.manifest.annotations?.[NydusAnnotation.SOURCE_DIGEST] ?? '' });
  }
  return missing.length ? attestConversion({ ...o, manifests: missing }) : [];
}

/**
 * The digest of an attestation of `manifestDigest` (the manifest `man`, in `ref`'s repository) that
 * verifies with `key`; FAILED_PRECONDITION naming the image and every reason when none does.
 */
export async function verifyConversionAttestation(
  client: RegistryClient,
  ref: ImageReference,
  manifestDigest: string,
  man: ImageManifest,
  key: KeyObject,
): Promise<string> {
  const image = formatReference(withDigest(ref, manifestDigest));
  const bootstrapDigest = bootstrapOf(man);
  if (!bootstrapDigest) throw new FerryError('FAILED_PRECONDITION', `${image}: not a Nydus image, no conversion attestation applies`);
  const sourceDigest = man.annotations?.[NydusAnnotation.SOURCE_DIGEST];
  const listed = await client.referrers(ref.registry, ref.repository, manifestDigest, ATTESTATION_ARTIFACT_TYPE);
  const reasons: string[] = [];
  for (const d of listed.slice(0, MAX_CANDIDATES)) {
    const what = `attestation ${d.digest}`;
    try {
      const m = await client.getManifest(withDigest(ref, d.digest));
      const layer = envelopeLayer(parseImageManifest(m.body, m.mediaType, what));
      if (!layer) throw new FerryError('FAILED_PRECONDITION', `${what}: not a conversion attestation`);
      const env = await client.getBlobBuffer(ref.registry, ref.repository, layer.digest, MAX_ENVELOPE_BYTES);
      const st = openEnvelope(env, key, what);
      checkConversionStatement(st, { manifestDigest, bootstrapDigest, ...(sourceDigest ? { sourceDigest } : {}) }, what);
      return d.digest;
    } catch (err) {
      reasons.push((err as Error).message);
    }
  }
  const why = listed.length === 0 ? 'no conversion attestation is attached to it' : reasons.join('; ');
  throw new FerryError('FAILED_PRECONDITION', `${image} is refused by the attestation policy (key ${keyIdOf(key)}): ${why}`);
}
