/**
 * Lazy OCI without conversion (OCI-ref / zran): an ordinary gzip OCI image (busybox + an app layer
 * with a large file the container never reads) is pushed to Debian's docker-registry (no referrers
 * API: the index is found through the OCI 1.1 tag schema); `ferry convert --oci-ref` attaches a
 * bootstrap + zran index to it, copying no layer data; `ferry pull` through the ferry snapshotter
 * then runs the ORIGINAL image lazily — its layers read by range from the gzip blobs — with a
 * fraction of the image fetched and a tree identical to containerd's own (overlayfs) pull of the
 * same image. A second image without an index is pulled normally, with a log line saying so.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { requirePrereqs } from '../support/prereq.js';
import { ferry } from '../support/ferry.js';
import {
  buildOciImage,
  busyboxRootfs,
  execCheck,
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
import { OCI_REF_ARTIFACT_TYPE } from '../../src/convert/index.js';
import { AccelClient, startAccel } from '../../src/accel/index.js';
import { RegistryClient, parseReference } from '../../src/remote/index.js';

const RUN = ['/bin/sh', '-c', 'cat /app/message.txt; ls /app'];
let dir: string;
let reg: DistributionRegistry;
let ref: string;
let plainRef: string;
let imageBytes: number;
let plainDigest: string;

before(async () => {
  requirePrereqs({
    root: true,
    commands: ['containerd', 'ctr', 'runc', 'skopeo', 'docker-registry', 'busybox', 'fusermount3'],
    devices: ['/dev/fuse'],
  });
  dir = await mkdtemp(join(tmpdir(), 'ferry-ociref-'));
  reg = await startDistributionRegistry({ dir: join(dir, 'registry') });
  const root = await busyboxRootfs(join(dir, 'rootfs'));
  const app = join(dir, 'app');
  await mkdir(join(app, 'app/data'), { recursive: true });
  await writeFile(join(app, 'app/message.txt'), 'zran hello\n');
  // never read by the container: what lazy loading leaves in the registry
  await writeFile(join(app, 'app/data/big.bin'), randomBytes(12 << 20));
  await writeFile(join(app, 'app/data/text.txt'), 'some words '.repeat(200_000));
  const img = await buildOciImage({ layers: [root, app], outDir: join(dir, 'oci'), config: { Cmd: RUN } });
  ref = `${reg.host}/library/zran:v1`;
  await pushImage(img.layoutDir, ref);
  const other = join(dir, 'other');
  await mkdir(join(other, 'app'), { recursive: true });
  await writeFile(join(other, 'app/message.txt'), 'plain hello\n');
  const img2 = await buildOciImage({ layers: [root, other], outDir: join(dir, 'oci2'), config: { Cmd: RUN } });
  plainRef = `${reg.host}/library/zran:plain`;
  await pushImage(img2.layoutDir, plainRef);
  const { manifest } = await new RegistryClient({}).resolveImage(parseReference(ref));
  plainDigest = (await new RegistryClient({}).resolveImage(parseReference(plainRef))).fetched.digest;
  imageBytes = manifest.layers.reduce((n, l) => n + l.size, 0);
});

after(async () => {
  await reg?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

/**
 * The tree as a checksum list: every entry's type, mode, owner and link target, sizes and sha256 of
 * files. Read by a child process (the daemon serving the lazy mount runs in this one).
 */
function treeList(dir: string): Promise<string> {
  const script = [
    "find . -type d -printf '%p d %m %U:%G\\n'",
    "find . ! -type d -printf '%p %y %m %U:%G %s %l\\n'",
    'find . -type f -print0 | xargs -0 -r sha256sum',
  ].join('; ');
  return execCheck('sh', ['-c', `(${script}) | LC_ALL=C sort`], { cwd: dir });
}

interface Node {
  daemon: Daemon;
  snap: SnapshotterHandle;
  cd: Containerd;
  lines: Array<{ msg?: string; manifest?: string }>;
}

async function startNode(): Promise<Node> {
  const lines: Array<{ msg?: string; manifest?: string }> = [];
  const log = createLogger({ level: 'info', destination: { write: (s: string) => void lines.push(JSON.parse(s)) } });
  const config = parseSnapshotterConfig({ address: join(dir, 'snap.sock'), root: join(dir, 'snap'), daemon: { ociRef: true } });
  const daemon = new Daemon({ log, dataDir: join(dir, 'daemon'), config: { amplify_io: config.daemon.amplifyIo } });
  const snap = await startSnapshotter({ config, log, lazyFs: daemon });
  try {
    const cd = await startContainerd({ dir: join(dir, 'cd'), snapshotters: { ferry: snap.address } });
    return { daemon, snap, cd, lines };
  } catch (err) {
    await snap.close();
    throw err;
  }
}

test('ferry convert --oci-ref attaches an index to the original image and copies no layer data', async () => {
  const c = await ferry(['convert', '--oci-ref', '--source', ref, '--source-plain-http', '--zran-spacing', '1MiB']);
  assert.equal(c.code, 0, c.stderr);
  const out = JSON.parse(c.stdout) as { pushedBytes: number; sourceBytes: number; checkpoints: number; push: { via: string } };
  assert.equal(out.push.via, 'tag-schema', 'docker-registry has no referrers API');
  assert.ok(out.checkpoints >= 10, `${out.checkpoints} checkpoints`);
  assert.ok(out.pushedBytes < out.sourceBytes / 4, `index ${out.pushedBytes} B for a ${out.sourceBytes} B image`);
  const found = await new RegistryClient({}).referrers(
    reg.host,
    'library/zran',
    JSON.parse(c.stdout).subject.digest,
    OCI_REF_ARTIFACT_TYPE,
  );
  assert.equal(found.length, 1);
  const bad = await ferry(['convert', '--oci-ref', '--source', ref, '--target', `${reg.host}/library/zran:x`, '--source-plain-http']);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /no --target/);
});

