/**
 * Kubernetes' way in, with a gRPC client in the test doing what kubelet does: containerd 1.6 with
 * its CRI plugin (snapshotter "ferry", disable_snapshot_annotations = false), the ferry snapshotter
 * serving the CRI image service as a keychain proxy (kubelet's --image-service-endpoint). A private
 * Nydus image pulled with PullImage.auth through the proxy (pull-only robot, 3-second tokens) runs
 * in a host-network pod whose pause image is built from the test fixtures; its log has the right
 * output and the registry served a small fraction of the image.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { requirePrereqs } from '../support/prereq.js';
import { busyboxRootfs, buildOciImage, pushImage, startContainerd, type Containerd } from '../../src/bench/env/index.js';
import { startTestRegistry, ADMIN_PASSWORD, type TestRegistry } from '../../src/registry/testing/client.js';
import { metricValue, createLogger } from '../../src/observe/index.js';
import { parseSnapshotterConfig } from '../../src/config/snapshotter.js';
import { startSnapshotter, type SnapshotterHandle } from '../../src/snapshotter/index.js';
import { Daemon } from '../../src/daemon/index.js';
import { CRI_IMAGE_SERVICE, CRI_RUNTIME_SERVICE, criClientConstructor } from '../../src/containerd/index.js';
import { ferry } from '../support/ferry.js';
import { pseudoRandom } from './convert-support.js';

const ADMIN = `admin:${ADMIN_PASSWORD}`;
const MIB = 1024 * 1024;
let dir: string;
let reg: TestRegistry;
let snap: SnapshotterHandle;
let cd: Containerd;
let runtime: grpc.Client;
let images: grpc.Client;
let nydusRef: string;
let nydusBytes = 0;
let robot: { name: string; secret: string };
const sandboxes: string[] = [];

const served = (): Promise<number> => metricValue(reg.metrics, 'ferry_registry_blob_bytes_served_total');

/** One unary CRI call, promisified (the test's kubelet). */
function call<T>(client: grpc.Client, method: string, req: unknown): Promise<T> {
  return new Promise((resolve, reject) => {
    const fn = (
      client as unknown as Record<string, (r: unknown, o: grpc.CallOptions, cb: (e: grpc.ServiceError | null, v: T) => void) => void>
    )[method]!;
    fn.call(client, req, { deadline: Date.now() + 120_000 }, (err, v) => (err ? reject(err) : resolve(v)));
  });
}

before(async () => {
  requirePrereqs({ root: true, commands: ['containerd', 'ctr', 'runc', 'skopeo', 'fusermount3'], devices: ['/dev/fuse'] });
  dir = await mkdtemp(join(tmpdir(), 'ferry-cri-'));
  reg = await startTestRegistry({ dataDir: join(dir, 'reg'), config: { tokenExpiration: '3s' } });
  await reg.createProject('priv');
  robot = await reg.createRobot('priv', 'kubelet');

  // the pause image: busybox, sleeping (public, as a cluster's pause image is)
  const base = await busyboxRootfs(join(dir, 'l1'));
  const pause = await buildOciImage({ layers: [base], outDir: join(dir, 'pause'), config: { Entrypoint: ['/bin/sleep', '3600'] } });
  await pushImage(pause.layoutDir, `${reg.host}/library/pause:1`, { creds: ADMIN });
  // the private application image, converted to Nydus
  const app = join(dir, 'l2');
  await mkdir(join(app, 'srv'), { recursive: true });
  await mkdir(join(app, 'data'), { recursive: true });
  await writeFile(join(app, 'srv/message.txt'), 'hello from a pod of a private lazy image\n');
  await writeFile(join(app, 'data/big'), pseudoRandom(16 * MIB, 'cri'));
  const img = await buildOciImage({ layers: [base, app], outDir: join(dir, 'oci'), config: { Cmd: ['/bin/cat', '/srv/message.txt'] } });
  await pushImage(img.layoutDir, `${reg.host}/priv/app:v1`, { creds: ADMIN });
  nydusRef = `${reg.host}/priv/app:v1-nydus`;
  const conv = await ferry([
    'convert',
    '--source',
    `${reg.host}/priv/app:v1`,
    '--target',
    nydusRef,
    '--source-creds',
    ADMIN,
    '--target-creds',
    ADMIN,
    '--no-cache',
    '--no-progress',
  ]);
  assert.equal(conv.code, 0, conv.stderr);
  const man = (await (
    await reg.req('/v2/priv/app/manifests/v1-nydus', { headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } })
  ).json()) as { layers: Array<{ size: number }> };
  nydusBytes = man.layers.reduce((n, l) => n + l.size, 0);

  const log = createLogger({ name: 'cri-e2e', level: process.env.FERRY_TEST_LOG ?? 'silent' });
  const cdDir = join(dir, 'cd');
  // containerd's socket path is known before it starts (short paths: under the test dir)
  const config = parseSnapshotterConfig({
    address: join(dir, 'snap.sock'),
    root: join(dir, 'snaproot'),
    criAddress: join(dir, 'cri-image.sock'),
    criUpstream: join(cdDir, 'containerd.sock'),
  });
  snap = await startSnapshotter({
    config,
    log,
    lazyFs: new Daemon({ log, dataDir: join(dir, 'daemon'), config: { amplify_io: config.daemon.amplifyIo } }),
  });
  cd = await startContainerd({
    dir: cdDir,
    namespace: 'k8s.io',
    snapshotters: { ferry: snap.address },
    cri: { snapshotter: 'ferry', sandboxImage: `${reg.host}/library/pause:1`, plainHttpRegistries: [reg.host] },
  });
  assert.equal(cd.address, config.criUpstream, 'containerd socket where the proxy forwards to');
  const Runtime = criClientConstructor(CRI_RUNTIME_SERVICE);
  const Images = criClientConstructor(CRI_IMAGE_SERVICE);
  runtime = new Runtime(`unix://${cd.address}`, grpc.credentials.createInsecure());
  images = new Images(`unix://${snap.criAddress}`, grpc.credentials.createInsecure());
});

