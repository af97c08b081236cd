/**
 * @module bench/procs
 * Ferry's own processes during a benchmark (registry, snapshotter, scheduler, peer, …): spawned
 * from the `ferry` executable, optionally inside a network namespace (`nsenter --net`, mounts
 * shared), logs to a file, CPU time read from /proc, stopped with SIGTERM then SIGKILL.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { FerryError } from '../core/index.js';
import { exec, netnsWrap, sbinPath } from './env/index.js';

/** The project root (holding package.json and bin/ferry.js). */
export function projectRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, 'package.json')) && existsSync(join(dir, 'bin', 'ferry.js'))) return dir;
    const up = dirname(dir);
    if (up === dir) throw new FerryError('INTERNAL', 'ferry project root not found');
    dir = up;
  }
}

export function ferryBin(): string {
  return join(projectRoot(), 'bin', 'ferry.js');
}

/** user+sys CPU time (ms) of a live process and its reaped children, from /proc/PID/stat. */
export async function cpuMs(pid: number): Promise<number> {
  try {
    const text = await readFile(`/proc/${pid}/stat`, 'utf8');
    const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
    // fields after "(comm) ": state(3) ... utime(14) stime(15) cutime(16) cstime(17) → indices 11..14
    const ticks = [11, 12, 13, 14].reduce((a, i) => a + Number(rest[i] ?? 0), 0);
    return ticks * 10; // USER_HZ = 100 on Linux
  } catch {
    return NaN;
  }
}

export interface ManagedProcess {
  name: string;
  pid: number;
  child: ChildProcess;
  logPath: string;
  exited(): boolean;
  cpuMs(): Promise<number>;
  stop(signal?: NodeJS.Signals): Promise<void>;
  logTail(lines?: number): Promise<string>;
}

/** Spawns `ferry ARGS…` (or another command) with its output in `logPath`. */
export function spawnManaged(
  name: string,
  cmd: string,
  args: string[],
  opts: { netns?: string; logPath: string; env?: NodeJS.ProcessEnv },
): ManagedProcess {
  const [c, a] = netnsWrap(opts.netns, cmd, args);
  const log = createWriteStream(opts.logPath, { flags: 'a' });
  const child = spawn(c, a, { env: { ...process.env, ...(opts.env ?? {}), PATH: sbinPath() }, stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout?.pipe(log, { end: false });
  child.stderr?.pipe(log, { end: false });
  let done = false;
  const exit = new Promise<void>((res) => {
    child.on('exit', () => {
      done = true;
      res();
    });
    child.on('error', () => {
      done = true;
      res();
    });
  });
  let lastCpu = NaN;
  const mp: ManagedProcess = {
    name,
    pid: child.pid ?? -1,
    child,
    logPath: opts.logPath,
    exited: () => done,
    cpuMs: async () => {
      if (!done && mp.pid > 0) lastCpu = await cpuMs(mp.pid);
      return lastCpu;
    },
    stop: async (signal: NodeJS.Signals = 'SIGTERM') => {
      if (!done) {
        await mp.cpuMs();
        child.kill(signal);
        const t = setTimeout(() => child.kill('SIGKILL'), 10_000);
        await exit;
        clearTimeout(t);
      }
      log.end();
    },
    logTail: async (lines = 15) => (await readFile(opts.logPath, 'utf8').catch(() => '')).split('\n').slice(-lines).join('\n'),
  };
  return mp;
}

/** Spawns `node bin/ferry.js SUBCOMMAND …`. */
export function spawnFerry(
  name: string,
  args: string[],
  opts: { netns?: string; logPath: string; env?: NodeJS.ProcessEnv },
): ManagedProcess {
  return spawnManaged(name, process.execPath, [ferryBin(), ...args], opts);
}

/** Whether `ferry SUBCOMMAND --help` works in this build; the reason when not. */
export async function probeSubcommand(sub: string): Promise<{ ok: boolean; reason?: string; help?: string }> {
  const r = await exec(process.execPath, [ferryBin(), sub, '--help'], { timeoutMs: 30_000 });
  const text = `${r.stdout}\n${r.stderr}`;
  if (r.code === 0) return { ok: true, help: text };
  if (/not available in this build|unknown command/.test(text)) return { ok: false, reason: `\`ferry ${sub}\` is not in this build yet` };
  return { ok: false, reason: `\`ferry ${sub} --help\` failed: ${text.trim().split('\n').slice(-2).join(' ')}` };
}
