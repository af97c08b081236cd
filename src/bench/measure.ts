/**
 * @module bench/measure
 * One measured run: fresh per-node state (the mode's snapshotter/peer, a private containerd), page
 * cache dropped, then on every node at once: pull, create, start → the workload's ready signal,
 * timed per phase; the serving registry's own counters (blob bytes, requests) and its interface
 * counter before and after; per node the interface's rx bytes, CPU of the node's daemons and
 * containerd, the lazy daemon's fetched bytes, P2P traffic by source, and the time a workload
 * reports for its own work. Everything the run started is stopped and removed, also on failure.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { FerryError } from '../core/index.js';
import type { Logger } from '../observe/index.js';
import { exec, ifaceCounters, inNetns, startContainerd, unmountUnder, type Containerd, type Star } from './env/index.js';
import { DRIVERS, peerTraffic, type NodeEnv, type PreparedNode, type PullClient, type RunEnv } from './modes.js';
import { cpuMs, type ManagedProcess } from './procs.js';
import { counterDelta, type BenchRegistry } from './registry.js';
import type { ModeId, NodeResult, RunResult, WorkloadInfo } from './types.js';
import type { Workload } from './workloads.js';

/** `warmup`: an unmeasured run before the plan (lazy-trace records its trace in one). */
export interface PlannedRun {
  workload: Workload;
  info: WorkloadInfo;
  mode: ModeId;
  registry: BenchRegistry;
  bandwidth: string;
  nodes: number;
  rep: number;
  warmup?: boolean;
}

/** The time a workload printed for its own work (`read_ms=N`), if it did. */
export function reportedMs(output: string): number | undefined {
  const m = /\bread_ms=(\d+)\b/.exec(output);
  return m ? Number(m[1]) : undefined;
}

async function dropCaches(): Promise<void> {
  await exec('sync', []);
  await writeFile('/proc/sys/vm/drop_caches', '3').catch(() => undefined);
}

const now = (): number => performance.now();

/** Watches a started task until its readiness signal; resolves to the time it was seen. */
async function startAndWaitReady(
  ctd: Containerd,
  id: string,
  w: Workload,
  netns: string,
  timeoutMs: number,
): Promise<{ readyAt: number; output: string }> {
  const ready = w.ready;
  let poller: ReturnType<typeof inNetns> | undefined;
  let pollerReady: Promise<number> | undefined;
  if (ready.kind === 'http') {
    const url = `http://127.0.0.1:${ready.port}${ready.path ?? '/'}`;
    poller = inNetns(
      netns,
      process.execPath,
      [
        '-e',
        `
      const http = require('node:http');
      const end = Date.now() + ${timeoutMs};
      const poll = () => {
        const req = http.get(${JSON.stringify(url)}, { timeout: 1000 }, (res) => {
          res.resume();
          if (res.statusCode >= 200 && res.statusCode < 400) { process.stdout.write('ready\\n'); process.exit(0); }
          again();
        });
        req.on('error', again);
        req.on('timeout', () => req.destroy());
      };
      const again = () => { if (Date.now() > end) process.exit(3); setTimeout(poll, 10); };
      poll();
    `,
      ],
      { stdio: ['ignore', 'pipe', 'ignore'] },
    );
    pollerReady = new Promise<number>((res, rej) => {
      poller!.stdout!.on('data', () => res(now()));
      poller!.on('exit', (c) => {
        if (c !== 0) rej(new FerryError('DEADLINE_EXCEEDED', `http ${url} never answered`));
      });
    });
  }
  const child = ctd.ctrSpawn(['tasks', 'start', id]);
  let out = '';
  let err = '';
  const exit = new Promise<number>((res) => child.on('close', (c) => res(c ?? 1)));
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  try {
    if (ready.kind === 'exit') {
      child.stdout!.on('data', (d: Buffer) => {
        out += d.toString();
      });
      child.stderr!.on('data', (d: Buffer) => {
        err += d.toString();
      });
      const code = await exit;
      const t = now();
      if (code !== 0) throw new FerryError('INTERNAL', `container exited ${code}: ${(err || out).trim().slice(-300)}`);
      if (!out.includes(ready.stdout))
        throw new FerryError('INTERNAL', `container output ${JSON.stringify(out.slice(0, 200))} lacks ${JSON.stringify(ready.stdout)}`);
      return { readyAt: t, output: out.trim().slice(0, 200) };
    }
    let readyAt: number;
    if (ready.kind === 'line') {
      readyAt = await new Promise<number>((res, rej) => {
        const onData = (d: Buffer): void => {
          out += d.toString();
          if (out.includes(ready.pattern)) res(now());
        };
        child.stdout!.on('data', onData);
        child.stderr!.on('data', onData);
        void exit.then((c) => rej(new FerryError('INTERNAL', `container exited ${c} before "${ready.pattern}": ${out.slice(-300)}`)));
      });
    } else {
      child.stdout!.on('data', (d: Buffer) => {
        out += d.toString();
      });
      child.stderr!.on('data', (d: Buffer) => {
        out += d.toString();
      });
      readyAt = await Promise.race([
        pollerReady!,
        exit.then((c) => {
          throw new FerryError('INTERNAL', `container exited ${c} before answering HTTP: ${out.slice(-300)}`);
        }),
      ]);
    }
    await ctd.ctr(['tasks', 'kill', '-s', 'SIGKILL', id], { timeoutMs: 20_000 });
    await Promise.race([exit, new Promise((r) => setTimeout(r, 10_000))]);
    return { readyAt, output: out.trim().split('\n').slice(-1)[0]?.slice(0, 200) ?? '' };
  } finally {
    clearTimeout(timer);
    poller?.kill('SIGKILL');
    if (child.exitCode === null) child.kill('SIGKILL');
  }
}

