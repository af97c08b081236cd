/**
 * Plumbing shared by the engine helpers (postgres.ts, ceph.ts): run a tool with a deadline, start a
 * daemon whose output goes to a log file, poll with a deadline, name missing prerequisites, find a
 * free loopback port, and tell whether a process we started is still alive (by pid AND start time,
 * so a recycled pid is not mistaken for ours). Every wait here is bounded.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, closeSync, constants, openSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';

/** A process identified by pid and kernel start time (field 22 of /proc/PID/stat). */
export interface ProcRef {
  pid: number;
  startTime: string;
  name: string;
}

/** Error thrown when an engine cannot start because something is not installed. */
export class MissingPrerequisiteError extends Error {
  override name = 'MissingPrerequisiteError';
}

function statFields(pid: number): string[] | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // "pid (comm) state ppid …": comm may hold spaces and parentheses; fields after the last ')'.
  const close = text.lastIndexOf(')');
  return [
    text.slice(0, close + 1),
    ...text
      .slice(close + 2)
      .trim()
      .split(' '),
  ];
}

/** The ProcRef of a live pid, or undefined when there is no such process (or it is a zombie). */
export function procRef(pid: number, name: string): ProcRef | undefined {
  const f = statFields(pid);
  if (!f || f[1] === 'Z') return undefined;
  // f[0] = "pid (comm)", f[1] = state (field 3), so field N is f[N - 2].
  const startTime = f[20];
  return startTime === undefined ? undefined : { pid, startTime, name };
}

/** True while the exact process (same pid, same start time) exists and is not a zombie. */
export function isAlive(ref: ProcRef): boolean {
  const f = statFields(ref.pid);
  return f !== undefined && f[1] !== 'Z' && f[20] === ref.startTime;
}

/** Live direct children of a pid (read from /proc). */
export function childrenOf(parent: ProcRef): ProcRef[] {
  const out: ProcRef[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const f = statFields(Number(entry));
    if (!f || f[1] === 'Z' || f[2] !== String(parent.pid)) continue;
    const name = /\((.*)\)/.exec(f[0] ?? '')?.[1] ?? '?';
    const ref = procRef(Number(entry), name);
    if (ref) out.push(ref);
  }
  return out;
}

/** Processes whose command line contains `needle` (e.g. an instance's private directory). */
export function processesMentioning(needle: string): ProcRef[] {
  const out: ProcRef[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    let cmdline: string;
    try {
      cmdline = readFileSync(`/proc/${entry}/cmdline`, 'utf8').replace(/\0/g, ' ');
    } catch {
      continue;
    }
    if (!cmdline.includes(needle)) continue;
    const ref = procRef(Number(entry), cmdline.trim().slice(0, 120));
    if (ref) out.push(ref);
  }
  return out;
}

/** The last `n` lines of a file (empty string when it cannot be read). */
export function tail(path: string, n = 30): string {
  try {
    const lines = readFileSync(path, 'utf8').trimEnd().split('\n');
    return lines.slice(-n).join('\n');
  } catch {
    return '';
  }
}

/** Formats log tails for an error message: `--- name (last lines) ---` blocks. */
export function logTails(logs: Array<[string, string]>, n = 20): string {
  return logs
    .map(([label, path]) => {
      const t = tail(path, n);
      return t ? `\n--- ${label}: last ${n} lines of ${path} ---\n${t}` : `\n--- ${label}: ${path} is empty or missing ---`;
    })
    .join('');
}

/** A free TCP port on 127.0.0.1 (the kernel picks one; the caller retries if it is taken before use). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => (port ? resolve(port) : reject(new Error('freePort: no port assigned'))));
    });
  });
}

/** Throws MissingPrerequisiteError naming each executable that is absent (with its Debian package). */
export function requireExecutables(engine: string, wanted: Array<{ path: string; pkg: string }>): void {
  const missing: string[] = [];
  for (const w of wanted) {
    try {
      accessSync(w.path, constants.X_OK);
    } catch {
      missing.push(`${w.path} (Debian package ${w.pkg})`);
    }
  }
  if (missing.length) {
    throw new MissingPrerequisiteError(
      `${engine}: missing prerequisite: ${missing.join(', ')}; install with scripts/install-deps.sh (as root)`,
    );
  }
}

/** True if `p` settles within `ms` (the timer is cleared either way, so it keeps no process alive). */
export async function settlesWithin(p: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  try {
    return await Promise.race([
      p.then(
        () => true,
        () => true,
      ),
      timeout,
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** Sleeps `ms` milliseconds. */
export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/**
 * Polls `check` every `intervalMs` until it returns a value other than undefined, or throws after
 * `timeoutMs` with `what` and `details()` (e.g. log tails) in the message. `check` may throw to
 * abort at once (e.g. the daemon died).
 */
export async function waitFor<T>(
  what: string,
  check: () => Promise<T | undefined> | T | undefined,
  opts: { timeoutMs: number; intervalMs?: number; details?: () => string },
): Promise<T> {
  const deadline = Date.now() + opts.timeoutMs;
  let lastError = '';
  for (;;) {
    try {
      const v = await check();
      if (v !== undefined) return v;
    } catch (err) {
      if (err instanceof AbortWait) throw err.cause instanceof Error ? err.cause : err;
      lastError = err instanceof Error ? err.message : String(err);
    }
    if (Date.now() >= deadline) {
      throw new Error(
        `${what}: not ready after ${opts.timeoutMs} ms${lastError ? ` (last error: ${lastError})` : ''}${opts.details?.() ?? ''}`,
      );
    }
    await sleep(opts.intervalMs ?? 50);
  }
}

/** Thrown inside a waitFor check to stop waiting at once with `cause`. */
export class AbortWait extends Error {
  constructor(cause: Error) {
    super(cause.message, { cause });
  }
}

export interface ToolResult {
  stdout: string;
  stderr: string;
}

/**
 * Runs a command to completion, killing it (SIGKILL) after `timeoutMs`. Rejects on a non-zero exit or
 * the timeout with the command, exit status and the end of its output (plus `details()`).
 */
export function runTool(
  cmd: string,
  args: string[],
  opts: { timeoutMs: number; input?: string; env?: NodeJS.ProcessEnv; cwd?: string; details?: () => string },
): Promise<ToolResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      stdio: ['pipe', 'pipe', 'pipe'],
      env: opts.env ?? process.env,
      ...(opts.cwd !== undefined ? { cwd: opts.cwd } : {}),
    });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, opts.timeoutMs);
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    child.stdin.on('error', () => {
      /* the tool may exit before reading its input */
    });
    child.stdin.end(opts.input ?? '');
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(new Error(`${cmd}: ${err.message}`, { cause: err }));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (code === 0 && !timedOut) {
        resolve({ stdout, stderr });
        return;
      }
      const why = timedOut ? `did not finish within ${opts.timeoutMs} ms (killed)` : `exited with ${code ?? signal}`;
      const out = `${stdout}\n${stderr}`.trim().split('\n').slice(-20).join('\n');
      reject(new Error(`${[cmd, ...args].join(' ')}: ${why}${out ? `\n${out}` : ''}${opts.details?.() ?? ''}`));
    });
  });
}

