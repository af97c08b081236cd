/**
 * P2P distribution benchmark: N = 1, 2, 4, 8 nodes, each in its own network namespace, the
 * registry (ferry registry) behind a 100 Mbit tbf link, every node pulling the same image (all its
 * blobs, concurrently) at the same moment — once straight from the registry, once through a
 * `ferry peer` on each node (with a scheduler and a seed peer in their own namespaces). Reports
 * registry egress (its blob-byte counter and its interface tx bytes) and the time until every node
 * is done. Clients are `curl` in both modes (through the peer's proxy in the P2P mode).
 *
 *   node dist/bench/p2p/run.js [--nodes 1,2,4,8] [--layers 48MiB,16MiB] [--rate 100mbit] [--modes direct,p2p] [--max-tx BITS] [--out FILE.json]
 *
 * --max-tx: upload capacity every peer announces (default 10 Gbit/s); lower values make the
 * scheduler's load score spread children over peers instead of the seed.
 */
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { FERRY_BIN } from '../../test/support/paths.js';
import { buildOciImage, createStar, exec, execInNetns, ifaceCounters, pushImage, type Star } from '../../src/bench/env/index.js';
import { parseSize } from '../../src/core/index.js';
import { spawnFerry, type FerryProc } from '../../src/p2p/testing/procs.js';

function arg(name: string, def: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 && process.argv[i + 1] ? process.argv[i + 1]! : def;
}

const ADMIN = 'Bench-adm1n';

interface Row {
  nodes: number;
  mode: 'direct' | 'p2p';
  load1: number;
  agentCpuSeconds: number;
  seconds: number;
  slowest: number;
  fastest: number;
  registryBytes: number;
  uplinkBytes: number;
  imageBytes: number;
}

async function counter(netns: string, url: string, name: string): Promise<number> {
  const r = await execInNetns(netns, 'curl', ['-sf', url], { timeoutMs: 10_000 });
  const m = new RegExp(`^${name} ([0-9.e+]+)$`, 'm').exec(r.stdout);
  return m ? Number(m[1]) : 0;
}

/** utime + stime of processes, in seconds (from /proc/PID/stat). */
function cpuSeconds(pids: number[]): number {
  let ticks = 0;
  for (const pid of pids) {
    try {
      const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const rest = f.slice(f.lastIndexOf(')') + 2).split(' ');
      ticks += Number(rest[11]) + Number(rest[12]);
    } catch {
      /* gone */
    }
  }
  return ticks / 100;
}

async function pullAll(star: Star, urls: string[], proxy: boolean): Promise<{ seconds: number; perNode: number[] }> {
  const t0 = Date.now();
  const perNode = await Promise.all(
    star.nodes.map(async (n) => {
      await Promise.all(
        urls.map(async (u) => {
          const args = ['-sf', '-o', '/dev/null', ...(proxy ? ['-x', 'http://127.0.0.1:65001'] : []), u];
          const r = await execInNetns(n.netns, 'curl', args, { timeoutMs: 600_000 });
          if (r.code !== 0) throw new Error(`curl ${u} in ${n.netns} failed (${r.code}): ${r.stderr}`);
        }),
      );
      return (Date.now() - t0) / 1000;
    }),
  );
  return { seconds: (Date.now() - t0) / 1000, perNode };
}

