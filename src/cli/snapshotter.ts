/**
 * @module cli/snapshotter
 * `ferry snapshotter --address SOCK --root DIR [--config FILE] [--daemon-apisock SOCK] …` serves
 * containerd's snapshots API as a proxy plugin until SIGINT/SIGTERM;
 * `ferry snapshotter print-config [--name ferry] [--address SOCK]` prints the containerd
 * config.toml snippet registering it.
 */
import { spawn } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Command } from 'commander';
import { parse as parseYaml } from 'yaml';
import { containerdSnippet, parseSnapshotterConfig, type SnapshotterConfig, type SnapshotterConfigInput } from '../config/snapshotter.js';
import { createLogger, type Logger } from '../observe/index.js';
import { startSnapshotter } from '../snapshotter/index.js';
import { Daemon, DaemonClient, type LazyFs } from '../daemon/index.js';
import type { DaemonConfigInput } from '../config/daemon.js';
import { mergeProxySnapshotter } from '../containerd/index.js';
import { untilSignal, parseArgs } from './lifecycle.js';
import { addCredentialOptions, chainFromFlags, type CredentialFlags } from './credentials.js';
import { plainHttpHosts, plainHttpHostsOption } from './plain-http.js';
import { readTokenFile } from './token-file.js';
import { DEFAULT_API } from './find-snapshotter.js';
import { requestGc } from '../snapshotter/pull-api-client.js';

function loadConfig(file: string | undefined): SnapshotterConfigInput {
  if (!file) return {};
  return (parseYaml(readFileSync(file, 'utf8')) ?? {}) as SnapshotterConfigInput;
}

interface Opts {
  address?: string;
  root?: string;
  config?: string;
  daemonApisock?: string;
  daemonMode?: string;
  prefetch?: boolean;
  plainHttp?: string[];
  insecureRegistry?: string[];
  metricsAddress?: string;
  metricsTokenFile?: string;
  logLevel?: string;
  name?: string;
  noLazy?: boolean;
  proxy?: string;
  daemonConfig?: string;
  spawnDaemon?: boolean;
  cacheQuota?: string;
  fillDeadline?: string;
  fillRate?: string;
  criAddress?: string;
  criUpstream?: string;
  requireAttestationKey?: string;
}

function command(name: string): Command {
  return new Command(name)
    .option('--address <sock>', 'unix socket of the snapshots gRPC service (default /run/ferry/snapshotter.sock)')
    .option('--root <dir>', 'root directory (default /var/lib/ferry/snapshotter)')
    .option('--config <file>', 'YAML/JSON config file')
    .option('--name <name>', 'plugin name in containerd (default ferry)')
    .exitOverride();
}

function merged(o: Opts): SnapshotterConfigInput {
  const file = loadConfig(o.config);
  const plain = plainHttpHosts(o as Record<string, unknown>, 'insecure-registry');
  const daemon = { ...(file.daemon ?? {}) };
  if (o.daemonApisock) daemon.apiSock = o.daemonApisock;
  if (o.daemonMode) daemon.mode = o.daemonMode as 'fuse' | 'erofs';
  if (o.prefetch) daemon.prefetch = true;
  if (o.proxy) daemon.proxy = o.proxy;
  if (o.daemonConfig) daemon.configFile = o.daemonConfig;
  if (o.spawnDaemon) daemon.spawn = true;
  if (o.cacheQuota !== undefined) daemon.cacheQuota = o.cacheQuota;
  if (o.fillDeadline !== undefined) daemon.fillDeadline = o.fillDeadline;
  if (o.fillRate !== undefined) daemon.fillRate = o.fillRate;
  return {
    ...file,
    ...(o.address ? { address: o.address } : {}),
    // absolute: the daemon (possibly another process) gets paths under it, e.g. <root>/cache
    ...(o.root ? { root: resolve(o.root) } : {}),
    ...(o.name ? { name: o.name } : {}),
    ...(o.metricsAddress ? { metricsAddress: o.metricsAddress } : {}),
    ...(o.metricsTokenFile ? { metricsTokenFile: o.metricsTokenFile } : {}),
    ...(o.logLevel ? { logLevel: o.logLevel as 'info' } : {}),
    ...(plain.length ? { insecureRegistries: [...(file.insecureRegistries ?? []), ...plain] } : {}),
    ...(o.noLazy ? { disableLazy: true } : {}),
    ...(o.criAddress ? { criAddress: resolve(o.criAddress) } : {}),
    ...(o.criUpstream ? { criUpstream: o.criUpstream } : {}),
    ...(o.requireAttestationKey ? { requireAttestationKey: resolve(o.requireAttestationKey) } : {}),
    daemon,
  };
}

