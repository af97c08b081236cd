/**
 * Registry scale-out benchmark: blob GET and PUT throughput of `ferry registry` on its embedded
 * default (SQLite + a local directory, one process) against PostgreSQL + S3 (a private PostgreSQL
 * 15 and radosgw on this machine) with one replica and with two replicas behind a round-robin
 * client. All in one run, cells interleaved, medians reported with ratios against SQLite + dir.
 * GETs are served by the replicas (no redirect), so the numbers show what proxying bytes costs.
 *
 *   node dist/bench/registry/replicas.js [--seconds 3] [--repeat 2] [--size 1MiB] [--concurrency 1,16] [--out FILE.json]
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { Agent } from 'node:http';
import { cpus, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseSize } from '../../src/core/index.js';
import { startPostgres } from '../../test/support/postgres.js';
import { startRadosgw } from '../../test/support/ceph.js';
import { median, pushBlob, runCell, startFerry, type Cell, type Target } from './load.js';

process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';

function arg(name: string, def: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1]! : def;
}

async function main(): Promise<void> {
  const seconds = Number(arg('seconds', '3'));
  const size = parseSize(arg('size', '1MiB'));
  const concs = arg('concurrency', '1,16').split(',').map(Number);
  const repeat = Math.max(1, Number(arg('repeat', '2')));
  const out = arg('out', '');
  const work = await mkdtemp(join(tmpdir(), 'ferry-bench-replicas-'));
  const [db, s3] = await Promise.all([startPostgres(), startRadosgw({ bucket: 'bench' })]);
  const started: Target[] = [];
  try {
    const u = new URL(db.url);
    u.password = '';
    const configPath = join(work, 'pg-s3.json');
    await writeFile(
      configPath,
      JSON.stringify({
        database: { postgres: { url: u.toString(), password_env: 'FERRY_BENCH_DB_PASSWORD' } },
        storage: { s3: { bucket: s3.bucket, endpoint: s3.endpoint, region: s3.region } },
        tokenKey: join(work, 'token-key.jwk'),
      }),
    );
    const env = { FERRY_BENCH_DB_PASSWORD: db.password, AWS_ACCESS_KEY_ID: s3.accessKeyId, AWS_SECRET_ACCESS_KEY: s3.secretAccessKey };
    const local = await startFerry(join(work, 'local'), { name: 'sqlite+dir' });
    started.push(local);
    const a = await startFerry(join(work, 'a'), { name: 'pg+s3 A', configPath, env });
    started.push(a);
    const b = await startFerry(join(work, 'b'), { name: 'pg+s3 B', configPath, env });
    started.push(b);
    const targets: Target[] = [local, { ...a, name: 'pg+s3 x1' }, { ...a, name: 'pg+s3 x2', urls: [a.url, b.url] }];

    const getBlobs = Array.from({ length: 16 }, () => randomBytes(size));
    const getDigests = getBlobs.map((x) => `sha256:${createHash('sha256').update(x).digest('hex')}`);
    for (const t of [local, a]) {
      const agent = new Agent({ keepAlive: true });
      for (let i = 0; i < getBlobs.length; i++) await pushBlob(agent, t, 'bench/blobs', getBlobs[i]!, getDigests[i]!);
      agent.destroy();
    }

    const cells: Cell[] = [];
    let rot = 0;
    for (const op of ['GET', 'PUT'] as const) {
      for (const c of concs) {
        for (let i = 0; i < repeat; i++) {
          const order = targets.map((_, k) => targets[(k + rot) % targets.length]!);
          rot++;
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
    const pick = (op: string, c: number, server: string): { mib: number; p99: number; errors: number } => {
      const xs = cells.filter((x) => x.op === op && x.concurrency === c && x.server === server);
      return { mib: median(xs.map((x) => x.mibPerSec)), p99: median(xs.map((x) => x.p99ms)), errors: xs.reduce((n, x) => n + x.errors, 0) };
    };
    const rows = [
      '| op | clients | sqlite+dir MiB/s | pg+s3 x1 MiB/s | x1 / sqlite | pg+s3 x2 MiB/s | x2 / sqlite | x2 / x1 | p99 ms (sqlite / x1 / x2) | errors |',
      '|---|---|---|---|---|---|---|---|---|---|',
    ];
    for (const op of ['GET', 'PUT'] as const) {
      for (const c of concs) {
        const l = pick(op, c, 'sqlite+dir');
        const x1 = pick(op, c, 'pg+s3 x1');
        const x2 = pick(op, c, 'pg+s3 x2');
        rows.push(
          `| ${op} | ${c} | ${l.mib.toFixed(1)} | ${x1.mib.toFixed(1)} | ${(x1.mib / l.mib).toFixed(2)} | ${x2.mib.toFixed(1)} | ` +
            `${(x2.mib / l.mib).toFixed(2)} | ${(x2.mib / x1.mib).toFixed(2)} | ${l.p99.toFixed(0)} / ${x1.p99.toFixed(0)} / ${x2.p99.toFixed(0)} | ` +
            `${l.errors + x1.errors + x2.errors} |`,
        );
      }
    }
    const header = `registry replicas bench ${new Date().toISOString()}, blob size ${size} B, ${seconds} s per cell, median of ${repeat}, ${cpus().length} CPUs (${cpus()[0]?.model ?? '?'}), node ${process.version}; PostgreSQL ${db.version} and radosgw on the same machine`;
    process.stdout.write(`${header}\n\n${rows.join('\n')}\n`);
    if (out) await writeFile(out, JSON.stringify({ header, size, seconds, repeat, cells }, null, 2));
  } finally {
    for (const t of started) await t.close().catch(() => undefined);
    await s3.stop();
    await db.stop();
    await rm(work, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench failed: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
