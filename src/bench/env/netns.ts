/**
 * @module bench/env/netns
 * Network namespaces for tests and benchmarks: create/delete, veth pairs with (test-only) addresses,
 * a bridge, `tc tbf` shaping, interface byte counters, and spawning commands inside a namespace
 * with `nsenter --net=/run/netns/NAME` (only the network namespace changes, so FUSE mounts made
 * there stay visible to everyone — unlike `ip netns exec`, which also unshares mounts).
 */
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { existsSync } from 'node:fs';
import { FerryError } from '../../core/index.js';
import { exec, execCheck, sbinPath, type ExecOptions, type ExecResult } from './exec.js';

function checkName(kind: string, name: string, max: number): void {
  if (!/^[A-Za-z0-9_.-]+$/.test(name) || name.length > max) {
    throw new FerryError('INVALID_ARGUMENT', `invalid ${kind} name ${JSON.stringify(name)} (max ${max} chars of [A-Za-z0-9_.-])`);
  }
}

function ipArgs(netns: string | undefined, args: string[]): string[] {
  return netns ? ['-n', netns, ...args] : args;
}

/** Creates a network namespace with `lo` up. Fails if it already exists. */
export async function createNetns(name: string): Promise<string> {
  checkName('netns', name, 64);
  await execCheck('ip', ['netns', 'add', name]);
  try {
    await execCheck('ip', ['-n', name, 'link', 'set', 'lo', 'up']);
  } catch (err) {
    await deleteNetns(name);
    throw err;
  }
  return name;
}

/** Kills every process still inside the namespace, then deletes it; a missing namespace is fine. */
export async function deleteNetns(name: string): Promise<void> {
  if (!existsSync(`/run/netns/${name}`)) return;
  const pids = await exec('ip', ['netns', 'pids', name]);
  for (const p of pids.stdout
    .split('\n')
    .map((s) => Number(s.trim()))
    .filter((n) => n > 0)) {
    try {
      process.kill(p, 'SIGKILL');
    } catch {
      /* already gone */
    }
  }
  const r = await exec('ip', ['netns', 'del', name]);
  if (r.code !== 0 && existsSync(`/run/netns/${name}`)) {
    throw new FerryError('INTERNAL', `ip netns del ${name}: ${r.stderr.trim()}`);
  }
}

/** Names of existing namespaces starting with `prefix` (for cleaning up after crashed runs). */
export async function listNetns(prefix = ''): Promise<string[]> {
  const r = await exec('ip', ['netns', 'list']);
  return r.stdout
    .split('\n')
    .map((l) => l.split(' ')[0] ?? '')
    .filter((n) => n?.startsWith(prefix));
}

export interface VethEnd {
  /** Interface name (≤ 15 chars). */
  name: string;
  /** Namespace to move this end into; the root namespace when absent. */
  netns?: string;
  /** CIDR address, e.g. '192.0.2.1/24' — test ranges only (192.0.2.0/24, 198.18.0.0/15). */
  address?: string;
  /** Bridge (in the same namespace) to enslave this end to. */
  master?: string;
}

/** Creates a veth pair, moves each end into its namespace, assigns addresses and brings both up. */
export async function createVeth(a: VethEnd, b: VethEnd): Promise<void> {
  checkName('interface', a.name, 15);
  checkName('interface', b.name, 15);
  await execCheck('ip', ['link', 'add', a.name, 'type', 'veth', 'peer', 'name', b.name]);
  try {
    for (const end of [a, b]) {
      if (end.netns) await execCheck('ip', ['link', 'set', end.name, 'netns', end.netns]);
      if (end.master) await execCheck('ip', ipArgs(end.netns, ['link', 'set', end.name, 'master', end.master]));
      if (end.address) await execCheck('ip', ipArgs(end.netns, ['addr', 'add', end.address, 'dev', end.name]));
      await execCheck('ip', ipArgs(end.netns, ['link', 'set', end.name, 'up']));
    }
  } catch (err) {
    await exec('ip', ipArgs(a.netns, ['link', 'del', a.name]));
    await exec('ip', ['link', 'del', a.name]);
    throw err;
  }
}

