/**
 * @module bench/modes
 * The systems under test, one driver each. A driver starts what a node needs before containerd
 * (snapshotter, peer), says which snapshotter containerd uses, and pulls the image. Ferry's own
 * components are used through the `ferry` executable; a mode whose component is missing from this
 * build (or lacks a needed option) is reported as "not run" with the reason, never simulated.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { existsSync } from 'node:fs';
import { FerryError } from '../core/index.js';
import type { Logger } from '../observe/index.js';
import { execInNetns, waitFor, exec, type Containerd, type Star, type StarNode } from './env/index.js';
import { stargzDaemonArgs, writeStargzAuth } from './estargz.js';
import { ferryBin, probeSubcommand, spawnFerry, spawnManaged, type ManagedProcess } from './procs.js';
import { sumMetric, type BenchRegistry } from './registry.js';
import type { ImageRefs, ModeId } from './types.js';

export interface RunEnv {
  /** The registry serving this run. */
  registry: BenchRegistry;
  star: Star;
  dir: string;
  log: Logger;
  /** Set by a driver's runSetup (P2P scheduler URL). */
  schedulerUrl?: string;
  /** The stargz snapshotter daemon (eStargz modes). */
  stargzDaemon?: string;
  /** Client pulling the Ferry lazy modes' images (default ctr-remote; oci-ref always uses `ferry pull`). */
  pullClient?: PullClient;
}

/**
 * Who pulls a Ferry lazy mode's image: `ctr-remote` (`images rpull --snapshotter ferry`, the Go
 * client users of remote snapshotters run, as the eStargz modes do; containerd resolves the image
 * itself and the snapshotter mounts it at the first layer's Prepare, so the container's create
 * waits for the mount) or `ferry` (`ferry pull --snapshotter-api`: the pull runs in the snapshotter
 * and returns once the image is mounted).
 */
export type PullClient = 'ferry' | 'ctr-remote';
export const PULL_CLIENTS: readonly PullClient[] = ['ctr-remote', 'ferry'];

export interface NodeEnv {
  index: number;
  node: StarNode;
  dir: string;
}

export interface PreparedNode {
  procs: ManagedProcess[];
  /** Proxy snapshotters containerd must register. */
  snapshotters?: Record<string, string>;
  /** Snapshotter for `ctr c create`; containerd's default (overlayfs) when absent. */
  snapshotter?: string;
  hostsDir?: string;
}

export interface ModeDriver {
  id: ModeId;
  /** `ferry` subcommands this mode needs. */
  requires: string[];
  /** Extra availability check once the subcommands exist (e.g. an option in their --help). */
  check?(help: Record<string, string>): string | undefined;
  /** The image this mode pulls (OCI, a Nydus or an eStargz variant); undefined when it was not prepared. */
  ref(refs: ImageRefs): string | undefined;
  /** Shared per-run processes (e.g. the P2P scheduler). */
  runSetup?(env: RunEnv): Promise<ManagedProcess[]>;
  nodeSetup(env: RunEnv, n: NodeEnv): Promise<PreparedNode>;
  pull(env: RunEnv, n: NodeEnv, p: PreparedNode, ctd: Containerd, ref: string): Promise<void>;
  /** After a warm-up run's container is ready, before teardown (lazy-trace: push the recorded trace). */
  afterWarmup?(env: RunEnv, n: NodeEnv, ref: string): Promise<void>;
  /** Bytes the node's lazy-loading daemon fetched (from the snapshotter's /metrics), if any. */
  lazyBytesFetched?(n: NodeEnv): Promise<number | undefined>;
}

async function checked(what: string, p: Promise<{ code: number; stdout: string; stderr: string }>): Promise<void> {
  const r = await p;
  if (r.code !== 0)
    throw new FerryError('INTERNAL', `${what} failed (${r.code}): ${(r.stderr || r.stdout).trim().split('\n').slice(-4).join(' | ')}`);
}

