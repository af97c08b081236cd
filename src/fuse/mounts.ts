/**
 * @module fuse/mounts
 * Mount-table helpers: reading /proc/self/mountinfo, running mount/umount, and clearing a stale
 * mount left at a path by a process that died (a dead FUSE mount answers ENOTCONN and blocks a
 * new mount there until it is lazily unmounted).
 */
import { readFileSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { resolve } from 'node:path';
import { FerryError } from '../core/index.js';

export interface MountEntry {
  mountPoint: string;
  fsType: string;
  source: string;
  options: string;
  /** major:minor of the mounted device (for FUSE: 0:<connection id>) */
  dev: string;
}

function unescapeMountinfo(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

/** Current mounts of this mount namespace, in mount order. */
export function listMounts(): MountEntry[] {
  const out: MountEntry[] = [];
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    if (!line) continue;
    const [pre, post] = line.split(' - ');
    if (!pre || !post) continue;
    const f = pre.split(' ');
    const g = post.split(' ');
    out.push({
      mountPoint: unescapeMountinfo(f[4] ?? ''),
      options: f[5] ?? '',
      dev: f[2] ?? '',
      fsType: g[0] ?? '',
      source: unescapeMountinfo(g[1] ?? ''),
    });
  }
  return out;
}

/** Mounts whose mount point is exactly `path` (resolved, without touching the possibly dead mount). */
export function mountsAt(path: string): MountEntry[] {
  const p = resolve(path);
  return listMounts().filter((m) => m.mountPoint === p);
}

/** Runs a command, resolving with its exit code and output; never throws for a non-zero exit. */
export function run(
  cmd: string,
  args: string[],
  opts: { stdio3?: number; timeoutMs?: number } = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolveRun, reject) => {
    const stdio: Array<'ignore' | 'pipe' | number> = ['ignore', 'pipe', 'pipe'];
    if (opts.stdio3 !== undefined) stdio.push(opts.stdio3);
    const child = spawn(cmd, args, { stdio });
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d: Buffer) => {
      stdout += d.toString();
    });
    child.stderr!.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    const timer = opts.timeoutMs ? setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs) : undefined;
    child.on('error', (err) => {
      if (timer) clearTimeout(timer);
      reject(err);
    });
    child.on('close', (code) => {
      if (timer) clearTimeout(timer);
      resolveRun({ code: code ?? -1, stdout, stderr });
    });
  });
}

/** Unmounts `path`; a busy mount is detached lazily. Resolves true when something was unmounted. */
export async function unmount(path: string, opts: { lazy?: boolean } = {}): Promise<boolean> {
  if (mountsAt(path).length === 0) return false;
  if (!opts.lazy) {
    const r = await run('umount', [path], { timeoutMs: 30_000 });
    if (r.code === 0) return true;
  }
  const r = await run('umount', ['-l', path], { timeoutMs: 30_000 });
  if (r.code !== 0 && mountsAt(path).length > 0) {
    throw new FerryError('INTERNAL', `umount ${path} failed: ${r.stderr.trim()}`);
  }
  return true;
}

/**
 * Clears every mount stacked at `path` (last first) — used before mounting so that a mount left
 * by a killed daemon (dead FUSE connection, ENOTCONN) does not block the new one.
 * Returns how many mounts were removed.
 */
export async function clearStaleMounts(path: string): Promise<number> {
  let n = 0;
  for (let i = 0; i < 16 && mountsAt(path).length > 0; i++) {
    await unmount(path, { lazy: true });
    n++;
  }
  return n;
}