/** Runs one planned run cold on the first `p.nodes` nodes of `star`, in `dir` (removed afterwards). */
export async function runOne(
  p: PlannedRun,
  o: { star: Star; dir: string; log: Logger; timeoutMs: number; stargzDaemon?: string; pullClient?: PullClient },
): Promise<RunResult> {
  const { star, dir, log, timeoutMs } = o;
  const reg = p.registry;
  const driver = DRIVERS[p.mode];
  const refs = p.info.refs[reg.kind];
  const ref = refs ? driver.ref(refs) : undefined;
  const result: RunResult = {
    workload: p.workload.id,
    mode: p.mode,
    registry: reg.kind,
    bandwidth: p.bandwidth,
    nodes: p.nodes,
    rep: p.rep,
    startedAt: new Date().toISOString(),
    ok: false,
    registryBlobBytes: null,
    registryRequests: null,
    registryIfaceBytes: 0,
    allReadyMs: NaN,
    serviceCpuMs: 0,
    perNode: [],
  };
  if (!ref) {
    result.error = `setup: no ${p.mode} image of ${p.workload.id} in the ${reg.kind} registry`;
    return result;
  }
  const env: RunEnv = {
    registry: reg,
    star,
    dir,
    log,
    ...(o.stargzDaemon ? { stargzDaemon: o.stargzDaemon } : {}),
    ...(o.pullClient ? { pullClient: o.pullClient } : {}),
  };
  const shared: ManagedProcess[] = [];
  const nodeProcs: ManagedProcess[][] = [];
  const ctds: Containerd[] = [];
  const tag = randomBytes(3).toString('hex');
  let stage: 'setup' | 'run' = 'setup';
  try {
    await mkdir(dir, { recursive: true });
    await dropCaches();
    stage = 'setup';
    if (driver.runSetup) shared.push(...(await driver.runSetup(env)));
    const nodes: NodeEnv[] = star.nodes.slice(0, p.nodes).map((node, index) => ({ index, node, dir: join(dir, `node${index + 1}`) }));
    const prepared: PreparedNode[] = [];
    for (const n of nodes) {
      await mkdir(n.dir, { recursive: true });
      const pn = await driver.nodeSetup(env, n);
      prepared.push(pn);
      nodeProcs.push(pn.procs);
      ctds.push(
        await startContainerd({
          dir: join(n.dir, 'containerd'),
          netns: n.node.netns,
          namespace: `fb-${tag}-n${n.index + 1}`,
          ...(pn.snapshotters ? { snapshotters: pn.snapshotters } : {}),
        }),
      );
    }
    stage = 'run';
    const regIf0 = await ifaceCounters(star.registry.dev, star.registry.netns);
    const regCount0 = await reg.counters();
    const rx0 = await Promise.all(nodes.map((n) => ifaceCounters(n.node.dev, n.node.netns)));

    const perNode = await Promise.all(
      nodes.map(async (n, i): Promise<NodeResult> => {
        const ctd = ctds[i]!;
        const pn = prepared[i]!;
        const r: NodeResult = {
          node: n.index + 1,
          ok: false,
          pullMs: NaN,
          createMs: NaN,
          runMs: NaN,
          readyMs: NaN,
          rxBytes: 0,
          ferryCpuMs: 0,
          containerdCpuMs: 0,
        };
        try {
          const t0 = now();
          let timer: NodeJS.Timeout | undefined;
          await Promise.race([
            driver.pull(env, n, pn, ctd, ref),
            new Promise<never>((_, rej) => {
              timer = setTimeout(
                () => rej(new FerryError('DEADLINE_EXCEEDED', `pull did not finish in ${Math.round(timeoutMs / 1000)} s`)),
                timeoutMs,
              );
            }),
          ]).finally(() => clearTimeout(timer));
          const t1 = now();
          const id = `bench-${tag}-${n.index + 1}`;
          // the workload's command is the image's Cmd (ctr would mistake its "-c" arguments for flags)
          const c = await ctd.ctr(
            ['containers', 'create', '--net-host', ...(pn.snapshotter ? ['--snapshotter', pn.snapshotter] : []), ref, id],
            { timeoutMs },
          );
          if (c.code !== 0) throw new FerryError('INTERNAL', `ctr containers create failed: ${c.stderr.trim().slice(-300)}`);
          const t2 = now();
          const { readyAt, output } = await startAndWaitReady(ctd, id, p.workload, n.node.netns, timeoutMs);
          if (p.warmup && driver.afterWarmup) await driver.afterWarmup(env, n, ref);
          Object.assign(r, { ok: true, pullMs: t1 - t0, createMs: t2 - t1, runMs: readyAt - t2, readyMs: readyAt - t0, output });
          const app = reportedMs(output);
          if (app !== undefined) r.appMs = app;
        } catch (err) {
          r.error = (err as Error).message.slice(0, 500);
        }
        return r;
      }),
    );
    const regIf1 = await ifaceCounters(star.registry.dev, star.registry.netns);
    const regCount1 = await reg.counters();
    for (const [i, n] of nodes.entries()) {
      const rx1 = await ifaceCounters(n.node.dev, n.node.netns);
      perNode[i]!.rxBytes = rx1.rxBytes - rx0[i]!.rxBytes;
      let cpu = 0;
      for (const proc of nodeProcs[i] ?? []) cpu += (await proc.cpuMs()) || 0;
      perNode[i]!.ferryCpuMs = cpu;
      perNode[i]!.containerdCpuMs = (await cpuMs(ctds[i]!.pid)) || 0;
      if (driver.lazyBytesFetched) {
        const b = await driver.lazyBytesFetched(n).catch(() => undefined);
        if (b !== undefined) perNode[i]!.lazyBytesFetched = b;
      }
      if (nodeProcs[i]?.some((pr) => pr.name === 'peer')) {
        const t = await peerTraffic(n).catch(() => undefined);
        if (t) perNode[i]!.p2p = t;
      }
    }
    for (const pr of shared) result.serviceCpuMs += (await pr.cpuMs()) || 0;
    result.perNode = perNode;
    result.registryIfaceBytes = regIf1.txBytes - regIf0.txBytes;
    result.registryBlobBytes = counterDelta(regCount0.blobBytes, regCount1.blobBytes);
    result.registryRequests = counterDelta(regCount0.requests, regCount1.requests);
    result.ok = perNode.every((n) => n.ok);
    if (!result.ok)
      result.error = perNode
        .filter((n) => !n.ok)
        .map((n) => `node ${n.node}: ${n.error}`)
        .join('; ');
    result.allReadyMs = result.ok ? Math.max(...perNode.map((n) => n.readyMs)) : NaN;
  } catch (err) {
    result.ok = false;
    result.error = `${stage === 'setup' ? 'setup: ' : ''}${(err as Error).message.slice(0, 500)}`;
  } finally {
    for (const c of ctds) await c.stop().catch((err: unknown) => log.warn({ err }, 'containerd stop failed'));
    for (const procs of nodeProcs) for (const pr of procs) await pr.stop().catch(() => undefined);
    for (const pr of shared) await pr.stop().catch(() => undefined);
    if (!result.ok) await collectLogs(dir, result);
    await unmountUnder(dir).catch(() => undefined);
    await rm(dir, { recursive: true, force: true }).catch(() => undefined);
  }
  return result;
}

async function collectLogs(dir: string, result: RunResult): Promise<void> {
  // keep a short tail of component logs with a failed run, to say why
  const tails: string[] = [];
  const walk = async (d: string, depth: number): Promise<void> => {
    if (depth > 4) return;
    for (const e of await readdir(d, { withFileTypes: true }).catch(() => [])) {
      const p = join(d, e.name);
      if (e.isDirectory()) await walk(p, depth + 1);
      else if (e.name.endsWith('.log') && e.name !== 'containerd.log') {
        const t = (await readFile(p, 'utf8').catch(() => '')).trim().split('\n').slice(-3).join(' | ');
        if (t) tails.push(`${p.slice(dir.length + 1)}: ${t.slice(-400)}`);
      }
    }
  };
  await walk(dir, 0);
  if (tails.length) result.error = `${result.error ?? ''} [logs: ${tails.join(' ;; ')}]`.slice(0, 2000);
}
