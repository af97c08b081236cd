import { describe, it, test } from 'node:test';
import assert from 'node:assert/strict';
import { sha256Digest } from '../core/index.js';
import { MediaType } from './media-types.js';
import { artifactTagSubject, cosignTag, mergeReferrersIndex, referrerDescriptor, referrersTag } from './referrers.js';
import type { Descriptor, ImageIndex } from './types.js';

const HEX = 'ab'.repeat(32);
const desc = (n: number, extra: Partial<Descriptor> = {}): Descriptor => ({
  mediaType: MediaType.OCI_MANIFEST,
  digest: `sha256:${String(n).repeat(64).slice(0, 64)}`,
  size: 100 + n,
  ...extra,
});

describe('referrers tag schema: tag name', () => {
  it('is <alg>-<hex> for a sha256 digest, all 64 hex digits kept', () => {
    assert.equal(referrersTag(`sha256:${HEX}`), `sha256-${HEX}`);
  });
  it('cuts the algorithm to 32 and the encoded part to 64 characters and replaces characters a tag cannot hold', () => {
    const t = referrersTag(`${'a'.repeat(40)}+b64:${'c'.repeat(100)}`);
    assert.equal(t, `${'a'.repeat(32)}-${'c'.repeat(64)}`);
    assert.equal(referrersTag('sha512+x:ab/cd'), 'sha512-x-ab-cd');
    assert.match(referrersTag(`sha512:${'f'.repeat(128)}`), /^sha512-f{64}$/);
  });
  it('refuses something that is not a digest', () => {
    assert.throws(() => referrersTag('latest'), /not a digest/);
    assert.throws(() => referrersTag('sha256:'), /not a digest/);
  });
});

describe('referrers tag schema: descriptor of a referrer', () => {
  it('carries the manifest artifactType and a copy of its annotations, digest and size of the bytes', () => {
    const body = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: MediaType.OCI_MANIFEST,
        artifactType: 'application/x.trace',
        config: { mediaType: MediaType.OCI_EMPTY, digest: `sha256:${'4'.repeat(64)}`, size: 2 },
        layers: [],
        subject: { mediaType: MediaType.OCI_MANIFEST, digest: `sha256:${HEX}`, size: 10 },
        annotations: { 'org.opencontainers.image.created': '2026-01-01T00:00:00Z' },
      }),
    );
    const d = referrerDescriptor(body, MediaType.OCI_MANIFEST, sha256Digest(body));
    assert.deepEqual(d, {
      mediaType: MediaType.OCI_MANIFEST,
      digest: sha256Digest(body),
      size: body.length,
      artifactType: 'application/x.trace',
      annotations: { 'org.opencontainers.image.created': '2026-01-01T00:00:00Z' },
    });
  });
  it('falls back to the config media type for an image manifest without artifactType', () => {
    const body = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: MediaType.OCI_MANIFEST,
        config: { mediaType: 'application/x.sig.config', digest: `sha256:${'4'.repeat(64)}`, size: 2 },
        layers: [],
      }),
    );
    const d = referrerDescriptor(body, MediaType.OCI_MANIFEST, 'sha256:x');
    assert.equal(d.artifactType, 'application/x.sig.config');
    assert.equal(d.annotations, undefined);
  });
  it('rejects a body that is not a manifest', () => {
    assert.throws(() => referrerDescriptor(Buffer.from('nope'), MediaType.OCI_MANIFEST, 'sha256:x'), /referrer sha256:x/);
  });
});

describe('referrers tag schema: index update', () => {
  it('starts an OCI index when the tag does not exist', () => {
    const { index, changed } = mergeReferrersIndex(undefined, desc(1));
    assert.equal(changed, true);
    assert.deepEqual(index, { schemaVersion: 2, mediaType: MediaType.OCI_INDEX, manifests: [desc(1)] });
  });
  it('keeps the existing entries (and the index annotations) in order and appends the new one', () => {
    const existing: ImageIndex = {
      schemaVersion: 2,
      mediaType: MediaType.OCI_INDEX,
      manifests: [desc(1, { artifactType: 'application/x.sig' }), desc(2)],
      annotations: { note: 'kept' },
    };
    const { index, changed } = mergeReferrersIndex(existing, desc(3));
    assert.equal(changed, true);
    assert.deepEqual(
      index.manifests.map((d) => d.digest),
      [desc(1).digest, desc(2).digest, desc(3).digest],
    );
    assert.equal(index.manifests[0]!.artifactType, 'application/x.sig');
    assert.deepEqual(index.annotations, { note: 'kept' });
  });
  it('never lists a digest twice: the same referrer again changes nothing, duplicates left by others are dropped', () => {
    const once = mergeReferrersIndex(undefined, desc(1)).index;
    const again = mergeReferrersIndex(once, desc(1));
    assert.equal(again.changed, false);
    assert.equal(again.index.manifests.length, 1);
    const messy: ImageIndex = { schemaVersion: 2, manifests: [desc(1), desc(2), desc(1)] };
    const tidy = mergeReferrersIndex(messy, desc(2, { annotations: { a: 'new' } }));
    assert.equal(tidy.changed, true);
    assert.deepEqual(
      tidy.index.manifests.map((d) => d.digest),
      [desc(1).digest, desc(2).digest],
    );
    assert.deepEqual(tidy.index.manifests[1]!.annotations, { a: 'new' });
  });
});

test('cosign legacy tags and tag-schema indexes are recognised as artefacts about a digest', () => {
  const hex = 'ab'.repeat(32);
  assert.equal(cosignTag(`sha256:${hex}`, 'sig'), `sha256-${hex}.sig`);
  assert.deepEqual(artifactTagSubject(`sha256-${hex}.sig`), { digest: `sha256:${hex}`, suffix: 'sig' });
  assert.deepEqual(artifactTagSubject(`sha256-${hex}.att`), { digest: `sha256:${hex}`, suffix: 'att' });
  assert.deepEqual(artifactTagSubject(`sha256-${hex}.sbom`), { digest: `sha256:${hex}`, suffix: 'sbom' });
  assert.deepEqual(artifactTagSubject(`sha256-${hex}`), { digest: `sha256:${hex}` });
  for (const t of ['latest', `sha256-${hex}.sig-nydus`, `sha256-${hex.slice(2)}.sig`, `sha256-${hex}.cert`, `v1-sha256-${hex}.sig`])
    assert.equal(artifactTagSubject(t), undefined, t);
});
