/**
 * @module convert/supply-chain
 * Carries a source image's supply-chain artefacts (signatures, attestations, SBOMs) to its Nydus
 * conversion:
 * - cosign's legacy tags `sha256-<source hex>.sig/.att/.sbom` are tagged again as
 *   `sha256-<target hex>.<suffix>` in the target repository (the same manifest, unchanged: its
 *   payload still names the source digest, which is what was signed) and, when the target is another
 *   repository, copied there under their own tag too;
 * - OCI 1.1 referrers of the source (notation, cosign ≥ 2 with referrers, SBOMs — everything but
 *   image manifests, i.e. other conversions) are, when the target is another repository, copied
 *   there as referrers of the same source digest (referrers API, or the tag schema on registries
 *   without it), so a tool following the Nydus manifest's `subject` or the merged index's source
 *   entry finds them. In the same repository they already are.
 * A conversion is not re-signed: nobody's key signed the Nydus digest.
 */
import { FerryError } from '../core/index.js';
import {
  COSIGN_TAG_SUFFIXES,
  IMAGE_MANIFEST_TYPES,
  MediaType,
  NYDUS_CONFIG_MEDIA_TYPE,
  NYDUS_MANIFEST_ARTIFACT_TYPE,
  cosignTag,
  parseManifestDocument,
} from '../oci/index.js';
import { pushReferrer, withDigest, withTag, type ImageReference, type RegistryClient } from '../remote/index.js';
import { silentLogger, type Logger } from '../observe/index.js';
import { copyBlobBetween } from './copy-blob.js';

/** artifactTypes of image manifests: a referrer with one is another image (a conversion), not an artefact. */
const IMAGE_ARTIFACT_TYPES: ReadonlySet<string> = new Set([
  MediaType.OCI_CONFIG,
  MediaType.DOCKER_CONFIG,
  NYDUS_CONFIG_MEDIA_TYPE,
  NYDUS_MANIFEST_ARTIFACT_TYPE,
]);

export interface CarryOptions {
  sourceClient: RegistryClient;
  targetClient: RegistryClient;
  /** the source repository (any tag/digest in it is ignored) */
  source: ImageReference;
  /** the target repository */
  target: ImageReference;
  /** the signed digest (the source's top manifest or index) */
  sourceDigest: string;
  /** the digest that stands for it in the target (Nydus manifest or merged index) */
  targetDigest: string;
  log?: Logger;
}

export interface CarriedArtifacts {
  /** target tags written (`sha256-<hex>.sig` …) */
  tags: string[];
  /** digests of referrers copied into the target repository */
  referrers: string[];
}

function sameRepo(a: ImageReference, b: ImageReference): boolean {
  return a.registry === b.registry && a.repository === b.repository;
}

/** Copies the blobs a manifest document names (an index names manifests, not blobs: none). */
async function copyBlobsOf(o: CarryOptions, body: Buffer, mediaType: string, what: string): Promise<void> {
  const doc = parseManifestDocument(body, mediaType, what);
  if (doc.kind === 'index')
    throw new FerryError('NOT_IMPLEMENTED', `${what} is an index: artefacts made of several manifests are not carried yet`);
  for (const b of [doc.manifest.config, ...doc.manifest.layers])
    await copyBlobBetween(o.sourceClient, o.targetClient, o.source, o.target, b);
}

/** cosign legacy tags of the source digest → the target digest's tags (and the same tags, in another repository). */
async function carryCosignTags(o: CarryOptions): Promise<string[]> {
  const written: string[] = [];
  for (const suffix of COSIGN_TAG_SUFFIXES) {
    const from = withTag(o.source, cosignTag(o.sourceDigest, suffix));
    if (!(await o.sourceClient.headManifest(from))) continue;
    const m = await o.sourceClient.getManifest(from);
    const tags = [cosignTag(o.targetDigest, suffix)];
    if (!sameRepo(o.source, o.target)) {
      await copyBlobsOf(o, m.body, m.mediaType, `cosign artefact ${from.tag}`);
      tags.push(from.tag!);
    }
    for (const tag of tags) await o.targetClient.putManifest(withTag(o.target, tag), m.body, m.mediaType);
    written.push(...tags);
  }
  return written;
}

/** Referrers of the source digest that are artefacts, copied into another target repository. */
async function carryReferrers(o: CarryOptions): Promise<string[]> {
  if (sameRepo(o.source, o.target)) return [];
  const list = await o.sourceClient.referrers(o.source.registry, o.source.repository, o.sourceDigest);
  const copied: string[] = [];
  for (const d of list) {
    if (d.artifactType && IMAGE_ARTIFACT_TYPES.has(d.artifactType)) continue;
    if (!d.artifactType && IMAGE_MANIFEST_TYPES.includes(d.mediaType)) continue;
    const m = await o.sourceClient.getManifest(withDigest(o.source, d.digest));
    await copyBlobsOf(o, m.body, m.mediaType, `referrer ${d.digest}`);
    await pushReferrer(o.targetClient, o.target, m.body, m.mediaType, o.sourceDigest);
    copied.push(d.digest);
  }
  return copied;
}

/** Carries the source's signatures, attestations and SBOMs to the converted image (see the module comment). */
export async function carrySupplyChain(o: CarryOptions): Promise<CarriedArtifacts> {
  const log = o.log ?? silentLogger();
  const tags = await carryCosignTags(o);
  const referrers = await carryReferrers(o);
  if (tags.length || referrers.length) log.info({ tags, referrers, sourceDigest: o.sourceDigest }, 'supply-chain artefacts carried');
  return { tags, referrers };
}
