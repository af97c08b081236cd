/**
 * Private images end to end: a private project on `ferry registry` with 3-second tokens, pull-only
 * robots, a Nydus image converted by `ferry convert`, a private containerd with the ferry
 * snapshotter. Each way of giving credentials to `ferry pull` (--user with --password-stdin, a
 * config.json with a credential helper, a Kubernetes pull-secret volume) runs a container lazily
 * with `ctr run`; wrong credentials are a clear 401 at pull time; a lazy mount keeps reading after
 * its tokens expired, and a revoked robot gives EIO with a log line naming the image, not a hang;
 * a later pull with other credentials reaches the mounted image.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { requirePrereqs } from '../support/prereq.js';
import { busyboxRootfs, buildOciImage, exec, pushImage, startContainerd, type Containerd } from '../../src/bench/env/index.js';
import { startTestRegistry, ADMIN_PASSWORD, type TestRegistry } from '../../src/registry/testing/client.js';
import { metricValue, createLogger } from '../../src/observe/index.js';
import { parseSnapshotterConfig } from '../../src/config/snapshotter.js';
import { startSnapshotter, type SnapshotterHandle } from '../../src/snapshotter/index.js';
import { Daemon, DaemonClient } from '../../src/daemon/index.js';
import { PullSecretSource } from '../../src/remote/index.js';
import { ferry } from '../support/ferry.js';
import { pseudoRandom } from './convert-support.js';

const ADMIN = `admin:${ADMIN_PASSWORD}`;
const MIB = 1024 * 1024;
let dir: string;
let reg: TestRegistry;
let snap: SnapshotterHandle;
let cd: Containerd;
/** A snapshotter registered as `broken` whose daemon is not there: every lazy mount fails. */
let broken: SnapshotterHandle;
/** A snapshotter registered as `nodesecret` with a node-level pull secret as its own credential source. */
let nodeSnap: SnapshotterHandle;
let nydusBytes = 0;
const logLines: string[] = [];
const robots: Record<string, { name: string; secret: string; id: number }> = {};

const served = (): Promise<number> => metricValue(reg.metrics, 'ferry_registry_blob_bytes_served_total');
const ref = (repo: string): string => `${reg.host}/priv/${repo}:v1-nydus`;
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function robot(name: string): Promise<{ name: string; secret: string; id: number }> {
  return reg.createRobot('priv', name);
}

/** `skopeo copy` between two repositories of the registry, as admin. */
async function copy(from: string, to: string): Promise<void> {
  const r = await exec('skopeo', [
    'copy',
    '--quiet',
    '--src-tls-verify=false',
    '--dest-tls-verify=false',
    `--src-creds=${ADMIN}`,
    `--dest-creds=${ADMIN}`,
    `docker://${from}`,
    `docker://${to}`,
  ]);
  assert.equal(r.code, 0, r.stderr);
}

function pullArgs(image: string, ...extra: string[]): string[] {
  return ['pull', '--address', cd.address, '--namespace', cd.namespace, '--json', '--snapshotter-api', snap.apiAddress, ...extra, image];
}

