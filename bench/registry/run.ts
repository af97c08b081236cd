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
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { Agent, request } from 'node:http';
import { tmpdir, cpus } from 'node:os';
import { join } from 'node:path';
import { FERRY_BIN } from '../../test/support/paths.js';
import { parseSize } from '../../src/core/index.js';
import { startDistributionRegistry } from '../../src/bench/env/index.js';

interface Target {
  name: string;
  url: string;
  auth?: string;
  close(): Promise<void>;
}

interface Cell {
  server: string;
  op: 'GET' | 'PUT';
  concurrency: number;
  requests: number;
  bytes: number;
  seconds: number;
  mibPerSec: number;
  reqPerSec: number;
  p50ms: number;
  p99ms: number;
  errors: number;
}

function arg(name: string, def: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1]! : def;
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

function call(
  agent: Agent,
  url: string,
  method: string,
  headers: Record<string, string | number>,
  body?: Buffer,
): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; bytes: number }> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method, agent, headers }, (res) => {
      let bytes = 0;
      res.on('data', (c: Buffer) => {
        bytes += c.length;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, bytes }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

async function pushBlob(agent: Agent, t: Target, repo: string, data: Buffer, digest: string): Promise<void> {
  const auth: Record<string, string> = t.auth ? { authorization: t.auth } : {};
  const r1 = await call(agent, `${t.url}/v2/${repo}/blobs/uploads/`, 'POST', { ...auth, 'content-length': 0 });
  if (r1.status !== 202) throw new Error(`${t.name} POST ${r1.status}`);
  const loc = new URL(String(r1.headers.location), t.url);
  loc.searchParams.set('digest', digest);
  const r2 = await call(
    agent,
    loc.href,
    'PUT',
    { ...auth, 'content-type': 'application/octet-stream', 'content-length': data.length },
    data,
  );
  if (r2.status !== 201) throw new Error(`${t.name} PUT ${r2.status}`);
}

async function runCell(
  t: Target,
  op: 'GET' | 'PUT',
  concurrency: number,
  seconds: number,
  size: number,
  getDigests: string[],
): Promise<Cell> {
  const agent = new Agent({ keepAlive: true, maxSockets: concurrency });
  const lat: number[] = [];
  let bytes = 0;
  let errors = 0;
  let counter = 0;
  const base = randomBytes(size);
  const auth: Record<string, string> = t.auth ? { authorization: t.auth } : {};
  const start = performance.now();
  const end = start + seconds * 1000;
  const worker = async (w: number): Promise<void> => {
    while (performance.now() < end) {
      const t0 = performance.now();
      try {
        if (op === 'GET') {
          const d = getDigests[(counter++ + w) % getDigests.length]!;
          const r = await call(agent, `${t.url}/v2/bench/blobs/blobs/${d}`, 'GET', auth);
          if (r.status !== 200 || r.bytes !== size) throw new Error(`GET ${r.status} ${r.bytes}`);
          bytes += r.bytes;
        } else {
          const data = Buffer.from(base);
          data.writeUInt32LE(counter++, 0);
          data.writeUInt32LE(w, 4);
          data.writeDoubleLE(Math.random(), 8);
          const digest = `sha256:${createHash('sha256').update(data).digest('hex')}`;
          await pushBlob(agent, t, 'bench/put', data, digest);
          bytes += data.length;
        }
        lat.push(performance.now() - t0);
      } catch {
        errors++;
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, (_, w) => worker(w)));
  const secs = (performance.now() - start) / 1000;
  agent.destroy();
  lat.sort((a, b) => a - b);
  return {
    server: t.name,
    op,
    concurrency,
    requests: lat.length,
    bytes,
    seconds: secs,
    mibPerSec: bytes / 1024 / 1024 / secs,
    reqPerSec: lat.length / secs,
    p50ms: percentile(lat, 50),
    p99ms: percentile(lat, 99),
    errors,
  };
}

/** Debian's docker-registry with our own config (shared launcher; access log off, like ferry). */
async function startReference(dir: string): Promise<Target> {
  const d = await startDistributionRegistry({ dir });
  return { name: 'docker-registry', url: d.url, close: () => d.close() };
}

async function startFerry(dir: string): Promise<Target> {
  const password = 'BenchAdmin1';
  const child: ChildProcess = spawn(
    process.execPath,
    [FERRY_BIN, 'registry', '--listen', '127.0.0.1:0', '--data', dir, '--admin-password', password],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, FERRY_LOG_LEVEL: 'warn' },
    },
  );
  const url = await new Promise<string>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /listening on (http:\/\/\S+)/.exec(out);
      if (m) resolve(m[1]!);
    });
    child.on('exit', (c) => reject(new Error(`ferry registry exited ${c}`)));
  });
  child.stderr!.resume();
  return {
    name: 'ferry',
    url,
    auth: `Basic ${Buffer.from(`admin:${password}`).toString('base64')}`,
    close: () =>
      new Promise((r) => {
        child.once('exit', () => r());
        child.kill('SIGTERM');
      }),
  };
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
    const median = (xs: number[]): number => {
      const s2 = [...xs].sort((a, b) => a - b);
      const m = Math.floor(s2.length / 2);
      return s2.length % 2 ? s2[m]! : (s2[m - 1]! + s2[m]!) / 2;
    };
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
