/**
 * Shared set-up for the snapshotter and lazy-pull e2e tests: a ferry registry on loopback, a
 * ferry snapshotter (in this process or as a child `ferry snapshotter`), a private containerd
 * with the snapshotter registered as proxy plugin `ferry`, and a runner for the `ferry` CLI.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { FERRY_BIN } from '../support/paths.js';

export interface Run { code: number; stdout: string; stderr: string }

export function ferry(args: string[], opts: { env?: Record<string, string>; timeoutMs?: number } = {}): Promise<Run> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [FERRY_BIN, ...args], { env: { ...process.env, ...(opts.env ?? {}) } });
    let stdout = '';
    let stderr = '';
    const t = setTimeout(() => p.kill('SIGKILL'), opts.timeoutMs ?? 300_000);
    p.stdout.on('data', (d: Buffer) => { stdout += d; });
    p.stderr.on('data', (d: Buffer) => { stderr += d; });
    p.on('close', (code) => { clearTimeout(t); resolve({ code: code ?? -1, stdout, stderr }); });
  });
}

/** A long-running `ferry …` child (snapshotter, daemon) with its output kept for failure messages. */
export interface Child { proc: ChildProcess; output(): string; stop(): Promise<void>; kill(): Promise<void> }

export async function startFerryChild(args: string[], readyFile: string, timeoutMs = 30_000): Promise<Child> {
  const proc = spawn(process.execPath, [FERRY_BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout!.on('data', (d: Buffer) => { out += d; });
  proc.stderr!.on('data', (d: Buffer) => { out += d; });
  let exited = false;
  const exit = new Promise<void>((r) => proc.on('exit', () => { exited = true; r(); }));
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
