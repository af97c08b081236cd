/**
 * @module bench/estargz
 * eStargz, the peer a user would pick instead of Ferry: stargz-snapshotter's daemon
 * (containerd-stargz-grpc, built from Debian's Go sources by bench/estargz/build.sh and cached under
 * $FERRY_CACHE_DIR/estargz/bin) as a containerd proxy snapshotter per node, images converted with
 * Debian's `ctr-remote` (`images convert --estargz --oci`, and `images optimize --oci`, which runs
 * the workload once and puts the files it read first, behind a prefetch landmark).
 */
import { existsSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import { delimiter, join } from 'node:path';
import type { Logger } from '../observe/index.js';
import { cacheDir, exec, startContainerd, type ExecResult } from './env/index.js';
import { projectRoot } from './procs.js';
import type { BenchRegistry } from './registry.js';

export const STARGZ_DAEMON = 'containerd-stargz-grpc';

/** Where the build script puts the daemon. */
export function cachedStargzDaemon(): string {
  return join(cacheDir(), 'estargz', 'bin', STARGZ_DAEMON);
}

export function estargzBuildScript(): string {
  return join(projectRoot(), 'bench', 'estargz', 'build.sh');
}

export function onPath(cmd: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    if (dir && existsSync(join(dir, cmd))) return join(dir, cmd);
  }
  return undefined;
}

/** The stargz daemon: $FERRY_STARGZ_GRPC, else the cached build, else one on PATH; undefined when none. */
export function findStargzDaemon(): string | undefined {
  const env = process.env.FERRY_STARGZ_GRPC;
  if (env) return existsSync(env) ? env : undefined;
  const cached = cachedStargzDaemon();
  if (existsSync(cached)) return cached;
  return onPath(STARGZ_DAEMON);
}

/**
 * The daemon for a run, or why there is none. With `build` the build script runs first (a no-op
 * when its cached binary is current; ~1 min on first use: apt-get download + go build).
 */
export async function ensureStargzDaemon(o: { build: boolean; log?: Logger }): Promise<{ path?: string; reason?: string }> {
  if (!onPath('ctr-remote')) return { reason: 'ctr-remote not found (Debian package stargz-snapshotter)' };
  if (o.build && !process.env.FERRY_STARGZ_GRPC) {
    o.log?.info({ script: estargzBuildScript() }, 'building the stargz snapshotter daemon (cached after the first time)');
    const r = await exec('bash', [estargzBuildScript()], { timeoutMs: 20 * 60_000 }).catch(
      (err: unknown): ExecResult => ({ code: 1, stdout: '', stderr: (err as Error).message }),
    );
    if (r.code !== 0) {
      const tail = (r.stderr || r.stdout).trim().split('\n').slice(-3).join(' | ');
      const path = findStargzDaemon();
      if (!path) return { reason: `${STARGZ_DAEMON} could not be built (bench/estargz/build.sh exited ${r.code}: ${tail})` };
      o.log?.warn({ tail }, 'stargz daemon build failed; using the existing binary');
      return { path };
    }
  }
  const path = findStargzDaemon();
  if (path) return { path };
  return {
    reason: o.build
      ? `${STARGZ_DAEMON} not found after bench/estargz/build.sh`
      : `${STARGZ_DAEMON} not built (--no-build-stargz; run sudo bench/estargz/build.sh once)`,
  };
}

/** Arguments of the daemon for one node: state under `root`, plain HTTP to the bench registries. */
export function stargzDaemonArgs(o: { root: string; address: string; registries: string[]; authFile?: string }): string[] {
  return [
    '--root',
    o.root,
    '--address',
    o.address,
    '--log-level',
    'info',
    ...o.registries.flatMap((h) => ['--insecure-host', h]),
    ...(o.authFile ? ['--auth-file', o.authFile] : []),
  ];
}

/** The daemon's auth file: one `HOST USER:PASSWORD` line per registry that needs a login. */
export function stargzAuthFile(registries: Array<Pick<BenchRegistry, 'host' | 'creds'>>): string {
  return registries
    .filter((r) => r.creds)
    .map((r) => `${r.host} ${r.creds!.username}:${r.creds!.password}\n`)
    .join('');
}