before(async () => {
  requirePrereqs({ root: true, commands: ['containerd', 'ctr', 'runc', 'skopeo', 'fusermount3'], devices: ['/dev/fuse'] });
  dir = await mkdtemp(join(tmpdir(), 'ferry-creds-'));
  // set-up (pushes, conversions) with the default token life: at a high load a 3-second token can
  // expire in the middle of a skopeo blob upload, which skopeo does not retry
  reg = await startTestRegistry({ dataDir: join(dir, 'reg') });
  await reg.createProject('priv');
  for (const n of ['puller', 'helper', 'secret', 'revokee', 'successor', 'node']) robots[n] = await robot(n);

  const base = await busyboxRootfs(join(dir, 'l1'));
  const app = join(dir, 'l2');
  await mkdir(join(app, 'srv'), { recursive: true });
  await mkdir(join(app, 'data'), { recursive: true });
  await writeFile(join(app, 'srv/message.txt'), 'hello from a private lazy image\n');
  for (const f of ['a', 'b', 'c']) await writeFile(join(app, 'data', f), pseudoRandom(8 * MIB, f));
  const img = await buildOciImage({ layers: [base, app], outDir: join(dir, 'oci'), config: { Cmd: ['/bin/cat', '/srv/message.txt'] } });
  // the revocation test's image shares no data blob with the others (their reads fill the shared chunk cache)
  const other = join(dir, 'l2r');
  await mkdir(join(other, 'srv'), { recursive: true });
  await mkdir(join(other, 'data'), { recursive: true });
  await writeFile(join(other, 'srv/message.txt'), 'hello from a private lazy image\n');
  await writeFile(join(other, 'data/b'), pseudoRandom(8 * MIB, 'revoke'));
  const img2 = await buildOciImage({ layers: [base, other], outDir: join(dir, 'oci2'), config: { Cmd: ['/bin/cat', '/srv/message.txt'] } });
  for (const [layout, repo] of [
    [img.layoutDir, 'app'],
    [img2.layoutDir, 'revoke'],
  ] as const) {
    await pushImage(layout, `${reg.host}/priv/${repo}:v1`, { creds: ADMIN });
    const conv = await ferry([
      'convert',
      '--source',
      `${reg.host}/priv/${repo}:v1`,
      '--target',
      ref(repo),
      '--source-creds',
      ADMIN,
      '--target-creds',
      ADMIN,
      '--no-cache',
      '--no-progress',
    ]);
    assert.equal(conv.code, 0, conv.stderr);
  }
  for (const repo of ['helper', 'secret', 'node']) await copy(ref('app'), ref(repo));
  const man = (await (
    await reg.req(`/v2/priv/app/manifests/v1-nydus`, { headers: { accept: 'application/vnd.oci.image.manifest.v1+json' } })
  ).json()) as {
    layers: Array<{ size: number }>;
  };
  nydusBytes = man.layers.reduce((n, l) => n + l.size, 0);
  // the same registry (data, robots, token key, port) again, now with 3-second tokens
  const listen = `127.0.0.1:${new URL(reg.url).port}`;
  await reg.close();
  reg = await startTestRegistry({ dataDir: join(dir, 'reg'), listen, config: { tokenExpiration: '3s' } });

  const log = createLogger({
    name: 'creds-e2e',
    level: 'info',
    destination: {
      write(s: string) {
        logLines.push(s);
        if (process.env.FERRY_TEST_LOG) process.stderr.write(s);
      },
    } as never,
  });
  const config = parseSnapshotterConfig({ address: join(dir, 'snap.sock'), root: join(dir, 'snaproot') });
  // no credential sources of its own: whatever a mount reads with came with its pull
  snap = await startSnapshotter({
    config,
    log,
    lazyFs: new Daemon({ log, dataDir: join(dir, 'daemon'), config: { amplify_io: config.daemon.amplifyIo } }),
  });
  broken = await startSnapshotter({
    config: parseSnapshotterConfig({ name: 'broken', address: join(dir, 'broken.sock'), root: join(dir, 'brokenroot') }),
    log,
    lazyFs: new DaemonClient(join(dir, 'no-daemon.sock'), 2_000),
  });
  const vol = join(dir, 'node-secret');
  await mkdir(vol, { recursive: true });
  const nodeAuth = Buffer.from(`${robots.node!.name}:${robots.node!.secret}`).toString('base64');
  await writeFile(join(vol, '.dockerconfigjson'), JSON.stringify({ auths: { [reg.host]: { auth: nodeAuth } } }), { mode: 0o600 });
  nodeSnap = await startSnapshotter({
    config: parseSnapshotterConfig({ name: 'nodesecret', address: join(dir, 'node.sock'), root: join(dir, 'noderoot') }),
    log,
    lazyFs: new Daemon({ log, dataDir: join(dir, 'node-daemon') }),
    credentialSources: [new PullSecretSource(vol)],
  });
  cd = await startContainerd({
    dir: join(dir, 'cd'),
    snapshotters: { ferry: snap.address, broken: broken.address, nodesecret: nodeSnap.address },
  });
});

after(async () => {
  await cd?.stop();
  await snap?.close();
  await broken?.close();
  await nodeSnap?.close();
  await reg?.destroy();
  if (dir) await rm(dir, { recursive: true, force: true });
});

async function runCat(image: string, name: string, path: string): Promise<{ code: number; stdout: string; stderr: string }> {
  return cd.ctr(['run', '--rm', '--snapshotter', 'ferry', image, name, '/bin/cat', path], { timeoutMs: 90_000 });
}