after(async () => {
  for (const id of sandboxes) {
    await call(runtime, 'StopPodSandbox', { pod_sandbox_id: id }).catch(() => undefined);
    await call(runtime, 'RemovePodSandbox', { pod_sandbox_id: id }).catch(() => undefined);
  }
  runtime?.close();
  images?.close();
  await cd?.stop();
  await snap?.close();
  await reg?.destroy();
  if (dir) await rm(dir, { recursive: true, force: true });
});

test('private image: without auth refused; with auth but past the proxy, a clear error instead of a download', async () => {
  await assert.rejects(call(images, 'PullImage', { image: { image: nydusRef } }), /401|unauthori[sz]ed|denied/i);
  // kubelet without --image-service-endpoint: containerd has the credentials, the snapshotter does not
  const Images = criClientConstructor(CRI_IMAGE_SERVICE);
  const direct = new Images(`unix://${cd.address}`, grpc.credentials.createInsecure());
  try {
    await assert.rejects(
      call(direct, 'PullImage', { image: { image: nydusRef }, auth: { username: robot.name, password: robot.secret } }),
      /Nydus layer of .* cannot be mounted lazily .*401.* private image: pull with credentials/,
    );
  } finally {
    direct.close();
  }
});

test('CRI as kubelet: PullImage (private, auth) → RunPodSandbox → CreateContainer → StartContainer → log; lazy', async () => {
  const v = await call<{ runtime_api_version: string }>(runtime, 'Version', { version: 'v1' });
  assert.equal(v.runtime_api_version, 'v1');
  const before0 = await served();
  const pulled = await call<{ image_ref: string }>(images, 'PullImage', {
    image: { image: nydusRef },
    auth: { username: robot.name, password: robot.secret },
  });
  assert.match(pulled.image_ref, /^sha256:[0-9a-f]{64}$/);
  const status = await call<{ image: { repo_tags: string[] } | null }>(images, 'ImageStatus', { image: { image: nydusRef } });
  assert.deepEqual(status.image?.repo_tags, [nydusRef]);

  const logDir = join(dir, 'pod-logs');
  await mkdir(logDir, { recursive: true });
  const sandboxConfig = {
    metadata: { name: 'lazy-pod', uid: 'uid-lazy-pod', namespace: 'default', attempt: 0 },
    log_directory: logDir,
    linux: { security_context: { namespace_options: { network: 'NODE', pid: 'POD', ipc: 'POD' } } },
  };
  const sb = await call<{ pod_sandbox_id: string }>(runtime, 'RunPodSandbox', { config: sandboxConfig });
  sandboxes.push(sb.pod_sandbox_id);
  const c = await call<{ container_id: string }>(runtime, 'CreateContainer', {
    pod_sandbox_id: sb.pod_sandbox_id,
    config: { metadata: { name: 'app', attempt: 0 }, image: { image: nydusRef }, log_path: 'app.log' },
    sandbox_config: sandboxConfig,
  });
  await call(runtime, 'StartContainer', { container_id: c.container_id });
  let st: { status: { state: string; exit_code: number; reason: string } } | undefined;
  for (let i = 0; i < 600; i++) {
    st = await call(runtime, 'ContainerStatus', { container_id: c.container_id });
    if (st!.status.state === 'CONTAINER_EXITED') break;
    await new Promise((res) => setTimeout(res, 100));
  }
  assert.equal(st?.status.state, 'CONTAINER_EXITED', JSON.stringify(st));
  assert.equal(st!.status.exit_code, 0, JSON.stringify(st));
  // CRI log format: <time> <stream> <tag> <line>
  const lines = (await readFile(join(logDir, 'app.log'), 'utf8')).trim().split('\n');
  assert.deepEqual(
    lines.map((l) => l.split(' ').slice(1).join(' ')),
    ['stdout F hello from a pod of a private lazy image'],
  );
  const fetched = (await served()) - before0;
  process.stdout.write(
    `# CRI pod of a private lazy image: registry served ${fetched} of ${nydusBytes} image bytes (incl. the pause image)\n`,
  );
  assert.ok(fetched < nydusBytes / 4, `served ${fetched} of ${nydusBytes}`);
  assert.equal((await snap.lazy!.mounts()).length, 1, 'the image is mounted lazily');

  await call(runtime, 'StopContainer', { container_id: c.container_id, timeout: 5 });
  await call(runtime, 'RemoveContainer', { container_id: c.container_id });
  await call(runtime, 'StopPodSandbox', { pod_sandbox_id: sb.pod_sandbox_id });
  await call(runtime, 'RemovePodSandbox', { pod_sandbox_id: sb.pod_sandbox_id });
  sandboxes.pop();
});