test('the original image runs lazily from its gzip layers in containerd; the tree equals the overlayfs pull; an image without index is pulled normally', async () => {
  const n = await startNode();
  try {
    const args = ['pull', '--address', n.cd.address, '--namespace', n.cd.namespace, '--plain-http', '--snapshotter-api', n.snap.apiAddress];
    const pull = await ferry([...args, ref]);
    assert.equal(pull.code, 0, pull.stderr);
    const mounts = await n.snap.lazy!.mounts();
    assert.equal(mounts.length, 1, 'the OCI image is mounted lazily');
    const id = mounts[0]!.id;
    const run = await n.cd.ctr(['run', '--rm', '--snapshotter', 'ferry', ref, 'zran-1', ...RUN]);
    assert.equal(run.code, 0, `${run.stdout}\n${run.stderr}`);
    assert.equal(run.stdout, 'zran hello\ndata\nmessage.txt\n');
    const info = await n.daemon.get(id);
    const fetched = info.stats?.layerBytes ?? -1;
    process.stdout.write(
      `# OCI-ref: ${fetched} of ${imageBytes} compressed layer bytes read (${((100 * fetched) / imageBytes).toFixed(1)} %)\n`,
    );
    assert.ok(fetched > 0 && fetched < imageBytes / 4, `fetched ${fetched} B of a ${imageBytes} B image`);
    assert.equal(info.stats?.digestMismatches, 0);

    // the whole tree, read through the lazy mount, against containerd's own pull of the same image
    const lazyTree = await treeList(info.mountpoint);
    const entries = lazyTree.split('\n').length;
    assert.ok(entries > 20 && lazyTree.includes('./bin/busybox f'), `the checksum list covers the tree (${entries} lines)`);
    const refMnt = join(dir, 'overlay-mnt');
    await mkdir(refMnt, { recursive: true });
    const p = await n.cd.ctr(['images', 'pull', '--plain-http', ref]);
    assert.equal(p.code, 0, p.stderr);
    const m = await n.cd.ctr(['images', 'mount', ref, refMnt]);
    assert.equal(m.code, 0, m.stderr);
    try {
      assert.equal(lazyTree, await treeList(refMnt));
    } finally {
      await n.cd.ctr(['images', 'unmount', '--rm', refMnt]);
    }
    const after = (await n.daemon.get(id)).stats?.layerBytes ?? 0;
    assert.ok(after > fetched, 'reading the whole tree fetched the rest');

    // no index attached: pulled as an ordinary image
    const plain = await ferry([...args, plainRef]);
    assert.equal(plain.code, 0, plain.stderr);
    assert.equal((await n.snap.lazy!.mounts()).length, 1, 'no second lazy mount');
    assert.ok(
      n.lines.some((l) => l.msg === 'no OCI-ref index attached: pulling the image normally' && l.manifest === plainDigest),
      'the fallback is logged',
    );
    const run2 = await n.cd.ctr(['run', '--rm', '--snapshotter', 'ferry', plainRef, 'zran-2', ...RUN]);
    assert.equal(run2.code, 0, `${run2.stdout}\n${run2.stderr}`);
    assert.equal(run2.stdout, 'plain hello\nmessage.txt\n');
  } catch (err) {
    for (const l of n.lines) if ((l as { level?: number }).level! >= 40) process.stderr.write(`${JSON.stringify(l)}\n`);
    throw err;
  } finally {
    await n.cd.stop();
    await n.snap.close();
  }
});

test('ferry accel with driver.config.oci_ref: a task attaches the index to its source once; a second task finds it', async () => {
  const h = await startAccel({
    listen: '127.0.0.1:0',
    config: {
      provider: { work_dir: join(dir, 'accel'), source: { [reg.host]: { insecure: true, webhook: { auth_header: 'Bearer zran' } } } },
      converter: { retry_limit: 1, driver: { type: 'nydus', config: { oci_ref: 'true', fs_chunk_size: '0x10000' } } },
    },
  });
  try {
    const a = new AccelClient(h.url.replace('http://', ''), { authHeader: 'Bearer zran' });
    const [id] = await a.createTask(plainRef);
    const t = await h.service.waitFor(id!);
    assert.equal(t.status, 'COMPLETED', t.reason);
    const found = await new RegistryClient({}).referrers(reg.host, 'library/zran', plainDigest, OCI_REF_ARTIFACT_TYPE);
    assert.deepEqual(
      found.map((f) => f.digest),
      [t.target_digest],
    );
    assert.ok(t.target_size > 0 && t.target_size < t.source_size / 2, `index ${t.target_size} B, image ${t.source_size} B`);
    const [again] = await a.createTask(`${reg.host}/library/zran:plain`);
    const t2 = await h.service.waitFor(again!);
    assert.equal(t2.status, 'COMPLETED', t2.reason);
    assert.equal(t2.reason, 'already indexed');
    assert.equal(t2.target_digest, t.target_digest);
  } finally {
    await h.close();
  }
});