async function waitSocket(path: string, proc: ManagedProcess, what: string): Promise<void> {
  await waitFor(
    async () => {
      if (proc.exited()) throw new FerryError('UNAVAILABLE', `${what} exited: ${await proc.logTail()}`);
      return existsSync(path);
    },
    what,
    30_000,
    50,
  );
}

async function waitHttp(netns: string, url: string, proc: ManagedProcess, what: string): Promise<void> {
  await waitFor(
    async () => {
      if (proc.exited()) throw new FerryError('UNAVAILABLE', `${what} exited: ${await proc.logTail()}`);
      const r = await execInNetns(netns, 'curl', ['-s', '-o', '/dev/null', '-w', '%{http_code}', url], { timeoutMs: 5_000 });
      return r.code === 0 && r.stdout !== '000';
    },
    what,
    30_000,
    100,
  );
}

const SCHED_PORT = 8002;
const PROXY_PORT = 65001;
const UPLOAD_PORT = 65002;

/**
 * The cluster secret of the run's scheduler and peers (they listen on namespace addresses, which
 * requires one): a file in the run directory, mode 0600, created once.
 */
async function clusterTokenFile(env: RunEnv): Promise<string> {
  const p = join(env.dir, 'cluster-token');
  if (!existsSync(p)) await writeFile(p, `${randomBytes(32).toString('hex')}\n`, { mode: 0o600 });
  return p;
}

async function startScheduler(env: RunEnv): Promise<ManagedProcess[]> {
  const x = env.star.extras[0];
  if (!x) throw new FerryError('INTERNAL', 'no namespace for the scheduler');
  const dir = join(env.dir, 'scheduler');
  await mkdir(dir, { recursive: true });
  const listen = `${x.ip}:${SCHED_PORT}`;
  const token = await clusterTokenFile(env);
  const proc = spawnFerry('scheduler', ['scheduler', '--listen', listen, '--cluster-token-file', token], {
    netns: x.netns,
    logPath: join(dir, 'scheduler.log'),
  });
  await waitHttp(x.netns, `http://${listen}/healthy`, proc, 'ferry scheduler');
  env.schedulerUrl = `http://${listen}`;
  // a seed peer (Dragonfly's usual deployment): the scheduler has it fetch cold tasks from the
  // registry once, and the node peers download from it and from each other
  const s = env.star.extras[1];
  if (!s) return [proc];
  const sdir = join(env.dir, 'seed');
  await mkdir(sdir, { recursive: true });
  const cfg = await peerConfig(env.dir, env.registry.host);
  const seed = spawnFerry(
    'seed-peer',
    [
      'peer',
      '--config',
      cfg,
      '--seed',
      '--scheduler',
      env.schedulerUrl,
      '--data',
      sdir,
      '--cluster-token-file',
      token,
      '--proxy-listen',
      `127.0.0.1:${PROXY_PORT}`,
      '--upload-listen',
      `${s.ip}:${UPLOAD_PORT}`,
      '--registry-mirror',
      `http://${env.registry.host}`,
      '--ip',
      s.ip,
      '--hostname',
      'bench-seed',
    ],
    { netns: s.netns, logPath: join(sdir, 'peer.log') },
  );
  try {
    await waitHttp(s.netns, `http://${s.ip}:${UPLOAD_PORT}/healthy`, seed, 'ferry seed peer');
  } catch (err) {
    await proc.stop();
    throw err;
  }
  return [proc, seed];
}

/** Bytes a node's peer obtained, by source (from its /metrics), or undefined without a peer. */
export async function peerTraffic(n: NodeEnv): Promise<{ backToSource: number; remotePeer: number } | undefined> {
  const r = await execInNetns(n.node.netns, 'curl', ['-s', `http://${n.node.ip}:${UPLOAD_PORT}/metrics`], { timeoutMs: 10_000 });
  if (r.code !== 0 || !r.stdout.includes('ferry_peer_download_traffic_bytes_total')) return undefined;
  const get = (type: string): number => {
    const m = new RegExp(`^ferry_peer_download_traffic_bytes_total\\{[^}]*type="${type}"[^}]*\\} (\\S+)$`, 'm').exec(r.stdout);
    return m ? Number(m[1]) : 0;
  };
  return { backToSource: get('BACK_TO_SOURCE'), remotePeer: get('REMOTE_PEER') };
}

