/**
 * @module cli/find-snapshotter
 * Where a running `ferry snapshotter` serves its pull API, for the commands that talk to it
 * (`ferry pull`, `ferry trace push`): the default `/var/lib/ferry/snapshotter/api.sock`, else
 * `<root>/api.sock` of a `ferry snapshotter` process found in /proc (its `--root`, or the `root:` of
 * its `--config` file, and its `--name`). Only sockets that exist are reported.
 */
import { existsSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { isAbsolute, join, resolve } from 'node:path';
import { createRequire } from 'node:module';

export const DEFAULT_ROOT = '/var/lib/ferry/snapshotter';
export const DEFAULT_API = join(DEFAULT_ROOT, 'api.sock');

/** Most /proc entries looked at (a node has far fewer processes; bounds the scan). */
const MAX_PROCS = 65_536;

export interface RunningSnapshotter {
  pid: number;
  /** plugin name in containerd (`--name`, default ferry) */
  name: string;
  root: string;
  /** `<root>/api.sock` (present on disk) */
  api: string;
}

function flag(argv: string[], name: string): string | undefined {
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === name) return argv[i + 1];
    if (a.startsWith(`${name}=`)) return a.slice(name.length + 1);
  }
  return undefined;
}

/** The `ferry snapshotter` described by one process's argv (and working directory), if it is one. */
export function snapshotterOfArgv(argv: string[], cwd: string): Omit<RunningSnapshotter, 'pid' | 'api'> | undefined {
  const i = argv.findIndex((a, k) => k > 0 && /(^|\/)(ferry|ferry\.js|main\.js)$/.test(argv[k - 1] ?? '') && a === 'snapshotter');
  if (i < 0 || argv[i + 1] === 'print-config') return undefined;
  const rest = argv.slice(i + 1);
  let root = flag(rest, '--root');
  let name = flag(rest, '--name');
  const config = flag(rest, '--config');
  if ((!root || !name) && config) {
    try {
      // yaml is loaded only here: `ferry pull` given its socket never needs it
      const { parse: parseYaml } = createRequire(import.meta.url)('yaml') as typeof import('yaml');
      const c = (parseYaml(readFileSync(resolve(cwd, config), 'utf8')) ?? {}) as { root?: unknown; name?: unknown };
      if (!root && typeof c.root === 'string') root = c.root;
      if (!name && typeof c.name === 'string') name = c.name;
    } catch {
      /* unreadable config: the defaults */
    }
  }
  root = root ? (isAbsolute(root) ? root : resolve(cwd, root)) : DEFAULT_ROOT;
  return { name: name ?? 'ferry', root };
}

/** The running `ferry snapshotter` processes whose pull API socket exists. */
export function findRunningSnapshotters(procDir = '/proc'): RunningSnapshotter[] {
  let pids: string[];
  try {
    pids = readdirSync(procDir)
      .filter((n) => /^\d+$/.test(n))
      .slice(0, MAX_PROCS);
  } catch {
    return [];
  }
  const out: RunningSnapshotter[] = [];
  for (const p of pids) {
    let argv: string[];
    let cwd: string;
    try {
      argv = readFileSync(join(procDir, p, 'cmdline'), 'utf8')
        .split('\0')
        .filter(Boolean);
      cwd = readlinkSync(join(procDir, p, 'cwd'));
    } catch {
      continue; // gone, or not ours to read
    }
    const s = snapshotterOfArgv(argv, cwd);
    if (!s) continue;
    const api = join(s.root, 'api.sock');
    if (existsSync(api)) out.push({ pid: Number(p), ...s, api });
  }
  return out;
}

/**
 * The pull API socket of the snapshotter named `name`: the default socket when present, else the
 * one running snapshotter of that name; undefined (with the reason) when none or several run.
 */
export function locateSnapshotterApi(name = 'ferry'): { api?: string; why: string } {
  if (existsSync(DEFAULT_API)) return { api: DEFAULT_API, why: 'the default socket' };
  const mine = findRunningSnapshotters().filter((r) => r.name === name);
  if (mine.length === 1) return { api: mine[0]!.api, why: `the running ferry snapshotter ${JSON.stringify(name)}, pid ${mine[0]!.pid}` };
  return {
    why:
      mine.length > 1
        ? `${mine.length} ferry snapshotters named ${JSON.stringify(name)} run (${mine.map((r) => r.api).join(', ')}): pass --snapshotter-api`
        : `no snapshotter pull API at ${DEFAULT_API} and no running ferry snapshotter named ${JSON.stringify(name)} found: pass --snapshotter-api`,
  };
}
