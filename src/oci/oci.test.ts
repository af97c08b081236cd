import { test } from 'node:test';
import assert from 'node:assert/strict';
import { FerryError } from '../core/index.js';
import {
  MediaType,
  NYDUS_MANIFEST_ARTIFACT_TYPE,
  ANY_PLATFORM,
  manifestFacts,
  parseDescriptor,
  parseImageConfig,
  parseImageIndex,
  parseImageManifest,
  parseManifestDocument,
  parsePlatform,
  resolveNydusManifest,
  resolvePlatform,
  selectManifest,
  type Descriptor,
  type ImageIndex,
} from './index.js';

const D = `sha256:${'a'.repeat(64)}`;
const cfg = { mediaType: MediaType.OCI_CONFIG, digest: D, size: 2 };
const json = (v: unknown): Buffer => Buffer.from(JSON.stringify(v));
const linux = (architecture: string, extra: Record<string, unknown> = {}): { os: string; architecture: string } => ({
  os: 'linux',
  architecture,
  ...extra,
});
const entry = (digest: string, platform: { os: string; architecture: string }, extra: Record<string, unknown> = {}): Descriptor => ({
  mediaType: MediaType.OCI_MANIFEST,
  digest,
  size: 1,
  platform,
  ...extra,
});
const config = (extra: Record<string, unknown>): Buffer => json({ os: 'linux', architecture: 'amd64', ...extra });

function invalid(fn: () => unknown, re: RegExp): void {
  assert.throws(fn, (e: unknown) => FerryError.hasCode(e, 'INVALID_ARGUMENT') && re.test((e as Error).message), String(re));
}

test('manifests and indexes: media type from the field, the Content-Type or the shape; both kinds validated', () => {
  const man = { schemaVersion: 2, config: cfg, layers: [{ ...cfg, mediaType: MediaType.OCI_LAYER_GZIP }] };
  const a = parseManifestDocument(json(man), undefined);
  assert.equal(a.kind, 'manifest');
  assert.equal(a.mediaType, MediaType.OCI_MANIFEST);
  assert.equal(parseManifestDocument(json(man), `${MediaType.DOCKER_MANIFEST}; charset=utf-8`).mediaType, MediaType.DOCKER_MANIFEST);
  const idx = { schemaVersion: 2, manifests: [entry(D, linux('amd64'))] };
  const b = parseManifestDocument(json(idx), 'application/json');
  assert.equal(b.kind, 'index');
  assert.equal(b.mediaType, MediaType.OCI_INDEX);
  assert.deepEqual(parseImageIndex(json(idx)).manifests[0]?.digest, D);
  assert.deepEqual(parseImageManifest(json(man)).layers.length, 1);
  invalid(() => parseImageManifest(json(idx), undefined, 'the index'), /^the index: is an index/);
  invalid(() => parseImageIndex(json(man)), /is an image manifest/);
});

test('malformed manifests are INVALID_ARGUMENT naming the document and the field', () => {
  invalid(() => parseManifestDocument('{', undefined, 'manifest x'), /^manifest x: not valid JSON/);
  invalid(() => parseManifestDocument('[]'), /must be a JSON object/);
  invalid(() => parseManifestDocument(json({ schemaVersion: 1, name: 'x' })), /schema 1/);
  const emptyIndex = json({ schemaVersion: 2, mediaType: MediaType.OCI_INDEX, manifests: [] });
  invalid(() => parseManifestDocument(emptyIndex, MediaType.OCI_MANIFEST), /does not match/);
  invalid(() => parseManifestDocument(json({ schemaVersion: 3, config: cfg, layers: [] })), /schemaVersion must be 2/);
  invalid(() => parseManifestDocument(json({ foo: 1 }), 'text/plain'), /cannot tell the manifest type/);
  invalid(() => parseManifestDocument(json({ schemaVersion: 2, mediaType: 'x/other', config: cfg, layers: [] })), /unsupported/);
  invalid(() => parseManifestDocument(json({ schemaVersion: 2, config: cfg, layers: {} })), /layers must be an array/);
  invalid(() => parseManifestDocument(json({ schemaVersion: 2, config: cfg, layers: [7] })), /layers\[0\]: descriptor must be an object/);
  invalid(() => parseManifestDocument(json({ schemaVersion: 2, config: { ...cfg, digest: 'sha256:zz' }, layers: [] })), /invalid digest/);
  invalid(() => parseManifestDocument(json({ schemaVersion: 2, config: { ...cfg, size: -1 }, layers: [] })), /config: invalid size/);
  invalid(() => parseManifestDocument(json({ schemaVersion: 2, config: cfg, layers: [], annotations: { a: 1 } })), /annotations values/);
  invalid(() => parseManifestDocument(json({ schemaVersion: 2, manifests: [{ ...cfg, platform: { os: 'linux' } }] })), /platform needs/);
  invalid(() => parseDescriptor({ ...cfg, urls: [1] }, 'd'), /^d: urls must be an array of strings/);
});

