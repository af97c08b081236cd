/**
 * Requests per start and cold reads, the read engine before and after (issue 15), in one run and
 * against both registries: `ferry registry` (in-process) and Debian's docker-registry (CNCF
 * distribution), on loopback, unshaped.
 * Layers are built as `ferry convert` builds them (zstd, blake3, its default 32 KiB chunks).
 *  - start: a cold `python3 -c 'print("hello")'` chrooted into the lazy mount of a debootstrap
 *    python3 rootfs (the mount is told the command, so the loader's reads are prefetched): backend
 *    requests (the daemon's `stats.requests`, Prometheus `ferry_daemon_backend_requests_total`),
 *    bytes fetched, seconds from mount to exit;
 *  - seq: `cat` of one 200 MB file (random bytes) through the lazy mount, cold: MB/s, requests.
 * "before" is a build of another commit (`--before DIST`, e.g. a `git worktree` of the parent of
 * the read-engine work, built with tsc); "after" is this build. Implementations alternate within
 * each repetition; figures are medians, ratios after/before.
 *
 * Run (root): `npx tsc -p . && node dist/bench/daemon/startup.js --before /tmp/ferry-before/dist [--reps 5] [--json FILE]`
 * Drops the page cache before each cold pass.
 */
import { execFile } from 'node:child_process';
import { randomBytes, createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { debootstrapRootfs, startDistributionRegistry } from '../../src/bench/env/index.js';
import { buildLayer } from '../../src/builder/index.js';
import { DEFAULT_CONVERT_CHUNK_SIZE } from '../../src/config/accel.js';
import { createLogger } from '../../src/observe/index.js';
import { startRegistry } from '../../src/registry/index.js';
import { RegistryClient } from '../../src/remote/index.js';

const pexec = promisify(execFile);
const HERE_DIST = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const PASSWORD = 'Bench-startup-1';
const SEQ_BYTES = 200 * 1000 * 1000;

interface DaemonLike {
  mount(req: unknown): Promise<unknown>;
  get(id: string): Promise<{ metrics: { bytesFetched: number }; stats?: { requests: number } }>;
  umount(id: string): Promise<void>;
  close(): Promise<void>;
}
type DaemonCtor = new (o: { log: unknown; dataDir: string }) => DaemonLike;

interface Layer {
  boot: string;
  blobDir: string;
  blobIds: string[];
}

async function dropCaches(): Promise<void> {
  await pexec('sync');
  await writeFile('/proc/sys/vm/drop_caches', '3');
}

async function build(dir: string, name: string, source: string): Promise<Layer> {
  const blobDir = join(dir, `${name}-blobs`);
  await mkdir(blobDir, { recursive: true });
  const built = await buildLayer({
    source: { dir: source },
    blobDir,
    fsVersion: 6,
    compressor: 'zstd',
    chunkSize: DEFAULT_CONVERT_CHUNK_SIZE,
    digester: 'blake3',
  });
  const boot = join(dir, `${name}.boot`);
  await writeFile(boot, built.bootstrap);
  return { boot, blobDir, blobIds: [built.blobId] };
}

async function push(c: RegistryClient, host: string, repo: string, l: Layer): Promise<void> {
  for (const id of l.blobIds) {
    const path = join(l.blobDir, id);
    const size = (await stat(path)).size;
    await c.pushBlob(host, repo, `sha256:${id}`, size, () => createReadStream(path));
  }
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

async function main(): Promise<void> {
  const arg = (k: string): string | undefined => (process.argv.includes(k) ? process.argv[process.argv.indexOf(k) + 1] : undefined);
  const beforeDist = arg('--before');
  if (!beforeDist) throw new Error('--before DIST (the dist directory of the build to compare against) is required');
  const reps = Number(arg('--reps') ?? 5);
  const jsonOut = arg('--json');
  const log = createLogger({ level: 'warn' });
  const impls: Array<{ name: string; Daemon: DaemonCtor }> = [];
  for (const [name, dist] of [
    ['before', resolve(beforeDist)],
    ['after', HERE_DIST],
  ] as const) {
    const m = (await import(join(dist, 'src/daemon/index.js'))) as { Daemon: DaemonCtor };
    impls.push({ name, Daemon: m.Daemon });
  }
  const dir = await mkdtemp(join(tmpdir(), 'ferry-bench-startup-'));
  const ferry = await startRegistry({ listen: '127.0.0.1:0', dataDir: join(dir, 'reg'), adminPassword: PASSWORD, log });
  const dist = await startDistributionRegistry();
  try {
    const rootfs = await debootstrapRootfs({ include: ['python3'] });
    const bigDir = join(dir, 'big');
    await mkdir(bigDir);
    const big = randomBytes(SEQ_BYTES);
    await writeFile(join(bigDir, 'big.bin'), big);
    const bigSum = createHash('sha256').update(big).digest('hex');
    const py = await build(dir, 'py', rootfs);
    const seq = await build(dir, 'seq', bigDir);
    const registries = [
      { name: 'ferry', host: ferry.host, auth: Buffer.from(`admin:${PASSWORD}`).toString('base64') },
      { name: 'distribution', host: dist.host, auth: undefined },
    ];
    const c = new RegistryClient({ credentials: (h) => (h === ferry.host ? { username: 'admin', password: PASSWORD } : undefined) });
    for (const r of registries) {
      await push(c, r.host, 'bench/py', py);
      await push(c, r.host, 'bench/seq', seq);
    }
    const samples: Record<string, number[]> = {};
    const note = (k: string, v: number): void => {
      (samples[k] ??= []).push(v);
    };
    let n = 0;
    for (let rep = 0; rep < reps; rep++) {
      for (const r of registries) {
        const order = rep % 2 ? [...impls].reverse() : impls;
        for (const impl of order) {
          const key = `${r.name}/${impl.name}`;
          const daemon = new impl.Daemon({ log, dataDir: join(dir, `data-${++n}`) });
          try {
            const backend = (repo: string) => ({
              type: 'registry',
              host: r.host,
              repo,
              insecure: true,
              ...(r.auth ? { auth: r.auth } : {}),
            });
            // start
            const argv = ['/usr/bin/python3', '-c', 'print("hello")'];
            const mnt = join(dir, `mnt-${n}`);
            await dropCaches();
            const t0 = performance.now();
            await daemon.mount({
              id: 'py',
              mountpoint: mnt,
              bootstrapPath: py.boot,
              cacheDir: join(dir, `cache-${n}`),
              backend: backend('bench/py'),
              startup: { argv },
            });
            const out = await pexec('chroot', [mnt, ...argv]);
            note(`${key}/start-s`, (performance.now() - t0) / 1000);
            if (out.stdout.trim() !== 'hello') throw new Error(`python printed ${JSON.stringify(out.stdout)}`);
            const st = await daemon.get('py');
            note(`${key}/start-requests`, st.stats?.requests ?? Number.NaN);
            note(`${key}/start-MB`, st.metrics.bytesFetched / 1e6);
            await daemon.umount('py');
            // sequential cold read
            const smnt = join(dir, `smnt-${n}`);
            await daemon.mount({
              id: 'seq',
              mountpoint: smnt,
              bootstrapPath: seq.boot,
              cacheDir: join(dir, `scache-${n}`),
              backend: backend('bench/seq'),
            });
            await dropCaches();
            const t1 = performance.now();
            const sum = await pexec('sha256sum', [join(smnt, 'big.bin')], { maxBuffer: 1 << 16 });
            const secs = (performance.now() - t1) / 1000;
            if (!sum.stdout.startsWith(bigSum)) throw new Error('seq: content differs');
            note(`${key}/seq-MBps`, SEQ_BYTES / 1e6 / secs);
            note(`${key}/seq-requests`, (await daemon.get('seq')).stats?.requests ?? Number.NaN);
            await daemon.umount('seq');
          } finally {
            await daemon.close();
          }
          process.stderr.write(`rep ${rep + 1}/${reps} ${key} done\n`);
        }
      }
    }
    const rows: Array<Record<string, string | number>> = [];
    for (const r of registries) {
      for (const m of ['start-s', 'start-requests', 'start-MB', 'seq-MBps', 'seq-requests']) {
        const b = median(samples[`${r.name}/before/${m}`]!);
        const a = median(samples[`${r.name}/after/${m}`]!);
        rows.push({ registry: r.name, metric: m, before: +b.toFixed(3), after: +a.toFixed(3), 'after/before': +(a / b).toFixed(2) });
      }
    }
    console.table(rows);
    if (jsonOut) await writeFile(jsonOut, JSON.stringify({ date: new Date().toISOString(), reps, rows, samples }, null, 1));
  } finally {
    await Promise.all([ferry.close(), dist.close()]);
    await rm(dir, { recursive: true, force: true }).catch(() => undefined);
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
