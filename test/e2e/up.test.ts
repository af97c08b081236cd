/**
 * `ferry up` as a newcomer uses it: one process starts registry, accel (wired by a webhook policy on
 * `library`), scheduler and seed peer; a skopeo push of `library/app:v1` produces `app:v1-nydus` by
 * itself, which `ferry check` verifies; a second start reuses the stored secrets; Ctrl-C stops cleanly.
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

interface Up { proc: ChildProcess; registry: string; accel: string; password: string; stdout: () => string }

async function startUp(dataDir: string): Promise<Up> {
  const proc = spawn(process.execPath, [FERRY_BIN, 'up', '--data', dataDir, '--registry-port', '0', '--accel-port', '0',
    '--scheduler-port', '0', '--proxy-port', '0'], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, FERRY_LOG_LEVEL: 'warn', FERRY_ADMIN_PASSWORD: '' } });
  procs.push(proc);
  let out = '';
  let err = '';
  proc.stdout!.on('data', (d: Buffer) => { out += d.toString(); });
  proc.stderr!.on('data', (d: Buffer) => { err = (err + d.toString()).slice(-4000); });
  const deadline = Date.now() + 30_000;
  while (!out.includes('Ctrl-C stops everything')) {
    if (proc.exitCode !== null) throw new Error(`ferry up exited ${proc.exitCode}: ${err}`);
    if (Date.now() > deadline) throw new Error(`ferry up did not start: ${out}\n${err}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  const registry = /registry\s+(http:\/\/\S+)/.exec(out)?.[1];
  const accel = /accel\s+(http:\/\/\S+)/.exec(out)?.[1];
  assert.ok(registry && accel, out);
  assert.match(out, /scheduler\s+http:\/\//);
  assert.match(out, /seed peer\s+http:\/\//);
  const secrets = JSON.parse(await readFile(join(dataDir, 'up-secrets.json'), 'utf8')) as { adminPassword: string };
  return { proc, registry, accel, password: secrets.adminPassword, stdout: () => out };
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

  assert.equal(await stopUp(up), 0);

  // A second start reuses the stored admin password and does not print a new one.
  const again = await startUp(join(dir, 'data'));
  assert.equal(again.password, up.password);
  assert.doesNotMatch(again.stdout(), /generated/);
  assert.equal(await stopUp(again), 0);
});
