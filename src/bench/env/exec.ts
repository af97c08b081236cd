/**
 * @module bench/env/exec
 * Small helpers to run external commands (ip, tc, ctr, skopeo, debootstrap, tar) and collect their
 * output, with a bounded run time. Used by the test/bench environment only.
 */
import { spawn, type SpawnOptions } from 'node:child_process';
import { FerryError } from '../../core/index.js';

export interface ExecResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface ExecOptions {
  /** Kill the command (SIGKILL) after this many milliseconds; default 120 s. */
  timeoutMs?: number;
  /** Data written to the command's stdin (stdin is closed afterwards). */
  input?: string | Buffer;
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Enter this network namespace first (`nsenter --net=/run/netns/NAME`, mounts stay shared). */
  netns?: string;
}

/** PATH that always includes the sbin directories (ip, tc, runc, mount helpers). */
export function sbinPath(base = process.env.PATH ?? ''): string {
  const parts = base.split(':').filter(Boolean);
  for (const p of ['/usr/local/sbin', '/usr/local/bin', '/usr/sbin', '/usr/bin', '/sbin', '/bin']) {
    if (!parts.includes(p)) parts.push(p);
  }
  return parts.join(':');
}

/** Wraps a command so it runs in a named network namespace (sharing the mount namespace). */
export function netnsWrap(netns: string | undefined, cmd: string, args: string[]): [string, string[]] {
  if (!netns) return [cmd, args];
  return ['nsenter', [`--net=/run/netns/${netns}`, '--', cmd, ...args]];
}

/** Runs a command to completion; never throws for a non-zero exit (see `execCheck`). */
export function exec(cmd: string, args: string[], opts: ExecOptions = {}): Promise<ExecResult> {
  const [c, a] = netnsWrap(opts.netns, cmd, args);
  return new Promise((resolve, reject) => {
    const so: SpawnOptions = {
      env: { ...(opts.env ?? process.env), PATH: sbinPath(opts.env?.PATH ?? process.env.PATH) },
      stdio: ['pipe', 'pipe', 'pipe'],
    };
    if (opts.cwd !== undefined) so.cwd = opts.cwd;
    const child = spawn(c, a, so);
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout?.on('data', (d: Buffer) => out.push(d));
    child.stderr?.on('data', (d: Buffer) => err.push(d));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 120_000);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(new FerryError('UNAVAILABLE', `cannot run ${c}: ${e.message}`, { cause: e }));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({
        code: code ?? (signal ? 128 + 9 : 1),
        stdout: Buffer.concat(out).toString('utf8'),
        stderr: Buffer.concat(err).toString('utf8'),
      });
    });
    child.stdin?.on('error', () => {
      /* command may exit before reading stdin */
    });
    if (opts.input !== undefined) child.stdin?.end(opts.input);
    else child.stdin?.end();
  });
}

/** Runs a command and throws a FerryError with its stderr when it exits non-zero. */
export async function execCheck(cmd: string, args: string[], opts: ExecOptions = {}): Promise<string> {
  const r = await exec(cmd, args, opts);
  if (r.code !== 0) {
    const msg = (r.stderr || r.stdout).trim().split('\n').slice(-8).join('\n');
    throw new FerryError('INTERNAL', `${cmd} ${args.join(' ')} exited ${r.code}: ${msg}`);
  }
  return r.stdout;
}

/** Waits up to `timeoutMs` for `probe` to return true, polling every `intervalMs`. */
export async function waitFor(probe: () => Promise<boolean> | boolean, what: string, timeoutMs = 20_000, intervalMs = 50): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await probe()) return;
    if (Date.now() > deadline) throw new FerryError('DEADLINE_EXCEEDED', `timed out after ${timeoutMs} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/** Mount points (from /proc/self/mountinfo) at or below `dir`, deepest first. */
export async function mountsUnder(dir: string): Promise<string[]> {
  const { readFile } = await import('node:fs/promises');
  const text = await readFile('/proc/self/mountinfo', 'utf8');
  const prefix = dir.endsWith('/') ? dir : `${dir}/`;
  const out: string[] = [];
  for (const line of text.split('\n')) {
    const f = line.split(' ');
    const mp = f[4];
    if (!mp) continue;
    const p = mp.replace(/\\(\d{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8)));
    if (p === dir || p.startsWith(prefix)) out.push(p);
  }
  return out.sort((a, b) => b.length - a.length);
}

/** Unmounts (lazily, detaching) every mount at or below `dir`. Returns how many were unmounted. */
export async function unmountUnder(dir: string): Promise<number> {
  let n = 0;
  for (let round = 0; round < 5; round++) {
    const mps = await mountsUnder(dir);
    if (mps.length === 0) break;
    for (const mp of mps) {
      const r = await exec('umount', ['-l', mp], { timeoutMs: 10_000 });
      if (r.code === 0) n++;
    }
  }
  return n;
}