/** How often the snapshotter checks that the daemon it spawned still answers (and spawns a new one if not). */
const DAEMON_WATCH_MS = 2_000;

/** True when a daemon answers on `sock`. */
async function daemonAnswers(sock: string): Promise<boolean> {
  if (!existsSync(sock)) return false;
  try {
    await new DaemonClient(sock, 5_000).list();
    return true;
  } catch {
    return false;
  }
}

/**
 * Keeps a spawned daemon running: every DAEMON_WATCH_MS, one that stopped answering (killed,
 * crashed) is replaced by a new one, which takes over the EROFS mounts the dead one left (running
 * containers read again). Returns the function that stops watching.
 */
function watchDaemon(cfg: SnapshotterConfig, daemonConfig: Record<string, unknown>, log: Logger): () => void {
  const sock = join(cfg.root, 'daemon.sock');
  let busy = false;
  const timer = setInterval(() => {
    if (busy) return;
    busy = true;
    void (async () => {
      if (await daemonAnswers(sock)) return;
      log.warn({ apisock: sock }, 'the spawned ferry daemon stopped answering: starting a new one');
      await spawnDaemon(cfg, daemonConfig, log);
    })()
      .catch((err: unknown) => log.error({ err }, 'restarting the ferry daemon failed (tried again)'))
      .finally(() => {
        busy = false;
      });
  }, DAEMON_WATCH_MS);
  timer.unref();
  return () => clearInterval(timer);
}

/** Starts a detached `ferry daemon` on `<root>/daemon.sock` unless one answers there already. */
async function spawnDaemon(cfg: SnapshotterConfig, daemonConfig: Record<string, unknown>, log: Logger): Promise<string> {
  const sock = join(cfg.root, 'daemon.sock');
  const answers = (): Promise<boolean> => daemonAnswers(sock);
  if (await answers()) {
    log.info({ apisock: sock }, 'using the running ferry daemon');
    return sock;
  }
  mkdirSync(cfg.root, { recursive: true, mode: 0o700 });
  const cfgPath = join(cfg.root, 'daemon.json');
  writeFileSync(cfgPath, JSON.stringify(daemonConfig));
  const logFd = openSync(join(cfg.root, 'daemon.log'), 'a');
  const child = spawn(
    process.execPath,
    [process.argv[1]!, 'daemon', '--apisock', sock, '--config', cfgPath, '--data-dir', join(cfg.root, 'daemon')],
    {
      detached: true,
      stdio: ['ignore', logFd, logFd],
    },
  );
  child.unref();
  closeSync(logFd);
  for (let i = 0; i < 300; i++) {
    if (await answers()) {
      log.info({ apisock: sock, daemonPid: child.pid }, 'spawned ferry daemon');
      return sock;
    }
    if (child.exitCode !== null) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`spawned ferry daemon did not answer on ${sock} (see ${join(cfg.root, 'daemon.log')})`);
}

/**
 * The lazy-loading daemon: a client of a separate `ferry daemon` (given, or spawned and then
 * watched: `stop` ends the watch), or one in this process.
 */
