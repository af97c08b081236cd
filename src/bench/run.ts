/**
 * @module bench/run
 * (Over 600 lines: the harness is one sequence (prepare, interleave repetitions, measure, clean up) over shared state.)
 * The benchmark harness: prepares the workload images, the network (registry behind a tbf link,
 * one namespace per node) and the registry; then, for every repetition, runs each (workload, N)
 * group's modes in a shuffled order (so drift hits all modes alike), each run cold: fresh
 * containerd root and snapshotter/peer state per node, page cache dropped. Per node it times
 * pull, create and start→ready, and counts bytes (registry counter, interface counters) and CPU.
 */
import { randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { mkdir, rm, writeFile, readFile } from 'node:fs/promises';
import { cpus, hostname, loadavg, release, totalmem } from 'node:os';
import { join, resolve } from 'node:path';
import { performance } from 'node:perf_hooks';
import { FerryError } from '../core/index.js';
import { silentLogger, type Logger } from '../observe/index.js';
import {
  createStar,
  exec,
  execCheck,
  ifaceCounters,
  inNetns,
  parseRate,
  pushImage,
  shape,
  startContainerd,
  unmountUnder,
  type Containerd,
  type Star,
} from './env/index.js';
import { DRIVERS, modeAvailability, peerTraffic, type NodeEnv, type PreparedNode, type RunEnv } from './modes.js';
import { cpuMs, ferryBin, projectRoot, type ManagedProcess } from './procs.js';
import { startBenchRegistry, type BenchRegistry } from './registry.js';
import { seededRandom, shuffle, summarize } from './stats.js';
import {
  ALL_MODES,
  MODE_LABELS,
  P2P_MODES,
  type BenchResults,
  type GroupSummary,
  type MachineInfo,
  type ModeId,
  type ModeStatus,
  type NodeResult,
  type RunResult,
  type WorkloadInfo,
} from './types.js';
import { WORKLOADS, findWorkload, prepareWorkloadImage, type Workload } from './workloads.js';

export interface BenchOptions {
  workloads?: string[];
  modes?: ModeId[];
  nodes?: number[];
  bandwidth?: string;
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
  /** Per-node timeout of one run (ms); default 10 min. */
  runTimeoutMs?: number;
  /** Registry implementation; default ferry (falls back to docker-registry). */
  registry?: 'ferry' | 'distribution';
  /** Stops after the current run (results so far are kept, everything is cleaned up). */
  signal?: AbortSignal;
}

/** `warmup`: an unmeasured run before the plan (lazy-trace records its trace in one). */
interface PlannedRun {
  workload: Workload;
  info: WorkloadInfo;
  mode: ModeId;
  nodes: number;
  rep: number;
  warmup?: boolean;
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

export interface PreparedImages {
  infos: WorkloadInfo[];
  notes: string[];
  nydusOk: boolean;
}

/** Pushes each workload's OCI image, and converts it to Nydus (plain and with a prefetch table) when needed. */
async function publishImages(
  workloads: Workload[],
  reg: BenchRegistry,
  star: Star,
  dir: string,
  wantNydus: boolean,
  wantTrace: boolean,
  log: Logger,
): Promise<PreparedImages> {
  const notes: string[] = [];
  const infos: WorkloadInfo[] = [];
  const pushNs = star.nodes[0]!.netns;
  let nydusOk = wantNydus;
  const dockerConfig = join(dir, 'docker');
  await mkdir(dockerConfig, { recursive: true });
  if (reg.creds) {
    const auth = Buffer.from(`${reg.creds.username}:${reg.creds.password}`).toString('base64');
    await writeFile(join(dockerConfig, 'config.json'), JSON.stringify({ auths: { [reg.host]: { auth } } }));
  }
  for (const w of workloads) {
    const built = await prepareWorkloadImage(w, log);
    const ociRef = `${reg.host}/library/bench-${w.id}:oci`;
    await pushImage(built.layoutDir, ociRef, { netns: pushNs, ...(reg.creds ? { creds: reg.creds } : {}) });
    const info: WorkloadInfo = {
      id: w.id,
      title: w.title,
      command: w.command,
      ready: w.ready,
      ociRef,
      imageBytes: built.compressedSize,
      uncompressedBytes: built.uncompressedSize,
    };
    if (nydusOk) {
      const env = { ...process.env, DOCKER_CONFIG: dockerConfig };
      const target = `${reg.host}/library/bench-${w.id}:nydus`;
      const creds = reg.creds
        ? ['--source-creds', `${reg.creds.username}:${reg.creds.password}`, '--target-creds', `${reg.creds.username}:${reg.creds.password}`]
        : [];
      const r = await exec(
        process.execPath,
        [
          ferryBin(),
          'convert',
          '--source',
          ociRef,
          '--target',
          target,
          '--source-plain-http',
          '--target-plain-http',
          '--cache',
          join(dir, 'convert-cache.db'),
          ...creds,
        ],
        { netns: pushNs, env, timeoutMs: 30 * 60_000 },
      );
      if (r.code !== 0) {
        nydusOk = false;
        notes.push(`ferry convert failed for ${w.id}: ${(r.stderr || r.stdout).trim().split('\n').slice(-2).join(' ')}`);
      } else {
        info.nydusRef = target;
        const pf = join(dir, `prefetch-${w.id}.txt`);
        await writeFile(pf, `${w.prefetch.join('\n')}\n`);
        const ptarget = `${reg.host}/library/bench-${w.id}:nydus-prefetch`;
        const r2 = await exec(
          process.execPath,
          [
            ferryBin(),
            'convert',
            '--source',
            ociRef,
            '--target',
            ptarget,
            '--source-plain-http',
            '--target-plain-http',
            '--cache',
            join(dir, 'convert-cache.db'),
            ...creds,
            '--prefetch-patterns',
            pf,
          ],
          { netns: pushNs, env, timeoutMs: 30 * 60_000 },
        );
        if (r2.code === 0) info.nydusPrefetchRef = ptarget;
        else
          notes.push(
            `ferry convert --prefetch-patterns failed for ${w.id}: ${(r2.stderr || r2.stdout).trim().split('\n').slice(-1).join(' ')}`,
          );
        if (wantTrace) {
          // its own repository: the trace (a referrer) must not reach the other lazy modes' pulls
          const ttarget = `${reg.host}/library/bench-${w.id}-trace:nydus`;
          const r3 = await exec(
            process.execPath,
            [
              ferryBin(),
              'convert',
              '--source',
              ociRef,
              '--target',
              ttarget,
              '--source-plain-http',
              '--target-plain-http',
              '--cache',
              join(dir, 'convert-cache.db'),
              ...creds,
            ],
            { netns: pushNs, env, timeoutMs: 30 * 60_000 },
          );
          if (r3.code === 0) info.nydusTraceRef = ttarget;
          else
            notes.push(
              `ferry convert for the trace image failed for ${w.id}: ${(r3.stderr || r3.stdout).trim().split('\n').slice(-1).join(' ')}`,
            );
        }
        info.nydusBytes = (await nydusSize(pushNs, reg, target).catch(() => undefined)) ?? 0;
        if (!info.nydusBytes) delete info.nydusBytes;
      }
    }
    infos.push(info);
  }
  return { infos, notes, nydusOk };
}

/** Sum of layer sizes of an image manifest (fetched with skopeo inside the namespace). */
async function nydusSize(netns: string, reg: BenchRegistry, ref: string): Promise<number> {
  const args = [
    'inspect',
    '--raw',
    '--tls-verify=false',
    ...(reg.creds ? [`--creds=${reg.creds.username}:${reg.creds.password}`] : []),
    `docker://${ref}`,
  ];
  const raw = JSON.parse(await execCheck('skopeo', args, { netns })) as { layers?: Array<{ size: number }> };
  return (raw.layers ?? []).reduce((a, l) => a + l.size, 0);
}

function groupKey(w: string, m: ModeId, n: number): string {
  return `${w}|${m}|${n}`;
}

export function summarizeRuns(runs: RunResult[], infos: WorkloadInfo[]): GroupSummary[] {
  const groups = new Map<string, RunResult[]>();
  for (const r of runs) {
    const k = groupKey(r.workload, r.mode, r.nodes);
    groups.set(k, [...(groups.get(k) ?? []), r]);
  }
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
      nodes: first.nodes,
      runs: rs.length,
      failures: rs.length - ok.length,
      readyMs: summarize(nodesOk.map((n) => n.readyMs)),
      allReadyMs: summarize(ok.map((r) => r.allReadyMs)),
      pullMs: summarize(nodesOk.map((n) => n.pullMs)),
      createMs: summarize(nodesOk.map((n) => n.createMs)),
      runMs: summarize(nodesOk.map((n) => n.runMs)),
      registryBytes: summarize(regBytes),
      registryIfaceBytes: summarize(ok.map((r) => r.registryIfaceBytes)),
      nodeRxBytes: summarize(nodesOk.map((n) => n.rxBytes)),
      ferryCpuMs: summarize(nodesOk.map((n) => n.ferryCpuMs)),
      lazyBytesFetched: summarize(nodesOk.filter((n) => n.lazyBytesFetched !== undefined).map((n) => n.lazyBytesFetched!)),
      registryBytesPerImage: info && info.imageBytes > 0 ? summarize(regBytes).median / info.imageBytes : NaN,
      speedup: null,
    });
  }
  for (const g of out) {
    const base = out.find((b) => b.workload === g.workload && b.nodes === g.nodes && b.mode === 'oci');
    const metric = (x: GroupSummary): number => (g.nodes > 1 ? x.allReadyMs.median : x.readyMs.median);
    if (base && Number.isFinite(metric(base)) && Number.isFinite(metric(g)) && metric(g) > 0) g.speedup = metric(base) / metric(g);
  }
  return out;
}

