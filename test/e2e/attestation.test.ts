/**
 * Conversion attestations end to end. A key pair made here; `ferry accel` (converter.attestation)
 * converts a busybox image pushed to a `ferry registry` and attaches a signed in-toto attestation to
 * the Nydus manifest (referrers API). A snapshotter started with the public key as its attestation
 * policy, under a private containerd: the attested image is pulled lazily and runs; a Nydus image
 * converted without the key, one carrying an attestation signed by another key, and one carrying a
 * correctly signed attestation of another manifest are refused, naming the image and the reason, and
 * are never mounted. Then Debian's docker-registry (no referrers API): `ferry convert --sign-key`
 * lists the attestation under the tag schema, and the policy finds it there and runs the image.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { requirePrereqs } from '../support/prereq.js';
import { startIndexDroppingProxy } from '../support/referrers-proxy.js';
import { ferry, startAccelFor } from './snapshotter-support.js';
import {
  buildOciImage,
  busyboxRootfs,
  pushImage,
  startContainerd,
  startDistributionRegistry,
  type Containerd,
  type DistributionRegistry,
} from '../../src/bench/env/index.js';
import { startRegistry, type RegistryHandle } from '../../src/registry/index.js';
import type { AccelHandle } from '../../src/accel/index.js';
import { createLogger } from '../../src/observe/index.js';
import { parseSnapshotterConfig } from '../../src/config/snapshotter.js';
import { startSnapshotter, type SnapshotterHandle } from '../../src/snapshotter/index.js';
import { Daemon } from '../../src/daemon/index.js';
import { RegistryClient, parseReference, pushReferrer, withDigest, type ImageReference } from '../../src/remote/index.js';
import { convertImage, verifyConversionAttestation } from '../../src/convert/index.js';
import {
  ATTESTATION_ARTIFACT_TYPE,
  DSSE_ENVELOPE_MEDIA_TYPE,
  MediaType,
  NydusAnnotation,
  attestationManifest,
  conversionStatement,
  openEnvelope,
  parseImageManifest,
  signStatement,
  type ImageManifest,
} from '../../src/oci/index.js';

const PW = 'pw-attest-e2e';
const RUN = ['/bin/sh', '-c', 'cat /app/message.txt'];
let dir: string;
let reg: RegistryHandle;
let accel: AccelHandle;
let dreg: DistributionRegistry;
let snap: SnapshotterHandle;
let cd: Containerd;
let client: RegistryClient;
let keys: { privateKey: KeyObject; publicKey: KeyObject };
let signKeyFile: string;
let layoutDir: string;
let ociRef: string;
let signedRef: string;
let plainRef: string;

async function manifestOf(ref: string): Promise<{ digest: string; man: ImageManifest; size: number; mediaType: string }> {
  const m = await client.getManifest(parseReference(ref));
  return { digest: m.digest, man: parseImageManifest(m.body, m.mediaType), size: m.body.length, mediaType: m.mediaType };
}

/** `ferry pull` through the policy snapshotter's pull API. */
function pull(ref: string): ReturnType<typeof ferry> {
  return ferry(['pull', '--address', cd.address, '--namespace', cd.namespace, '--plain-http', '--snapshotter-api', snap.apiAddress, ref]);
}

async function runs(ref: string, id: string): Promise<void> {
  const p = await pull(ref);
  assert.equal(p.code, 0, p.stderr);
  const run = await cd.ctr(['run', '--rm', '--snapshotter', 'ferry', ref, id, ...RUN]);
  assert.equal(run.code, 0, `${run.stdout}\n${run.stderr}`);
  assert.equal(run.stdout, 'attested hello\n');
}

