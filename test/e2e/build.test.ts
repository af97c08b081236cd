/**
 * `ferry build` end to end, everything real: a busybox base image pushed to a private loopback
 * `ferry registry` (and its Nydus form, as `ferry accel` would make it), a Dockerfile with RUN, COPY,
 * ENV and ENTRYPOINT built by buildah into the merged OCI + Nydus index, checked with `ferry check`,
 * run lazily through the ferry snapshotter with `ctr run`, its tree compared with the OCI image's as
 * containers see them; a rebuild pushes no blob, and a change in the last layer's instruction pushes
 * only that layer's blobs (counted in the registry's blob store).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { requirePrereqs } from '../support/prereq.js';
import { buildOciImage, busyboxRootfs, pushImage, startContainerd, type Containerd } from '../../src/bench/env/index.js';
import { startRegistry, type RegistryHandle } from '../../src/registry/index.js';
import { createLogger, metricValue } from '../../src/observe/index.js';
import { parseSnapshotterConfig } from '../../src/config/snapshotter.js';
import { startSnapshotter, type SnapshotterHandle } from '../../src/snapshotter/index.js';
import { Daemon } from '../../src/daemon/index.js';
import { convertImage } from '../../src/convert/index.js';
import { RegistryClient, parseReference } from '../../src/remote/index.js';
import { parseImageIndex, parseImageManifest, NydusAnnotation } from '../../src/oci/index.js';
import type { BuildResult } from '../../src/build/index.js';
import { ferry } from '../support/ferry.js';

const PW = 'pw-build-e2e';
let dir: string;
let reg: RegistryHandle;
let snap: SnapshotterHandle | undefined;
let cd: Containerd | undefined;
let client: RegistryClient;
let ctx: string;
let ref: string;
let baseNydusBlobs: string[] = [];
let first: BuildResult;

/** Digests of every blob the registry stores (files named by their hex under its data dir). */
async function storedBlobs(): Promise<Set<string>> {
  const out = new Set<string>();
  const walk = async (d: string, depth: number): Promise<void> => {
    if (depth > 8) return;
    for (const e of await readdir(d, { withFileTypes: true })) {
      if (e.isDirectory()) await walk(join(d, e.name), depth + 1);
      else if (/^[a-f0-9]{64}$/.test(e.name)) out.add(`sha256:${e.name}`);
    }
  };
  await walk(join(dir, 'reg', 'blobs'), 0);
  return out;
}

const received = (): Promise<number> => metricValue(reg.metrics, 'ferry_registry_blob_bytes_received_total');

function build(extra: string[] = []): ReturnType<typeof ferry> {
  return ferry(
    [
      'build',
      '--push',
      '--json',
      '-t',
      ref,
      '--user',
      'admin',
      '--storage-root',
      join(dir, 'buildah'),
      '--cache-dir',
      join(dir, 'cache'),
      ...extra,
      ctx,
    ],
    { env: { FERRY_REGISTRY_PASSWORD: PW } },
  );
}

before(async () => {
  requirePrereqs({
    root: true,
    commands: ['buildah', 'containerd', 'ctr', 'runc', 'skopeo', 'busybox', 'fusermount3'],
    devices: ['/dev/fuse'],
  });
  dir = await mkdtemp(join(tmpdir(), 'ferry-build-e2e-'));
  reg = await startRegistry({ listen: '127.0.0.1:0', dataDir: join(dir, 'reg'), adminPassword: PW });
  client = new RegistryClient({ credentials: () => ({ username: 'admin', password: PW }) });
  const rootfs = await busyboxRootfs(join(dir, 'rootfs'));
  const img = await buildOciImage({ layers: [rootfs], outDir: join(dir, 'base-oci'), config: { Cmd: ['/bin/sh'] } });
  const base = `${reg.host}/library/base:v1`;
  await pushImage(img.layoutDir, base, { creds: `admin:${PW}` });
  // the base's Nydus form, as ferry accel makes it (`<tag>-nydus`)
  const conv = await convertImage({ source: base, target: `${base}-nydus`, sourceClient: client });
  baseNydusBlobs = conv.layers.map((l) => l.blobDigest).filter(Boolean);
  assert.equal(baseNydusBlobs.length, 1);
  ctx = join(dir, 'ctx');
  await mkdir(ctx);
  await writeFile(join(ctx, 'app.txt'), 'app v1 from the build context\n');
  await writeFile(
    join(ctx, 'Dockerfile'),
    [
      `ARG BASE=${base}`,
      'FROM ${BASE}',
      'RUN mkdir -p /data && echo "written by RUN" > /data/run.txt && ln -s run.txt /data/link',
      'ENV GREETING=hello-from-env',
      'COPY app.txt /app/app.txt',
      'ENTRYPOINT ["/bin/sh", "-c", "cat /app/app.txt /data/link; echo $GREETING"]',
      '',
    ].join('\n'),
  );
  ref = `${reg.host}/library/built:v1`;
});

after(async () => {
  await cd?.stop();
  await snap?.close();
  await reg?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

test('ferry build --push: merged OCI + Nydus index; the base Nydus blob is reused; ferry check passes', async () => {
  const r = await build();
  assert.equal(r.code, 0, r.stderr);
  first = JSON.parse(r.stdout) as BuildResult;
  assert.equal(first.base, `${reg.host}/library/base:v1`);
  assert.equal(first.chunkDict, `${reg.host}/library/base:v1-nydus`);
  assert.equal(first.unchanged, false);
  const top = await client.getManifest(parseReference(ref));
  assert.equal(top.digest, first.digest);
  const index = parseImageIndex(top.body);
  assert.equal(index.manifests.length, 2);
  assert.equal(index.manifests[0]!.digest, first.oci.digest);
  assert.deepEqual(index.manifests[1]!.platform?.['os.features'], [NydusAnnotation.PLATFORM_FEATURE]);
  assert.equal(index.manifests[1]!.digest, first.nydus!.digest);
  const nydus = parseImageManifest((await client.getManifest(parseReference(`${reg.host}/library/built@${first.nydus!.digest}`))).body);
  const blobs = nydus.layers.slice(0, -1).map((l) => l.digest);
  // the base layer's chunks all come from the base's Nydus blob: no new blob for it
  for (const b of baseNydusBlobs) assert.ok(blobs.includes(b), `base Nydus blob ${b} reused in ${blobs.join(' ')}`);
  assert.equal(blobs.length, 1 + 2, `blobs: the base's, the RUN layer's, the COPY layer's: ${blobs.join(' ')}`);
  const check = await ferry(['check', '--source', `${reg.host}/library/built@${first.oci.digest}`, '--target', ref], {
    env: { DOCKER_CONFIG: join(dir, 'no-docker-config') },
  });
  assert.equal(check.code, 0, `${check.stdout}\n${check.stderr}`);
  assert.match(check.stdout, /check passed/);
});