/**
 * A long-running child process whose stdout/stderr go to `logPath`. `exited` settles when it ends;
 * `stop()` sends `signal`, waits up to `graceMs`, then SIGKILLs and waits (bounded) again.
 */
export class Daemon {
  readonly child: ChildProcess;
  readonly ref: ProcRef;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  private exitInfo: { code: number | null; signal: NodeJS.Signals | null } | undefined;

  private constructor(
    readonly name: string,
    child: ChildProcess,
    ref: ProcRef,
    readonly logPath: string,
  ) {
    this.child = child;
    this.ref = ref;
    this.exited = new Promise((resolve) => {
      child.once('exit', (code, signal) => {
        this.exitInfo = { code, signal };
        resolve({ code, signal });
      });
    });
  }

  /** Spawns `cmd` in `cwd` (where a crashing daemon would drop its core file: use the temp dir). */
  static async start(name: string, cmd: string, args: string[], logPath: string, cwd: string): Promise<Daemon> {
    const fd = openSync(logPath, 'a');
    try {
      const child = spawn(cmd, args, { stdio: ['ignore', fd, fd], cwd });
      const pid = await new Promise<number>((resolve, reject) => {
        child.once('error', (err) => reject(new Error(`${name}: cannot start ${cmd}: ${err.message}`, { cause: err })));
        child.once('spawn', () => resolve(child.pid ?? -1));
      });
      const ref = procRef(pid, name) ?? { pid, startTime: '?', name };
      return new Daemon(name, child, ref, logPath);
    } finally {
      closeSync(fd);
    }
  }

  /** Undefined while running; the exit code/signal once it has ended. */
  get exit(): { code: number | null; signal: NodeJS.Signals | null } | undefined {
    return this.exitInfo;
  }

  /** Throws (for waitFor: AbortWait) when the daemon has already exited. */
  assertRunning(): void {
    if (this.exitInfo) {
      throw new AbortWait(
        new Error(`${this.name} exited early (${this.exitInfo.code ?? this.exitInfo.signal})${logTails([[this.name, this.logPath]])}`),
      );
    }
  }

  /** Stops the daemon: `signal`, then SIGKILL after `graceMs`. Resolves with how it ended. */
  async stop(signal: NodeJS.Signals = 'SIGTERM', graceMs = 5000): Promise<'exited' | 'killed'> {
    if (this.exitInfo) return 'exited';
    this.child.kill(signal);
    if (await settlesWithin(this.exited, graceMs)) return 'exited';
    this.child.kill('SIGKILL');
    if (!(await settlesWithin(this.exited, 5000))) throw new Error(`${this.name} (pid ${this.ref.pid}) did not exit 5 s after SIGKILL`);
    return 'killed';
  }

  /** Synchronous last resort (process exit hook): SIGKILL if still running. */
  killNow(): void {
    if (!this.exitInfo && isAlive(this.ref)) {
      try {
        process.kill(this.ref.pid, 'SIGKILL');
      } catch {
        /* already gone */
      }
    }
  }
}

/**
 * Cleanups run synchronously if the test process exits (or gets SIGINT/SIGTERM) while an engine is
 * still up, so an aborted test run leaves no daemons or temp dirs behind. Returns an unregister
 * function for the normal stop path.
 */
const exitCleanups = new Set<() => void>();
let hooksInstalled = false;

function runExitCleanups(): void {
  for (const fn of [...exitCleanups]) {
    try {
      fn();
    } catch {
      /* best effort on the way out */
    }
  }
  exitCleanups.clear();
}

function onSignal(sig: NodeJS.Signals): void {
  runExitCleanups();
  process.removeListener('SIGINT', onSignal);
  process.removeListener('SIGTERM', onSignal);
  process.kill(process.pid, sig);
}

export function onProcessExit(fn: () => void): () => void {
  if (!hooksInstalled) {
    hooksInstalled = true;
    process.on('exit', runExitCleanups);
  }
  if (exitCleanups.size === 0) {
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  }
  exitCleanups.add(fn);
  return () => {
    exitCleanups.delete(fn);
    if (exitCleanups.size === 0) {
      process.removeListener('SIGINT', onSignal);
      process.removeListener('SIGTERM', onSignal);
    }
  };
}

/** Removes a directory tree (no error when it is already gone). */
export function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true, maxRetries: 3 });
}
