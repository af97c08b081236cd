/**
 * @module bench/env/containerd
 * A private containerd instance for tests and benchmarks: own root, state and sockets under `dir`,
 * the CRI plugin disabled, the opt plugin kept inside `dir`, optional proxy snapshotters, optional
 * network namespace (entered with `nsenter --net`, so FUSE mounts stay visible), and a unique
 * containerd namespace per instance (runc's state dir /run/containerd/runc/<ns> is shared between
 * instances).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createWriteStream, existsSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { FerryError } from '../../core/index.js';
import { silentLogger, type Logger } from '../../observe/index.js';
import { exec, netnsWrap, sbinPath, unmountUnder, waitFor, type ExecOptions, type ExecResult } from './exec.js';

export interface ContainerdOptions {
  /** Directory holding config.toml, root/, state/, the sockets and containerd.log. */
  dir: string;
  /** Proxy snapshotters to register: name → unix socket path. */
  snapshotters?: Record<string, string>;
  /** Run containerd (and therefore shims and `--net-host` containers) in this network namespace. */
  netns?: string;
  /** containerd namespace used by `ctr`; default a unique `ferry-<hex>`. */
  namespace?: string;
  log?: Logger;
  /** How long to wait for the socket to answer; default 30 s. */
  startTimeoutMs?: number;
  /** containerd log level; default 'info'. */
  logLevel?: string;
  /** Rewrites the generated config.toml (its text) before containerd starts with it. */
  editConfig?: (toml: string) => string | Promise<string>;
  /** Enable the CRI plugin (Kubernetes' runtime.v1 on the same socket); off by default. Use namespace `k8s.io` with it. */
  cri?: ContainerdCriOptions;
}

/** The CRI plugin's settings for a private instance (no CNI: pods use the host network). */
export interface ContainerdCriOptions {
  /** snapshotter CRI unpacks with (e.g. a proxy snapshotter's name), with the snapshot labels lazy pulls need */
  snapshotter: string;
  /** the pause image of pod sandboxes */
  sandboxImage: string;
  /** registries (host:port) reached over plain HTTP */
  plainHttpRegistries?: string[];
}

export interface CtrOptions extends Omit<ExecOptions, 'netns'> {}

export interface Containerd {
  /** gRPC socket path. */
  address: string;
  namespace: string;
  dir: string;
  root: string;
  state: string;
  configPath: string;
  logPath: string;
  pid: number;
  netns?: string;
  /** Runs `ctr --address ADDRESS -n NAMESPACE ...args` (inside the instance's netns, if any). */
  ctr(args: string[], opts?: CtrOptions): Promise<ExecResult>;
  /** Spawns ctr the same way, stdout/stderr piped (e.g. `tasks start` to watch a container's output). */
  ctrSpawn(args: string[]): ChildProcess;
  /** Environment for other clients (ctr-remote, ferry pull): CONTAINERD_ADDRESS / CONTAINERD_NAMESPACE. */
  env(): NodeJS.ProcessEnv;
  /** Kills this instance's tasks, removes its containers, stops containerd, unmounts leftovers. */
  stop(): Promise<void>;
}

function tomlString(s: string): string {
  return JSON.stringify(s);
}

/** The config.toml text for a private instance (exported for tests and docs). */
export function containerdConfig(o: {
  root: string;
  state: string;
  address: string;
  optPath: string;
  debugAddress: string;
  snapshotters?: Record<string, string>;
  cri?: ContainerdCriOptions;
}): string {
  const lines = [
    'version = 2',
    `root = ${tomlString(o.root)}`,
    `state = ${tomlString(o.state)}`,
    o.cri ? 'disabled_plugins = []' : 'disabled_plugins = ["io.containerd.grpc.v1.cri"]',
    '',
    '[grpc]',
    `  address = ${tomlString(o.address)}`,
    '[ttrpc]',
    `  address = ${tomlString(`${o.address}.ttrpc`)}`,
    '[debug]',
    `  address = ${tomlString(o.debugAddress)}`,
    '',
    '[plugins."io.containerd.internal.v1.opt"]',
    `  path = ${tomlString(o.optPath)}`,
    '',
  ];
  for (const [name, sock] of Object.entries(o.snapshotters ?? {})) {
    if (!/^[A-Za-z0-9_.-]+$/.test(name)) throw new FerryError('INVALID_ARGUMENT', `invalid snapshotter name ${JSON.stringify(name)}`);
    lines.push(`[proxy_plugins.${tomlString(name)}]`, '  type = "snapshot"', `  address = ${tomlString(sock)}`, '');
  }
  if (o.cri) lines.push(...criConfig(o.cri, o.state));
  return lines.join('\n');
}

