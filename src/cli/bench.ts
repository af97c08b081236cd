/**
 * @module cli/bench
 * `ferry bench [--workloads …] [--modes …] [--nodes 1,2,4,8] [--bandwidth 100mbit,20mbit]
 * [--registry ferry,distribution] [--repeat 5] [--out DIR] [--quick]`: runs the start-up/distribution
 * benchmark and writes its report.
 */
import { Command, InvalidArgumentError } from 'commander';
import cliProgress from 'cli-progress';
import {
  ALL_MODES,
  ALL_REGISTRIES,
  PULL_CLIENTS,
  WORKLOADS,
  runBench,
  writeReport,
  type ModeId,
  type PullClient,
  type RegistryKind,
} from '../bench/index.js';
import { createLogger } from '../observe/index.js';

function list(v: string): string[] {
  return v
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
}

function nodesList(v: string): number[] {
  const out = list(v).map(Number);
  if (out.some((n) => !Number.isInteger(n) || n < 1 || n > 32))
    throw new InvalidArgumentError('nodes must be integers 1..32, e.g. 1,2,4,8');
  return out;
}

export async function run(argv: string[]): Promise<number> {
  const program = new Command('ferry bench')
    .description('HelloBench-style cold-start benchmark: OCI vs Ferry lazy loading vs Ferry P2P, with an HTML report')
    .option('--workloads <list>', `comma-separated workloads (${WORKLOADS.map((w) => w.id).join(', ')})`, list)
    .option('--modes <list>', `comma-separated modes (${ALL_MODES.join(', ')})`, list)
    .option('--nodes <list>', 'node counts for the fan-out runs, e.g. 1,2,4,8', nodesList)
    .option('--fanout <list>', 'workloads that also run at N > 1 (default python; with --quick the first workload)', list)
    .option(
      '--bandwidth <list>',
      'registry link profiles (tc tbf rates); N > 1 runs use the first (default 100mbit; e.g. 100mbit,20mbit)',
      list,
    )
    .option('--repeat <n>', 'repetitions per configuration', (v) => {
      const n = Number(v);
      if (!Number.isInteger(n) || n < 1 || n > 100) throw new InvalidArgumentError('repeat must be 1..100');
      return n;
    })
    .option('--out <dir>', 'report directory', 'bench-report')
    .option('--quick', 'small subset (tiny image, N ≤ 2, one repetition) that runs in a few minutes', false)
    .option('--no-png', 'skip the PNG screenshots (Chromium)')
    .option('--registry <list>', `registries serving runs side by side (${ALL_REGISTRIES.join(', ')}; default both)`, list)
    .option('--no-build-stargz', 'do not build the stargz snapshotter daemon (bench/estargz/build.sh) when it is missing')
    .option(
      '--ferry-pull-client <client>',
      `client pulling the Ferry lazy modes: ${PULL_CLIENTS.join(' or ')} (default ctr-remote, as the eStargz modes; oci-ref always uses ferry pull)`,
    )
    .option('--seed <n>', 'seed of the interleaving order', (v) => Number(v), 1)
    .option('--log-level <level>', 'log level of the harness (JSON logs on stderr)', 'warn')
    .exitOverride();
  try {
    program.parse(argv, { from: 'user' });
  } catch (err) {
    const code = (err as { exitCode?: number }).exitCode;
    return code ?? 2;
  }
  const o = program.opts<{
    workloads?: string[];
    modes?: string[];
    nodes?: number[];
    fanout?: string[];
    bandwidth?: string[];
    repeat?: number;
    out: string;
    quick: boolean;
    png: boolean;
    registry?: string[];
    buildStargz: boolean;
    ferryPullClient?: string;
    seed: number;
    logLevel: string;
  }>();
  for (const m of o.modes ?? []) {
    if (!ALL_MODES.includes(m as ModeId)) {
      process.stderr.write(`ferry bench: unknown mode ${JSON.stringify(m)} (known: ${ALL_MODES.join(', ')})\n`);
      return 2;
    }
  }
  for (const r of o.registry ?? []) {
    if (!ALL_REGISTRIES.includes(r as RegistryKind)) {
      process.stderr.write(`ferry bench: unknown registry ${JSON.stringify(r)} (known: ${ALL_REGISTRIES.join(', ')})\n`);
      return 2;
    }
  }
  if (o.ferryPullClient !== undefined && !PULL_CLIENTS.includes(o.ferryPullClient as PullClient)) {
    process.stderr.write(`ferry bench: unknown pull client ${JSON.stringify(o.ferryPullClient)} (known: ${PULL_CLIENTS.join(', ')})\n`);
    return 2;
  }
  if (process.getuid?.() !== 0) {
    process.stderr.write('ferry bench: needs root (network namespaces, containerd, tc)\n');
    return 1;
  }
  const log = createLogger({ level: o.logLevel, name: 'bench' });
  const tty = process.stderr.isTTY;
  const bar = tty
    ? new cliProgress.SingleBar(
        {
          format: 'ferry bench |{bar}| {value}/{total} runs | {label}',
          hideCursor: true,
          stream: process.stderr,
        },
        cliProgress.Presets.shades_classic,
      )
    : undefined;
  let barStarted = false;
  const onProgress = (done: number, total: number, label: string): void => {
    if (bar) {
      if (!barStarted) {
        bar.start(total, done, { label });
        barStarted = true;
      }
      bar.setTotal(total);
      bar.update(done, { label });
    } else {
      process.stderr.write(`[${done}/${total}] ${label}\n`);
    }
  };
  const abort = new AbortController();
  let interrupts = 0;
  const onSignal = (): void => {
    interrupts++;
    if (interrupts > 1) process.exit(130);
    process.stderr.write('\nferry bench: stopping after the current run (press again to exit at once, leaving namespaces behind)\n');
    abort.abort();
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    const results = await runBench({
      signal: abort.signal,
      ...(o.workloads ? { workloads: o.workloads } : {}),
      ...(o.modes ? { modes: o.modes as ModeId[] } : {}),
      ...(o.nodes ? { nodes: o.nodes } : {}),
      ...(o.fanout ? { fanoutWorkloads: o.fanout } : {}),
      ...(o.repeat !== undefined ? { repeat: o.repeat } : {}),
      ...(o.bandwidth ? { bandwidths: o.bandwidth } : {}),
      ...(o.registry ? { registries: o.registry as RegistryKind[] } : {}),
      ...(o.buildStargz ? {} : { buildStargz: false }),
      ...(o.ferryPullClient ? { pullClient: o.ferryPullClient as PullClient } : {}),
      quick: o.quick,
      seed: o.seed,
      log,
      onProgress,
    });
    bar?.stop();
    const rep = await writeReport(results, o.out, { png: o.png });
    process.stdout.write(`report: ${rep.html}\nsummary: ${rep.markdown}\nresults: ${rep.resultsJson}\n`);
    if (rep.pngError) process.stderr.write(`ferry bench: PNG charts not written: ${rep.pngError}\n`);
    const failed = results.runs.filter((r) => !r.ok).length;
    if (failed) process.stderr.write(`ferry bench: ${failed} of ${results.runs.length} runs failed (see the report's notes)\n`);
    return results.runs.length > 0 && failed === results.runs.length ? 1 : 0;
  } catch (err) {
    bar?.stop();
    process.stderr.write(`ferry bench: ${(err as Error).message}\n`);
    return 1;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}
