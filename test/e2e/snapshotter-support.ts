/**
 * Shared set-up for the snapshotter and lazy-pull e2e tests: a ferry registry on loopback, a
 * ferry snapshotter (in this process or as a child `ferry snapshotter`), a private containerd
 * with the snapshotter registered as proxy plugin `ferry`, and a runner for the `ferry` CLI.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { FERRY_BIN } from '../support/paths.js';
import type { Containerd } from '../../src/bench/env/index.js';

export { ferry, type Run } from '../support/ferry.js';

/** A long-running `ferry …` child (snapshotter, daemon) with its output kept for failure messages. */
export interface Child {
  proc: ChildProcess;
  output(): string;
  stop(): Promise<void>;
  kill(): Promise<void>;
}

/**
 * containerd redials a restarted proxy snapshotter with backoff (capped at a few seconds): wait for it.
 * The probe must reach the snapshotter: `ctr snapshots ls` is answered from containerd's own
 * metadata, so a Prepare (then Remove) of a throwaway active snapshot is what is tried.
 */
export async function reconnected(cd: Pick<Containerd, 'ctr'>): Promise<void> {
  let last = '';
  for (let i = 0; i < 100; i++) {
    const key = `reconnect-probe-${process.pid}-${Date.now()}-${i}`;
    const r = await cd.ctr(['snapshots', '--snapshotter', 'ferry', 'prepare', key]);
    if (r.code === 0) {
      await cd.ctr(['snapshots', '--snapshotter', 'ferry', 'rm', key]);
      return;
    }
    last = r.stderr;
    await new Promise((res) => setTimeout(res, 200));
  }
  throw new Error(`containerd did not reconnect to the snapshotter: ${last}`);
}

export async function startFerryChild(args: string[], readyFile: string, timeoutMs = 30_000): Promise<Child> {
  const proc = spawn(process.execPath, [FERRY_BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout!.on('data', (d: Buffer) => {
    out += d;
  });
  proc.stderr!.on('data', (d: Buffer) => {
    out += d;
  });
  let exited = false;
  const exit = new Promise<void>((r) =>
    proc.on('exit', () => {
      exited = true;
      r();
    }),
  );
  const deadline = Date.now() + timeoutMs;
  while (!existsSync(readyFile)) {
    if (exited) throw new Error(`ferry ${args[0]} exited early:\n${out.slice(-4000)}`);
    if (Date.now() > deadline) {
      proc.kill('SIGKILL');
      throw new Error(`ferry ${args[0]} did not create ${readyFile} in ${timeoutMs} ms:\n${out.slice(-4000)}`);
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    proc,
    output: () => out,
    async kill() {
      if (exited) return;
      proc.kill('SIGKILL');
      await exit;
    },
    async stop() {
      if (exited) return;
      proc.kill('SIGTERM');
      const t = setTimeout(() => proc.kill('SIGKILL'), 10_000);
      await exit;
      clearTimeout(t);
    },
  };
}

import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import { fixture } from '../support/paths.js';
import { startAccel, type AccelHandle } from '../../src/accel/index.js';
import type { RegistryHandle } from '../../src/registry/index.js';

/**
 * `ferry accel` wired to a `ferry registry` as in a Harbor deployment: acceld's example config with
 * the registry as source (admin credentials), and a PUSH_ARTIFACT webhook policy on `library`
 * pointing at accel — every push into `library` gets a `<tag>-nydus` image. `extra.converter`: extra
 * `converter.*` keys (e.g. `attestation`); `extra.driver`: keys set in `converter.driver.config`.
 */
export async function startAccelFor(
  reg: RegistryHandle,
  dir: string,
  password: string,
  extra: { converter?: Record<string, unknown>; driver?: Record<string, string> } = {},
): Promise<AccelHandle> {
  const cfg = parseYaml(await readFile(fixture('acceld', 'config.yaml.nydus'), 'utf8')) as {
    provider: { source: Record<string, { auth?: string; insecure?: boolean; webhook?: { auth_header: string } }> };
    converter: { driver: { config: Record<string, string> } };
  };
  Object.assign(cfg.converter, extra.converter ?? {});
  const example = Object.values(cfg.provider.source)[0]!;
  cfg.provider.source = { [reg.host]: { ...example, auth: Buffer.from(`admin:${password}`).toString('base64') } };
  cfg.converter.driver.config.work_dir = join(dir, 'accel-scratch');
  Object.assign(cfg.converter.driver.config, extra.driver ?? {});
  const cfgPath = join(dir, 'accel.yaml');
  await writeFile(cfgPath, stringifyYaml(cfg));
  const accel = await startAccel({ configPath: cfgPath, listen: '127.0.0.1:0', workDir: join(dir, 'accel') });
  const res = await fetch(`${reg.url}/api/v2.0/projects/library/webhook/policies`, {
    method: 'POST',
    headers: { authorization: `Basic ${Buffer.from(`admin:${password}`).toString('base64')}`, 'content-type': 'application/json' },
    body: JSON.stringify({
      name: 'accel',
      event_types: ['PUSH_ARTIFACT'],
      enabled: true,
      targets: [
        {
          type: 'http',
          address: `${accel.url}/api/v1/conversions`,
          auth_header: example.webhook?.auth_header ?? '',
          payload_format: 'Default',
        },
      ],
    }),
  });
  if (res.status !== 201) {
    await accel.close();
    throw new Error(`webhook policy: ${res.status} ${await res.text()}`);
  }
  return accel;
}
