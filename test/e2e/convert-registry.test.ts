/**
 * `ferry convert` between two standard registries (Debian's docker-registry as source and target):
 * the Nydus image has upstream's media types and annotations, a config whose diff_ids match its
 * layers, and a bootstrap layer holding image/image.boot; a second conversion hits the layer cache.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ferry } from '../support/ferry.js';
import { requirePrereqs } from '../support/prereq.js';
import { startDistributionRegistry, type DistributionRegistry } from '../../src/bench/env/index.js';
import { RegistryClient, parseReference } from '../../src/remote/index.js';
import { pushImage, type BuiltImage } from '../../src/bench/env/index.js';
import { MediaType, NydusAnnotation, parseImageConfig, parseImageManifest, type ImageManifest } from '../../src/oci/index.js';
import { makeTestImage } from './convert-support.js';
import {
  NOTATION_SIGNATURE,
  pushCosignSignature,
  pushNotationSignature,
  signingKey,
  verifyCosignSignature,
} from '../support/signatures.js';
import { withTag } from '../../src/remote/index.js';
import { Readable } from 'node:stream';
import { gunzipSync } from 'node:zlib';
import tarStream from 'tar-stream';
import { openBootstrap, decodeBlobMetaHeader, decodeCiTable, unpackBootstrapLayer } from '../../src/format/rafs/index.js';

let dir: string;
let srcReg: DistributionRegistry;
let dstReg: DistributionRegistry;
let image: BuiltImage;

before(async () => {
  requirePrereqs({ commands: ['docker-registry', 'skopeo', 'setfattr', 'tar'] });
  dir = await mkdtemp(join(tmpdir(), 'ferry-convert-e2e-'));
  [srcReg, dstReg] = await Promise.all([startDistributionRegistry(), startDistributionRegistry()]);
  image = await makeTestImage(join(dir, 'img'));
  await pushImage(image.layoutDir, `${srcReg.host}/library/app:v1`);
});
after(async () => {
  await Promise.all([srcReg?.close(), dstReg?.close()]);
  if (dir) await rm(dir, { recursive: true, force: true });
});

test('ferry convert: docker-registry → docker-registry with upstream media types, annotations and diff_ids', async () => {
  const cache = join(dir, 'cache.db');
  const r = await ferry([
    'convert',
    '--source',
    `${srcReg.host}/library/app:v1`,
    '--target',
    `${dstReg.host}/library/app:v1-nydus`,
    '--with-referrer',
    '--cache',
    cache,
  ]);
  assert.equal(r.code, 0, r.stderr);
  const res = JSON.parse(r.stdout) as {
    targetDigest: string;
    layers: Array<{ cached: boolean; tarBytes: number }>;
    uncompressedBytes: number;
  };
  assert.equal(res.layers.length, 3);
  assert.ok(res.layers.every((l) => !l.cached));
  assert.ok(res.uncompressedBytes > 3 * 1024 * 1024);

  const c = new RegistryClient();
  const m = await c.getManifest(parseReference(`${dstReg.host}/library/app:v1-nydus`));
  assert.equal(m.digest, res.targetDigest);
  // docker-registry has no referrers API: the Nydus manifest is listed in the sha256-<hex> index of its subject
  const subject = parseImageManifest(m.body).subject!.digest;
  const listed = async (): Promise<string[]> => (await c.referrers(dstReg.host, 'library/app', subject)).map((d) => d.digest);
  assert.deepEqual(await listed(), [res.targetDigest]);
  assert.equal(m.mediaType, MediaType.OCI_MANIFEST);
  const man = parseImageManifest(m.body);
  assert.equal(man.layers.length, 4);
  for (const l of man.layers.slice(0, 3)) {
    assert.equal(l.mediaType, MediaType.NYDUS_BLOB);
    assert.equal(l.annotations?.[NydusAnnotation.BLOB], 'true');
  }
  const boot = man.layers[3]!;
  assert.equal(boot.mediaType, MediaType.OCI_LAYER_GZIP);
  assert.equal(boot.annotations?.[NydusAnnotation.BOOTSTRAP], 'true');
  assert.equal(boot.annotations?.[NydusAnnotation.FS_VERSION], '6');
  assert.equal(man.annotations?.['containerd.io/snapshot/nydus-source-digest'], image.manifestDigest);
  assert.equal(man.subject?.digest, image.manifestDigest);
  const cfg = parseImageConfig(await c.getBlobBuffer(dstReg.host, 'library/app', man.config.digest));
  assert.equal(cfg.rootfs.diff_ids.length, 4);
  assert.deepEqual(
    cfg.rootfs.diff_ids.slice(0, 3),
    man.layers.slice(0, 3).map((l) => l.digest),
  );
  assert.deepEqual(cfg.config?.Cmd, ['/srv/app/run.sh']);
  const bootLayer = await c.getBlobBuffer(dstReg.host, 'library/app', boot.digest);
  const bootstrap = await unpackBootstrapLayer(bootLayer);
  assert.equal(bootstrap.readUInt32LE(1024), 0xe0f5e1e2, 'EROFS superblock magic');
  // no v6 chunk table by default: the blobs carry CI tables and digest arrays
  assert.equal(openBootstrap(bootstrap).summary().chunkTableEntries, 0);
  // image/<blob id>.blob.meta per blob, in nydusd's cache form (CI table padded to 4 KiB + header)
  const files = new Map<string, Buffer>();
  const ex = tarStream.extract();
  Readable.from([gunzipSync(bootLayer)]).pipe(ex);
  for await (const e of ex) {
    const parts: Buffer[] = [];
    for await (const x of e) parts.push(x as Buffer);
    files.set(e.header.name, Buffer.concat(parts));
  }
  for (const b of openBootstrap(bootstrap).blobs) {
    const meta = files.get(`image/${b.blobId}.blob.meta`);
    assert.ok(meta, `image/${b.blobId}.blob.meta in ${[...files.keys()].join(', ')}`);
    const padded = Math.ceil(b.ciUncompressedSize / 4096) * 4096;
    assert.equal(meta.length, padded + 4096);
    const h = decodeBlobMetaHeader(meta, padded);
    assert.equal(h.ciEntries, b.chunkCount);
    assert.equal(decodeCiTable(meta.subarray(0, b.ciUncompressedSize), h.ciEntries, h.features).length, b.chunkCount);
  }

  // ferry check: the Nydus tree equals the source layers applied with OCI semantics
  const chk = await ferry(['check', '--source', `${srcReg.host}/library/app:v1`, '--target', `${dstReg.host}/library/app:v1-nydus`]);
  assert.equal(chk.code, 0, chk.stdout + chk.stderr);
  assert.match(chk.stdout, /check passed/);
  // source first, as on the command line
  assert.ok(chk.stdout.startsWith(`source ${image.manifestDigest} vs nydus sha256:`), chk.stdout);

  // --chunk-table keeps it (for upstream nydus-image check/merge); same tree, checks out too
  const rt = await ferry([
    'convert',
    '--source',
    `${srcReg.host}/library/app:v1`,
    '--target',
    `${dstReg.host}/library/app:v1-table`,
    '--chunk-table',
    '--cache',
    cache,
  ]);
  assert.equal(rt.code, 0, rt.stderr);
  const tman = parseImageManifest((await c.getManifest(parseReference(`${dstReg.host}/library/app:v1-table`))).body);
  const tboot = openBootstrap(await unpackBootstrapLayer(await c.getBlobBuffer(dstReg.host, 'library/app', tman.layers.at(-1)!.digest)));
  assert.ok(tboot.summary().chunkTableEntries > 0);
  assert.deepEqual(
    tman.layers.slice(0, -1).map((l) => l.digest),
    man.layers.slice(0, -1).map((l) => l.digest),
    'same blobs',
  );
  const tchk = await ferry(['check', '--source', `${srcReg.host}/library/app:v1`, '--target', `${dstReg.host}/library/app:v1-table`]);
  assert.equal(tchk.code, 0, tchk.stdout + tchk.stderr);

  // Same source again into another tag: every layer comes from the cache, same manifest content.
  const r2 = await ferry([
    'convert',
    '--source',
    `${srcReg.host}/library/app:v1`,
    '--target',
    `${dstReg.host}/library/app:again`,
    '--with-referrer',
    '--cache',
    cache,
  ]);
  assert.equal(r2.code, 0, r2.stderr);
  const res2 = JSON.parse(r2.stdout) as { targetDigest: string; layers: Array<{ cached: boolean }>; uncompressedBytes: number };
  assert.ok(res2.layers.every((l) => l.cached));
  assert.equal(res2.uncompressedBytes, 0);
  // the second conversion joins the first in the index, each listed once
  assert.deepEqual((await listed()).sort(), [...new Set([res.targetDigest, res2.targetDigest])].sort());
});

test('ferry convert: clear errors for a missing source and a bad reference', async () => {
  const r = await ferry([
    'convert',
    '--source',
    `${srcReg.host}/library/nope:v1`,
    '--target',
    `${dstReg.host}/library/nope:v1-nydus`,
    '--no-cache',
  ]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /404|not found|MANIFEST_UNKNOWN|NAME_UNKNOWN/i);
  const r3 = await ferry([
    'convert',
    '--source',
    `${dstReg.host}/library/app:v1-nydus`,
    '--target',
    `${dstReg.host}/library/app:twice`,
    '--no-cache',
  ]);
  assert.equal(r3.code, 1);
  assert.match(r3.stderr, /already a Nydus image/);
  const r2 = await ferry(['convert', '--source', 'UPPER/case', '--target', `${dstReg.host}/x:y`, '--no-cache']);
  assert.equal(r2.code, 2);
  assert.match(r2.stderr, /invalid repository name/);
});

test('ferry check: reports differences and exits non-zero for a Nydus image of another source', async () => {
  const other = await makeTestImage(join(dir, 'img-b'), 'b');
  await pushImage(other.layoutDir, `${srcReg.host}/library/app:v2`);
  const r = await ferry([
    'convert',
    '--source',
    `${srcReg.host}/library/app:v2`,
    '--target',
    `${dstReg.host}/library/app:v2-nydus`,
    '--no-cache',
  ]);
  assert.equal(r.code, 0, r.stderr);
  // v2's Nydus image checked against v1: /opq/new and /etc/motd differ in content
  const chk = await ferry([
    'check',
    '--source',
    `${srcReg.host}/library/app:v1`,
    '--target',
    `${dstReg.host}/library/app:v2-nydus`,
    '--json',
  ]);
  assert.equal(chk.code, 1, chk.stderr);
  const res = JSON.parse(chk.stdout) as { ok: boolean; differences: Array<{ path: string; what: string }> };
  assert.equal(res.ok, false);
  const paths = res.differences.map((d) => `${d.path}:${d.what}`).sort();
  assert.ok(paths.includes('etc/motd:content digest'), paths.join(' '));
  assert.ok(
    paths.some((p) => p.startsWith('opq/new:')),
    paths.join(' '),
  );
});

test('ferry convert --chunk-dict: chunks already in the dictionary image are referenced, not stored again', async () => {
  const plain = await ferry([
    'convert',
    '--source',
    `${srcReg.host}/library/app:v2`,
    '--target',
    `${dstReg.host}/library/app:v2-plain`,
    '--no-cache',
  ]);
  assert.equal(plain.code, 0, plain.stderr);
  const withDict = await ferry([
    'convert',
    '--source',
    `${srcReg.host}/library/app:v2`,
    '--target',
    `${dstReg.host}/library/dedup:v2-nydus`,
    '--no-cache',
    '--chunk-dict',
    `${dstReg.host}/library/app:v1-nydus`,
  ]);
  assert.equal(withDict.code, 0, withDict.stderr);
  const c = new RegistryClient();
  const sizeOf = async (ref: string): Promise<{ own: number; layers: ImageManifest['layers'] }> => {
    const man = parseImageManifest((await c.getManifest(parseReference(ref))).body);
    return { own: man.layers.slice(0, -1).reduce((a, l) => a + l.size, 0), layers: man.layers };
  };
  const p = await sizeOf(`${dstReg.host}/library/app:v2-plain`);
  const d = await sizeOf(`${dstReg.host}/library/dedup:v2-nydus`);
  const v1 = await sizeOf(`${dstReg.host}/library/app:v1-nydus`);
  const v1Blobs = new Set(v1.layers.slice(0, -1).map((l) => l.digest));
  const newBytes = d.layers
    .slice(0, -1)
    .filter((l) => !v1Blobs.has(l.digest))
    .reduce((a, l) => a + l.size, 0);
  assert.ok(
    d.layers.some((l) => v1Blobs.has(l.digest)),
    'a dictionary blob is a layer of the new image',
  );
  // The dictionary (v1's merged tree) holds busybox and the 1 MiB /data/big of layer 2, not the 3 MiB
  // lower /data/big that layer 2 hides: that one is stored again.
  assert.ok(newBytes < p.own * 0.7, `new blob bytes ${newBytes} vs ${p.own} without the dictionary`);
  // the dictionary blobs were copied into the new repository, and the image checks out
  const chk = await ferry(['check', '--source', `${srcReg.host}/library/app:v2`, '--target', `${dstReg.host}/library/dedup:v2-nydus`]);
  assert.equal(chk.code, 0, chk.stdout + chk.stderr);
});

test('a Docker schema2 source converts too (Docker media types in, OCI Nydus manifest out)', async () => {
  await pushImage(image.layoutDir, `${srcReg.host}/library/docker:v1`, { format: 'v2s2' });
  const c = new RegistryClient();
  const src = await c.getManifest(parseReference(`${srcReg.host}/library/docker:v1`));
  assert.equal(src.mediaType, MediaType.DOCKER_MANIFEST);
  const r = await ferry([
    'convert',
    '--source',
    `${srcReg.host}/library/docker:v1`,
    '--target',
    `${dstReg.host}/library/docker:v1-nydus`,
    '--no-cache',
  ]);
  assert.equal(r.code, 0, r.stderr);
  const chk = await ferry(['check', '--source', `${srcReg.host}/library/docker:v1`, '--target', `${dstReg.host}/library/docker:v1-nydus`]);
  assert.equal(chk.code, 0, chk.stdout + chk.stderr);
});

test('signatures survive --merge-platform to another registry without the referrers API: cosign tags carried, notation referrer copied', async () => {
  const client = new RegistryClient();
  const srcRepo = { registry: srcReg.host, repository: 'library/signed' };
  const dstRepo = { registry: dstReg.host, repository: 'library/signed' };
  await pushImage(image.layoutDir, `${srcReg.host}/library/signed:v1`);
  const head = (await client.headManifest(withTag(srcRepo, 'v1')))!;
  const key = signingKey();
  await pushCosignSignature(client, srcRepo, head.digest, key.privateKey);
  const notation = await pushNotationSignature(client, srcRepo, { mediaType: head.mediaType, digest: head.digest, size: head.size });
  const r = await ferry([
    'convert',
    '--source',
    `${srcReg.host}/library/signed:v1`,
    '--target',
    `${dstReg.host}/library/signed:v1-nydus`,
    '--merge-platform',
    '--with-referrer',
  ]);
  assert.equal(r.code, 0, r.stderr);
  const res = JSON.parse(r.stdout) as { targetDigest: string; carried: { tags: string[]; referrers: string[] } };
  const hex = (d: string): string => d.slice('sha256:'.length);
  assert.deepEqual(res.carried.tags.sort(), [`sha256-${hex(head.digest)}.sig`, `sha256-${hex(res.targetDigest)}.sig`].sort());
  assert.deepEqual(res.carried.referrers, [notation]);
  // the signature tag is never itself converted: no image came out of it
  assert.equal(await client.headManifest(withTag(dstRepo, `sha256-${hex(head.digest)}.sig-nydus`)), undefined);
  // cosign's lookup by the merged index's digest finds the signature; it verifies and names the source digest …
  assert.equal(await verifyCosignSignature(client, dstRepo, `sha256-${hex(res.targetDigest)}.sig`, key.publicKey), head.digest);
  // … which is the merged index's OCI entry and the Nydus manifest's subject
  const idx = JSON.parse((await client.getManifest(withTag(dstRepo, 'v1-nydus'))).body.toString()) as {
    manifests: Array<{ digest: string; artifactType?: string }>;
  };
  assert.equal(idx.manifests[0]!.digest, head.digest);
  const nydus = parseImageManifest(
    (await client.getManifest(parseReference(`${dstReg.host}/library/signed@${idx.manifests[1]!.digest}`))).body,
  );
  assert.equal(nydus.subject?.digest, head.digest);
  assert.equal(await verifyCosignSignature(client, dstRepo, `sha256-${hex(head.digest)}.sig`, key.publicKey), head.digest);
  // the notation signature is a referrer of the source digest in the target (tag-schema index: docker-registry has no API)
  const refs = await client.referrers(dstReg.host, 'library/signed', nydus.subject!.digest);
  assert.deepEqual(
    refs.filter((d) => d.artifactType === NOTATION_SIGNATURE).map((d) => d.digest),
    [notation],
  );
  assert.ok(
    refs.some((d) => d.digest === idx.manifests[1]!.digest),
    'the Nydus manifest is listed too (with-referrer)',
  );
  const copied = parseImageManifest((await client.getManifest(parseReference(`${dstReg.host}/library/signed@${notation}`))).body);
  for (const b of [copied.config, ...copied.layers]) assert.ok(await client.headBlob(dstReg.host, 'library/signed', b.digest), b.digest);
});
