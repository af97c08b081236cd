/**
 * Loopback probe: what a lazy loader's range read costs through the P2P peer, against the same
 * read straight from the origin, in one run. A blob origin runs in this process; `ferry scheduler`
 * and one or two `ferry peer`s run as child processes on 127.0.0.1 (cluster secret on, as in
 * `ferry bench`). Each repetition reads a fresh set of ranges (cold for the peer): `--reads`
 * sequential range reads of `--size` bytes, `--inflight` at a time (the lazy daemon keeps 4 in
 * flight per blob), first directly from the origin, then through peer 0's proxy (absolute-URI GET
 * with Range, as the daemon's P2P backend sends them), then — with `--peers 2` — the same ranges
 * through peer 1 (served by peer 0: the origin must serve nothing more).
 *
 *   node dist/bench/p2p/range-probe.js [--reads 300] [--size 16KiB] [--inflight 4] [--reps 2] [--peers 1]
 *        [--memory-below BYTES] [--cpu-prof DIR] [--out FILE.json]
 *
 * Reports wall and CPU per read for each path and their ratios (CPU: this process — client and
 * origin — plus the peers and the scheduler, from /proc/PID/stat), the origin bytes and the load
 * average. `--cpu-prof DIR` runs the peers with `node --cpu-prof` (profiles written at exit);
 * `--memory-below 0` turns the peers' memory tasks off (`storage.memoryBelow`), for comparison.
 */
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { FERRY_BIN } from '../../test/support/paths.js';
import { parseSize } from '../../src/core/index.js';
import { randomBlob, startOrigin, type OriginBlob } from '../../src/p2p/testing/origin.js';
import { spawnFerry, type FerryProc } from '../../src/p2p/testing/procs.js';

function arg(name: string, def: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 && process.argv[i + 1] ? process.argv[i + 1]! : def;
}

/** utime + stime of a process in seconds (/proc/PID/stat). */
function cpuOf(pid: number | undefined): number {
  if (!pid) return 0;
  const f = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const rest = f.slice(f.lastIndexOf(')') + 2).split(' ');
  return (Number(rest[11]) + Number(rest[12])) / 100;
}

const selfCpu = (): number => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
};

const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });

/** One range read: straight (`proxy` undefined) or through a peer's proxy in absolute-URI form. */
function readRange(url: string, start: number, end: number, proxy: URL | undefined): Promise<Buffer> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: proxy ? proxy.hostname : u.hostname,
        port: proxy ? proxy.port : u.port,
        path: proxy ? url : u.pathname,
        headers: { host: u.host, range: `bytes=${start}-${end}` },
        agent,
      },
      (res) => {
        const parts: Buffer[] = [];
        res.on('data', (c: Buffer) => parts.push(c));
        res.on('end', () => {
          if (res.statusCode !== 206) reject(new Error(`${proxy ? 'proxy' : 'origin'} answered ${res.statusCode} for ${start}-${end}`));
          else resolve(Buffer.concat(parts));
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end();
  });
}

/** Reads `ranges` in order, `inflight` at a time; checks every byte. Returns the wall seconds. */
async function readAll(blob: OriginBlob, ranges: [number, number][], inflight: number, proxy: URL | undefined): Promise<number> {
  const t0 = process.hrtime.bigint();
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < ranges.length) {
      const [s, e] = ranges[next++]!;
      const b = await readRange(blob.url, s, e, proxy);
      if (!b.equals(blob.data.subarray(s, e + 1))) throw new Error(`wrong bytes for ${s}-${e}`);
    }
  };
  await Promise.all(Array.from({ length: inflight }, worker));
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

interface Phase {
  path: string;
  wallMsPerRead: number;
  cpuMsPerRead: number;
  peerCpuMsPerRead: number;
  schedulerCpuMsPerRead: number;
  originBytes: number;
}

