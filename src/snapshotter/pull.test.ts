import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { MediaType, NYDUS_CONFIG_MEDIA_TYPE, type ImageManifest } from '../oci/index.js';
import { recordedManifest } from './pull.js';

const manifest = (configType: string): ImageManifest => ({
  schemaVersion: 2,
  mediaType: MediaType.OCI_MANIFEST,
  config: { mediaType: configType, digest: `sha256:${'c'.repeat(64)}`, size: 10 },
  layers: [{ mediaType: MediaType.OCI_LAYER_GZIP, digest: `sha256:${'1'.repeat(64)}`, size: 5 }],
  annotations: { a: 'b' },
});

test("a merged index's Nydus manifest is recorded with an OCI config descriptor (same config, layers, annotations)", () => {
  const m = manifest(NYDUS_CONFIG_MEDIA_TYPE);
  const fetched = { mediaType: MediaType.OCI_MANIFEST, digest: `sha256:${'f'.repeat(64)}`, body: Buffer.from(JSON.stringify(m)) };
  const rec = recordedManifest(m, fetched);
  const doc = JSON.parse(rec.body.toString()) as ImageManifest;
  assert.equal(doc.config.mediaType, MediaType.OCI_CONFIG);
  assert.deepEqual({ ...doc, config: { ...doc.config, mediaType: NYDUS_CONFIG_MEDIA_TYPE } }, m);
  assert.equal(rec.digest, `sha256:${createHash('sha256').update(rec.body).digest('hex')}`);
  assert.notEqual(rec.digest, fetched.digest);
});

test('any other manifest is recorded exactly as fetched', () => {
  const m = manifest(MediaType.OCI_CONFIG);
  const fetched = { mediaType: MediaType.OCI_MANIFEST, digest: `sha256:${'f'.repeat(64)}`, body: Buffer.from(' {} ') };
  assert.equal(recordedManifest(m, fetched), fetched);
});
