/**
 * @module registry/console-bench
 * The console's bench page: the newest `ferry bench` report (`results.json`, schema ferry-bench/v2)
 * in console.benchDir or one directory below it, newest by its `finishedAt`. Only the fields the
 * page shows are read, through a schema; a file that does not match is skipped and named on the page.
 */
import { readFile, readdir } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { z } from 'zod';
import type { BenchReportView } from '../console/index.js';

const RESULTS = 'results.json';
/** Subdirectories of benchDir looked at (bounded). */
const MAX_DIRS = 500;

const median = z.object({ median: z.number() });
const resultsSchema = z.object({
  schema: z.literal('ferry-bench/v2'),
  startedAt: z.string(),
  finishedAt: z.string(),
  gitCommit: z.string(),
  machine: z.object({
    cpuModel: z.string(),
    cores: z.number(),
    memoryGiB: z.number(),
    os: z.string(),
    kernel: z.string(),
    node: z.string(),
  }),
  settings: z.object({ bandwidths: z.array(z.string()), repeat: z.number(), nodes: z.array(z.number()), registries: z.array(z.string()) }),
  modes: z.array(z.object({ id: z.string(), label: z.string(), status: z.string(), reason: z.string().optional() })),
  summary: z.array(
    z.object({
      workload: z.string(),
      mode: z.string(),
      registry: z.string(),
      bandwidth: z.string(),
      nodes: z.number(),
      runs: z.number(),
      failures: z.number(),
      readyMs: median,
      registryBytes: median,
      registryBytesPerImage: z.number(),
      speedup: z.number().nullable(),
    }),
  ),
  notes: z.array(z.string()),
});
type Results = z.output<typeof resultsSchema>;

/** `results.json` in `dir` and in its subdirectories. */
async function candidates(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { withFileTypes: true });
  const out = entries.some((e) => e.isFile() && e.name === RESULTS) ? [join(dir, RESULTS)] : [];
  for (const e of entries.filter((x) => x.isDirectory()).slice(0, MAX_DIRS)) out.push(join(dir, e.name, RESULTS));
  return out;
}

function view(dir: string, file: string, r: Results, skipped: string[]): BenchReportView {
  const label = new Map(r.modes.map((m) => [m.id, m.label]));
  const m = r.machine;
  return {
    configured: true,
    name: relative(dir, join(file, '..')) || '.',
    startedAt: r.startedAt,
    finishedAt: r.finishedAt,
    gitCommit: r.gitCommit,
    machine: `${m.cpuModel}, ${m.cores} cores, ${m.memoryGiB} GiB, ${m.os}, kernel ${m.kernel}, Node ${m.node}`,
    settings: `links ${r.settings.bandwidths.join(', ')}; nodes ${r.settings.nodes.join(', ')}; repeat ${r.settings.repeat}; registries ${r.settings.registries.join(', ')}`,
    modes: r.modes.map((x) => ({ label: x.label, run: x.status === 'run', reason: x.reason ?? '' })),
    rows: r.summary.map((g) => ({
      workload: g.workload,
      registry: g.registry,
      bandwidth: g.bandwidth,
      nodes: g.nodes,
      mode: label.get(g.mode) ?? g.mode,
      runs: g.runs,
      failures: g.failures,
      readyMedianMs: g.readyMs.median,
      registryBytesMedian: g.registryBytes.median,
      registryBytesPerImage: g.registryBytesPerImage,
      speedup: g.speedup,
    })),
    notes: r.notes,
    skipped,
  };
}

/** The newest report under `dir` (undefined dir: not configured). */
export async function latestBenchReport(dir: string | undefined): Promise<BenchReportView> {
  const none: BenchReportView = { configured: dir !== undefined, modes: [], rows: [], notes: [], skipped: [] };
  if (dir === undefined) return none;
  let files: string[];
  try {
    files = await candidates(dir);
  } catch (err) {
    return { ...none, skipped: [`${dir}: ${(err as Error).message}`] };
  }
  const skipped: string[] = [];
  let best: { file: string; r: Results } | undefined;
  for (const file of files) {
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch {
      continue; // a subdirectory without a report
    }
    let parsed: ReturnType<typeof resultsSchema.safeParse>;
    try {
      parsed = resultsSchema.safeParse(JSON.parse(text));
    } catch {
      skipped.push(`${relative(dir, file)}: not JSON`);
      continue;
    }
    if (!parsed.success) {
      const first = parsed.error.issues[0];
      skipped.push(
        `${relative(dir, file)}: not a ferry-bench/v2 report (${first?.path.join('.') || 'root'}: ${first?.message ?? 'invalid'})`,
      );
      continue;
    }
    if (!best || parsed.data.finishedAt > best.r.finishedAt) best = { file, r: parsed.data };
  }
  return best ? view(dir, best.file, best.r, skipped) : { ...none, skipped };
}