export interface EstargzConversion {
  /** Tag → result per registry host; the variant is missing where it failed (see notes). */
  estargz: Map<string, string>;
  estargzOpt: Map<string, string>;
  notes: string[];
}

function userArgs(reg: Pick<BenchRegistry, 'creds'>): string[] {
  return reg.creds ? ['--user', `${reg.creds.username}:${reg.creds.password}`] : [];
}

function tail(r: ExecResult): string {
  return (r.stderr || r.stdout).trim().split('\n').slice(-3).join(' | ').slice(0, 400);
}

/**
 * Converts one workload's OCI image with ctr-remote inside a private containerd (in `netns`, which
 * reaches the registries): fetched once from the first registry, converted, pushed to every registry
 * as `<repo>:estargz` and (optimized by running the image's command for up to `periodS` seconds)
 * `<repo>:estargz-opt`.
 */
export async function convertToEstargz(o: {
  dir: string;
  netns: string;
  registries: BenchRegistry[];
  /** Repository path without host, e.g. library/bench-python. */
  repo: string;
  optimize: boolean;
  plain: boolean;
  periodS?: number;
  log?: Logger;
}): Promise<EstargzConversion> {
  const out: EstargzConversion = { estargz: new Map(), estargzOpt: new Map(), notes: [] };
  const src = o.registries[0];
  if (!src) return out;
  await mkdir(o.dir, { recursive: true });
  const ctd = await startContainerd({ dir: join(o.dir, 'containerd'), netns: o.netns });
  try {
    const remote = (args: string[], timeoutMs = 30 * 60_000): Promise<ExecResult> =>
      exec('ctr-remote', ['--address', ctd.address, '--namespace', ctd.namespace, ...args], { netns: o.netns, timeoutMs });
    const srcRef = `${src.host}/${o.repo}:oci`;
    const f = await remote(['content', 'fetch', '--plain-http', ...userArgs(src), srcRef]);
    if (f.code !== 0) {
      out.notes.push(`eStargz: fetching ${srcRef} failed: ${tail(f)}`);
      return out;
    }
    const local = (tag: string): string => `${src.host}/${o.repo}:${tag}`;
    const variants: Array<{ tag: string; into: Map<string, string>; args: string[] }> = [];
    if (o.plain)
      variants.push({ tag: 'estargz', into: out.estargz, args: ['images', 'convert', '--estargz', '--oci', srcRef, local('estargz')] });
    if (o.optimize)
      variants.push({
        tag: 'estargz-opt',
        into: out.estargzOpt,
        args: ['images', 'optimize', '--oci', '--period', String(o.periodS ?? 10), srcRef, local('estargz-opt')],
      });
    for (const v of variants) {
      const c = await remote(v.args);
      if (c.code !== 0) {
        out.notes.push(`eStargz: ctr-remote ${v.args.slice(0, 2).join(' ')} failed for ${o.repo}: ${tail(c)}`);
        continue;
      }
      for (const reg of o.registries) {
        const target = `${reg.host}/${o.repo}:${v.tag}`;
        if (target !== local(v.tag)) {
          const t = await remote(['images', 'tag', '--force', local(v.tag), target], 60_000);
          if (t.code !== 0) {
            out.notes.push(`eStargz: tagging ${target} failed: ${tail(t)}`);
            continue;
          }
        }
        const p = await remote(['images', 'push', '--plain-http', ...userArgs(reg), target]);
        if (p.code !== 0) out.notes.push(`eStargz: pushing ${target} failed: ${tail(p)}`);
        else v.into.set(reg.host, target);
      }
    }
  } finally {
    await ctd.stop().catch((err: unknown) => o.log?.warn({ err }, 'converter containerd stop failed'));
  }
  return out;
}

/** Writes the daemon's auth file (0600) when a registry needs a login; returns its path. */
export async function writeStargzAuth(dir: string, registries: BenchRegistry[]): Promise<string | undefined> {
  const text = stargzAuthFile(registries);
  if (!text) return undefined;
  const p = join(dir, 'auth');
  await writeFile(p, text, { mode: 0o600 });
  return p;
}