test('anonymous and wrong credentials: a clear 401 at pull time, nothing in containerd', async () => {
  const anon = await ferry(pullArgs(ref('app')), { env: { DOCKER_CONFIG: join(dir, 'no-config') } });
  assert.equal(anon.code, 1, anon.stdout);
  assert.match(anon.stderr, /401|unauthori[sz]ed/i);
  const wrong = await ferry(pullArgs(ref('app'), '--user', robots.puller!.name, '--password-stdin'), { input: 'not-the-secret\n' });
  assert.equal(wrong.code, 1, wrong.stdout);
  assert.match(wrong.stderr, /401|unauthori[sz]ed/i);
  assert.doesNotMatch(wrong.stderr + wrong.stdout, /not-the-secret/);
  const images = await cd.ctr(['images', 'ls', '-q']);
  assert.doesNotMatch(images.stdout, /priv\/app/);
});

test('ferry pull --user ROBOT --password-stdin: lazy, ctr run reads the private image; reads go on after the tokens expired', async () => {
  const before0 = await served();
  const pull = await ferry(pullArgs(ref('app'), '--user', robots.puller!.name, '--password-stdin'), {
    input: `${robots.puller!.secret}\n`,
  });
  assert.equal(pull.code, 0, pull.stderr);
  assert.match(pull.stderr, /through the snapshotter pull API/);
  const res = JSON.parse(pull.stdout) as { layers: Array<{ how: string }>; via: string };
  assert.deepEqual(new Set(res.layers.map((l) => l.how)), new Set(['remote']));
  assert.equal(res.via, 'snapshotter');
  const run = await runCat(ref('app'), 'creds-1', '/srv/message.txt');
  assert.equal(run.code, 0, run.stderr);
  assert.equal(run.stdout, 'hello from a private lazy image\n');
  const fetched = (await served()) - before0;
  process.stdout.write(`# private lazy run: registry served ${fetched} of ${nydusBytes} image bytes\n`);
  assert.ok(fetched < nydusBytes / 4, `served ${fetched} of ${nydusBytes}`);
  // the mount's token (3 s) expires; an uncached file is fetched with a new one
  await sleep(4_000);
  const mid = await served();
  const big = await runCat(ref('app'), 'creds-2', '/data/a');
  assert.equal(big.code, 0, big.stderr);
  assert.equal(big.stdout.length > 0, true);
  assert.ok((await served()) - mid >= 8 * MIB * 0.9, 'the file was read from the registry after the token expired');
  // credentials never in mount listings
  const mounts = await snap.lazy!.mounts();
  assert.ok(mounts.length >= 1);
  assert.doesNotMatch(JSON.stringify(mounts), new RegExp(robots.puller!.secret));
  assert.doesNotMatch(logLines.join(''), new RegExp(robots.puller!.secret));
});

test('config.json with credHelpers: docker-credential-ferrytest on PATH gives the credentials', async () => {
  const bin = join(dir, 'bin');
  await mkdir(bin, { recursive: true });
  const helper = join(bin, 'docker-credential-ferrytest');
  const answer = JSON.stringify({ ServerURL: reg.host, Username: robots.helper!.name, Secret: robots.helper!.secret });
  await writeFile(
    helper,
    `#!/bin/sh\n[ "$1" = get ] || exit 1\nread url\nif [ "$url" = "${reg.host}" ]; then echo '${answer}'; else echo "credentials not found in native keychain"; exit 1; fi\n`,
  );
  await chmod(helper, 0o700);
  const cfgDir = join(dir, 'docker');
  await mkdir(cfgDir, { recursive: true });
  await writeFile(join(cfgDir, 'config.json'), JSON.stringify({ credHelpers: { [reg.host]: 'ferrytest' } }));
  const env = { PATH: `${bin}:${process.env.PATH}`, DOCKER_CONFIG: cfgDir };
  const pull = await ferry(pullArgs(ref('helper')), { env });
  assert.equal(pull.code, 0, pull.stderr);
  const run = await runCat(ref('helper'), 'creds-helper', '/srv/message.txt');
  assert.equal(run.code, 0, run.stderr);
  assert.equal(run.stdout, 'hello from a private lazy image\n');
});

test('a Kubernetes pull-secret volume (.dockerconfigjson) gives the credentials', async () => {
  const vol = join(dir, 'secret-vol');
  await mkdir(vol, { recursive: true });
  const auth = Buffer.from(`${robots.secret!.name}:${robots.secret!.secret}`).toString('base64');
  await writeFile(join(vol, '.dockerconfigjson'), JSON.stringify({ auths: { [reg.host]: { auth } } }), { mode: 0o600 });
  const pull = await ferry(pullArgs(ref('secret'), '--pull-secret', vol, '--no-docker-config'));
  assert.equal(pull.code, 0, pull.stderr);
  const run = await runCat(ref('secret'), 'creds-secret', '/srv/message.txt');
  assert.equal(run.code, 0, run.stderr);
  assert.equal(run.stdout, 'hello from a private lazy image\n');
});

