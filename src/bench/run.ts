/**
 * @module bench/run
 * The benchmark harness: prepares the network (registries behind one tbf link, one namespace per
 * node), the registries (ferry and CNCF distribution side by side) and every workload's images in
 * each; then, for every repetition, runs each (workload, registry, link, N) group's modes in a
 * shuffled order (so drift hits all modes alike), each run cold (bench/measure). N > 1 runs use
 * the first link profile only.
 */
import { randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { mkdir, rm } from 'node:fs/promises';
import { cpus, hostname, loadavg, release, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { FerryError } from '../core/index.js';
import { silentLogger, type Logger } from '../observe/index.js';
import { createStar, parseRate, shape, unmountUnder, type Star } from './env/index.js';
import { ensureStargzDaemon, onPath } from './estargz.js';
import { runOne, type PlannedRun } from './measure.js';
import { DRIVERS, PULL_CLIENTS, modeAvailability, type PullClient } from './modes.js';
import { projectRoot } from './procs.js';
import { publishImages } from './publish.js';
import { startBenchRegistries, type BenchRegistry } from './registry.js';
import { seededRandom, shuffle, summarize } from './stats.js';
import {
  ALL_MODES,
  ALL_REGISTRIES,
  MODE_LABELS,
  P2P_MODES,
  PEER_MODES,
  type BenchResults,
  type GroupSummary,
  type MachineInfo,
  type ModeId,
  type ModeStatus,
  type RegistryKind,
  type RunResult,
  type WorkloadInfo,
} from './types.js';
import { DEFAULT_WORKLOADS, WORKLOADS, findWorkload } from './workloads.js';

export interface BenchOptions {
  workloads?: string[];
  modes?: ModeId[];
  nodes?: number[];
  /** Registry link profiles (tc tbf rates), e.g. ['100mbit', '20mbit']; N > 1 runs at the first only. */
  bandwidths?: string[];
  repeat?: number;
  quick?: boolean;
  /** Workloads that also run at N > 1 (default: python, or the first workload with --quick). */
  fanoutWorkloads?: string[];
  /** Working directory for node state (default a fresh dir under /tmp). */
  workDir?: string;
  seed?: number;
  log?: Logger;
  /** Called on progress: done runs of total, and what runs now. */
  onProgress?: (done: number, total: number, label: string) => void;
  /** Per-node timeout of one run (ms); default 4 min or 3× the image through the link. */
  runTimeoutMs?: number;
  /** Registries serving runs, side by side (default both). */
  registries?: RegistryKind[];
  /** Build the stargz daemon when missing or stale (default true; a no-op once cached). */
  buildStargz?: boolean;
  /** Stops after the current run (results so far are kept, everything is cleaned up). */
  signal?: AbortSignal;
  /** Client pulling the Ferry lazy modes (default ctr-remote, as the eStargz modes; `ferry` = `ferry pull`). */
  pullClient?: PullClient;
}

export function machineInfo(): MachineInfo {
  let osName = 'linux';
  try {
    const t = execFileSync('sh', ['-c', '. /etc/os-release && echo "$PRETTY_NAME"'], { encoding: 'utf8' }).trim();
    if (t) osName = t;
  } catch {
    /* keep default */
  }
  return {
    hostname: hostname(),
    cpuModel: cpus()[0]?.model ?? 'unknown',
    cores: cpus().length,
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    kernel: release(),
    os: osName,
    node: process.version,
    loadAvg1m: Math.round(loadavg()[0]! * 100) / 100,
  };
}

/** The commit the run starts from (`+dirty` when tracked source files differ from it). */
function gitCommit(): string {
  try {
    const git = (args: string[]): string =>
      execFileSync('git', ['-C', projectRoot(), ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
    const head = git(['rev-parse', '--short', 'HEAD']);
    return git(['status', '--porcelain', '--untracked-files=no', '--', 'src', 'bench', 'bin', 'package.json']) ? `${head}+dirty` : head;
  } catch {
    return process.env.FERRY_GIT_COMMIT ?? 'unknown';
  }
}

function groupKey(r: Pick<RunResult, 'workload' | 'mode' | 'registry' | 'bandwidth' | 'nodes'>): string {
  return `${r.workload}|${r.mode}|${r.registry}|${r.bandwidth}|${r.nodes}`;
}

/** One summary per (workload, mode, registry, link, N); speedup against OCI in the same registry, link, workload and N. */
export function summarizeRuns(runs: RunResult[], infos: WorkloadInfo[]): GroupSummary[] {
  const groups = new Map<string, RunResult[]>();
  for (const r of runs) groups.set(groupKey(r), [...(groups.get(groupKey(r)) ?? []), r]);
  const out: GroupSummary[] = [];
  for (const rs of groups.values()) {
    const first = rs[0]!;
    const ok = rs.filter((r) => r.ok);
    const nodesOk = ok.flatMap((r) => r.perNode.filter((n) => n.ok));
    const info = infos.find((i) => i.id === first.workload);
    const regBytes = ok.map((r) => r.registryBlobBytes ?? r.registryIfaceBytes);
    out.push({
      workload: first.workload,
      mode: first.mode,
      registry: first.registry,
      bandwidth: first.bandwidth,
      nodes: first.nodes,
      runs: rs.length,
      failures: rs.length - ok.length,
      readyMs: summarize(nodesOk.map((n) => n.readyMs)),
      allReadyMs: summarize(ok.map((r) => r.allReadyMs)),
      pullMs: summarize(nodesOk.map((n) => n.pullMs)),
      createMs: summarize(nodesOk.map((n) => n.createMs)),
      runMs: summarize(nodesOk.map((n) => n.runMs)),
      registryBytes: summarize(regBytes),
      registryRequests: summarize(ok.filter((r) => r.registryRequests !== null).map((r) => r.registryRequests!)),
      registryIfaceBytes: summarize(ok.map((r) => r.registryIfaceBytes)),
      nodeRxBytes: summarize(nodesOk.map((n) => n.rxBytes)),
      ferryCpuMs: summarize(nodesOk.map((n) => n.ferryCpuMs)),
      lazyBytesFetched: summarize(nodesOk.filter((n) => n.lazyBytesFetched !== undefined).map((n) => n.lazyBytesFetched!)),
      appMs: summarize(nodesOk.filter((n) => n.appMs !== undefined).map((n) => n.appMs!)),
      registryBytesPerImage: info && info.imageBytes > 0 ? summarize(regBytes).median / info.imageBytes : NaN,
      speedup: null,
    });
  }
  for (const g of out) {
    const base = out.find((b) => groupKey(b) === groupKey({ ...g, mode: 'oci' }));
    const metric = (x: GroupSummary): number => (g.nodes > 1 ? x.allReadyMs.median : x.readyMs.median);
    if (base && Number.isFinite(metric(base)) && Number.isFinite(metric(g)) && metric(g) > 0) g.speedup = metric(base) / metric(g);
  }
  return out;
}

function validate(opts: BenchOptions): { nodesList: number[]; bandwidths: string[]; kinds: RegistryKind[] } {
  for (const m of opts.modes ?? [])
    if (!ALL_MODES.includes(m)) throw new FerryError('INVALID_ARGUMENT', `unknown mode ${m} (known: ${ALL_MODES.join(', ')})`);
  const nodesList = [...new Set(opts.nodes ?? (opts.quick ? [1, 2] : [1, 2, 4, 8]))].sort((a, b) => a - b);
  if (nodesList.some((n) => !Number.isInteger(n) || n < 1 || n > 32))
    throw new FerryError('INVALID_ARGUMENT', 'nodes must be integers 1..32');
  const bandwidths = [...new Set(opts.bandwidths ?? ['100mbit'])];
  for (const b of bandwidths) parseRate(b); // throws INVALID_ARGUMENT on a bad rate
  const kinds = [...new Set(opts.registries ?? ALL_REGISTRIES)];
  for (const k of kinds)
    if (!ALL_REGISTRIES.includes(k))
      throw new FerryError('INVALID_ARGUMENT', `unknown registry ${k} (known: ${ALL_REGISTRIES.join(', ')})`);
  if (opts.pullClient !== undefined && !PULL_CLIENTS.includes(opts.pullClient))
    throw new FerryError('INVALID_ARGUMENT', `unknown pull client ${opts.pullClient} (known: ${PULL_CLIENTS.join(', ')})`);
  return { nodesList, bandwidths, kinds };
}

function markNotRun(status: ModeStatus[], pick: (m: ModeId) => boolean, reason: string): void {
  for (const s of status) {
    if (s.status === 'run' && pick(s.id)) {
      s.status = 'not-run';
      s.reason = reason;
    }
  }
}

/** Every repetition runs each (workload, registry, link, N) group once per mode, modes shuffled. */
function planRuns(o: {
  repeat: number;
  workloads: ReturnType<typeof findWorkload>[];
  infos: WorkloadInfo[];
  registries: BenchRegistry[];
  bandwidths: string[];
  nodesList: number[];
  fanout: Set<string>;
  modes: ModeId[];
  seed: number;
}): PlannedRun[] {
  const rnd = seededRandom(o.seed);
  const plan: PlannedRun[] = [];
  for (let rep = 1; rep <= o.repeat; rep++) {
    for (const w of o.workloads) {
      const info = o.infos.find((i) => i.id === w.id)!;
      for (const registry of o.registries) {
        const refs = info.refs[registry.kind];
        if (!refs) continue;
        for (const [bi, bandwidth] of o.bandwidths.entries()) {
          for (const n of o.nodesList) {
            if (n > 1 && (!o.fanout.has(w.id) || bi > 0)) continue;
            // P2P modes only where nodes share (fan-out workloads); at N > 1 the two baselines and the two P2P modes
            const ms = o.modes
              .filter((m) => (P2P_MODES.includes(m) ? o.fanout.has(w.id) : n === 1 || m === 'oci' || m === 'lazy-erofs'))
              .filter((m) => DRIVERS[m].ref(refs) !== undefined);
            for (const mode of shuffle(ms, rnd)) plan.push({ workload: w, info, mode, registry, bandwidth, nodes: n, rep });
          }
        }
      }
    }
  }
  return plan;
}

/**
 * The client that pulls the Ferry lazy modes' images: the one asked for (default ctr-remote, the Go
 * client the eStargz modes use too), or `ferry pull` when ctr-remote is not installed; with the
 * report's note saying which and why.
 */
export function choosePullClient(asked: PullClient | undefined, ctrRemote: boolean): { client: PullClient; note: string } {
  const want = asked ?? 'ctr-remote';
  if (want === 'ctr-remote' && !ctrRemote)
    return {
      client: 'ferry',
      note: 'Ferry lazy modes pulled with `ferry pull` (ctr-remote, the default client, is not installed: Debian package stargz-snapshotter)',
    };
  return {
    client: want,
    note:
      want === 'ctr-remote'
        ? 'Ferry lazy modes pulled with `ctr-remote images rpull --snapshotter ferry` (as eStargz with `--snapshotter stargz`; oci-ref with `ferry pull --json`); the mount finishes during `ctr containers create`'
        : 'Ferry lazy modes pulled with `ferry pull --snapshotter-api` (--ferry-pull-client ferry): the pull returns once the image is mounted',
  };
}

/** Runs the benchmark and returns its results (the caller writes the report). */
export async function runBench(opts: BenchOptions = {}): Promise<BenchResults> {
  const log = opts.log ?? silentLogger();
  const quick = opts.quick ?? false;
  const startedAt = new Date().toISOString();
  const commit = gitCommit(); // now: the tree may move on while a long run goes
  const workloads = (opts.workloads ?? (quick ? WORKLOADS.filter((w) => w.quick).map((w) => w.id) : DEFAULT_WORKLOADS)).map(findWorkload);
  const modes = opts.modes ?? ALL_MODES;
  const { nodesList, bandwidths, kinds } = validate(opts);
  const repeat = opts.repeat ?? (quick ? 1 : 5);
  const seed = opts.seed ?? 1;
  const fanout = new Set(opts.fanoutWorkloads ?? (quick ? [workloads[0]!.id] : ['python']));
  const notes: string[] = [];
  const load0 = loadavg()[0]!;
  const workDir = resolve(opts.workDir ?? join('/tmp', `ferry-bench-${randomBytes(4).toString('hex')}`));
  await mkdir(workDir, { recursive: true });

  const avail = await modeAvailability(modes);
  const status: ModeStatus[] = modes.map((m) => {
    const reason = avail.get(m);
    return reason ? { id: m, label: MODE_LABELS[m], status: 'not-run', reason } : { id: m, label: MODE_LABELS[m], status: 'run' };
  });
  const runModes = (): ModeId[] => status.filter((s) => s.status === 'run').map((s) => s.id);
  const pullClient = choosePullClient(opts.pullClient, onPath('ctr-remote') !== undefined);
  if (runModes().some((m) => m.startsWith('lazy'))) notes.push(pullClient.note);
  let stargzDaemon: string | undefined;
  if (runModes().some((m) => PEER_MODES.includes(m))) {
    const sg = await ensureStargzDaemon({ build: opts.buildStargz ?? true, log });
    if (sg.path) stargzDaemon = sg.path;
    else markNotRun(status, (m) => PEER_MODES.includes(m), sg.reason ?? 'stargz snapshotter daemon not available');
  }

  const star: Star = await createStar({ prefix: `fb${randomBytes(2).toString('hex')}`, nodes: Math.max(...nodesList), extras: 2 });
  let registries: BenchRegistry[] = [];
  const runs: RunResult[] = [];
  let infos: WorkloadInfo[] = [];
  try {
    const started = await startBenchRegistries({
      netns: star.registry.netns,
      ip: star.registry.ip,
      dir: join(workDir, 'registry'),
      kinds,
      log,
    });
    registries = started.registries;
    notes.push(...started.notes);
    opts.onProgress?.(0, 1, 'building and publishing images');
    const wants = {
      nydus: runModes().some((m) => m.startsWith('lazy')),
      trace: runModes().includes('lazy-trace'),
      estargz: runModes().includes('estargz'),
      estargzOpt: runModes().includes('estargz-opt'),
      ociRef: runModes().includes('oci-ref'),
    };
    const pub = await publishImages({
      workloads,
      registries,
      star,
      dir: workDir,
      wants,
      log,
      onStep: (label) => opts.onProgress?.(0, 1, label),
    });
    infos = pub.infos;
    notes.push(...pub.notes);
    if (wants.nydus && registries.every((r) => pub.nydusFailed.has(r.kind)))
      markNotRun(status, (m) => m.startsWith('lazy'), 'Nydus conversion failed (see notes)');
    if (wants.ociRef && registries.every((r) => pub.ociRefFailed.has(r.kind)))
      markNotRun(status, (m) => m === 'oci-ref', '`ferry convert --oci-ref` failed (see notes)');
    await shape(star.registry.dev, bandwidths[0]!, { netns: star.registry.netns });
    const timeoutFor = (p: PlannedRun): number =>
      // per-node time limit: 4 min, or 3× the time the whole image takes for N nodes through the link
      opts.runTimeoutMs ?? Math.max(240_000, 3 * ((p.info.imageBytes * 8 * p.nodes) / parseRate(p.bandwidth)) * 1000);

    // lazy-trace: one unmeasured run per workload and registry records what the container read and
    // pushes it as the image's prefetch trace; where the warm-up fails the mode is not run
    if (runModes().includes('lazy-trace')) {
      for (const info of infos) {
        const w = workloads.find((x) => x.id === info.id)!;
        for (const registry of registries) {
          const refs = info.refs[registry.kind];
          if (!refs?.nydusTrace) continue;
          opts.onProgress?.(0, 1, `${w.id} · lazy-trace · ${registry.kind} · warm-up (records the prefetch trace)`);
          const p: PlannedRun = {
            workload: w,
            info,
            mode: 'lazy-trace',
            registry,
            bandwidth: bandwidths[0]!,
            nodes: 1,
            rep: 0,
            warmup: true,
          };
          const r = await runOne(p, {
            star,
            dir: join(workDir, `warmup-${w.id}-${registry.kind}`),
            log,
            timeoutMs: timeoutFor(p),
            pullClient: pullClient.client,
          });
          if (!r.ok) {
            notes.push(`lazy-trace warm-up failed for ${w.id} (${registry.kind}): ${(r.error ?? '').slice(0, 300)}`);
            delete refs.nydusTrace;
          }
        }
      }
    }

    const plan = planRuns({ repeat, workloads, infos, registries, bandwidths, nodesList, fanout, modes: runModes(), seed });
    for (const s of status) {
      if (s.status === 'run' && !plan.some((p) => p.mode === s.id)) {
        s.status = 'not-run';
        s.reason = s.reason ?? 'no image prepared for this mode';
      }
    }
    let done = 0;
    let linkNow = bandwidths[0]!;
    const broken = new Map<ModeId, string>();
    for (const p of plan) {
      if (broken.has(p.mode)) {
        done++;
        continue;
      }
      if (opts.signal?.aborted) {
        notes.push(`interrupted after ${runs.length} of ${plan.length} runs`);
        break;
      }
      const label = `${p.workload.id} · ${p.mode} · ${p.registry.kind} · ${p.bandwidth} · N=${p.nodes}`;
      opts.onProgress?.(done, plan.length, `${label} · rep ${p.rep}/${repeat}`);
      if (p.bandwidth !== linkNow) {
        await shape(star.registry.dev, p.bandwidth, { netns: star.registry.netns });
        linkNow = p.bandwidth;
      }
      const r = await runOne(p, {
        star,
        dir: join(workDir, `run-${done}`),
        log,
        timeoutMs: timeoutFor(p),
        pullClient: pullClient.client,
        ...(stargzDaemon ? { stargzDaemon } : {}),
      });
      runs.push(r);
      if (!r.ok) log.warn({ workload: r.workload, mode: r.mode, registry: r.registry, nodes: r.nodes, error: r.error }, 'run failed');
      // a component that cannot even start makes the mode "not run" (its remaining runs are skipped)
      const modeRuns = runs.filter((x) => x.mode === p.mode);
      if (!r.ok && !modeRuns.some((x) => x.ok) && (r.error?.startsWith('setup: ') || modeRuns.length >= 3)) {
        const why = r.error?.startsWith('setup: ')
          ? `a component failed to start: ${r.error.slice(7, 400)}`
          : `its first ${modeRuns.length} runs failed: ${(r.error ?? '').slice(0, 400)}`;
        broken.set(p.mode, why);
        markNotRun(status, (m) => m === p.mode, why);
      }
      done++;
      opts.onProgress?.(done, plan.length, `${label} · ${r.ok ? `${(r.allReadyMs / 1000).toFixed(2)} s` : 'FAILED'}`);
    }
  } finally {
    for (const r of registries) await r.close().catch(() => undefined);
    await star.destroy();
    await unmountUnder(workDir).catch(() => undefined);
    await rm(workDir, { recursive: true, force: true }).catch(() => undefined);
  }
  notes.push(
    `load average (1 min) at start ${load0.toFixed(2)}, at end ${loadavg()[0]!.toFixed(2)} on ${cpus().length} cores (other work on the machine inflates CPU-bound phases)`,
  );
  return {
    schema: 'ferry-bench/v2',
    startedAt,
    finishedAt: new Date().toISOString(),
    gitCommit: commit,
    machine: machineInfo(),
    settings: {
      bandwidths,
      repeat,
      nodes: nodesList,
      quick,
      registries: registries.map((r) => r.kind),
      seed,
      pullClient: pullClient.client,
    },
    modes: status,
    workloads: infos,
    runs,
    summary: summarizeRuns(runs, infos),
    notes,
  };
}
