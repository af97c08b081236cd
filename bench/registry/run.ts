/**
 * Registry throughput benchmark: blob GET and blob PUT (POST + monolithic PUT) of `ferry registry`
 * against Debian's `docker-registry` (CNCF distribution 2.8, filesystem storage, no auth) side by
 * side in one run, with 1, 16 and 64 concurrent keep-alive clients on loopback. Both servers run
 * as their own processes; the same load generator drives both, alternating which goes first.
 *
 * Each cell runs `--repeat` times per server, interleaved (A B A B …) so load from other processes
 * on the machine hits both alike; the table reports medians.
 *
 *   node dist/bench/registry/run.js [--seconds 3] [--repeat 2] [--size 1MiB] [--concurrency 1,16,64] [--out FILE.json]
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { Agent } from 'node:http';
import { tmpdir, cpus } from 'node:os';
import { join } from 'node:path';
import { parseSize } from '../../src/core/index.js';
import { startDistributionRegistry } from '../../src/bench/env/index.js';
import { median, pushBlob, runCell, startFerry, type Cell, type Target } from './load.js';

function arg(name: string, def: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1]! : def;
}

/** Debian's docker-registry with our own config (shared launcher; access log off, like ferry). */
async function startReference(dir: string): Promise<Target> {
  const d = await startDistributionRegistry({ dir });
  return { name: 'docker-registry', url: d.url, close: () => d.close() };
}

async function main(): Promise<void> {
  const seconds = Number(arg('seconds', '3'));
  const size = parseSize(arg('size', '1MiB'));
  const concs = arg('concurrency', '1,16,64').split(',').map(Number);
  const repeat = Math.max(1, Number(arg('repeat', '2')));
  const out = arg('out', '');
  const work = await mkdtemp(join(tmpdir(), 'ferry-bench-registry-'));
  const targets: Target[] = [];
  try {
    targets.push(await startReference(join(work, 'ref')));
    targets.push(await startFerry(join(work, 'ferry')));

    // Blobs for the GET runs, the same bytes in both.
    const getBlobs = Array.from({ length: 16 }, () => randomBytes(size));
    const getDigests = getBlobs.map((b) => `sha256:${createHash('sha256').update(b).digest('hex')}`);
    for (const t of targets) {
      const agent = new Agent({ keepAlive: true });
      for (let i = 0; i < getBlobs.length; i++) await pushBlob(agent, t, 'bench/blobs', getBlobs[i]!, getDigests[i]!);
      agent.destroy();
    }

    const cells: Cell[] = [];
    let flip = false;
    for (const op of ['GET', 'PUT'] as const) {
      for (const c of concs) {
        for (let i = 0; i < repeat; i++) {
          const order = flip ? [...targets].reverse() : targets;
          flip = !flip;
          for (const t of order) {
            const cell = await runCell(t, op, c, seconds, size, getDigests);
            cells.push(cell);
            process.stderr.write(
              `${op} c=${c} ${t.name}: ${cell.mibPerSec.toFixed(1)} MiB/s, p99 ${cell.p99ms.toFixed(1)} ms, errors ${cell.errors}\n`,
            );
          }
        }
      }
    }
    const pick = (op: string, c: number, server: string): { mib: number; p99: number } => {
      const xs = cells.filter((x) => x.op === op && x.concurrency === c && x.server === server);
      return { mib: median(xs.map((x) => x.mibPerSec)), p99: median(xs.map((x) => x.p99ms)) };
    };
    const rows: string[] = [];
    rows.push(`| op | clients | docker-registry MiB/s | ferry MiB/s | ratio | docker-registry p99 ms | ferry p99 ms |`);
    rows.push('|---|---|---|---|---|---|---|');
    for (const op of ['GET', 'PUT'] as const) {
      for (const c of concs) {
        const r = pick(op, c, 'docker-registry');
        const f = pick(op, c, 'ferry');
        rows.push(
          `| ${op} | ${c} | ${r.mib.toFixed(1)} | ${f.mib.toFixed(1)} | ${(f.mib / r.mib).toFixed(2)} | ${r.p99.toFixed(1)} | ${f.p99.toFixed(1)} |`,
        );
      }
    }
    const header = `registry bench ${new Date().toISOString()}, blob size ${size} B, ${seconds} s per cell, median of ${repeat}, ${cpus().length} CPUs (${cpus()[0]?.model ?? '?'}), node ${process.version}`;
    process.stdout.write(`${header}\n\n${rows.join('\n')}\n`);
    if (out) await writeFile(out, JSON.stringify({ header, size, seconds, repeat, cells }, null, 2));
  } finally {
    for (const t of targets) await t.close().catch(() => undefined);
    await rm(work, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench failed: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