/** Peer config: the bench registry speaks plain HTTP, also when containerd names it in `?ns=`. */
async function peerConfig(dir: string, registryHost: string): Promise<string> {
  const p = join(dir, 'peer.yaml');
  // directBelow 0: every blob goes through P2P, also the small ones (a tiny --quick image included)
  await writeFile(p, `proxy:\n  registryMirror:\n    url: http://${registryHost}\n    nsScheme: http\ndownload:\n  directBelow: 0\n`);
  return p;
}

async function startPeer(env: RunEnv, n: NodeEnv): Promise<ManagedProcess> {
  if (!env.schedulerUrl) throw new FerryError('INTERNAL', 'scheduler not started');
  const dir = join(n.dir, 'peer');
  await mkdir(dir, { recursive: true });
  const cfg = await peerConfig(n.dir, env.registry.host);
  const proc = spawnFerry(
    'peer',
    [
      'peer',
      '--config',
      cfg,
      '--scheduler',
      env.schedulerUrl,
      '--data',
      dir,
      '--cluster-token-file',
      await clusterTokenFile(env),
      '--proxy-listen',
      `127.0.0.1:${PROXY_PORT}`,
      '--upload-listen',
      `${n.node.ip}:${UPLOAD_PORT}`,
      '--registry-mirror',
      `http://${env.registry.host}`,
      '--ip',
      n.node.ip,
      '--hostname',
      `bench-node-${n.index + 1}`,
    ],
    { netns: n.node.netns, logPath: join(dir, 'peer.log') },
  );
  await waitHttp(n.node.netns, `http://${n.node.ip}:${UPLOAD_PORT}/healthy`, proc, 'ferry peer');
  return proc;
}

/** containerd hosts.toml directing pulls for the registry through the local peer's mirror. */
export function hostsToml(registryHost: string, mirror: string): string {
  return [
    `server = "http://${registryHost}"`,
    '',
    `[host."${mirror}"]`,
    '  capabilities = ["pull", "resolve"]',
    `  [host."${mirror}".header]`,
    `    X-Dragonfly-Registry = "http://${registryHost}"`,
    '',
  ].join('\n');
}

const ociDriver: ModeDriver = {
  id: 'oci',
  requires: [],
  ref: (r) => r.oci,
  nodeSetup: async () => ({ procs: [] }),
  pull: (_env, _n, p, ctd, ref) =>
    checked(
      'ctr images pull',
      ctd.ctr(['images', 'pull', '--plain-http', ...(p.hostsDir ? ['--hosts-dir', p.hostsDir] : []), ref], { timeoutMs: 30 * 60_000 }),
    ),
};

const ociP2pDriver: ModeDriver = {
  id: 'oci-p2p',
  requires: ['scheduler', 'peer'],
  ref: (r) => r.oci,
  runSetup: startScheduler,
  nodeSetup: async (env, n) => {
    const peer = await startPeer(env, n);
    const hostsDir = join(n.dir, 'hosts');
    await mkdir(join(hostsDir, env.registry.host), { recursive: true });
    await writeFile(join(hostsDir, env.registry.host, 'hosts.toml'), hostsToml(env.registry.host, `http://127.0.0.1:${PROXY_PORT}`));
    return { procs: [peer], hostsDir };
  },
  pull: ociDriver.pull,
};

/** Whether a --help text lists exactly this option (not just a longer one starting with it). */
export function hasFlag(help: string, flag: string): boolean {
  return new RegExp(`(^|[\\s,])${flag.replace(/[-]/g, '\\-')}(?![\\w-])`, 'm').test(help);
}

/** Options of `ferry snapshotter` this harness knows how to pass, found in its --help. */
function snapshotterModeArgs(help: string, mode: 'erofs' | 'fuse'): string[] | undefined {
  for (const flag of ['--fs-mode', '--mode', '--daemon-mode']) {
    if (hasFlag(help, flag)) return [flag, mode];
  }
  return undefined;
}

