/**
 * The load generator the registry benchmarks share: keep-alive HTTP clients pushing (POST +
 * monolithic PUT) or getting blobs for a fixed time, with latency percentiles. A target may have
 * several URLs (replicas): requests go round-robin over them.
 */
import { createHash, randomBytes } from 'node:crypto';
import { spawn, type ChildProcess } from 'node:child_process';
import { Agent, request } from 'node:http';
import { FERRY_BIN } from '../../test/support/paths.js';

export interface Target {
  name: string;
  url: string;
  /** Replicas: requests go round-robin over these (default [url]). */
  urls?: string[];
  auth?: string;
  close(): Promise<void>;
}

export interface Cell {
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

export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

export function call(
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

export async function pushBlob(agent: Agent, t: Target, repo: string, data: Buffer, digest: string, base = t.url): Promise<void> {
  const auth: Record<string, string> = t.auth ? { authorization: t.auth } : {};
  const r1 = await call(agent, `${base}/v2/${repo}/blobs/uploads/`, 'POST', { ...auth, 'content-length': 0 });
  if (r1.status !== 202) throw new Error(`${t.name} POST ${r1.status}`);
  const loc = new URL(String(r1.headers.location), base);
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

export async function runCell(
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
  const urls = t.urls ?? [t.url];
  const worker = async (w: number): Promise<void> => {
    while (performance.now() < end) {
      const t0 = performance.now();
      const replica = urls[(counter + w) % urls.length]!;
      try {
        if (op === 'GET') {
          const d = getDigests[(counter++ + w) % getDigests.length]!;
          const r = await call(agent, `${replica}/v2/bench/blobs/blobs/${d}`, 'GET', auth);
          if (r.status !== 200 || r.bytes !== size) throw new Error(`GET ${r.status} ${r.bytes}`);
          bytes += r.bytes;
        } else {
          const data = Buffer.from(base);
          data.writeUInt32LE(counter++, 0);
          data.writeUInt32LE(w, 4);
          data.writeDoubleLE(Math.random(), 8);
          const digest = `sha256:${createHash('sha256').update(data).digest('hex')}`;
          await pushBlob(agent, t, 'bench/put', data, digest, replica);
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

/** The median of a list (0 when empty). */
export function median(xs: number[]): number {
  if (!xs.length) return 0;
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** `ferry registry` as a process on `dir` (with `configPath` and extra environment: database and S3 secrets). */
export async function startFerry(dir: string, opts: { name?: string; configPath?: string; env?: NodeJS.ProcessEnv } = {}): Promise<Target> {
  const password = 'BenchAdmin1';
  const child: ChildProcess = spawn(
    process.execPath,
    [FERRY_BIN, 'registry', '--listen', '127.0.0.1:0', '--data', dir, ...(opts.configPath ? ['--config', opts.configPath] : [])],
    {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, ...opts.env, FERRY_LOG_LEVEL: 'warn', FERRY_ADMIN_PASSWORD: password },
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
    name: opts.name ?? 'ferry',
    url,
    auth: `Basic ${Buffer.from(`admin:${password}`).toString('base64')}`,
    close: () =>
      new Promise((r) => {
        child.once('exit', () => r());
        child.kill('SIGTERM');
      }),
  };
}
