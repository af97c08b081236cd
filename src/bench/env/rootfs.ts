/**
 * @module bench/env/rootfs
 * Root filesystems for test and benchmark images: a tiny busybox tree, and Debian trees built with
 * debootstrap from the one reachable mirror (read from apt's sources), cached under
 * $FERRY_CACHE_DIR (default /var/cache/ferry) keyed by suite, variant and package set, built once
 * even when several processes ask at the same time (a lock directory with the owner's pid).
 */
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { chmod, copyFile, mkdir, readFile, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { FerryError } from '../../core/index.js';
import { silentLogger, type Logger } from '../../observe/index.js';
import { exec, execCheck } from './exec.js';

/** The cache root: $FERRY_CACHE_DIR or /var/cache/ferry. */
export function cacheDir(): string {
  return process.env.FERRY_CACHE_DIR || '/var/cache/ferry';
}

const BASE_FILES: Record<string, string> = {
  'etc/passwd': 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n',
  'etc/group': 'root:x:0:\nnogroup:x:65534:\n',
  'etc/hosts': '127.0.0.1 localhost\n',
  'etc/hostname': 'ferry\n',
  'etc/resolv.conf': '',
};

/** Builds a busybox-static rootfs in `dir` (busybox at /bin/busybox, applets as symlinks). */
export async function busyboxRootfs(dir: string): Promise<string> {
  const src = ['/bin/busybox', '/usr/bin/busybox'].find((p) => existsSync(p));
  if (!src) throw new FerryError('FAILED_PRECONDITION', 'busybox not found (install busybox-static)');
  for (const d of ['bin', 'sbin', 'usr/bin', 'usr/sbin', 'etc', 'tmp', 'proc', 'sys', 'dev', 'root', 'var', 'run']) {
    await mkdir(join(dir, d), { recursive: true });
  }
  await chmod(join(dir, 'tmp'), 0o1777);
  await copyFile(src, join(dir, 'bin/busybox'));
  await chmod(join(dir, 'bin/busybox'), 0o755);
  const list = await execCheck(src, ['--list-full']);
  for (const rel of list
    .split('\n')
    .map((s) => s.trim())
    .filter(Boolean)) {
    if (rel === 'bin/busybox' || rel.includes('..')) continue;
    const p = join(dir, rel);
    if (existsSync(p)) continue;
    await mkdir(dirname(p), { recursive: true });
    await symlink('/bin/busybox', p);
  }
  for (const [rel, text] of Object.entries(BASE_FILES)) await writeFile(join(dir, rel), text);
  return dir;
}

/** The Debian mirror apt uses (the only one reachable here), from /etc/apt/sources.list(.d). */
export function debianMirror(): string {
  const files: string[] = [];
  if (existsSync('/etc/apt/sources.list')) files.push('/etc/apt/sources.list');
  if (existsSync('/etc/apt/sources.list.d')) {
    for (const f of readdirSync('/etc/apt/sources.list.d').sort()) files.push(join('/etc/apt/sources.list.d', f));
  }
  for (const f of files) {
    const text = readFileSync(f, 'utf8');
    if (f.endsWith('.sources')) {
      for (const stanza of text.split(/\n\s*\n/)) {
        const uris = /^URIs:\s*(.+)$/m.exec(stanza)?.[1]?.trim().split(/\s+/) ?? [];
        const suites = /^Suites:\s*(.+)$/m.exec(stanza)?.[1]?.trim().split(/\s+/) ?? [];
        if (suites.includes('bookworm') && uris[0]) return uris[0];
      }
    } else {
      for (const line of text.split('\n')) {
        const m = /^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+bookworm\s/.exec(line.trim());
        if (m?.[1]) return m[1];
      }
    }
  }
  throw new FerryError('FAILED_PRECONDITION', 'no Debian bookworm mirror found in /etc/apt/sources.list(.d)');
}

export interface DebootstrapOptions {
  /** Extra packages (`--include`). */
  include?: string[];
  variant?: 'minbase' | 'buildd';
  suite?: string;
  mirror?: string;
  log?: Logger;
  /** Give up waiting for another builder after this long; default 20 min. */
  lockTimeoutMs?: number;
}

const inProcess = new Map<string, Promise<string>>();

/** The cache key (directory name) for a package set. */
export function rootfsKey(opts: DebootstrapOptions): string {
  const include = [...new Set(opts.include ?? [])].sort();
  const desc = JSON.stringify({ suite: opts.suite ?? 'bookworm', variant: opts.variant ?? 'minbase', include });
  const short = include.length
    ? include
        .join('+')
        .replace(/[^a-z0-9+.-]/gi, '')
        .slice(0, 40)
    : 'base';
  return `${opts.suite ?? 'bookworm'}-${opts.variant ?? 'minbase'}-${short}-${createHash('sha256').update(desc).digest('hex').slice(0, 12)}`;
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Takes a cross-process lock (a directory holding the owner's pid); stale locks are broken. */
export async function withDirLock<T>(lockDir: string, timeoutMs: number, fn: () => Promise<T>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  await mkdir(dirname(lockDir), { recursive: true });
  for (;;) {
    try {
      await mkdir(lockDir);
      await writeFile(join(lockDir, 'pid'), String(process.pid));
      break;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      const pid = Number(await readFile(join(lockDir, 'pid'), 'utf8').catch(() => '0'));
      if (pid > 0 && !pidAlive(pid)) {
        await rm(lockDir, { recursive: true, force: true });
        continue;
      }
      if (Date.now() > deadline) throw new FerryError('DEADLINE_EXCEEDED', `lock ${lockDir} held by pid ${pid} for too long`);
      await new Promise((r) => setTimeout(r, 500));
    }
  }
  try {
    return await fn();
  } finally {
    await rm(lockDir, { recursive: true, force: true });
  }
}

/**
 * A cached Debian rootfs (`debootstrap --variant=minbase [--include=…] bookworm`), apt caches and
 * lists removed. Returns the rootfs directory; never modify it (copy or use it as a layer source).
 */
export function debootstrapRootfs(opts: DebootstrapOptions = {}): Promise<string> {
  const key = rootfsKey(opts);
  let p = inProcess.get(key);
  if (!p) {
    p = buildRootfs(key, opts);
    inProcess.set(key, p);
    p.catch(() => inProcess.delete(key));
  }
  return p;
}

async function buildRootfs(key: string, opts: DebootstrapOptions): Promise<string> {
  const log = (opts.log ?? silentLogger()).child({ component: 'bench-rootfs', key });
  const base = join(cacheDir(), 'rootfs', key);
  const out = join(base, 'rootfs');
  const done = join(base, 'complete');
  if (existsSync(done)) return out;
  return withDirLock(join(cacheDir(), 'rootfs', `${key}.lock`), opts.lockTimeoutMs ?? 20 * 60_000, async () => {
    if (existsSync(done)) return out;
    const tmp = join(base, `tmp-${process.pid}`);
    await rm(tmp, { recursive: true, force: true });
    await rm(out, { recursive: true, force: true });
    await mkdir(tmp, { recursive: true });
    const include = [...new Set(opts.include ?? [])].sort();
    const args = [`--variant=${opts.variant ?? 'minbase'}`];
    if (include.length) args.push(`--include=${include.join(',')}`);
    args.push(opts.suite ?? 'bookworm', tmp, opts.mirror ?? debianMirror());
    log.info({ args }, 'debootstrap started');
    const t0 = Date.now();
    const r = await exec('debootstrap', args, { timeoutMs: 30 * 60_000 });
    if (r.code !== 0) {
      const logTail = await readFile(join(tmp, 'debootstrap/debootstrap.log'), 'utf8').catch(() => '');
      await rm(tmp, { recursive: true, force: true });
      throw new FerryError('INTERNAL', `debootstrap failed (${r.code}): ${(r.stderr + logTail).trim().split('\n').slice(-10).join('\n')}`);
    }
    // drop what only apt needs at build time
    for (const rel of ['var/cache/apt/archives', 'var/lib/apt/lists', 'var/cache/apt']) {
      const d = join(tmp, rel);
      if (!existsSync(d)) continue;
      for (const f of readdirSync(d)) {
        if (f === 'partial' || f === 'lock' || f === 'auxfiles' || f === 'archives') continue;
        await rm(join(d, f), { recursive: true, force: true });
      }
    }
    await rm(join(tmp, 'var/log/bootstrap.log'), { force: true });
    await rename(tmp, out);
    await writeFile(
      done,
      JSON.stringify({ include, variant: opts.variant ?? 'minbase', suite: opts.suite ?? 'bookworm', seconds: (Date.now() - t0) / 1000 }),
    );
    log.info({ seconds: (Date.now() - t0) / 1000 }, 'debootstrap finished');
    return out;
  });
}
