/**
 * Supply-chain artefacts made in a test, shaped as the real tools push them (no network, no cosign
 * or notation binaries): a cosign signature under the legacy tag `sha256-<hex>.sig` (simple-signing
 * payload naming the signed digest, ECDSA P-256 signature in the layer's annotation) and a notation
 * signature pushed as an OCI 1.1 referrer (artifactType application/vnd.cncf.notary.signature).
 */
import { createVerify, generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import { MediaType, cosignTag, parseImageManifest } from '../../src/oci/index.js';
import { pushReferrer, withTag, type ImageReference, type RegistryClient } from '../../src/remote/index.js';

export const COSIGN_SIMPLESIGNING = 'application/vnd.dev.cosign.simplesigning.v1+json';
export const COSIGN_SIGNATURE_ANNOTATION = 'dev.cosignproject.cosign/signature';
export const NOTATION_SIGNATURE = 'application/vnd.cncf.notary.signature';

export function signingKey(): { privateKey: KeyObject; publicKey: KeyObject } {
  return generateKeyPairSync('ec', { namedCurve: 'P-256' });
}

type Repo = Pick<ImageReference, 'registry' | 'repository'>;

/** Pushes a cosign-style signature of `digest` under `sha256-<hex>.sig`; returns the signature manifest's digest. */
export async function pushCosignSignature(client: RegistryClient, repo: Repo, digest: string, key: KeyObject): Promise<string> {
  const payload = Buffer.from(
    JSON.stringify({
      critical: {
        identity: { 'docker-reference': `${repo.registry}/${repo.repository}` },
        image: { 'docker-manifest-digest': digest },
        type: 'cosign container image signature',
      },
      optional: null,
    }),
  );
  const layer = await client.pushBuffer(repo.registry, repo.repository, payload, COSIGN_SIMPLESIGNING);
  const config = await client.pushBuffer(
    repo.registry,
    repo.repository,
    Buffer.from('{"architecture":"","os":"","rootfs":{"type":"layers","diff_ids":[]}}'),
    MediaType.OCI_CONFIG,
  );
  const manifest = {
    schemaVersion: 2,
    mediaType: MediaType.OCI_MANIFEST,
    config,
    layers: [{ ...layer, annotations: { [COSIGN_SIGNATURE_ANNOTATION]: sign('sha256', payload, key).toString('base64') } }],
  };
  return client.putManifest(withTag(repo, cosignTag(digest, 'sig')), Buffer.from(JSON.stringify(manifest)), MediaType.OCI_MANIFEST);
}

/**
 * Verifies a cosign-style signature manifest as `cosign verify` does at its core: the layer's
 * signature over the payload with `publicKey`; answers the digest the payload says was signed.
 */
export async function verifyCosignSignature(client: RegistryClient, repo: Repo, tag: string, publicKey: KeyObject): Promise<string> {
  const m = await client.getManifest(withTag(repo, tag));
  const layer = parseImageManifest(m.body).layers[0]!;
  const payload = await client.getBlobBuffer(repo.registry, repo.repository, layer.digest);
  const sig = Buffer.from(layer.annotations?.[COSIGN_SIGNATURE_ANNOTATION] ?? '', 'base64');
  if (!createVerify('sha256').update(payload).verify(publicKey, sig)) throw new Error(`signature under ${tag} does not verify`);
  return (JSON.parse(payload.toString()) as { critical: { image: { 'docker-manifest-digest': string } } }).critical.image[
    'docker-manifest-digest'
  ];
}

/** Pushes a notation-style signature of `subject` as a referrer (API or tag schema); returns its digest. */
export async function pushNotationSignature(
  client: RegistryClient,
  repo: Repo,
  subject: { mediaType: string; digest: string; size: number },
): Promise<string> {
  const empty = await client.pushBuffer(repo.registry, repo.repository, Buffer.from('{}'), MediaType.OCI_EMPTY);
  const envelope = await client.pushBuffer(
    repo.registry,
    repo.repository,
    Buffer.from(JSON.stringify({ payload: 'e30', signatures: [] })),
    'application/jose+json',
  );
  const manifest = {
    schemaVersion: 2,
    mediaType: MediaType.OCI_MANIFEST,
    artifactType: NOTATION_SIGNATURE,
    config: empty,
    layers: [envelope],
    subject,
    annotations: { 'io.cncf.notary.x509chain.thumbprint#S256': '["00"]' },
  };
  return (await pushReferrer(client, repo, Buffer.from(JSON.stringify(manifest)), MediaType.OCI_MANIFEST, subject.digest)).digest;
}
