/**
 * Chunk sharing across images with real containerd: images A and B carry the same 4 MiB file in
 * layers with different digests (B's layer has one more file). B alone on a fresh node costs the
 * registry ~4 MiB; on a node that ran A first, B's pull and run fetch only its bootstrap and its own
 * chunks — at most 10 % of the alone figure — in EROFS mode (the default) and in FUSE mode, and
 * across a snapshotter restart (A's cache found through its digest files on disk). The figure is
 * printed for docs/daemon.md.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { requirePrereqs } from '../support/prereq.js';
import { pseudoRandom } from './convert-support.js';
import { busyboxRootfs, buildOciImage, pushImage, startContainerd, type Containerd } from '../../src/bench/env/index.js';
import { startRegistry, type RegistryHandle } from '../../src/registry/index.js';
import { metricValue } from '../../src/observe/index.js';
import { ferry, reconnected, startFerryChild, type Child } from './snapshotter-support.js';

const PW = 'pw-share-e2e';
const FILE_BYTES = 4 * 1024 * 1024;
let dir: string;
let reg: RegistryHandle;
const refs: Record<'a' | 'b', string> = { a: '', b: '' };
const children: Child[] = [];
const containerds: Containerd[] = [];

before(async () => {
  requirePrereqs({ root: true, commands: ['containerd', 'ctr', 'runc', 'skopeo', 'busybox', 'fusermount3'], devices: ['/dev/fuse'] });
  dir = await mkdtemp(join(tmpdir(), 'ferry-share-'));
  reg = await startRegistry({ listen: '127.0.0.1:0', dataDir: join(dir, 'reg'), adminPassword: PW });
  const l0 = await busyboxRootfs(join(dir, 'l0'));
  const big = pseudoRandom(FILE_BYTES, 'shared');
  const credsFile = join(dir, 'creds');
  await writeFile(credsFile, `admin:${PW}\n`, { mode: 0o600 });
  for (const name of ['a', 'b'] as const) {
    const l1 = join(dir, `l1-${name}`);
    await mkdir(join(l1, 'data'), { recursive: true });
    await writeFile(join(l1, 'data/file.bin'), big);
    await writeFile(join(l1, 'data/file.sha256'), `${createHash('sha256').update(big).digest('hex')}  /data/file.bin\n`);
    if (name === 'b') await writeFile(join(l1, 'data/only-in-b.txt'), 'an extra file: another layer digest\n');
    const img = await buildOciImage({ layers: [l0, l1], outDir: join(dir, `oci-${name}`) });
    const src = `${reg.host}/library/share-${name}:v1`;
    refs[name] = `${src}-nydus`;
    await pushImage(img.layoutDir, src, { creds: `admin:${PW}` });
    const conv = await ferry([
      'convert',
      '--source',
      src,
      '--target',
      refs[name],
      '--source-creds-file',
      credsFile,
      '--target-creds-file',
      credsFile,
    ]);
    assert.equal(conv.code, 0, conv.stderr);
  }
});

after(async () => {
  for (const c of containerds) await c.stop();
  for (const c of children.reverse()) await c.stop();
  await reg?.close();
  if (dir && !process.env.KEEP) await rm(dir, { recursive: true, force: true });
});

const served = (): Promise<number> => metricValue(reg.metrics, 'ferry_registry_blob_bytes_served_total');

interface Node {
  cd: Containerd;
  snap: Child;
  root: string;
  sock: string;
  args: string[];
}

async function startNode(name: string, mode: 'erofs' | 'fuse'): Promise<Node> {
  const d = join(dir, name);
  await mkdir(d, { recursive: true });
  const sock = join(d, 'snap.sock');
  const root = join(d, 'root');
  const args = ['snapshotter', '--address', sock, '--root', root, '--daemon-mode', mode];
  const snap = await startFerryChild(args, sock);
  children.push(snap);
  const cd = await startContainerd({ dir: join(d, 'cd'), snapshotters: { ferry: sock } });
  containerds.push(cd);
  return { cd, snap, root, sock, args };
}

/** Pulls and runs an image (checking the shared file against its digest); returns the bytes the registry served meanwhile. */
async function pullRun(n: Node, which: 'a' | 'b', name: string): Promise<number> {
  const before = await served();
  const pull = await ferry(['pull', '--local', '--address', n.cd.address, '--namespace', n.cd.namespace, '--plain-http', refs[which]]);
  assert.equal(pull.code, 0, `${pull.stderr}\n${n.snap.output().slice(-3000)}`);
  const r = await n.cd.ctr(['run', '--rm', '--snapshotter', 'ferry', refs[which], name, '/usr/bin/sha256sum', '-c', '/data/file.sha256']);
  assert.equal(r.code, 0, `${name}: ${r.stdout}${r.stderr}\n${n.snap.output().slice(-2000)}`);
  assert.match(r.stdout, /file\.bin: OK/, `${name}: ${r.stdout}`);
  return (await served()) - before;
}

async function stopNode(n: Node): Promise<void> {
  await n.cd.stop();
  await n.snap.stop();
}

test('chunk sharing: B after A (same file, other layer digest) fetches at most 10 % of B alone, EROFS and FUSE, and across a snapshotter restart', async () => {
  const lone = await startNode('alone', 'erofs');
  const alone = await pullRun(lone, 'b', 'share-b-alone');
  await stopNode(lone);
  assert.ok(alone > FILE_BYTES * 0.9, `B alone fetched ${alone} bytes: expected the 4 MiB file`);

  const results: string[] = [];
  for (const mode of ['erofs', 'fuse'] as const) {
    const n = await startNode(`after-a-${mode}`, mode);
    await pullRun(n, 'a', `share-a-${mode}`);
    const second = await pullRun(n, 'b', `share-b-${mode}`);
    await stopNode(n);
    assert.ok(second <= alone * 0.1, `${mode}: B after A fetched ${second} bytes, B alone ${alone} (> 10 %)`);
    results.push(`${mode} ${second} B (${((second / alone) * 100).toFixed(1)} %)`);
  }

  // across a restart: A ran and was removed, the snapshotter restarted, then B
  const n = await startNode('restart', 'erofs');
  await pullRun(n, 'a', 'share-a-restart');
  await n.cd.ctr(['images', 'rm', '--sync', refs.a]);
  await n.snap.stop();
  await rm(n.sock, { force: true });
  n.snap = await startFerryChild(n.args, n.sock);
  children.push(n.snap);
  await reconnected(n.cd);
  await reconnected(n.cd);
  const third = await pullRun(n, 'b', 'share-b-restart');
  await stopNode(n);
  assert.ok(third <= alone * 0.1, `after a restart: B fetched ${third} bytes, B alone ${alone}`);
  results.push(`after a snapshotter restart ${third} B (${((third / alone) * 100).toFixed(1)} %)`);
  process.stdout.write(`# chunk sharing e2e: B alone ${alone} B; B after A: ${results.join('; ')}\n`);
});