/** Creates a bridge interface (in `netns`, or the root namespace) and brings it up. */
export async function createBridge(name: string, netns?: string): Promise<void> {
  checkName('interface', name, 15);
  await execCheck('ip', ipArgs(netns, ['link', 'add', name, 'type', 'bridge']));
  await execCheck('ip', ipArgs(netns, ['link', 'set', name, 'up']));
}

/** Deletes an interface (and its veth peer); missing is fine. */
export async function deleteLink(name: string, netns?: string): Promise<void> {
  await exec('ip', ipArgs(netns, ['link', 'del', name]));
}

export interface ShapeOptions {
  netns?: string;
  /** tbf burst; default max(64kb, rate/8/100) — veth GSO sends up to 64 KiB at once. */
  burst?: string;
  /** tbf latency; default 50ms. */
  latency?: string;
}

/** Parses tc rate strings ('100mbit', '20Mbit', '1gbit', '500kbit', plain bit/s) to bits per second. */
export function parseRate(rate: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*([kmg]?)(bit|bps)?$/i.exec(rate.trim());
  if (!m) throw new FerryError('INVALID_ARGUMENT', `invalid rate ${JSON.stringify(rate)} (use e.g. 100mbit)`);
  const mult = { '': 1, k: 1e3, m: 1e6, g: 1e9 }[(m[2] ?? '').toLowerCase() as '' | 'k' | 'm' | 'g'];
  const unit = (m[3] ?? 'bit').toLowerCase() === 'bps' ? 8 : 1;
  return Number(m[1]) * mult * unit;
}

/** Shapes egress of `dev` with a token bucket: `tc qdisc replace dev DEV root tbf rate RATE …`. */
export async function shape(dev: string, rate: string, opts: ShapeOptions = {}): Promise<void> {
  const bps = parseRate(rate);
  const burst = opts.burst ?? `${Math.max(64 * 1024, Math.ceil(bps / 8 / 100))}b`;
  await execCheck(
    'tc',
    ipArgsTc(opts.netns, [
      'qdisc',
      'replace',
      'dev',
      dev,
      'root',
      'tbf',
      'rate',
      `${Math.round(bps)}bit`,
      'burst',
      burst,
      'latency',
      opts.latency ?? '50ms',
    ]),
  );
}

/** Removes shaping from `dev` (missing qdisc is fine). */
export async function unshape(dev: string, netns?: string): Promise<void> {
  await exec('tc', ipArgsTc(netns, ['qdisc', 'del', 'dev', dev, 'root']));
}

function ipArgsTc(netns: string | undefined, args: string[]): string[] {
  return netns ? ['-n', netns, ...args] : args;
}

export interface IfaceCounters {
  rxBytes: number;
  txBytes: number;
  rxPackets: number;
  txPackets: number;
}

/** Byte/packet counters of an interface (`ip -s -j link show`). */
export async function ifaceCounters(dev: string, netns?: string): Promise<IfaceCounters> {
  const out = await execCheck('ip', ipArgs(netns, ['-s', '-j', 'link', 'show', 'dev', dev]));
  const parsed = JSON.parse(out) as Array<{ stats64?: { rx: { bytes: number; packets: number }; tx: { bytes: number; packets: number } } }>;
  const s = parsed[0]?.stats64;
  if (!s) throw new FerryError('INTERNAL', `no counters for ${dev}`);
  return { rxBytes: s.rx.bytes, txBytes: s.tx.bytes, rxPackets: s.rx.packets, txPackets: s.tx.packets };
}

/** Spawns `cmd args` inside the namespace via `nsenter --net` (mount namespace shared). */
export function inNetns(name: string, cmd: string, args: string[] = [], opts: SpawnOptions = {}): ChildProcess {
  return spawn('nsenter', [`--net=/run/netns/${name}`, '--', cmd, ...args], {
    ...opts,
    env: { ...(opts.env ?? process.env), PATH: sbinPath((opts.env ?? process.env).PATH) },
  });
}

