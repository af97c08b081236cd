/**
 * Prefetch traces on a registry without the referrers API: Debian's docker-registry (CNCF
 * distribution 2.8, what Harbor runs on) on loopback. A busybox image converted with `ferry
 * convert` runs on node 1 (its own snapshotter, daemon and containerd); `ferry trace push` attaches
 * what it read through the OCI 1.1 referrers tag schema (`sha256-<hex>` index) and says so; node 2,
 * cold, finds the trace and prefetches it at mount (the daemon's prefetch counter), after which the
 * run needs no registry request. A registry that acknowledges the index but never stores it makes
 * `ferry trace push` fail instead of printing success.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { requirePrereqs } from '../support/prereq.js';
import { ferry } from '../support/ferry.js';
import { startIndexDroppingProxy } from '../support/referrers-proxy.js';
import {
  buildOciImage,
  busyboxRootfs,
  pushImage,
  startContainerd,
  startDistributionRegistry,
  type Containerd,
  type DistributionRegistry,
} from '../../src/bench/env/index.js';
import { createLogger } from '../../src/observe/index.js';
import { parseSnapshotterConfig } from '../../src/config/snapshotter.js';
import { startSnapshotter, type SnapshotterHandle } from '../../src/snapshotter/index.js';
import { Daemon } from '../../src/daemon/index.js';
import { RegistryClient, parseReference } from '../../src/remote/index.js';
import { PREFETCH_TRACE_ARTIFACT_TYPE, parseImageIndex } from '../../src/oci/index.js';

const REPO = 'library/bbtrace';
const RUN = ['/bin/sh', '-c', 'cat /app/message.txt; ls /app'];
let dir: string;
let reg: DistributionRegistry;
let nydusRef: string;
let subject: string;

interface Node {
  daemon: Daemon;
  snap: SnapshotterHandle;
  cd: Containerd;
  close(): Promise<void>;
}

async function startNode(name: string): Promise<Node> {
  const log = createLogger({ name: `trace-e2e-${name}`, level: process.env.FERRY_TEST_LOG ?? 'silent' });
  const config = parseSnapshotterConfig({ address: join(dir, `${name}.sock`), root: join(dir, `${name}-snap`) });
  const daemon = new Daemon({ log, dataDir: join(dir, `${name}-daemon`), config: { amplify_io: config.daemon.amplifyIo } });
  const snap = await startSnapshotter({ config, log, lazyFs: daemon });
  let cd: Containerd;
  try {
    cd = await startContainerd({ dir: join(dir, `${name}-cd`), snapshotters: { ferry: snap.address } });
  } catch (err) {
    await snap.close();
    throw err;
  }
  return {
    daemon,
    snap,
    cd,
    async close() {
      await cd.stop();
      await snap.close();
    },
  };
}

async function pullAndMount(n: Node): Promise<string> {
  const args = ['pull', '--address', n.cd.address, '--namespace', n.cd.namespace, '--plain-http', '--snapshotter-api', n.snap.apiAddress];
  const pull = await ferry([...args, nydusRef]);
  assert.equal(pull.code, 0, pull.stderr);
  let mounts = await n.snap.lazy!.mounts();
  for (let i = 0; i < 100 && mounts.length === 0; i++) {
    await new Promise((r) => setTimeout(r, 100));
    mounts = await n.snap.lazy!.mounts();
  }
  assert.equal(mounts.length, 1, 'the image is mounted lazily');
  return mounts[0]!.id;
}

async function runIt(n: Node, id: string): Promise<void> {
  const run = await n.cd.ctr(['run', '--rm', '--snapshotter', 'ferry', nydusRef, id, ...RUN]);
  assert.equal(run.code, 0, `${run.stdout}\n${run.stderr}`);
  assert.equal(run.stdout, 'traced hello\nmessage.txt\n');
}

before(async () => {
  requirePrereqs({
    root: true,
    commands: ['containerd', 'ctr', 'runc', 'skopeo', 'docker-registry', 'busybox', 'fusermount3'],
    devices: ['/dev/fuse'],
  });
  dir = await mkdtemp(join(tmpdir(), 'ferry-trace-dist-'));
  reg = await startDistributionRegistry({ dir: join(dir, 'registry') });
  const root = await busyboxRootfs(join(dir, 'rootfs'));
  const app = join(dir, 'app');
  await mkdir(join(app, 'app'), { recursive: true });
  await writeFile(join(app, 'app/message.txt'), 'traced hello\n');
  const img = await buildOciImage({ layers: [root, app], outDir: join(dir, 'oci'), config: { Cmd: RUN } });
  const ociRef = `${reg.host}/${REPO}:v1`;
  nydusRef = `${reg.host}/${REPO}:v1-nydus`;
  await pushImage(img.layoutDir, ociRef);
  const conv = await ferry(['convert', '--source', ociRef, '--target', nydusRef, '--source-insecure', '--target-insecure']);
  assert.equal(conv.code, 0, conv.stderr);
  subject = (await new RegistryClient({}).getManifest(parseReference(nydusRef))).digest;
});

after(async () => {
  await reg?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

test('docker-registry: ferry trace push lists the trace under the sha256-<hex> tag; a fresh node finds it and prefetches it', async () => {
  // the registry really has no referrers API: the fallback is what is exercised
  const api = await fetch(`${reg.url}/v2/${REPO}/referrers/${subject}`);
  await api.body?.cancel();
  assert.equal(api.status, 404);

  const node1 = await startNode('node1');
  let pushed: string[] = [];
  try {
    await pullAndMount(node1);
    await runIt(node1, 'trace-1');
    const push = (): ReturnType<typeof ferry> =>
      ferry(['trace', 'push', '--plain-http', '--snapshotter-api', node1.snap.apiAddress, nydusRef]);
    for (let i = 0; i < 2; i++) {
      const p = await push();
      assert.equal(p.code, 0, p.stderr);
      const tag = `sha256-${subject.slice('sha256:'.length)}`;
      assert.match(p.stdout, new RegExp(`no referrers API: listed in the referrers index tag ${tag} \\(${i + 1} referrers\\)`));
      pushed.push(/pushed prefetch trace (sha256:[0-9a-f]{64})/.exec(p.stdout)![1]!);
    }
  } finally {
    await node1.close();
  }
  // both pushes listed, each once, with the trace's artifact type (the second merged into the first's index)
  const res = await fetch(`${reg.url}/v2/${REPO}/manifests/sha256-${subject.slice(7)}`, {
    headers: { accept: 'application/vnd.oci.image.index.v1+json' },
  });
  assert.equal(res.status, 200);
  const index = parseImageIndex(Buffer.from(await res.arrayBuffer()), res.headers.get('content-type') ?? undefined);
  assert.deepEqual(
    index.manifests.map((d) => d.digest),
    pushed,
  );
  assert.ok(index.manifests.every((d) => d.artifactType === PREFETCH_TRACE_ARTIFACT_TYPE));
  pushed = [];

  const node2 = await startNode('node2');
  try {
    const id = await pullAndMount(node2);
    await node2.daemon.prefetchIdle(id);
    const pre = await node2.daemon.get(id);
    assert.ok((pre.stats?.prefetchedBytes ?? 0) > 0, `node 2 prefetched the trace at mount: ${JSON.stringify(pre.stats)}`);
    await runIt(node2, 'trace-2');
    const post = await node2.daemon.get(id);
    process.stdout.write(
      `# node 2: prefetched ${pre.stats?.prefetchedBytes} B; requests at mount ${pre.stats?.requests}, after the run ${post.stats?.requests}\n`,
    );
    assert.equal(post.stats?.requests, pre.stats?.requests, 'the run read only what the trace had prefetched');
  } finally {
    await node2.close();
  }
});

test('a registry that acknowledges the referrers index but does not keep it: ferry trace push fails and says why', async () => {
  // in front of docker-registry: PUT of a sha256-* tag answers 201 and is dropped
  const proxy = await startIndexDroppingProxy(reg.url);
  const host = proxy.host;
  const node = await startNode('node3');
  try {
    await pullAndMount(node);
    await runIt(node, 'trace-3');
    const p = await ferry(['trace', 'push', '--plain-http', '--snapshotter-api', node.snap.apiAddress, nydusRef.replace(reg.host, host)]);
    assert.equal(p.code, 1, p.stdout);
    assert.doesNotMatch(p.stdout, /pushed prefetch trace/);
    assert.match(
      p.stderr,
      /does not list it as a referrer of sha256:[0-9a-f]{64} in the referrers index tagged sha256-[0-9a-f]{64}: no node would find it/,
    );
  } finally {
    await node.close();
    await proxy.close();
  }
});