async function main(): Promise<void> {
  const reads = Number(arg('reads', '300'));
  const size = parseSize(arg('size', '16KiB'));
  const inflight = Number(arg('inflight', '4'));
  const reps = Number(arg('reps', '2'));
  const nPeers = Number(arg('peers', '1'));
  const profDir = arg('cpu-prof', '');
  const gap = 4096;
  const blobSize = reps * reads * (size + gap) + size;
  const work = mkdtempSync(join(tmpdir(), 'ferry-range-probe-'));
  const token = join(work, 'cluster-token');
  writeFileSync(token, randomBytes(32).toString('hex'), { mode: 0o600 });
  const origin = await startOrigin();
  const blob = origin.addBlob('library/probe', randomBlob(blobSize));
  const procs: FerryProc[] = [];
  const load0 = loadavg()[0]!;
  try {
    const sched = await spawnFerry(FERRY_BIN, ['scheduler', '--listen', '127.0.0.1:0', '--cluster-token-file', token], {
      ready: /listening on (\S+)/,
    });
    procs.push(sched);
    const schedUrl = /listening on (\S+)/.exec(sched.output())![1]!;
    const peers: { proc: FerryProc; proxy: URL }[] = [];
    for (let i = 0; i < nPeers; i++) {
      const cfg = join(work, `peer${i}.yaml`);
      const memoryBelow = arg('memory-below', '');
      writeFileSync(cfg, `download:\n  directBelow: 0\n${memoryBelow ? `storage:\n  memoryBelow: ${memoryBelow}\n` : ''}`);
      const nodeArgs = profDir ? ['--cpu-prof', `--cpu-prof-dir=${profDir}`] : undefined;
      const p = await spawnFerry(
        FERRY_BIN,
        [
          'peer',
          '--config',
          cfg,
          '--scheduler',
          schedUrl,
          '--data',
          join(work, `peer${i}`),
          '--cluster-token-file',
          token,
          '--proxy-listen',
          '127.0.0.1:0',
          '--upload-listen',
          '127.0.0.1:0',
          '--allow-host',
          origin.host,
          '--hostname',
          `probe-node-${i}`,
        ],
        { ready: /proxy (http:\/\/\S+),/, ...(nodeArgs ? { nodeArgs } : {}) },
      );
      procs.push(p);
      peers.push({ proc: p, proxy: new URL(/proxy (http:\/\/\S+),/.exec(p.output())![1]!) });
    }
    // warm-up: connections, the peer's first HEAD of the blob, JIT
    const warm: [number, number][] = Array.from({ length: 20 }, (_, i) => [blobSize - size - i * 64, blobSize - size - i * 64 + 15]);
    await readAll(blob, warm, inflight, undefined);
    for (const p of peers) await readAll(blob, warm, inflight, p.proxy);

    const rows: Phase[] = [];
    const measure = async (path: string, ranges: [number, number][], proxy: URL | undefined): Promise<void> => {
      const peerPids = peers.map((p) => p.proc.proc.pid);
      const c0 = selfCpu();
      const peersCpu = (): number => peerPids.reduce((a: number, pid) => a + cpuOf(pid), 0);
      const p0 = peersCpu();
      const s0 = cpuOf(sched.proc.pid);
      const b0 = origin.blobBytes();
      const wall = await readAll(blob, ranges, inflight, proxy);
      // reports and metadata writes that trail the last answer belong to this phase
      await new Promise((r) => setTimeout(r, 300));
      const peerCpu = peersCpu() - p0;
      const schedCpu = cpuOf(sched.proc.pid) - s0;
      const own = selfCpu() - c0;
      rows.push({
        path,
        wallMsPerRead: (wall * 1000) / ranges.length,
        cpuMsPerRead: ((own + peerCpu + schedCpu) * 1000) / ranges.length,
        peerCpuMsPerRead: (peerCpu * 1000) / ranges.length,
        schedulerCpuMsPerRead: (schedCpu * 1000) / ranges.length,
        originBytes: origin.blobBytes() - b0,
      });
    };
    for (let rep = 0; rep < reps; rep++) {
      const base = rep * reads * (size + gap);
      const ranges: [number, number][] = Array.from({ length: reads }, (_, i) => {
        const s = base + i * (size + gap);
        return [s, s + size - 1];
      });
      await measure('direct', ranges, undefined);
      await measure('p2p (cold, peer 0)', ranges, peers[0]!.proxy);
      if (peers[1]) await measure('p2p (peer 1, from peer 0)', ranges, peers[1].proxy);
    }
    const load1 = loadavg()[0]!;
    const direct = rows.filter((r) => r.path === 'direct');
    const avg = (rs: Phase[], k: keyof Phase): number => rs.reduce((a, r) => a + (r[k] as number), 0) / Math.max(1, rs.length);
    const lines = [
      `range probe: ${reads} reads of ${size} B, ${inflight} in flight, ${reps} reps, ${nPeers} peer(s); load ${load0.toFixed(2)} → ${load1.toFixed(2)}`,
      '| path | wall ms/read | CPU ms/read (all) | peer CPU ms/read | scheduler CPU ms/read | origin bytes | wall ÷ direct | CPU ÷ direct |',
      '|---|---|---|---|---|---|---|---|',
    ];
    for (const path of [...new Set(rows.map((r) => r.path))]) {
      const rs = rows.filter((r) => r.path === path);
      const w = avg(rs, 'wallMsPerRead');
      const c = avg(rs, 'cpuMsPerRead');
      lines.push(
        `| ${path} | ${w.toFixed(2)} | ${c.toFixed(2)} | ${avg(rs, 'peerCpuMsPerRead').toFixed(2)} | ${avg(rs, 'schedulerCpuMsPerRead').toFixed(2)} | ${Math.round(avg(rs, 'originBytes'))} | ${(w / avg(direct, 'wallMsPerRead')).toFixed(2)}× | ${(c / avg(direct, 'cpuMsPerRead')).toFixed(2)}× |`,
      );
    }
    for (const [i, p] of peers.entries()) {
      const m = await new Promise<string>((resolve, reject) =>
        http
          .get({ host: p.proxy.hostname, port: p.proxy.port, path: '/metrics', agent }, (res) => {
            let t = '';
            res.on('data', (c: Buffer) => {
              t += c.toString();
            });
            res.on('end', () => resolve(t));
          })
          .on('error', reject),
      );
      const early = m.split('\n').filter((l) => l.startsWith('ferry_peer_speculative_source_total'));
      lines.push(`peer ${i}: ${early.length ? early.join(', ') : 'no range task started at the origin while registering'}`);
    }
    process.stdout.write(`${lines.join('\n')}\n`);
    const out = arg('out', '');
    if (out) writeFileSync(out, JSON.stringify({ reads, size, inflight, reps, peers: nPeers, load: [load0, load1], rows }, null, 2));
  } finally {
    for (const p of procs.reverse()) await p.stop();
    await origin.close();
    agent.destroy();
    rmSync(work, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`range probe failed: ${(err as Error).stack ?? String(err)}\n`);
  process.exitCode = 1;
});
