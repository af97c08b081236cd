/**
 * @module bench/env/registry
 * The CNCF distribution registry (Debian `docker-registry`) as a reference server for tests:
 * private config (no auth, filesystem storage in `dir`), ephemeral port, stopped by `close()`.
 */
import { spawn } from 'node:child_process';
import { mkdir, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { FerryError } from '../../core/index.js';
import { netnsWrap, sbinPath } from './exec.js';

export interface DistributionRegistry {
  url: string;
  host: string;
  pid: number;
  close(): Promise<void>;
}

/** Starts `docker-registry serve` on `listen` (default 127.0.0.1:0) storing under `dir`. */
export async function startDistributionRegistry(opts: { dir: string; listen?: string; netns?: string; timeoutMs?: number }): Promise<DistributionRegistry> {
  const dir = resolve(opts.dir);
  await mkdir(join(dir, 'data'), { recursive: true });
  const cfg = [
    'version: 0.1',
    'log:',
    '  level: info',
    '  formatter: json',
    'storage:',
    '  filesystem:',
    `    rootdirectory: ${JSON.stringify(join(dir, 'data'))}`,
    '  delete:',
    '    enabled: true',
    'http:',
    `  addr: ${JSON.stringify(opts.listen ?? '127.0.0.1:0')}`,
    '',
  ].join('\n');
  const cfgPath = join(dir, 'config.yml');
  await writeFile(cfgPath, cfg);
  const [cmd, args] = netnsWrap(opts.netns, 'docker-registry', ['serve', cfgPath]);
  const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, PATH: sbinPath(), OTEL_TRACES_EXPORTER: 'none' } });
  let buf = '';
  const host = await new Promise<string>((res, rej) => {
    const timer = setTimeout(() => { child.kill('SIGKILL'); rej(new FerryError('DEADLINE_EXCEEDED', `docker-registry did not start: ${buf.slice(-500)}`)); }, opts.timeoutMs ?? 20_000);
    const onData = (d: Buffer): void => {
      buf += d.toString();
      const m = /listening on ([^\s"\\]+)/.exec(buf);
      if (m?.[1]) { clearTimeout(timer); res(m[1].replace(/^\[::\]/, '127.0.0.1')); }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.on('exit', (code) => { clearTimeout(timer); rej(new FerryError('UNAVAILABLE', `docker-registry exited ${code}: ${buf.slice(-500)}`)); });
  });
  child.stdout.resume();
  child.stderr.resume();
  return {
    url: `http://${host}`,
    host,
    pid: child.pid ?? -1,
    close: async () => {
      if (child.exitCode !== null || child.signalCode !== null) return;
      const done = new Promise<void>((r) => child.on('exit', () => r()));
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await done;
      clearTimeout(t);
    },
  };
}