async function openDaemon(cfg: SnapshotterConfig, log: Logger): Promise<{ lazyFs: LazyFs; stop: () => void }> {
  const dataDir = join(cfg.root, 'daemon');
  const daemonConfig: Record<string, unknown> = cfg.daemon.configFile
    ? ((parseYaml(readFileSync(cfg.daemon.configFile, 'utf8')) ?? {}) as Record<string, unknown>)
    : {};
  if (daemonConfig.amplify_io === undefined) daemonConfig.amplify_io = cfg.daemon.amplifyIo;
  // the node cache: its quota, and the dir the snapshotter's mounts use as the daemon's own (scanned with no mount left)
  const ferry = { ...((daemonConfig.ferry as Record<string, unknown> | undefined) ?? {}) };
  if (ferry.cache_quota === undefined && cfg.daemon.cacheQuota > 0) ferry.cache_quota = cfg.daemon.cacheQuota;
  // the background fill (config values in ms / bytes; the daemon's config takes seconds)
  if (ferry.fill_deadline === undefined && cfg.daemon.fillDeadline > 0) ferry.fill_deadline = cfg.daemon.fillDeadline / 1000;
  if (ferry.fill_rate === undefined) ferry.fill_rate = cfg.daemon.fillRate;
  daemonConfig.ferry = ferry;
  const device = { ...((daemonConfig.device as Record<string, unknown> | undefined) ?? {}) };
  if (device.cache === undefined)
    device.cache = { type: 'blobcache', config: { work_dir: cfg.daemon.cacheDir || join(cfg.root, 'cache') } };
  daemonConfig.device = device;
  if (cfg.daemon.apiSock) return { lazyFs: new DaemonClient(cfg.daemon.apiSock), stop: () => undefined };
  if (cfg.daemon.spawn) {
    const sock = await spawnDaemon(cfg, daemonConfig, log);
    return { lazyFs: new DaemonClient(sock), stop: watchDaemon(cfg, daemonConfig, log) };
  }
  return { lazyFs: new Daemon({ log, dataDir, config: daemonConfig as DaemonConfigInput }), stop: () => undefined };
}

/** `ferry snapshotter gc [--api SOCK]`: one node cache GC round now, in the running snapshotter's daemon. */
async function runGc(argv: string[]): Promise<number> {
  const cmd = new Command('ferry snapshotter gc')
    .description('run the node cache GC now: data of images with no snapshot left is deleted, then LRU eviction down to the quota')
    .option('--api <sock>', `the snapshotter's API socket (default ${DEFAULT_API})`, DEFAULT_API)
    .exitOverride();
  try {
    cmd.parse(argv, { from: 'user' });
  } catch (err) {
    return (err as { exitCode?: number }).exitCode ?? 2;
  }
  try {
    const r = await requestGc(cmd.opts<{ api: string }>().api);
    process.stdout.write(`${JSON.stringify(r)}\n`);
    return 0;
  } catch (err) {
    process.stderr.write(`ferry snapshotter gc: ${(err as Error).message}\n`);
    return 1;
  }
}