/**
 * The oci-ref mode's proof that it ran lazily: `ferry pull --json`'s result must show every layer
 * taken remotely by the snapshotter. A layer downloaded and applied means no OCI-ref index was
 * used (the snapshotter falls back to a normal pull), and the run would measure plain OCI instead.
 */
export function checkLazyPull(stdout: string, ref: string): void {
  const line = stdout.trim().split('\n').at(-1) ?? '';
  let layers: Array<{ digest: string; how: string }>;
  try {
    layers = (JSON.parse(line) as { layers?: Array<{ digest: string; how: string }> }).layers ?? [];
  } catch {
    throw new FerryError('INTERNAL', `ferry pull --json of ${ref} printed no result: ${line.slice(0, 200)}`);
  }
  const applied = layers.filter((l) => l.how !== 'remote');
  if (!layers.length || applied.length)
    throw new FerryError(
      'FAILED_PRECONDITION',
      `${ref} was not run lazily: ${applied.length || 'no'} of ${layers.length} layers downloaded (${applied.map((l) => `${l.digest.slice(0, 19)} ${l.how}`).join(', ')}); ` +
        'was its OCI-ref index found? (see the snapshotter log)',
    );
}

/** Snapshotter config of the oci-ref mode: look up OCI-ref (zran) indexes of ordinary images. */
async function ociRefConfig(dir: string): Promise<string> {
  const p = join(dir, 'snapshotter.json');
  await writeFile(p, `${JSON.stringify({ daemon: { ociRef: true } })}\n`);
  return p;
}

type LazyExtra = { prefetch?: boolean; p2p?: boolean; trace?: boolean; ociRef?: boolean };

/** The client that pulls a lazy mode's image in this run (oci-ref: always `ferry pull`, see checkLazyPull). */
export function lazyPullClient(env: Pick<RunEnv, 'pullClient'>, extra: LazyExtra): PullClient {
  return extra.ociRef ? 'ferry' : (env.pullClient ?? 'ctr-remote');
}

/**
 * `ctr-remote images rpull` of `ref` into `snapshotter` over plain HTTP (`extra`: options before the
 * reference). The Ferry modes pass no credentials: the bench registries serve pulls anonymously.
 */
export function rpullArgs(
  ctd: Pick<Containerd, 'address' | 'namespace'>,
  snapshotter: string,
  ref: string,
  extra: string[] = [],
): string[] {
  return [
    '--address',
    ctd.address,
    '--namespace',
    ctd.namespace,
    'images',
    'rpull',
    '--plain-http',
    '--snapshotter',
    snapshotter,
    ...extra,
    ref,
  ];
}

function lazyRef(r: ImageRefs, extra: LazyExtra): string | undefined {
  if (extra.ociRef) return r.ociRef;
  return extra.trace ? r.nydusTrace : extra.prefetch ? (r.nydusPrefetch ?? r.nydus) : r.nydus;
}

