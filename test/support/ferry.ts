/**
 * Runs the `ferry` CLI (bin/ferry.js) as a child process and collects its output; killed after
 * `timeoutMs` so a hung command fails its test instead of the suite.
 */
import { spawn } from 'node:child_process';
import { FERRY_BIN } from './paths.js';

export interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** `input`: written to the command's standard input (e.g. a password for --password-stdin), then closed. */
export function ferry(args: string[], opts: { env?: Record<string, string>; timeoutMs?: number; input?: string } = {}): Promise<Run> {
  return new Promise((resolve) => {
    const p = spawn(process.execPath, [FERRY_BIN, ...args], { env: { ...process.env, ...(opts.env ?? {}) } });
    let stdout = '';
    let stderr = '';
    p.stdin.on('error', () => undefined);
    p.stdin.end(opts.input ?? '');
    const t = setTimeout(() => p.kill('SIGKILL'), opts.timeoutMs ?? 300_000);
    p.stdout.on('data', (d: Buffer) => {
      stdout += d;
    });
    p.stderr.on('data', (d: Buffer) => {
      stderr += d;
    });
    p.on('close', (code) => {
      clearTimeout(t);
      resolve({ code: code ?? -1, stdout, stderr });
    });
  });
}