export async function run(argv: string[]): Promise<number> {
  if (argv[0] === 'gc') return runGc(argv.slice(1));
  if (argv[0] === 'print-config') {
    const cmd = command('ferry snapshotter print-config')
      .description('print the containerd config.toml snippet (appendable), or with --merge an existing config with Ferry merged in')
      .option(
        '--merge <config.toml>',
        'print this containerd config (version 2) with the proxy plugin and CRI keys merged in; the file is not changed',
      );
    try {
      cmd.parse(argv.slice(1), { from: 'user' });
    } catch (err) {
      return (err as { exitCode?: number }).exitCode ?? 2;
    }
    try {
      const o = cmd.opts<Opts & { merge?: string }>();
      const cfg = parseSnapshotterConfig(merged(o));
      process.stdout.write(
        o.merge
          ? mergeProxySnapshotter(readFileSync(o.merge, 'utf8'), { name: cfg.name, address: cfg.address }, o.merge)
          : containerdSnippet(cfg),
      );
    } catch (err) {
      process.stderr.write(`ferry snapshotter: ${(err as Error).message}\n`);
      return 2;
    }
    return 0;
  }
  const cmd = command('ferry snapshotter')
    .description('containerd proxy-plugin snapshotter with lazy Nydus layers (subcommand: print-config)')
    .option('--daemon-apisock <sock>', 'API socket of a running `ferry daemon` (default: daemon in this process)')
    .option('--daemon-mode <mode>', 'erofs | fuse (default erofs; falls back to fuse where EROFS cannot mount)')
    .option('--daemon-config <file>', 'nydusd-style config of the in-process or spawned daemon (JSON/YAML)')
    .option('--spawn-daemon', 'run the daemon as a separate detached `ferry daemon` (<root>/daemon.sock) that outlives restarts')
    .option('--cache-quota <size>', "quota of the node's chunk cache, e.g. 20g (default none; see docs/containerd.md)")
    .option('--fill-deadline <duration>', 'fetch each lazy image wholly within this long after its mount, e.g. 10m (default off)')
    .option('--fill-rate <size>', "the background fill's idle rate per second, e.g. 4m (default 4 MiB/s; raised to meet the deadline)")
    .option('--prefetch', "prefetch each image's prefetch list after mounting")
    .option('--proxy <url>', 'P2P peer proxy the daemon reads blobs through (e.g. http://127.0.0.1:65001)')
    .option(
      '--metrics-address <addr>',
      'host:port (loopback unless --metrics-token-file) or unix socket for /metrics (default <root>/metrics.sock)',
    )
    .option('--metrics-token-file <file>', 'bearer token scrapers must send (mode 0600); required for a non-loopback --metrics-address')
    .option('--no-lazy', 'never mount lazily: every layer is downloaded (plain overlayfs snapshotter)')
    .option(
      '--require-attestation-key <file.pub>',
      'run a Nydus image only when a conversion attestation of its manifest verifies with this public key (default off)',
    )
    .option('--log-level <level>', 'trace|debug|info|warn|error')
    .option(
      '--cri-address <sock>',
      'serve the CRI image service here (kubelet --image-service-endpoint), keeping PullImage credentials for lazy mounts',
    )
    .option('--cri-upstream <sock>', 'containerd socket the CRI calls are forwarded to (default /run/containerd/containerd.sock)');
  addCredentialOptions(cmd, { explicit: false });
  plainHttpHostsOption(cmd, 'a registry host:port reached over plain HTTP (repeatable)', 'insecure-registry');
  const parsed = parseArgs(cmd, argv);
  if (parsed !== undefined) return parsed;
  const o = cmd.opts<Opts & CredentialFlags & { lazy?: boolean }>();
  if (o.lazy === false) o.noLazy = true;
  let config: SnapshotterConfig;
  try {
    config = parseSnapshotterConfig(merged(o));
  } catch (err) {
    process.stderr.write(`ferry snapshotter: ${(err as Error).message}\n`);
    return 2;
  }
  const log = createLogger({ name: 'snapshotter', level: config.logLevel });
  let h: Awaited<ReturnType<typeof startSnapshotter>>;
  let stopWatch = (): void => undefined;
  try {
    const daemon = config.disableLazy ? undefined : await openDaemon(config, log);
    stopWatch = daemon?.stop ?? stopWatch;
    const lazyFs = daemon?.lazyFs;
    const chain = chainFromFlags(o, { log });
    const metricsToken = config.metricsTokenFile ? readTokenFile(config.metricsTokenFile, '--metrics-token-file') : undefined;
    h = await startSnapshotter({ config, log, metricsToken, credentialSources: chain.sources, ...(lazyFs ? { lazyFs } : {}) });
    log.info({ credentials: h.credentials.describe() }, 'registry credential chain');
  } catch (err) {
    log.error({ err }, 'snapshotter failed to start');
    process.stderr.write(`ferry snapshotter: ${(err as Error).message}\n`);
    return 1;
  }
  process.stdout.write(`ferry snapshotter listening on ${h.address} (metrics ${h.metricsAddress})\n`);
  await untilSignal(async () => {
    stopWatch();
    await h.close();
  }, log);
  return 0;
}