/** Pushes a hand-made attestation of `subjectRef`'s manifest whose statement is about `statementDigest`, signed by `key`. */
async function attachAttestation(subjectRef: string, statementDigest: string, key: KeyObject): Promise<void> {
  const target = parseReference(subjectRef);
  const sub = await manifestOf(subjectRef);
  const boot = sub.man.layers.at(-1)!.digest;
  const st = conversionStatement(`${target.registry}/${target.repository}`, {
    sourceDigest: sub.man.annotations![NydusAnnotation.SOURCE_DIGEST]!,
    nydusDigest: statementDigest,
    bootstrapDigest: boot,
    tool: { name: 'ferry', version: 'test' },
    timestamp: new Date().toISOString(),
  });
  const env = Buffer.from(JSON.stringify(signStatement(st, key)));
  const layer = await client.pushBuffer(target.registry, target.repository, env, DSSE_ENVELOPE_MEDIA_TYPE);
  const config = await client.pushBuffer(target.registry, target.repository, Buffer.from('{}'), MediaType.OCI_EMPTY);
  const subject = { mediaType: sub.mediaType, digest: sub.digest, size: sub.size };
  const body = Buffer.from(JSON.stringify(attestationManifest({ config, envelope: layer, subject, created: new Date().toISOString() })));
  await pushReferrer(client, target, body, MediaType.OCI_MANIFEST, sub.digest);
}

async function lazyMounts(): Promise<number> {
  return (await snap.lazy!.mounts()).length;
}

