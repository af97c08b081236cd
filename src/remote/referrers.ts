/**
 * @module remote/referrers
 * Referrers on any registry. Pushing a manifest with a `subject`: a registry with the referrers
 * API answers `OCI-Subject` and lists it by itself; otherwise (CNCF distribution 2.8, Harbor up to
 * 2.8, …) the client keeps the OCI 1.1 tag-schema index `<alg>-<hex>` (oci/referrers) up to date:
 * read it (absent: empty), add the descriptor once, put it back. Looking up: the client's
 * `referrers()` reads that index when the API answers 404.
 *
 * The index update is read-modify-write: two clients pushing referrers of one subject at the same
 * moment can lose one entry (distribution has no conditional manifest PUT). `ferry trace push`
 * therefore looks its trace up after pushing and fails when it is not listed.
 */
import { FerryError, sha256Digest } from '../core/index.js';
import {
  MediaType,
  mergeReferrersIndex,
  parseImageIndex,
  referrerDescriptor,
  referrersTag,
  type Descriptor,
  type ImageIndex,
} from '../oci/index.js';
import type { RegistryClient } from './client.js';
import { formatReference, withDigest, withTag, type ImageReference } from './reference.js';

/** How a pushed referrer became findable. */
export type ReferrerPush = { digest: string; via: 'referrers-api' } | { digest: string; via: 'tag-schema'; tag: string; listed: number };

type Repo = Pick<ImageReference, 'registry' | 'repository'>;

/** The tag-schema referrers index of `subject` in `repo`, or undefined when the tag does not exist. */
export async function readReferrersIndex(client: RegistryClient, repo: Repo, subject: string): Promise<ImageIndex | undefined> {
  const tagged = withTag({ registry: repo.registry, repository: repo.repository }, referrersTag(subject));
  let m: Awaited<ReturnType<RegistryClient['getManifest']>>;
  try {
    m = await client.getManifest(tagged, { accept: [MediaType.OCI_INDEX] });
  } catch (err) {
    if (FerryError.hasCode(err, 'NOT_FOUND')) return undefined;
    throw err;
  }
  // anything else under that tag is not ours to interpret (nor, when pushing, to overwrite)
  return parseImageIndex(m.body, m.mediaType, `referrers index ${formatReference(tagged)}`);
}

/** Referrers of `subject` listed by the tag schema, optionally of one artifact type. */
export async function referrersFromTag(client: RegistryClient, repo: Repo, subject: string, artifactType?: string): Promise<Descriptor[]> {
  const list = (await readReferrersIndex(client, repo, subject))?.manifests ?? [];
  return artifactType ? list.filter((d) => d.artifactType === artifactType) : list;
}

/**
 * Pushes `body` (a manifest whose subject is `subject`) into `repo` by digest and makes it findable
 * as a referrer: through the registry's referrers API when the registry confirms with
 * `OCI-Subject`, else by adding it to the tag-schema index.
 */
export async function pushReferrer(
  client: RegistryClient,
  repo: Repo,
  body: Buffer,
  mediaType: string,
  subject: string,
): Promise<ReferrerPush> {
  const desc = referrerDescriptor(body, mediaType, sha256Digest(body));
  const base: ImageReference = { registry: repo.registry, repository: repo.repository };
  const put = await client.putManifestAnswer(withDigest(base, desc.digest), body, mediaType);
  if (put.ociSubject === subject) return { digest: desc.digest, via: 'referrers-api' };
  const tag = referrersTag(subject);
  const { index, changed } = mergeReferrersIndex(await readReferrersIndex(client, repo, subject), desc);
  if (changed) await client.putManifest(withTag(base, tag), Buffer.from(JSON.stringify(index)), MediaType.OCI_INDEX);
  return { digest: desc.digest, via: 'tag-schema', tag, listed: index.manifests.length };
}