async function runN(n: number, layerSizes: number[], rate: string, work: string, modes: ('direct' | 'p2p')[]): Promise<Row[]> {
  const star = await createStar({ prefix: `bp${randomBytes(2).toString('hex')}`, nodes: n, extras: 2, registryRate: rate });
  const procs: FerryProc[] = [];
  try {
    const reg = star.registry;
    procs.push(
      await spawnFerry(FERRY_BIN, ['registry', '--listen', `${reg.ip}:5000`, '--data', join(work, `reg${n}`), '--admin-password', ADMIN], {
        netns: reg.netns,
        ready: /listening/,
      }),
    );
    const layers = layerSizes.map((size, i) => {
      const d = join(work, `n${n}-layer${i}`);
      mkdirSync(d, { recursive: true });
      writeFileSync(join(d, `data${i}.bin`), randomBytes(size));
      return d;
    });
    const img = await buildOciImage({ layers, outDir: join(work, `oci${n}`) });
    await pushImage(img.layoutDir, `${reg.ip}:5000/library/bench:v1`, { creds: `admin:${ADMIN}`, netns: reg.netns });
    const man = JSON.parse(
      (
        await execInNetns(reg.netns, 'curl', [
          '-sf',
          '-H',
          'Accept: application/vnd.oci.image.manifest.v1+json',
          `http://${reg.ip}:5000/v2/library/bench/manifests/v1`,
        ])
      ).stdout,
    ) as { config: { digest: string; size: number }; layers: { digest: string; size: number }[] };
    const blobs = [man.config, ...man.layers];
    const imageBytes = blobs.reduce((a, b) => a + b.size, 0);
    const urls = blobs.map((b) => `http://${reg.ip}:5000/v2/library/bench/blobs/${b.digest}`);
    const metricsUrl = `http://${reg.ip}:5000/metrics`;
    const rows: Row[] = [];
    for (const mode of modes) {
      if (mode === 'p2p') {
        const [s, seed] = star.extras as [(typeof star.extras)[0], (typeof star.extras)[0]];
        // scheduler and peers listen on namespace addresses: they share a cluster secret
        const token = join(work, `n${n}-cluster-token`);
        writeFileSync(token, `${randomBytes(32).toString('hex')}\n`, { mode: 0o600 });
        procs.push(
          await spawnFerry(FERRY_BIN, ['scheduler', '--listen', `${s.ip}:8002`, '--cluster-token-file', token], {
            netns: s.netns,
            ready: /listening/,
          }),
        );
        const maxTx = arg('max-tx', '');
        const peerCfg = join(work, `n${n}-peer.yaml`);
        writeFileSync(peerCfg, maxTx ? `host:\n  maxTxBps: ${Number(maxTx)}\n` : '{}\n');
        const peer = (ns: { ip: string; netns: string }, name: string, extra: string[] = []): Promise<FerryProc> =>
          spawnFerry(
            FERRY_BIN,
            [
              'peer',
              '--config',
              peerCfg,
              '--scheduler',
              `http://${s.ip}:8002`,
              '--data',
              join(work, `n${n}-${name}`),
              '--proxy-listen',
              '127.0.0.1:65001',
              '--upload-listen',
              `${ns.ip}:65002`,
              '--hostname',
              name,
              '--cluster-token-file',
              token,
              '--allow-host',
              `${reg.ip}:5000`,
              ...extra,
            ],
            { netns: ns.netns, ready: /proxy http/ },
          );
        procs.push(await peer(seed, 'seed', ['--seed']));
        for (const [i, node] of star.nodes.entries()) procs.push(await peer(node, `node${i + 1}`));
        await new Promise((r) => setTimeout(r, 500));
      }
      const agentPids = procs.slice(1).map((p) => p.proc.pid ?? -1);
      const cpu0 = cpuSeconds(agentPids);
      const c0 = await counter(reg.netns, metricsUrl, 'ferry_registry_blob_bytes_served_total');
      const tx0 = (await ifaceCounters(reg.dev, reg.netns)).txBytes;
      const res = await pullAll(star, urls, mode === 'p2p');
      const row: Row = {
        nodes: n,
        mode,
        load1: loadavg()[0]!,
        agentCpuSeconds: cpuSeconds(agentPids) - cpu0,
        seconds: res.seconds,
        slowest: Math.max(...res.perNode),
        fastest: Math.min(...res.perNode),
        registryBytes: (await counter(reg.netns, metricsUrl, 'ferry_registry_blob_bytes_served_total')) - c0,
        uplinkBytes: (await ifaceCounters(reg.dev, reg.netns)).txBytes - tx0,
        imageBytes,
      };
      rows.push(row);
      process.stderr.write(`${JSON.stringify(row)}\n`);
    }
    return rows;
  } finally {
    for (const p of procs.reverse()) await p.stop().catch(() => undefined);
    await star.destroy();
  }
}

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('bench/p2p needs root (network namespaces)');
  const nodes = arg('nodes', '1,2,4,8').split(',').map(Number);
  const layerSizes = arg('layers', '48MiB,16MiB')
    .split(',')
    .map((s) => parseSize(s));
  const rate = arg('rate', '100mbit');
  const work = mkdtempSync(join(tmpdir(), 'ferry-bench-p2p-'));
  const rows: Row[] = [];
  try {
    const modes = arg('modes', 'direct,p2p').split(',') as ('direct' | 'p2p')[];
    for (const n of nodes) rows.push(...(await runN(n, layerSizes, rate, work, modes)));
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
  const single: Record<string, number> = {};
  for (const r of rows) if (r.nodes === 1) single[r.mode] = r.seconds;
  const mib = (b: number): string => (b / 1048576).toFixed(1);
  const lines = [
    `P2P distribution benchmark — ${new Date().toISOString()} — registry link ${rate}, image ${mib(rows[0]?.imageBytes ?? 0)} MiB (${layerSizes.length} layers + config)`,
    '',
    '| nodes | mode | all done (s) | vs 1 node direct | registry blob bytes (× image) | registry uplink (× image) | CPU s of scheduler+peers | load avg (1 min) |',
    '|---|---|---|---|---|---|---|---|',
    ...rows.map(
      (r) =>
        `| ${r.nodes} | ${r.mode} | ${r.seconds.toFixed(1)} | ${single.direct ? `${(r.seconds / single.direct).toFixed(2)}×` : '–'} | ${(r.registryBytes / r.imageBytes).toFixed(2)}× | ${(r.uplinkBytes / r.imageBytes).toFixed(2)}× | ${r.mode === 'p2p' ? r.agentCpuSeconds.toFixed(1) : '–'} | ${r.load1.toFixed(1)} |`,
    ),
  ];
  process.stdout.write(`${lines.join('\n')}\n`);
  const out = arg('out', '');
  if (out) writeFileSync(out, JSON.stringify({ date: new Date().toISOString(), rate, layerSizes, rows }, null, 2));
  void exec;
}

main().catch((err: unknown) => {
  process.stderr.write(`bench/p2p: ${(err as Error).stack ?? String(err)}\n`);
  process.exit(1);
});