function criConfig(c: ContainerdCriOptions, state: string): string[] {
  const cri = '[plugins."io.containerd.grpc.v1.cri"';
  const lines = [
    `${cri}]`,
    `  sandbox_image = ${tomlString(c.sandboxImage)}`,
    '  stream_server_address = "127.0.0.1"',
    '  stream_server_port = "0"',
    '  enable_selinux = false',
    // a sandbox asks for oom_score_adj -998, which a process may not lower here: clamp it to ours
    '  restrict_oom_score_adj = true',
    `${cri}.containerd]`,
    `  snapshotter = ${tomlString(c.snapshotter)}`,
    '  disable_snapshot_annotations = false',
    '  default_runtime_name = "runc"',
    `${cri}.containerd.runtimes.runc]`,
    '  runtime_type = "io.containerd.runc.v2"',
    `${cri}.cni]`,
    '  bin_dir = "/usr/lib/cni"',
    `  conf_dir = ${tomlString(join(state, 'cni'))}`,
  ];
  for (const r of c.plainHttpRegistries ?? []) {
    lines.push(`${cri}.registry.mirrors.${tomlString(r)}]`, `  endpoint = [${tomlString(`http://${r}`)}]`);
  }
  lines.push('');
  return lines;
}

/** Starts a private containerd and waits until `ctr version` answers. */
export async function startContainerd(opts: ContainerdOptions): Promise<Containerd> {
  const log = (opts.log ?? silentLogger()).child({ component: 'bench-containerd' });
  const dir = resolve(opts.dir);
  const root = join(dir, 'root');
  const state = join(dir, 'state');
  const optPath = join(dir, 'opt');
  await mkdir(root, { recursive: true });
  await mkdir(state, { recursive: true });
  await mkdir(optPath, { recursive: true });
  // unix socket paths are limited to 107 bytes: fall back to a short directory under /run.
  let sockDir = dir;
  if (join(dir, 'containerd.sock.ttrpc').length > 100) {
    sockDir = join('/run/ferry-bench', createHash('sha256').update(dir).digest('hex').slice(0, 16));
    await mkdir(sockDir, { recursive: true });
  }
  const address = join(sockDir, 'containerd.sock');
  const debugAddress = join(sockDir, 'debug.sock');
  const namespace = opts.namespace ?? `ferry-${randomBytes(5).toString('hex')}`;
  const configPath = join(dir, 'config.toml');
  const logPath = join(dir, 'containerd.log');
  const cfg: Parameters<typeof containerdConfig>[0] = { root, state, address, optPath, debugAddress };
  if (opts.snapshotters) cfg.snapshotters = opts.snapshotters;
  if (opts.cri) cfg.cri = opts.cri;
  const generated = containerdConfig(cfg);
  await writeFile(configPath, opts.editConfig ? await opts.editConfig(generated) : generated);
  for (const s of [address, `${address}.ttrpc`, debugAddress]) await rm(s, { force: true });

  const [cmd, args] = netnsWrap(opts.netns, 'containerd', ['--config', configPath, '--log-level', opts.logLevel ?? 'info']);
  const logStream = createWriteStream(logPath, { flags: 'a' });
  const child: ChildProcess = spawn(cmd, args, {
    env: { ...process.env, PATH: sbinPath() },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout?.pipe(logStream, { end: false });
  child.stderr?.pipe(logStream, { end: false });
  let exited: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  const exitPromise = new Promise<void>((res) => {
    child.on('exit', (code, signal) => {
      exited = { code, signal };
      res();
    });
    child.on('error', (err) => {
      exited = { code: -1, signal: null };
      log.error({ err }, 'containerd spawn failed');
      res();
    });
  });
  const ctrRaw = (args2: string[], o: CtrOptions = {}): Promise<ExecResult> => {
    const eo: ExecOptions = { timeoutMs: 300_000, ...o };
    if (opts.netns !== undefined) eo.netns = opts.netns;
    return exec('ctr', ['--address', address, '-n', namespace, ...args2], eo);
  };
  const ctrSpawn = (args2: string[]): ChildProcess => {
    const [c, a] = netnsWrap(opts.netns, 'ctr', ['--address', address, '-n', namespace, ...args2]);
    return spawn(c, a, { env: { ...process.env, PATH: sbinPath() }, stdio: ['ignore', 'pipe', 'pipe'] });
  };

  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    if (!exited) {
      // tasks and containers of our (unique) namespace
      const tasks = await ctrRaw(['tasks', 'ls', '-q'], { timeoutMs: 15_000 }).catch(() => undefined);
      for (const id of (tasks?.stdout ?? '')
        .split('\n')
        .map((s) => s.trim())
        .filter(Boolean)) {
        await ctrRaw(['tasks', 'kill', '-s', 'SIGKILL', id], { timeoutMs: 15_000 }).catch(() => undefined);
      }
      for (const id of (tasks?.stdout ?? '')
        .split('\n')
        .map((s) => s.trim())
        .filter(Boolean)) {
        await waitFor(
          async () =>
            (await ctrRaw(['tasks', 'delete', id], { timeoutMs: 15_000 }).catch(() => ({ code: 1 }))).code === 0 ||
            !(await ctrRaw(['tasks', 'ls', '-q'], { timeoutMs: 15_000 })).stdout.includes(id),
          `task ${id} deleted`,
          10_000,
          200,
        ).catch(() => undefined);
      }
      const ctrs = await ctrRaw(['containers', 'ls', '-q'], { timeoutMs: 15_000 }).catch(() => undefined);
      for (const id of (ctrs?.stdout ?? '')
        .split('\n')
        .map((s) => s.trim())
        .filter(Boolean)) {
        await ctrRaw(['containers', 'delete', id], { timeoutMs: 15_000 }).catch(() => undefined);
      }
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 8_000);
      await exitPromise;
      clearTimeout(t);
    }
    logStream.end();
    await unmountUnder(root);
    await unmountUnder(state);
    await rm(join('/run/containerd/runc', namespace), { recursive: true, force: true }).catch(() => undefined);
    if (sockDir !== dir) await rm(sockDir, { recursive: true, force: true }).catch(() => undefined);
    log.debug({ dir }, 'containerd stopped');
  };

  try {
    await waitFor(
      async () => {
        if (exited) {
          const tail = await readFile(logPath, 'utf8').catch(() => '');
          throw new FerryError(
            'UNAVAILABLE',
            `containerd exited (${exited.code ?? exited.signal}) before answering: ${tail.split('\n').slice(-10).join('\n')}`,
          );
        }
        if (!existsSync(address)) return false;
        return (await ctrRaw(['version'], { timeoutMs: 5_000 })).code === 0;
      },
      `containerd at ${address}`,
      opts.startTimeoutMs ?? 30_000,
      100,
    );
  } catch (err) {
    await stop();
    throw err;
  }
  log.debug({ address, namespace, pid: child.pid }, 'containerd started');

  const inst: Containerd = {
    address,
    namespace,
    dir,
    root,
    state,
    configPath,
    logPath,
    pid: child.pid ?? -1,
    ctr: ctrRaw,
    ctrSpawn,
    env: () => ({ ...process.env, PATH: sbinPath(), CONTAINERD_ADDRESS: address, CONTAINERD_NAMESPACE: namespace }),
    stop,
  };
  if (opts.netns !== undefined) inst.netns = opts.netns;
  return inst;
}