/** Runs the benchmark and returns its results (the caller writes the report). */
export async function runBench(opts: BenchOptions = {}): Promise<BenchResults> {
  const log = opts.log ?? silentLogger();
  const quick = opts.quick ?? false;
  const startedAt = new Date().toISOString();
  const commit = gitCommit(); // now: the tree may move on while a long run goes
  const workloads = (
    opts.workloads ?? (quick ? WORKLOADS.filter((w) => w.quick).map((w) => w.id) : ['echo', 'python', 'http', 'redis', 'large'])
  ).map(findWorkload);
  const modes = opts.modes ?? ALL_MODES;
  for (const m of modes)
    if (!ALL_MODES.includes(m)) throw new FerryError('INVALID_ARGUMENT', `unknown mode ${m} (known: ${ALL_MODES.join(', ')})`);
  const nodesList = [...new Set(opts.nodes ?? (quick ? [1, 2] : [1, 2, 4, 8]))].sort((a, b) => a - b);
  if (nodesList.some((n) => !Number.isInteger(n) || n < 1 || n > 32))
    throw new FerryError('INVALID_ARGUMENT', 'nodes must be integers 1..32');
  const repeat = opts.repeat ?? (quick ? 1 : 5);
  const bandwidth = opts.bandwidth ?? '100mbit';
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

  const star = await createStar({ prefix: `fb${randomBytes(2).toString('hex')}`, nodes: Math.max(...nodesList), extras: 2 });
  let reg: BenchRegistry | undefined;
  const runs: RunResult[] = [];
  let infos: WorkloadInfo[] = [];
  try {
    const started = await startBenchRegistry({
      netns: star.registry.netns,
      ip: star.registry.ip,
      dir: join(workDir, 'registry'),
      prefer: opts.registry ?? 'ferry',
      log,
    });
    reg = started.registry;
    if (started.note) notes.push(started.note);
    opts.onProgress?.(0, 1, 'building and publishing images');
    const wantNydus = runModes().some((m) => m.startsWith('lazy'));
    const pub = await publishImages(workloads, reg, star, workDir, wantNydus, runModes().includes('lazy-trace'), log);
    infos = pub.infos;
    notes.push(...pub.notes);
    if (wantNydus && !pub.nydusOk) {
      for (const s of status) {
        if (s.status === 'run' && s.id.startsWith('lazy')) {
          s.status = 'not-run';
          s.reason = 'Nydus conversion failed (see notes)';
        }
      }
    }
    await shape(star.registry.dev, bandwidth, { netns: star.registry.netns });

    // lazy-trace: one unmeasured run per workload records what the container read and pushes it
    // as the image's prefetch trace; a workload whose warm-up fails is not run in that mode
    if (runModes().includes('lazy-trace')) {
      for (const info of infos) {
        if (!info.nydusTraceRef) continue;
        const w = workloads.find((x) => x.id === info.id)!;
        opts.onProgress?.(0, 1, `${w.id} · lazy-trace · warm-up (records the prefetch trace)`);
        const r = await runOne(
          { workload: w, info, mode: 'lazy-trace', nodes: 1, rep: 0, warmup: true },
          star,
          reg,
          join(workDir, `warmup-${w.id}`),
          log,
          opts.runTimeoutMs ?? 240_000,
        );
        if (!r.ok) {
          notes.push(`lazy-trace warm-up failed for ${w.id}: ${(r.error ?? '').slice(0, 300)}`);
          delete info.nydusTraceRef;
        }
      }
    }

    // plan: every repetition runs each (workload, N) group once per mode, modes shuffled
    const rnd = seededRandom(seed);
    const plan: PlannedRun[] = [];
    for (let rep = 1; rep <= repeat; rep++) {
      for (const w of workloads) {
        const info = infos.find((i) => i.id === w.id)!;
        for (const n of nodesList) {
          if (n > 1 && !fanout.has(w.id)) continue;
          // P2P modes only where nodes share (fan-out workloads); at N > 1 the two baselines and the two P2P modes
          const ms = runModes()
            .filter((m) => (P2P_MODES.includes(m) ? fanout.has(w.id) : n === 1 || m === 'oci' || m === 'lazy-erofs'))
            .filter((m) => DRIVERS[m].ref(info) !== undefined);
          for (const m of shuffle(ms, rnd)) plan.push({ workload: w, info, mode: m, nodes: n, rep });
        }
      }
    }
    for (const s of status) {
      if (s.status === 'run' && !plan.some((p) => p.mode === s.id)) {
        s.status = 'not-run';
        s.reason = s.reason ?? 'no image prepared for this mode';
      }
    }
    let done = 0;
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
      opts.onProgress?.(done, plan.length, `${p.workload.id} · ${p.mode} · N=${p.nodes} · rep ${p.rep}/${repeat}`);
      // per-node time limit: 4 min, or 3× the time the whole image takes for N nodes through the link
      const linkMs = ((p.info.imageBytes * 8 * p.nodes) / parseRate(bandwidth)) * 1000;
      const r = await runOne(p, star, reg, join(workDir, `run-${done}`), log, opts.runTimeoutMs ?? Math.max(240_000, 3 * linkMs));
      runs.push(r);
      if (!r.ok) log.warn({ workload: r.workload, mode: r.mode, nodes: r.nodes, error: r.error }, 'run failed');
      // a component that cannot even start makes the mode "not run" (its remaining runs are skipped)
      const modeRuns = runs.filter((x) => x.mode === p.mode);
      if (!r.ok && !modeRuns.some((x) => x.ok) && (r.error?.startsWith('setup: ') || modeRuns.length >= 3)) {
        const why = r.error?.startsWith('setup: ')
          ? `a Ferry component failed to start: ${r.error.slice(7, 400)}`
          : `its first ${modeRuns.length} runs failed: ${(r.error ?? '').slice(0, 400)}`;
        broken.set(p.mode, why);
        const st = status.find((x) => x.id === p.mode)!;
        st.status = 'not-run';
        st.reason = why;
      }
      done++;
      opts.onProgress?.(
        done,
        plan.length,
        `${p.workload.id} · ${p.mode} · N=${p.nodes} · ${r.ok ? `${(r.allReadyMs / 1000).toFixed(2)} s` : 'FAILED'}`,
      );
    }
  } finally {
    await reg?.close().catch(() => undefined);
    await star.destroy();
    await unmountUnder(workDir).catch(() => undefined);
    await rm(workDir, { recursive: true, force: true }).catch(() => undefined);
  }
  notes.push(
    `load average (1 min) at start ${load0.toFixed(2)}, at end ${loadavg()[0]!.toFixed(2)} on ${cpus().length} cores (other work on the machine inflates CPU-bound phases)`,
  );
  return {
    schema: 'ferry-bench/v1',
    startedAt,
    finishedAt: new Date().toISOString(),
    gitCommit: commit,
    machine: machineInfo(),
    settings: { bandwidth, repeat, nodes: nodesList, quick, registry: reg?.kind ?? 'none', seed },
    modes: status,
    workloads: infos,
    runs,
    summary: summarizeRuns(runs, infos),
    notes,
  };
}

async function runOne(p: PlannedRun, star: Star, reg: BenchRegistry, dir: string, log: Logger, timeoutMs: number): Promise<RunResult> {
  const driver = DRIVERS[p.mode];
  const ref = driver.ref(p.info)!;
  const result: RunResult = {
    workload: p.workload.id,
    mode: p.mode,
    nodes: p.nodes,
    rep: p.rep,
    startedAt: new Date().toISOString(),
    ok: false,
    registryBlobBytes: null,
    registryIfaceBytes: 0,
    allReadyMs: NaN,
    serviceCpuMs: 0,
    perNode: [],
  };
  const env: RunEnv = { registry: reg, star, dir, log };
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
    const regBlob0 = await reg.blobBytesServed();
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
        } catch (err) {
          r.error = (err as Error).message.slice(0, 500);
        }
        return r;
      }),
    );
    const regIf1 = await ifaceCounters(star.registry.dev, star.registry.netns);
    const regBlob1 = await reg.blobBytesServed();
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
    result.registryBlobBytes = regBlob0 !== null && regBlob1 !== null ? regBlob1 - regBlob0 : null;
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
  const { readdir } = await import('node:fs/promises');
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