/** Runs a command to completion inside the namespace. */
export function execInNetns(name: string, cmd: string, args: string[], opts: Omit<ExecOptions, 'netns'> = {}): Promise<ExecResult> {
  return exec(cmd, args, { ...opts, netns: name });
}

export interface StarNode {
  /** Namespace name. */
  netns: string;
  /** Address without prefix length, e.g. '198.18.0.11'. */
  ip: string;
  /** Interface inside the namespace. */
  dev: string;
  /** Peer interface in the hub namespace (egress of it = traffic towards this node). */
  hubDev: string;
}

export interface Star {
  hub: string;
  registry: StarNode;
  nodes: StarNode[];
  /** Unshaped service namespaces (198.18.0.2, .3, …), e.g. for a P2P scheduler. */
  extras: StarNode[];
  /** Deletes all namespaces (and so every interface in them). Safe to call twice. */
  destroy(): Promise<void>;
}

/**
 * A star topology on 198.18.0.0/24 (a benchmarking test range): a hub namespace with a bridge, a
 * registry namespace (198.18.0.1) and `nodes` node namespaces (198.18.0.11, .12, …). With
 * `registryRate` the registry's uplink (its own interface's egress) is shaped with tbf;
 * `nodeRate` shapes each node's uplink and downlink.
 */
export async function createStar(opts: {
  prefix: string;
  nodes: number;
  extras?: number;
  registryRate?: string;
  nodeRate?: string;
}): Promise<Star> {
  const { prefix } = opts;
  if (opts.nodes < 1 || opts.nodes > 200) throw new FerryError('INVALID_ARGUMENT', 'nodes must be 1..200');
  if (!/^[a-z0-9]{1,8}$/.test(prefix)) throw new FerryError('INVALID_ARGUMENT', 'star prefix must be 1-8 chars [a-z0-9]');
  const created: string[] = [];
  const destroy = async (): Promise<void> => {
    for (const ns of created.reverse()) await deleteNetns(ns).catch(() => undefined);
    created.length = 0;
  };
  try {
    const hub = `${prefix}-hub`;
    await createNetns(hub);
    created.push(hub);
    await createBridge('br0', hub);
    const mk = async (ns: string, ip: string, idx: string): Promise<StarNode> => {
      await createNetns(ns);
      created.push(ns);
      const dev = 'eth0';
      const hubDev = `${prefix}${idx}`.slice(0, 15);
      // create in root namespace with unique names, then rename inside the namespace
      const tmpA = `${prefix}t${idx}`.slice(0, 15);
      await createVeth({ name: tmpA, netns: ns }, { name: hubDev, netns: hub, master: 'br0' });
      await execCheck('ip', ['-n', ns, 'link', 'set', tmpA, 'down']);
      await execCheck('ip', ['-n', ns, 'link', 'set', tmpA, 'name', dev]);
      await execCheck('ip', ['-n', ns, 'addr', 'add', `${ip}/24`, 'dev', dev]);
      await execCheck('ip', ['-n', ns, 'link', 'set', dev, 'up']);
      return { netns: ns, ip, dev, hubDev };
    };
    const registry = await mk(`${prefix}-reg`, '198.18.0.1', 'r');
    if (opts.registryRate) await shape(registry.dev, opts.registryRate, { netns: registry.netns });
    const nodes: StarNode[] = [];
    for (let i = 0; i < opts.nodes; i++) {
      const n = await mk(`${prefix}-n${i + 1}`, `198.18.0.${11 + i}`, `n${i + 1}`);
      if (opts.nodeRate) {
        await shape(n.dev, opts.nodeRate, { netns: n.netns });
        await shape(n.hubDev, opts.nodeRate, { netns: hub });
      }
      nodes.push(n);
    }
    const extras: StarNode[] = [];
    for (let i = 0; i < (opts.extras ?? 0) && i < 8; i++) extras.push(await mk(`${prefix}-x${i + 1}`, `198.18.0.${2 + i}`, `x${i + 1}`));
    return { hub, registry, nodes, extras, destroy };
  } catch (err) {
    await destroy();
    throw err;
  }
}
