/**
 * Index conversion between two docker-registry instances: every platform of a Docker manifest list
 * into one OCI index, `mergePlatform` (source + Nydus manifests in one index, Nydus entries marked as
 * upstream marks them), platform selection, and blobs stored in a localfs backend.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { requirePrereqs } from '../support/prereq.js';
import { startDistributionRegistry, type DistributionRegistry } from '../../src/bench/env/index.js';
import { RegistryClient, parseReference } from '../../src/remote/index.js';
import { pushImage, buildOciImage } from '../../src/bench/env/index.js';
import { convertImage, checkImage, NYDUS_MANIFEST_ARTIFACT_TYPE } from '../../src/convert/index.js';
import { openBootstrap, unpackBootstrapLayer } from '../../src/format/rafs/index.js';
import { MediaType, NydusAnnotation, parseImageConfig, parseImageIndex, parseImageManifest, type ImageIndex } from '../../src/oci/index.js';
import { makeTestImage } from './convert-support.js';

let dir: string;
let srcReg: DistributionRegistry;
let dstReg: DistributionRegistry;
const c = new RegistryClient();
let srcRef: string;

before(async () => {
  requirePrereqs({ commands: ['docker-registry', 'skopeo', 'setfattr', 'tar'] });
  dir = await mkdtemp(join(tmpdir(), 'ferry-convert-index-'));
  [srcReg, dstReg] = await Promise.all([startDistributionRegistry(), startDistributionRegistry()]);
  const amd = await makeTestImage(join(dir, 'amd'), 'amd64');
  // arm64: the same layer dirs re-packed with another architecture in the config
  const arm = await buildOciImage({
    layers: [join(dir, 'amd/l1'), join(dir, 'amd/l2'), join(dir, 'amd/l3')],
    outDir: join(dir, 'arm-layout'),
    architecture: 'arm64',
  });
  const entries = [];
  for (const [img, arch] of [
    [amd, 'amd64'],
    [arm, 'arm64'],
  ] as const) {
    await pushImage(img.layoutDir, `${srcReg.host}/multi/app:${arch}`);
    entries.push({
      mediaType: MediaType.OCI_MANIFEST,
      digest: img.manifestDigest,
      size: img.manifestSize,
      platform: { os: 'linux', architecture: arch, ...(arch === 'arm64' ? { variant: 'v8' } : {}) },
    });
  }
  const list = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MediaType.DOCKER_MANIFEST_LIST, manifests: entries }));
  srcRef = `${srcReg.host}/multi/app:v1`;
  await c.putManifest(parseReference(srcRef), list, MediaType.DOCKER_MANIFEST_LIST);
});
after(async () => {
  await Promise.all([srcReg?.close(), dstReg?.close()]);
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function index(ref: string): Promise<ImageIndex> {
  const m = await c.getManifest(parseReference(ref));
  assert.equal(m.mediaType, MediaType.OCI_INDEX);
  return parseImageIndex(m.body);
}

test('every platform of a manifest list converts into one OCI index; check passes per platform', async () => {
  const target = `${dstReg.host}/multi/app:v1-nydus`;
  const res = await convertImage({ source: srcRef, target });
  assert.equal(res.manifests.length, 2);
  const idx = await index(target);
  assert.deepEqual(
    idx.manifests.map((d) => `${d.platform?.os}/${d.platform?.architecture}`),
    ['linux/amd64', 'linux/arm64'],
  );
  assert.equal(idx.annotations?.['containerd.io/snapshot/nydus-source-digest'], res.sourceDigest);
  for (const d of idx.manifests) {
    const man = parseImageManifest((await c.getManifest(parseReference(`${dstReg.host}/multi/app@${d.digest}`))).body);
    assert.equal(man.layers.at(-1)?.annotations?.[NydusAnnotation.BOOTSTRAP], 'true');
  }
  const chk = await checkImage({ source: srcRef, target });
  assert.deepEqual(chk.differences, []);
  assert.equal(chk.checked.length, 2);
  // platform selection
  const one = await convertImage({ source: srcRef, target: `${dstReg.host}/multi/app:arm-nydus`, platforms: ['linux/arm64'] });
  assert.equal(one.manifests.length, 1);
  assert.equal((await index(`${dstReg.host}/multi/app:arm-nydus`)).manifests[0]!.platform?.architecture, 'arm64');
  await assert.rejects(convertImage({ source: srcRef, target: `${dstReg.host}/multi/app:x`, platforms: ['linux/s390x'] }), {
    code: 'NOT_FOUND',
  });
});

test('mergePlatform: the index keeps the source manifests and adds marked Nydus ones', async () => {
  const target = `${dstReg.host}/multi/app:v1-merged`;
  await convertImage({ source: srcRef, target, mergePlatform: true, withReferrer: true });
  const idx = await index(target);
  assert.equal(idx.manifests.length, 4);
  const nydus = idx.manifests.filter((d) => d.artifactType === NYDUS_MANIFEST_ARTIFACT_TYPE);
  const oci = idx.manifests.filter((d) => d.artifactType === undefined);
  assert.equal(nydus.length, 2);
  assert.ok(nydus.every((d) => d.platform?.['os.features']?.includes('nydus.remoteimage.v1')));
  // the source manifests were copied (different registry) and are pullable from the target
  for (const d of oci) assert.ok(await c.headManifest(parseReference(`${dstReg.host}/multi/app@${d.digest}`)));
  const chk = await checkImage({ source: srcRef, target });
  assert.deepEqual(chk.differences, []);
  assert.equal(chk.checked.length, 2);
});

test('localfs backend: blobs go to a directory, the manifest holds only the bootstrap', async () => {
  const blobDir = join(dir, 'backend');
  const target = `${dstReg.host}/multi/app:local-nydus`;
  await convertImage({ source: `${srcReg.host}/multi/app:amd64`, target, backend: { type: 'localfs', dir: blobDir } });
  const man = parseImageManifest((await c.getManifest(parseReference(target))).body);
  assert.equal(man.layers.length, 1);
  assert.equal(man.layers[0]!.annotations?.[NydusAnnotation.BOOTSTRAP], 'true');
  assert.equal((await readdir(blobDir)).length, 3);
  const chk = await checkImage({ source: `${srcReg.host}/multi/app:amd64`, target, backend: { type: 'localfs', dir: blobDir } });
  assert.deepEqual(chk.differences, []);
});

test('RAFS v5 and prefetch patterns: the bootstrap records them and the image checks out', async () => {
  const target = `${dstReg.host}/multi/app:v5-nydus`;
  await convertImage({
    source: `${srcReg.host}/multi/app:amd64`,
    target,
    fsVersion: 5,
    compressor: 'lz4_block',
    prefetchPatterns: ['/srv/app', '/bin/busybox'],
  });
  const man = parseImageManifest((await c.getManifest(parseReference(target))).body);
  assert.equal(man.layers.at(-1)!.annotations?.[NydusAnnotation.FS_VERSION], '5');
  const boot = openBootstrap(await unpackBootstrapLayer(await c.getBlobBuffer(dstReg.host, 'multi/app', man.layers.at(-1)!.digest)));
  assert.equal(boot.version, 5);
  assert.ok(boot.prefetchInodes.length >= 2, `prefetch inodes: ${boot.prefetchInodes.length}`);
  const chk = await checkImage({ source: `${srcReg.host}/multi/app:amd64`, target });
  assert.deepEqual(chk.differences, []);
});

test('a layer repeated within one image is converted once and kept twice in the Nydus manifest', async () => {
  const src = parseImageManifest((await c.getManifest(parseReference(`${srcReg.host}/multi/app:amd64`))).body);
  const cfg = parseImageConfig(await c.getBlobBuffer(srcReg.host, 'multi/app', src.config.digest));
  cfg.rootfs.diff_ids = [cfg.rootfs.diff_ids[2]!, cfg.rootfs.diff_ids[0]!, cfg.rootfs.diff_ids[2]!];
  const config = await c.pushBuffer(srcReg.host, 'multi/app', Buffer.from(JSON.stringify(cfg)), MediaType.OCI_CONFIG);
  const man = { ...src, config, layers: [src.layers[2]!, src.layers[0]!, src.layers[2]!] };
  await c.putManifest(parseReference(`${srcReg.host}/multi/app:repeated`), Buffer.from(JSON.stringify(man)), MediaType.OCI_MANIFEST);
  const res = await convertImage({ source: `${srcReg.host}/multi/app:repeated`, target: `${dstReg.host}/multi/app:repeated-nydus` });
  assert.equal(res.layers.length, 2, 'two distinct layers converted');
  const out = parseImageManifest((await c.getManifest(parseReference(`${dstReg.host}/multi/app:repeated-nydus`))).body);
  assert.equal(out.layers.length, 4);
  assert.equal(out.layers[0]!.digest, out.layers[2]!.digest);
  const chk = await checkImage({ source: `${srcReg.host}/multi/app:repeated`, target: `${dstReg.host}/multi/app:repeated-nydus` });
  assert.deepEqual(chk.differences, []);
});