test('manifest facts: blobs (URL layers left out), child manifests, subject, artifactType, children platforms', () => {
  const man = manifestFacts(
    parseManifestDocument(
      json({
        schemaVersion: 2,
        config: cfg,
        subject: cfg,
        layers: [
          { ...cfg, mediaType: 'l', urls: ['http://x'] },
          { ...cfg, mediaType: 'l' },
        ],
      }),
      MediaType.OCI_MANIFEST,
    ),
  );
  assert.deepEqual(man.blobs, [D]);
  assert.equal(man.subject, D);
  assert.equal(man.artifactType, cfg.mediaType);
  assert.equal(man.isIndex, false);
  const idx = manifestFacts(
    parseManifestDocument(
      json({
        schemaVersion: 2,
        artifactType: 't/x',
        manifests: [{ ...cfg, platform: { os: 'linux', architecture: 'arm64', variant: 'v8' } }],
      }),
    ),
  );
  assert.deepEqual(idx.manifests, [D]);
  assert.equal(idx.artifactType, 't/x');
  assert.deepEqual(idx.children, [{ digest: D, mediaType: cfg.mediaType, platform: { os: 'linux', architecture: 'arm64' } }]);
});

test('image configs: os, architecture and rootfs.diff_ids required; the command fields typed when present', () => {
  const c = parseImageConfig(config({ rootfs: { type: 'layers', diff_ids: [D] }, config: { Entrypoint: null, Cmd: ['sh'] } }));
  assert.deepEqual(c.rootfs.diff_ids, [D]);
  invalid(() => parseImageConfig(json({ os: 'linux', architecture: 'amd64' }), 'config y'), /^config y: rootfs must be an object/);
  invalid(() => parseImageConfig(json({ architecture: 'amd64', rootfs: { diff_ids: [] } })), /needs os and architecture/);
  invalid(() => parseImageConfig(config({ rootfs: { diff_ids: ['x'] } })), /diff_ids must be an array of digests/);
  invalid(() => parseImageConfig(config({ rootfs: { diff_ids: [] }, config: { Env: 'A=1' } })), /Env must be an array/);
});

test('resolvePlatform picks the matching manifest and names the ones available', () => {
  const idx: ImageIndex = {
    schemaVersion: 2,
    mediaType: MediaType.OCI_INDEX,
    manifests: [
      { mediaType: MediaType.OCI_MANIFEST, digest: D, size: 1, platform: { os: 'linux', architecture: 'amd64' } },
      entry(`sha256:${'b'.repeat(64)}`, linux('arm64', { variant: 'v8' })),
    ],
  };
  assert.equal(resolvePlatform(idx, 'linux/amd64').digest, D);
  assert.equal(resolvePlatform(idx, 'linux/arm64').digest, `sha256:${'b'.repeat(64)}`);
  assert.throws(() => resolvePlatform(idx, 'linux/s390x'), /linux\/amd64, linux\/arm64\/v8/);
  assert.throws(() => parsePlatform('linux'), { code: 'INVALID_ARGUMENT' });
});

test('resolveNydusManifest prefers the Nydus entry for the platform (artifactType or os.features), else the plain one', () => {
  const d = (c: string): string => `sha256:${c.repeat(64)}`;
  const idx: ImageIndex = {
    schemaVersion: 2,
    mediaType: MediaType.OCI_INDEX,
    manifests: [
      { mediaType: MediaType.OCI_MANIFEST, digest: d('1'), size: 1, platform: { os: 'linux', architecture: 'amd64' } },
      entry(d('2'), linux('arm64', { 'os.features': ['nydus.remoteimage.v1'] })),
      entry(d('3'), linux('amd64'), { artifactType: NYDUS_MANIFEST_ARTIFACT_TYPE }),
      { mediaType: MediaType.OCI_MANIFEST, digest: d('4'), size: 1, platform: { os: 'linux', architecture: 's390x' } },
    ],
  };
  assert.equal(resolveNydusManifest(idx, 'linux/amd64').digest, d('3'));
  assert.equal(resolveNydusManifest(idx, parsePlatform('linux/arm64')).digest, d('2'));
  assert.equal(resolveNydusManifest(idx, 'linux/s390x').digest, d('4'), 'no Nydus entry: the plain one');
  assert.equal(resolveNydusManifest(idx).digest, d('2'), 'any platform: the first Nydus entry');
  assert.throws(() => resolveNydusManifest(idx, 'linux/ppc64le'), /no manifest for platform linux\/ppc64le/);
});

test('selectManifest: this machine by default, any platform on request, Nydus entries first with prefer nydus', () => {
  const d = (c: string): string => `sha256:${c.repeat(64)}`;
  const idx: ImageIndex = {
    schemaVersion: 2,
    mediaType: MediaType.OCI_INDEX,
    manifests: [
      { mediaType: MediaType.OCI_MANIFEST, digest: d('1'), size: 1, platform: { os: 'linux', architecture: 's390x' } },
      entry(d('2'), linux('s390x'), { artifactType: NYDUS_MANIFEST_ARTIFACT_TYPE }),
    ],
  };
  assert.equal(selectManifest(idx, { platform: 'linux/s390x' }).digest, d('1'));
  assert.equal(selectManifest(idx, { platform: 'linux/s390x', prefer: 'nydus' }).digest, d('2'));
  assert.equal(selectManifest(idx, { platform: ANY_PLATFORM }).digest, d('1'));
  assert.equal(selectManifest(idx, { platform: ANY_PLATFORM, prefer: 'nydus' }).digest, d('2'));
  assert.throws(() => selectManifest({ ...idx, manifests: [] }, { platform: ANY_PLATFORM }), { code: 'NOT_FOUND' });
  assert.throws(() => selectManifest(idx, { platform: 'windows/amd64' }), { code: 'NOT_FOUND' });
});