test('a revoked robot: uncached reads fail with EIO at once and the log names the image', async () => {
  const pull = await ferry(pullArgs(ref('revoke'), '--user', robots.revokee!.name, '--password-stdin'), {
    input: robots.revokee!.secret,
  });
  assert.equal(pull.code, 0, pull.stderr);
  const ok = await runCat(ref('revoke'), 'creds-r1', '/srv/message.txt');
  assert.equal(ok.code, 0, ok.stderr);
  assert.equal((await reg.req(`/api/v2.0/robots/${robots.revokee!.id}`, { method: 'DELETE' })).status, 200);
  await sleep(4_000); // its last token expires
  const t0 = Date.now();
  const denied = await runCat(ref('revoke'), 'creds-r2', '/data/b');
  assert.notEqual(denied.code, 0, 'reading an uncached file with a revoked robot must fail');
  // the lazy mount itself answers EIO (read on the host, where the error is not hidden by a container start)
  const [m] = (await snap.lazy!.mounts()).filter((x) => x.image?.includes('priv/revoke'));
  assert.ok(m, 'the image is mounted');
  await assert.rejects(readFile(join(m.mountpoint, 'data/b')), (err: NodeJS.ErrnoException) => err.code === 'EIO');
  assert.ok(Date.now() - t0 < 60_000, 'no hang');
  const line = logLines.find((l) => l.includes('refused the credentials') && l.includes('priv/revoke'));
  assert.ok(line, `no log line naming the image:\n${logLines.slice(-20).join('')}`);
  // a pull with new credentials reaches the image already mounted: the same mount reads again
  const again = await ferry(pullArgs(ref('revoke'), '--user', robots.successor!.name, '--password-stdin'), {
    input: robots.successor!.secret,
  });
  assert.equal(again.code, 0, again.stderr);
  assert.equal((await readFile(join(m.mountpoint, 'data/b'))).length, 8 * MIB);
  assert.equal((await snap.lazy!.mounts()).filter((x) => x.image?.includes('priv/revoke')).length, 1, 'the same mount');
});

test('a lazy pull whose mount fails is a failed pull, never a success followed by a failing run', async () => {
  const args = [
    'pull',
    '--address',
    cd.address,
    '--namespace',
    cd.namespace,
    '--snapshotter',
    'broken',
    '--snapshotter-api',
    broken.apiAddress,
  ];
  const pull = await ferry([...args, '--user', robots.puller!.name, '--password-stdin', ref('app')], { input: robots.puller!.secret });
  assert.equal(pull.code, 1, pull.stdout);
  assert.match(pull.stderr, /lazy mount failed, so no container of it could start/);
});

test('a Nydus image pulled in-process into a snapshotter that does not take it lazily: a clear error, no download', async () => {
  const before0 = await served();
  const args = ['pull', '--address', cd.address, '--namespace', cd.namespace, '--snapshotter', 'overlayfs', '--local'];
  const pull = await ferry([...args, '--user', robots.puller!.name, '--password-stdin', ref('app')], { input: robots.puller!.secret });
  assert.equal(pull.code, 1, pull.stdout);
  assert.match(pull.stderr, /in this process/);
  assert.match(pull.stderr, /is a Nydus image, but snapshotter "overlayfs" did not take layer 1/);
  assert.ok((await served()) - before0 < 1024 * 1024, 'no layer was downloaded');
});

test("the snapshotter's own pull secret (--pull-secret): a pull without credentials of a private image runs lazily", async () => {
  const args = ['pull', '--address', cd.address, '--namespace', cd.namespace, '--snapshotter', 'nodesecret', '--json'];
  const pull = await ferry([...args, '--snapshotter-api', nodeSnap.apiAddress, '--no-docker-config', ref('node')]);
  assert.equal(pull.code, 0, pull.stderr);
  assert.deepEqual(new Set((JSON.parse(pull.stdout) as { layers: Array<{ how: string }> }).layers.map((l) => l.how)), new Set(['remote']));
  const run = await cd.ctr(['run', '--rm', '--snapshotter', 'nodesecret', ref('node'), 'creds-node', '/bin/cat', '/srv/message.txt'], {
    timeoutMs: 90_000,
  });
  assert.equal(run.code, 0, run.stderr);
  assert.equal(run.stdout, 'hello from a private lazy image\n');
});
