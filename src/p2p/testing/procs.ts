/**
 * @module p2p/testing/procs
 * Runs `ferry <cmd>` as a child process (optionally inside a network namespace via
 * `nsenter --net`), waits for a readiness line on stdout, and stops it (SIGTERM, then SIGKILL).
 * Used by the P2P e2e tests and bench/p2p.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { FerryError } from '../../core/index.js';

export interface FerryProc {
  proc: ChildProcess;
  output(): string;
  stop(): Promise<void>;
}

export async function spawnFerry(
  bin: string,
  args: string[],
  /** `nodeArgs`: options for node itself (e.g. `--cpu-prof`, which NODE_OPTIONS does not take). */
  opts: { netns?: string; ready?: RegExp; timeoutMs?: number; env?: NodeJS.ProcessEnv; nodeArgs?: string[] } = {},
): Promise<FerryProc> {
  const cmd = opts.netns ? 'nsenter' : process.execPath;
  const node = [...(opts.nodeArgs ?? []), bin, ...args];
  const argv = opts.netns ? [`--net=/run/netns/${opts.netns}`, '--', process.execPath, ...node] : node;
  const proc = spawn(cmd, argv, {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, FERRY_LOG_LEVEL: process.env.FERRY_LOG_LEVEL ?? 'warn', ...(opts.env ?? {}) },
  });
  let out = '';
  let err = '';
  proc.stdout!.on('data', (d: Buffer) => {
    out += d.toString();
  });
  proc.stderr!.on('data', (d: Buffer) => {
    err = (err + d.toString()).slice(-20_000);
  });
  const stop = async (): Promise<void> => {
    if (proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise<void>((r) => proc.once('exit', () => r()));
    proc.kill('SIGTERM');
    const t = setTimeout(() => proc.kill('SIGKILL'), 5000);
    await exited;
    clearTimeout(t);
  };
  if (opts.ready) {
    const re = opts.ready;
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        void stop();
        reject(new FerryError('DEADLINE_EXCEEDED', `ferry ${args[0]} not ready: ${out.slice(-500)} ${err.slice(-1500)}`));
      }, opts.timeoutMs ?? 30_000);
      const check = (): void => {
        if (re.test(out)) {
          clearTimeout(timer);
          proc.stdout!.off('data', check);
          resolve();
        }
      };
      proc.stdout!.on('data', check);
      proc.once('exit', (code) => {
        clearTimeout(timer);
        reject(new FerryError('UNAVAILABLE', `ferry ${args[0]} exited ${code}: ${err.slice(-1500)}`));
      });
      check();
    });
  }
  return { proc, output: () => `${out}\n${err}`, stop };
}

/** Runs `ferry <args>` to completion; resolves with the exit code and output. */
export function runFerry(
  bin: string,
  args: string[],
  opts: { netns?: string; timeoutMs?: number; env?: NodeJS.ProcessEnv } = {},
): Promise<{ code: number; stdout: string; stderr: string; ms: number }> {
  const t0 = Date.now();
  const cmd = opts.netns ? 'nsenter' : process.execPath;
  const argv = opts.netns ? [`--net=/run/netns/${opts.netns}`, '--', process.execPath, bin, ...args] : [bin, ...args];
  return new Promise((resolve) => {
    const p = spawn(cmd, argv, {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, FERRY_LOG_LEVEL: process.env.FERRY_LOG_LEVEL ?? 'warn', ...(opts.env ?? {}) },
    });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    p.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    const t = setTimeout(() => p.kill('SIGKILL'), opts.timeoutMs ?? 300_000);
    p.on('exit', (code) => {
      clearTimeout(t);
      resolve({ code: code ?? -1, stdout, stderr, ms: Date.now() - t0 });
    });
  });
}
