/**
 * @module oci/referrers
 * The OCI 1.1 referrers tag schema, the fallback for registries without the referrers API (CNCF
 * distribution 2.8, what Harbor 2.8 and older run on): the referrers of a manifest `<alg>:<hex>`
 * are listed in an image index tagged `<alg>-<hex>` in the same repository, one descriptor per
 * referrer carrying its `artifactType` (the manifest's, else its config's media type) and its
 * annotations. Pure: the tag name, the descriptor of a referrer and the index update.
 */
import { FerryError } from '../core/index.js';
import { MediaType } from './media-types.js';
import { parseManifestDocument } from './parse.js';
import type { Descriptor, ImageIndex } from './types.js';

/** Characters a tag may not hold are replaced by '-' (the spec's rule for unusual algorithms). */
const TAG_CHAR = /[^a-zA-Z0-9_.-]/g;

/**
 * The tag of the referrers index of `digest`: `<alg>-<hex>`, the algorithm cut to 32 characters
 * and the encoded part to 64, as the spec asks (a sha256 digest keeps all 64 hex digits).
 */
export function referrersTag(digest: string): string {
  const colon = digest.indexOf(':');
  if (colon <= 0 || colon === digest.length - 1) throw new FerryError('INVALID_ARGUMENT', `not a digest: ${JSON.stringify(digest)}`);
  const alg = digest.slice(0, colon).slice(0, 32).replace(TAG_CHAR, '-');
  const hex = digest
    .slice(colon + 1)
    .slice(0, 64)
    .replace(TAG_CHAR, '-');
  return `${alg}-${hex}`;
}

/** Suffixes of cosign's legacy tag scheme: `sha256-<hex>.sig`, `.att` (attestations), `.sbom`. */
export const COSIGN_TAG_SUFFIXES = ['sig', 'att', 'sbom'] as const;
export type CosignTagSuffix = (typeof COSIGN_TAG_SUFFIXES)[number];

const ARTIFACT_TAG = /^sha256-([a-f0-9]{64})(?:\.(sig|att|sbom))?$/;

/** The cosign legacy tag of an artefact about `digest` (`sha256-<hex>.sig`, …). */
export function cosignTag(digest: string, suffix: CosignTagSuffix): string {
  return `${referrersTag(digest)}.${suffix}`;
}

/**
 * What a tag of the supply-chain schemes is about: cosign's `sha256-<hex>.sig/.att/.sbom` (suffix
 * given) or a referrers tag-schema index `sha256-<hex>` (no suffix); undefined for any other tag.
 * Such tags name artefacts about an image, never an image to convert.
 */
export function artifactTagSubject(tag: string): { digest: string; suffix?: CosignTagSuffix } | undefined {
  const m = ARTIFACT_TAG.exec(tag);
  if (!m) return undefined;
  return { digest: `sha256:${m[1]}`, ...(m[2] ? { suffix: m[2] as CosignTagSuffix } : {}) };
}

/**
 * The descriptor a referrers list holds for a pushed manifest: media type, digest and size of the
 * bytes pushed, `artifactType` (the manifest's own, else an image manifest's config media type; an
 * index without one gets none) and a copy of its annotations.
 */
export function referrerDescriptor(body: Buffer, mediaType: string, digest: string): Descriptor {
  const doc = parseManifestDocument(body, mediaType, `referrer ${digest}`);
  const m = doc.kind === 'manifest' ? doc.manifest : doc.index;
  const artifactType = m.artifactType ?? (doc.kind === 'manifest' ? doc.manifest.config.mediaType : undefined);
  return {
    mediaType: doc.mediaType,
    digest,
    size: body.length,
    ...(artifactType ? { artifactType } : {}),
    ...(m.annotations && Object.keys(m.annotations).length ? { annotations: { ...m.annotations } } : {}),
  };
}

/**
 * The referrers index with `add` listed once: entries of other digests are kept in their order,
 * an existing entry of the same digest is replaced in place (never listed twice), and duplicates
 * an earlier writer left are dropped. `changed` is false when the index already said exactly this.
 */
export function mergeReferrersIndex(existing: ImageIndex | undefined, add: Descriptor): { index: ImageIndex; changed: boolean } {
  const before = existing?.manifests ?? [];
  const manifests: Descriptor[] = [];
  const seen = new Set<string>();
  let placed = false;
  for (const d of before) {
    if (seen.has(d.digest)) continue;
    seen.add(d.digest);
    if (d.digest === add.digest) {
      manifests.push(add);
      placed = true;
    } else manifests.push(d);
  }
  if (!placed) manifests.push(add);
  const index: ImageIndex = {
    ...(existing ?? {}),
    schemaVersion: 2,
    mediaType: MediaType.OCI_INDEX,
    manifests,
  };
  const changed = existing === undefined || JSON.stringify(existing.manifests) !== JSON.stringify(manifests);
  return { index, changed };
}
