/**
 * `ferry up` as a newcomer uses it: one process starts registry, accel (wired by a webhook policy on
 * `library`), scheduler and seed peer; a skopeo push of `library/app:v1` produces `app:v1-nydus` by
 * itself, which `ferry check` verifies; the preheat API refuses jobs without the generated token
 * and runs one with it (the scheduler commands the seed with the generated cluster secret); the
 * scheduler's peer RPC refuses strangers; a second start reuses the stored secrets; Ctrl-C stops
 * cleanly.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, readFile, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import { FERRY_BIN } from '../support/paths.js';
import { requirePrereqs } from '../support/prereq.js';
import { busyboxRootfs, buildOciImage, pushImage } from '../../src/bench/env/index.js';
import { checkImage } from '../../src/convert/index.js';
import { RegistryClient, parseReference } from '../../src/remote/index.js';

const dirs: string[] = [];
const procs: ChildProcess[] = [];
after(async () => {
  for (const p of procs) if (p.exitCode === null) p.kill('SIGKILL');
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

interface Up {
  proc: ChildProcess;
  registry: string;
  accel: string;
  scheduler: string;
  password: string;
  preheatToken: string;
  clusterToken: string;
  stdout: () => string;
}

async function startUp(dataDir: string): Promise<Up> {
  const proc = spawn(
    process.execPath,
    [FERRY_BIN, 'up', '--data', dataDir, '--registry-port', '0', '--accel-port', '0', '--scheduler-port', '0', '--proxy-port', '0'],
    { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, FERRY_LOG_LEVEL: 'warn', FERRY_ADMIN_PASSWORD: '' } },
  );
  procs.push(proc);
  let out = '';
  let err = '';
  proc.stdout!.on('data', (d: Buffer) => {
    out += d.toString();
  });
  proc.stderr!.on('data', (d: Buffer) => {
    err = (err + d.toString()).slice(-4000);
  });
  const deadline = Date.now() + 30_000;
  while (!out.includes('Ctrl-C stops everything')) {
    if (proc.exitCode !== null) throw new Error(`ferry up exited ${proc.exitCode}: ${err}`);
    if (Date.now() > deadline) throw new Error(`ferry up did not start: ${out}\n${err}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  const registry = /registry\s+(http:\/\/\S+)/.exec(out)?.[1];
  const accel = /accel\s+(http:\/\/\S+)/.exec(out)?.[1];
  const scheduler = /scheduler\s+(http:\/\/\S+)/.exec(out)?.[1];
  assert.ok(registry && accel && scheduler, out);
  assert.match(out, /seed peer\s+http:\/\//);
  const secrets = JSON.parse(await readFile(join(dataDir, 'up-secrets.json'), 'utf8')) as {
    adminPassword: string;
    preheatToken: string;
    clusterToken: string;
  };
  assert.ok(secrets.preheatToken.length >= 24 && secrets.clusterToken.length >= 32, 'preheat token and cluster secret generated');
  return {
    proc,
    registry,
    accel,
    scheduler,
    password: secrets.adminPassword,
    preheatToken: secrets.preheatToken,
    clusterToken: secrets.clusterToken,
    stdout: () => out,
  };
}

async function stopUp(up: Up): Promise<number | null> {
  const exited = new Promise<number | null>((r) => up.proc.once('exit', (code) => r(code)));
  up.proc.kill('SIGINT');
  return exited;
}

test('ferry up converts a pushed image by itself and stops cleanly on Ctrl-C', { timeout: 180_000 }, async () => {
  requirePrereqs({ commands: ['skopeo', 'busybox'] });
  const dir = await mkdtemp(join(tmpdir(), 'ferry-up-'));
  dirs.push(dir);
  const up = await startUp(join(dir, 'data'));
  assert.match(up.stdout(), /admin password \(generated/);
  assert.equal((await stat(join(dir, 'data', 'up-secrets.json'))).mode & 0o777, 0o600);

  const rootfs = await busyboxRootfs(join(dir, 'rootfs'));
  const image = await buildOciImage({ layers: [rootfs], outDir: join(dir, 'layout'), config: { Cmd: ['/bin/sh'] } });
  const host = new URL(up.registry).host;
  await pushImage(image.layoutDir, `${host}/library/app:v1`, { creds: `admin:${up.password}` });

  const client = new RegistryClient({ insecure: () => true, credentials: () => ({ username: 'admin', password: up.password }) });
  const deadline = Date.now() + 90_000;
  let converted = false;
  while (Date.now() < deadline) {
    try {
      await client.getManifest(parseReference(`${host}/library/app:v1-nydus`));
      converted = true;
      break;
    } catch {
      await new Promise((r) => setTimeout(r, 250));
    }
  }
  assert.ok(converted, 'app:v1-nydus did not appear');
  const result = await checkImage({ source: `${host}/library/app:v1`, target: `${host}/library/app:v1-nydus`, sourceClient: client });
  assert.ok(result.ok, JSON.stringify(result.differences.slice(0, 5)));

  // The printed instructions name the secrets by where they are kept.
  const secretsFile = join(dir, 'data', 'up-secrets.json');
  assert.ok(
    up.stdout().includes(`ferry task create --address ${up.accel} --auth-header "$(jq -r .webhookAuthHeader ${secretsFile})"`),
    up.stdout(),
  );
  assert.ok(up.stdout().includes(`preheat token (generated, stored in ${secretsFile}): ${up.preheatToken}`));
  assert.ok(up.stdout().includes(`FERRY_CLUSTER_TOKEN="$(jq -r .clusterToken ${secretsFile})" ferry peer --scheduler ${up.scheduler}`));
  assert.ok(!up.stdout().includes(up.clusterToken), 'the cluster secret itself is not printed');
  // Preheat: refused without the token or with another one; the job with it runs on the seed.
  const job = JSON.stringify({
    type: 'preheat',
    args: { type: 'image', url: `${up.registry}/v2/library/app/manifests/v1`, username: 'admin', password: up.password },
  });
  const post = (auth?: string): Promise<Response> =>
    fetch(`${up.scheduler}/oapi/v1/jobs`, {
      method: 'POST',
      body: job,
      headers: { 'content-type': 'application/json', ...(auth ? { authorization: auth } : {}) },
    });
  assert.equal((await post()).status, 401);
  assert.equal((await post('Bearer not-the-token')).status, 401);
  assert.equal((await post(`Bearer ${up.clusterToken}`)).status, 401, 'the cluster secret is not a preheat token');
  const created = await post(`Bearer ${up.preheatToken}`);
  assert.equal(created.status, 200);
  const jobBody = await created.text();
  assert.ok(!jobBody.includes(up.password), 'the job answer does not echo the registry password');
  const { id } = JSON.parse(jobBody) as { id: number };
  let state = 'PENDING';
  let last = '';
  for (let i = 0; i < 400 && state === 'PENDING'; i++) {
    await new Promise((r) => setTimeout(r, 100));
    last = await (await fetch(`${up.scheduler}/oapi/v1/jobs/${id}`, { headers: { authorization: `Bearer ${up.preheatToken}` } })).text();
    state = (JSON.parse(last) as { state: string }).state;
  }
  assert.equal(state, 'SUCCESS', last);
  // The scheduler's peer RPC answers cluster members only.
  assert.equal((await fetch(`${up.scheduler}/api/v1/hosts`)).status, 401);

  assert.equal(await stopUp(up), 0);

  // A second start reuses the stored secrets and does not print new ones.
  const again = await startUp(join(dir, 'data'));
  assert.equal(again.password, up.password);
  assert.equal(again.preheatToken, up.preheatToken);
  assert.equal(again.clusterToken, up.clusterToken);
  assert.doesNotMatch(again.stdout(), /generated/);
  assert.equal((await fetch(`${again.scheduler}/oapi/v1/jobs`, { method: 'POST', body: job })).status, 401);
  assert.equal(await stopUp(again), 0);
});