function lazyDriver(id: ModeId, variant: 'erofs' | 'fuse', extra: LazyExtra): ModeDriver {
  const requires = ['snapshotter', 'pull', 'convert', ...(extra.p2p ? ['scheduler', 'peer'] : []), ...(extra.trace ? ['trace'] : [])];
  let snapHelp = '';
  let pullHelp = '';
  const d: ModeDriver = {
    id,
    requires,
    check: (help) => {
      snapHelp = help.snapshotter ?? '';
      pullHelp = help.pull ?? '';
      if (variant === 'fuse' && !snapshotterModeArgs(snapHelp, 'fuse')) return '`ferry snapshotter` has no option to choose FUSE mode';
      if (extra.p2p && !hasFlag(snapHelp, '--proxy') && !hasFlag(snapHelp, '--p2p-proxy'))
        return '`ferry snapshotter` has no option to read blobs through the P2P peer (--proxy) yet';
      if (extra.prefetch && !hasFlag(snapHelp, '--prefetch')) return '`ferry snapshotter` has no --prefetch option';
      if (extra.ociRef && !hasFlag(help.convert ?? '', '--oci-ref')) return '`ferry convert` has no --oci-ref option';
      if (extra.ociRef && !hasFlag(snapHelp, '--config')) return '`ferry snapshotter` has no --config option (for daemon.ociRef)';
      return undefined;
    },
    ref: (r) => lazyRef(r, extra),
    ...(extra.trace
      ? {
          // the warm-up run's snapshotter recorded what the container read: attach it to the image
          afterWarmup: (env: RunEnv, n: NodeEnv, ref: string) =>
            checked(
              'ferry trace push',
              exec(
                process.execPath,
                [
                  ferryBin(),
                  'trace',
                  'push',
                  '--plain-http',
                  ...(env.registry.creds ? ['--user', `${env.registry.creds.username}:${env.registry.creds.password}`] : []),
                  '--snapshotter-api',
                  join(n.dir, 'snapshotter', 'root', 'api.sock'),
                  ref,
                ],
                { netns: n.node.netns, timeoutMs: 60_000 },
              ),
            ),
        }
      : {}),
    ...(extra.p2p ? { runSetup: startScheduler } : {}),
    nodeSetup: async (env, n) => {
      const procs: ManagedProcess[] = [];
      if (extra.p2p) procs.push(await startPeer(env, n));
      const dir = join(n.dir, 'snapshotter');
      await mkdir(dir, { recursive: true });
      const sock = join(dir, 'ferry.sock');
      const args = ['snapshotter', '--address', sock, '--root', join(dir, 'root')];
      const modeArgs = snapshotterModeArgs(snapHelp, variant);
      if (modeArgs) args.push(...modeArgs);
      if (extra.prefetch) args.push('--prefetch');
      if (extra.ociRef) args.push('--config', await ociRefConfig(dir));
      if (extra.p2p) args.push(hasFlag(snapHelp, '--p2p-proxy') ? '--p2p-proxy' : '--proxy', `http://127.0.0.1:${PROXY_PORT}`);
      if (hasFlag(snapHelp, '--plain-http')) args.push('--plain-http', env.registry.host);
      else if (hasFlag(snapHelp, '--insecure-registry')) args.push('--insecure-registry', env.registry.host);
      else if (hasFlag(snapHelp, '--insecure')) args.push('--insecure');
      const proc = spawnFerry('snapshotter', args, { netns: n.node.netns, logPath: join(dir, 'snapshotter.log') });
      procs.push(proc);
      try {
        await waitSocket(sock, proc, 'ferry snapshotter');
      } catch (err) {
        for (const pr of procs) await pr.stop().catch(() => undefined); // the peer must not outlive a failed setup
        throw err;
      }
      return { procs, snapshotters: { ferry: sock }, snapshotter: 'ferry' };
    },
    lazyBytesFetched: async (n) => {
      const sock = join(n.dir, 'snapshotter', 'root', 'metrics.sock');
      if (!existsSync(sock)) return undefined;
      const r = await exec('curl', ['-s', '--unix-socket', sock, 'http://localhost/metrics'], { timeoutMs: 10_000 });
      return r.code === 0 ? (sumMetric(r.stdout, 'ferry_snapshotter_lazy_bytes_fetched') ?? undefined) : undefined;
    },
    pull: async (env, n, _p, ctd, ref) => {
      // oci-ref must prove every layer was taken lazily, which only `ferry pull --json` reports
      if (lazyPullClient(env, extra) === 'ctr-remote') {
        await checked(
          'ctr-remote images rpull',
          exec('ctr-remote', rpullArgs(ctd, 'ferry', ref), { netns: n.node.netns, timeoutMs: 30 * 60_000 }),
        );
        return;
      }
      const r = await exec(
        process.execPath,
        [
          ferryBin(),
          'pull',
          '--address',
          ctd.address,
          '--namespace',
          ctd.namespace,
          '--snapshotter',
          'ferry',
          '--plain-http',
          // the pull runs inside the (warm) snapshotter of this node when it offers a pull API
          ...(hasFlag(pullHelp, '--snapshotter-api') ? ['--snapshotter-api', join(n.dir, 'snapshotter', 'root', 'api.sock')] : []),
          ...(extra.ociRef ? ['--json'] : []),
          ref,
        ],
        { netns: n.node.netns, timeoutMs: 30 * 60_000 },
      );
      await checked('ferry pull', Promise.resolve(r));
      if (extra.ociRef) checkLazyPull(r.stdout, ref);
    },
  };
  return d;
}