before(async () => {
  requirePrereqs({
    root: true,
    commands: ['containerd', 'ctr', 'runc', 'skopeo', 'docker-registry', 'busybox', 'fusermount3'],
    devices: ['/dev/fuse'],
  });
  dir = await mkdtemp(join(tmpdir(), 'ferry-attest-'));
  keys = generateKeyPairSync('ed25519');
  signKeyFile = join(dir, 'sign.key');
  await writeFile(signKeyFile, keys.privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
  const pubFile = join(dir, 'sign.pub');
  await writeFile(pubFile, keys.publicKey.export({ type: 'spki', format: 'pem' }));

  reg = await startRegistry({
    listen: '127.0.0.1:0',
    dataDir: join(dir, 'reg'),
    adminPassword: PW,
    config: { webhook: { settleDelay: 200, pollInterval: 100 } },
  });
  accel = await startAccelFor(reg, dir, PW, { converter: { attestation: { sign_key_file: signKeyFile } } });
  client = new RegistryClient({ credentials: () => ({ username: 'admin', password: PW }) });
  const root = await busyboxRootfs(join(dir, 'rootfs'));
  const app = join(dir, 'app');
  await mkdir(join(app, 'app'), { recursive: true });
  await writeFile(join(app, 'app/message.txt'), 'attested hello\n');
  layoutDir = (await buildOciImage({ layers: [root, app], outDir: join(dir, 'oci'), config: { Cmd: RUN } })).layoutDir;
  ociRef = `${reg.host}/library/bb:v1`;
  signedRef = `${reg.host}/library/bb:v1-nydus`;
  plainRef = `${reg.host}/library/bb:plain-nydus`;
  await pushImage(layoutDir, ociRef, { creds: `admin:${PW}` });
  let found: unknown;
  for (let i = 0; i < 600 && !found; i++) {
    found = await client.headManifest(parseReference(signedRef)).catch(() => undefined);
    if (!found) await new Promise((r) => setTimeout(r, 200));
  }
  assert.ok(found, `ferry accel did not produce ${signedRef} within 120 s`);
  // the same source converted without a key (another compressor: another manifest digest)
  await convertImage({ source: ociRef, target: plainRef, sourceClient: client, compressor: 'lz4_block' });

  const log = createLogger({ name: 'attest-e2e', level: process.env.FERRY_TEST_LOG ?? 'silent' });
  const config = parseSnapshotterConfig({ address: join(dir, 'snap.sock'), root: join(dir, 'snaproot'), requireAttestationKey: pubFile });
  snap = await startSnapshotter({
    config,
    log,
    lazyFs: new Daemon({ log, dataDir: join(dir, 'daemon'), config: { amplify_io: config.daemon.amplifyIo } }),
  });
  cd = await startContainerd({ dir: join(dir, 'cd'), snapshotters: { ferry: snap.address } });
});

after(async () => {
  await cd?.stop();
  await snap?.close();
  await accel?.close();
  await reg?.close();
  await dreg?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

test('accel attaches a signed conversion attestation to the Nydus manifest; it verifies with the public key', async () => {
  const nydus = await manifestOf(signedRef);
  const src = await client.headManifest(parseReference(ociRef));
  const repo = parseReference(signedRef);
  const listed = await client.referrers(repo.registry, repo.repository, nydus.digest, ATTESTATION_ARTIFACT_TYPE);
  assert.equal(listed.length, 1, 'one attestation, listed by the referrers API');
  assert.ok(await verifyConversionAttestation(client, repo, nydus.digest, nydus.man, keys.publicKey));
  const att = parseImageManifest((await client.getManifest(withDigest(repo, listed[0]!.digest))).body);
  const env = await client.getBlobBuffer(repo.registry, repo.repository, att.layers[0]!.digest);
  const st = openEnvelope(env, keys.publicKey, 'attestation');
  assert.equal(st.predicate.sourceDigest, src!.digest);
  assert.equal(st.predicate.nydusDigest, nydus.digest);
  assert.equal(st.predicate.bootstrapDigest, nydus.man.layers.at(-1)!.digest);
  assert.equal(st.predicate.tool.name, 'ferry');
  // the conversion without a key has none
  const plain = await manifestOf(plainRef);
  assert.notEqual(plain.digest, nydus.digest);
  assert.deepEqual(await client.referrers(repo.registry, repo.repository, plain.digest, ATTESTATION_ARTIFACT_TYPE), []);
});

test('policy: the attested image is pulled lazily and runs in containerd', async () => {
  await runs(signedRef, 'attested-1');
  assert.equal(await lazyMounts(), 1);
});

test('policy: a Nydus image converted without the key is refused, naming the image and the reason', async () => {
  const p = await pull(plainRef);
  assert.notEqual(p.code, 0);
  const plain = await manifestOf(plainRef);
  assert.match(
    p.stderr,
    new RegExp(`library/bb:plain-nydus cannot be mounted lazily .*library/bb@${plain.digest} is refused by the attestation policy`),
  );
  assert.match(p.stderr, /no conversion attestation is attached to it/);
  assert.equal(await lazyMounts(), 1, 'nothing mounted for the refused image');
});

test('policy: an attestation signed by another key, or signed for another manifest, is refused', async () => {
  const plain = await manifestOf(plainRef);
  await attachAttestation(plainRef, plain.digest, generateKeyPairSync('ed25519').privateKey);
  let p = await pull(plainRef);
  assert.notEqual(p.code, 0);
  assert.match(p.stderr, /refused by the attestation policy.*no signature verifies with the policy key/);
  // the right key, but the statement is about the attested image (an attestation moved to another manifest)
  await attachAttestation(plainRef, (await manifestOf(signedRef)).digest, keys.privateKey);
  p = await pull(plainRef);
  assert.notEqual(p.code, 0);
  assert.match(p.stderr, new RegExp(`its subject is not ${plain.digest}`));
  assert.equal(await lazyMounts(), 1, 'nothing mounted for the refused image');
});

test('policy: a merged index runs through its attested Nydus entry; an unattested Nydus entry is refused, never replaced by the OCI one', async () => {
  const merged = `${reg.host}/library/bb:merged`;
  const res = await convertImage({ source: ociRef, target: merged, sourceClient: client, mergePlatform: true, signKey: keys.privateKey });
  assert.equal(res.attestations.length, 1);
  assert.equal(res.attestations[0]!.subject, res.manifests[0]!.digest, 'the Nydus entry is the subject, not the index');
  await runs(merged, 'attested-merged');
  const unsigned = `${reg.host}/library/bb:merged-plain`;
  await convertImage({ source: ociRef, target: unsigned, sourceClient: client, mergePlatform: true, compressor: 'lz4_block' });
  const p = await pull(unsigned);
  assert.notEqual(p.code, 0, 'no fallback to the index entry of the OCI image');
  assert.match(p.stderr, /bb:merged-plain cannot be mounted lazily .*refused by the attestation policy/);
});

test('policy: a plain OCI image is not a conversion and is pulled as before (its layers are checked against its manifest)', async () => {
  const p = await pull(ociRef);
  assert.equal(p.code, 0, p.stderr);
  const run = await cd.ctr(['run', '--rm', '--snapshotter', 'ferry', ociRef, 'plain-oci', ...RUN]);
  assert.equal(run.code, 0, `${run.stdout}\n${run.stderr}`);
  assert.equal(run.stdout, 'attested hello\n');
});

test('accel: a target converted before signing was turned on gets its attestation when the source is pushed again', async () => {
  const target = `${reg.host}/library/bb:v2-nydus`;
  const res = await convertImage({ source: ociRef, target, sourceClient: client, chunkSize: 0x10000 }); // unsigned, its own digest
  const nydus = res.manifests[0]!.digest;
  const repo = parseReference(target);
  assert.deepEqual(await client.referrers(repo.registry, repo.repository, nydus, ATTESTATION_ARTIFACT_TYPE), []);
  // the same source digest under the tag accel converts to v2-nydus: "already converted"
  await pushImage(layoutDir, `${reg.host}/library/bb:v2`, { creds: `admin:${PW}` });
  let listed: unknown[] = [];
  for (let i = 0; i < 300 && listed.length === 0; i++) {
    listed = await client.referrers(repo.registry, repo.repository, nydus, ATTESTATION_ARTIFACT_TYPE);
    if (listed.length === 0) await new Promise((r) => setTimeout(r, 200));
  }
  assert.equal(listed.length, 1, 'accel attested the existing conversion within 60 s');
  assert.equal((await manifestOf(target)).digest, res.targetDigest, 'the target itself is unchanged');
  await runs(target, 'attested-late');
});

test('ferry snapshotter --require-attestation-key with a file that is not a public key refuses to start (never runs without its policy)', async () => {
  const bad = join(dir, 'bad.pub');
  await writeFile(bad, 'not a key\n');
  const root = join(dir, 'snap-bad');
  const r = await ferry(['snapshotter', '--root', root, '--address', join(root, 's.sock'), '--require-attestation-key', bad], {
    timeoutMs: 60_000,
  });
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /attestation public key .*bad\.pub is not a public key/);
});

test('docker-registry (no referrers API): ferry convert --sign-key lists the attestation under the tag schema; the policy finds it', async () => {
  dreg = await startDistributionRegistry({ dir: join(dir, 'dreg') });
  const src = `${dreg.host}/library/bb:v1`;
  const dst = `${dreg.host}/library/bb:v1-nydus`;
  await pushImage(layoutDir, src);
  const conv = await ferry([
    'convert',
    '--source',
    src,
    '--target',
    dst,
    '--source-insecure',
    '--target-insecure',
    '--no-progress',
    '--sign-key',
    signKeyFile,
  ]);
  assert.equal(conv.code, 0, conv.stderr);
  const res = JSON.parse(conv.stdout) as { manifests: Array<{ digest: string }>; attestations: Array<{ subject: string; via: string }> };
  assert.deepEqual(
    res.attestations.map((a) => [a.subject, a.via]),
    [[res.manifests[0]!.digest, 'tag-schema']],
  );
  const ref: ImageReference = parseReference(dst);
  const api = await fetch(`${dreg.url}/v2/${ref.repository}/referrers/${res.manifests[0]!.digest}`);
  await api.body?.cancel();
  assert.equal(api.status, 404, 'the registry has no referrers API');
  // (the same tree converted the same way: its bootstrap, hence its mount, is the first image's; the
  // pull still verified this manifest's own attestation, found through the tag schema)
  await runs(dst, 'attested-2');
});

test('a registry that acknowledges the referrers index but does not keep it: the signed conversion fails and leaves the target untagged', async () => {
  const proxy = await startIndexDroppingProxy(dreg.url);
  try {
    const dst = `${proxy.host}/library/bb:lost-nydus`;
    const conv = await ferry([
      'convert',
      '--source',
      `${proxy.host}/library/bb:v1`,
      '--target',
      dst,
      '--source-insecure',
      '--target-insecure',
      '--no-progress',
      '--compressor',
      'lz4_block',
      '--sign-key',
      signKeyFile,
    ]);
    assert.notEqual(conv.code, 0, conv.stdout);
    assert.match(
      conv.stderr,
      /pushed attestation sha256:[0-9a-f]{64}, but .*library\/bb does not list it as a referrer of sha256:[0-9a-f]{64}/,
    );
    const tag = await fetch(`${dreg.url}/v2/library/bb/manifests/lost-nydus`, { method: 'HEAD' });
    assert.equal(tag.status, 404, 'nothing tagged: no node would find its attestation');
  } finally {
    await proxy.close();
  }
});
