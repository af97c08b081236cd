/**
 * The accel's automatic chunk dictionary on the real accel + registry: with `chunk_dict_auto`,
 * image A is converted, then image B, whose second layer has A's 4 MiB file (another layer digest:
 * one more file). B's Nydus image stores none of the shared chunks in blobs of its own — it
 * references A's blob, copied into its repository as an extra layer — while B converted alone
 * stores them all; and B reads correctly through a lazy mount (snapshotter + containerd).
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
import { RegistryClient, parseReference } from '../../src/remote/index.js';
import { parseImageManifest, type ImageManifest } from '../../src/oci/index.js';
import type { AccelHandle } from '../../src/accel/index.js';
import { ferry, startAccelFor, startFerryChild, type Child } from './snapshotter-support.js';

const PW = 'pw-dict-e2e';
const FILE_BYTES = 4 * 1024 * 1024;
let dir: string;
let reg: RegistryHandle;
let accel: AccelHandle;
let client: RegistryClient;
const children: Child[] = [];
const containerds: Containerd[] = [];

/** Waits (bounded) for a manifest the accel pushes. */
async function manifestOf(ref: string): Promise<ImageManifest> {
  const r = parseReference(ref);
  for (let i = 0; i < 600; i++) {
    if (await client.headManifest(r).catch(() => undefined)) return parseImageManifest((await client.getManifest(r)).body);
    await new Promise((res) => setTimeout(res, 200));
  }
  throw new Error(`ferry accel did not produce ${ref} within 120 s`);
}

before(async () => {
  requirePrereqs({ root: true, commands: ['containerd', 'ctr', 'runc', 'skopeo', 'busybox', 'fusermount3'], devices: ['/dev/fuse'] });
  dir = await mkdtemp(join(tmpdir(), 'ferry-dict-'));
  reg = await startRegistry({
    listen: '127.0.0.1:0',
    dataDir: join(dir, 'reg'),
    adminPassword: PW,
    config: { webhook: { settleDelay: 200, pollInterval: 100 } },
  });
  accel = await startAccelFor(reg, dir, PW, { driver: { chunk_dict_auto: 'true' } });
  client = new RegistryClient({ credentials: () => ({ username: 'admin', password: PW }) });
});

after(async () => {
  for (const c of containerds) await c.stop();
  for (const c of children.reverse()) await c.stop();
  await accel?.close();
  await reg?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

test("accel chunk dictionary: B converted after A stores none of A's chunks, reads correctly lazily", async () => {
  const l0 = await busyboxRootfs(join(dir, 'l0'));
  const big = pseudoRandom(FILE_BYTES, 'dict-shared');
  const credsFile = join(dir, 'creds');
  await writeFile(credsFile, `admin:${PW}\n`, { mode: 0o600 });
  const sum = `${createHash('sha256').update(big).digest('hex')}  /data/file.bin\n`;
  const push = async (name: string, extra: boolean): Promise<string> => {
    const l1 = join(dir, `l1-${name}`);
    await mkdir(join(l1, 'data'), { recursive: true });
    await writeFile(join(l1, 'data/file.bin'), big);
    await writeFile(join(l1, 'data/file.sha256'), sum);
    if (extra) await writeFile(join(l1, 'data/only-in-b.txt'), 'only in b\n');
    const img = await buildOciImage({ layers: [l0, l1], outDir: join(dir, `oci-${name}`) });
    const ref = `${reg.host}/library/${name}:v1`;
    await pushImage(img.layoutDir, ref, { creds: `admin:${PW}` });
    return ref;
  };
  const a = await manifestOf(`${await push('dict-a', false)}-nydus`);
  const bSrc = await push('dict-b', true);
  const b = await manifestOf(`${bSrc}-nydus`);
  // B converted alone (no dictionary), for comparison
  const aloneRef = `${reg.host}/library/dict-b-alone:v1-nydus`;
  const conv = await ferry([
    'convert',
    '--source',
    bSrc,
    '--target',
    aloneRef,
    '--source-creds-file',
    credsFile,
    '--target-creds-file',
    credsFile,
  ]);
  assert.equal(conv.code, 0, conv.stderr);
  const alone = await manifestOf(aloneRef);

  const aBlobs = new Set(a.layers.slice(0, -1).map((l) => l.digest));
  /** bytes of the blobs an image stores that A's image does not have */
  const own = (m: ImageManifest): number => m.layers.slice(0, -1).reduce((n, l) => n + (aBlobs.has(l.digest) ? 0 : l.size), 0);
  assert.ok(own(alone) > FILE_BYTES * 0.9, `B alone stores ${own(alone)} bytes of its own`);
  assert.ok(own(b) <= own(alone) * 0.1, `B with the dictionary stores ${own(b)} bytes of its own, alone ${own(alone)}`);
  assert.ok(
    b.layers.some((l) => aBlobs.has(l.digest) && !alone.layers.some((x) => x.digest === l.digest)),
    "B's image lists A's data blob as a layer",
  );
  process.stdout.write(`# accel chunk dict e2e: B's own blobs ${own(b)} B with the dictionary, ${own(alone)} B converted alone\n`);

  // B through a lazy mount: the shared file's chunks come from A's blob, in B's repository
  const d = join(dir, 'node');
  await mkdir(d, { recursive: true });
  const sock = join(d, 'snap.sock');
  const snap = await startFerryChild(['snapshotter', '--address', sock, '--root', join(d, 'root')], sock);
  children.push(snap);
  const cd = await startContainerd({ dir: join(d, 'cd'), snapshotters: { ferry: sock } });
  containerds.push(cd);
  const ref = `${bSrc}-nydus`;
  const pull = await ferry(['pull', '--local', '--address', cd.address, '--namespace', cd.namespace, '--plain-http', ref]);
  assert.equal(pull.code, 0, pull.stderr);
  const r = await cd.ctr([
    'run',
    '--rm',
    '--snapshotter',
    'ferry',
    ref,
    'dict-b',
    '/bin/sh',
    '-c',
    'sha256sum -c /data/file.sha256 && cat /data/only-in-b.txt',
  ]);
  assert.equal(r.code, 0, `${r.stdout}${r.stderr}\n${snap.output().slice(-2000)}`);
  assert.match(r.stdout, /file\.bin: OK/);
  assert.match(r.stdout, /only in b/);
});