/**
 * eStargz: stargz-snapshotter's daemon as the node's proxy snapshotter `stargz` (upstream's
 * default filesystem settings: prefetch of the landmarked files, background fetch of the rest
 * after the layer goes quiet), `ctr-remote images rpull` (labels each layer with the image and
 * its digest, so the daemon mounts it remotely), `ctr containers create --snapshotter stargz`.
 */
function estargzDriver(id: ModeId, optimized: boolean): ModeDriver {
  return {
    id,
    requires: [],
    ref: (r) => (optimized ? r.estargzOpt : r.estargz),
    nodeSetup: async (env, n) => {
      if (!env.stargzDaemon) throw new FerryError('FAILED_PRECONDITION', 'containerd-stargz-grpc not available');
      const dir = join(n.dir, 'stargz');
      await mkdir(dir, { recursive: true });
      const sock = join(dir, 'stargz.sock');
      const authFile = await writeStargzAuth(dir, [env.registry]);
      const proc = spawnManaged(
        'stargz',
        env.stargzDaemon,
        stargzDaemonArgs({ root: join(dir, 'root'), address: sock, registries: [env.registry.host], ...(authFile ? { authFile } : {}) }),
        { netns: n.node.netns, logPath: join(dir, 'stargz.log') },
      );
      try {
        await waitSocket(sock, proc, 'containerd-stargz-grpc');
      } catch (err) {
        await proc.stop().catch(() => undefined);
        throw err;
      }
      return { procs: [proc], snapshotters: { stargz: sock }, snapshotter: 'stargz' };
    },
    pull: (env, n, _p, ctd, ref) =>
      checked(
        'ctr-remote images rpull',
        exec(
          'ctr-remote',
          rpullArgs(
            ctd,
            'stargz',
            ref,
            env.registry.creds ? ['--user', `${env.registry.creds.username}:${env.registry.creds.password}`] : [],
          ),
          { netns: n.node.netns, timeoutMs: 30 * 60_000 },
        ),
      ),
  };
}

export const DRIVERS: Record<ModeId, ModeDriver> = {
  oci: ociDriver,
  'lazy-erofs': lazyDriver('lazy-erofs', 'erofs', {}),
  'lazy-fuse': lazyDriver('lazy-fuse', 'fuse', {}),
  'lazy-prefetch': lazyDriver('lazy-prefetch', 'erofs', { prefetch: true }),
  'lazy-trace': lazyDriver('lazy-trace', 'erofs', { trace: true }),
  'lazy-p2p': lazyDriver('lazy-p2p', 'erofs', { p2p: true }),
  'oci-p2p': ociP2pDriver,
  estargz: estargzDriver('estargz', false),
  'estargz-opt': estargzDriver('estargz-opt', true),
  'oci-ref': lazyDriver('oci-ref', 'erofs', { ociRef: true }),
};

/** Availability of each mode in this build: ok, or the reason it cannot run. */
export async function modeAvailability(modes: ModeId[]): Promise<Map<ModeId, string | undefined>> {
  const subs = new Set(modes.flatMap((m) => DRIVERS[m].requires));
  const help: Record<string, string> = {};
  const missing: Record<string, string> = {};
  for (const s of subs) {
    const r = await probeSubcommand(s);
    if (r.ok) help[s] = r.help ?? '';
    else missing[s] = r.reason ?? `ferry ${s} unavailable`;
  }
  const out = new Map<ModeId, string | undefined>();
  for (const m of modes) {
    const d = DRIVERS[m];
    const miss = d.requires.filter((s) => missing[s]).map((s) => missing[s]);
    if (miss.length) {
      out.set(m, miss.join('; '));
      continue;
    }
    out.set(m, d.check?.(help));
  }
  return out;
}
