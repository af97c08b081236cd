/**
 * Runs the `ferry` CLI (bin/ferry.js) as a child process and collects its output; killed after
 * `timeoutMs` so a hung command fails its test instead of the suite.
 */
import { spawn, type ChildProcess } from 'node:child_process';
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

/**
 * Waits until a server child (e.g. `ferry registry --listen 127.0.0.1:0`) prints `listening on URL`
 * on stdout and resolves that URL; rejects with what it printed when it exits first or after
 * `timeoutMs`. `what` names it in the errors; `stderrTail` adds text (e.g. its collected stderr).
 */
export function listeningUrl(
  child: ChildProcess,
  o: { what: string; timeoutMs?: number; stderrTail?: () => string } = { what: 'server' },
): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    let out = '';
    const tail = (): string => `${out}${o.stderrTail ? ` ${o.stderrTail()}` : ''}`;
    const timer = setTimeout(
      () => reject(new Error(`${o.what} did not start in ${(o.timeoutMs ?? 30_000) / 1000} s: ${tail()}`)),
      o.timeoutMs ?? 30_000,
    );
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /listening on (http:\/\/\S+)/.exec(out);
      if (m) {
        clearTimeout(timer);
        resolve(m[1]!);
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${o.what} exited with ${code}: ${tail()}`));
    });
  });
}
