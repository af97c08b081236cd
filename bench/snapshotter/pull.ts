/**
 * Where a lazy pull's time goes, cold, on loopback: the bench's python image (`ferry bench`'s cached
 * layout) pushed to `ferry registry` (in this process) and to Debian's docker-registry, converted
 * with `ferry convert`; then, per run, a new `ferry snapshotter` (debug log) and a new private
 * containerd, page cache dropped, and one pull client — `ferry pull --snapshotter-api` (the pull runs
 * in the snapshotter) or `ctr-remote images rpull --snapshotter ferry` (containerd's own pull with
 * remote-snapshot labels) — followed by `ctr containers create` and `ctr tasks start` (python prints
 * hello). Clients and registries are interleaved; per run it prints pull / create / run, the
 * registry requests of the pull (ferry registry's counter) and the snapshotter's own step timings
 * from its log (`ms` fields of its debug/info lines).
 *
 *   node dist/bench/snapshotter/pull.js [--repeat 3] [--clients ferry,ctr-remote] [--registries ferry,distribution]
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, readFile, rm, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { exec, execCheck, pushImage, startContainerd, startDistributionRegistry, type Containerd } from '../../src/bench/env/index.js';
import { findWorkload, prepareWorkloadImage } from '../../src/bench/index.js';
import { startRegistry } from '../../src/registry/index.js';

const FERRY = join(dirname(fileURLToPath(import.meta.url)), '../../../bin/ferry.js');
const PW = 'pull-probe-pw';

function arg(name: string, def: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 && process.argv[i + 1] ? process.argv[i + 1]! : def;
}

const ms = (t0: number): number => Math.round(performance.now() - t0);

async function dropCaches(): Promise<void> {
  await exec('sync', []);
  await writeFile('/proc/sys/vm/drop_caches', '3');
}

/** A `ferry snapshotter` child with its log in `dir/snapshotter.log`; resolves once its pull API is up. */
async function startSnapshotter(dir: string, host: string): Promise<{ sock: string; api: string; stop(): Promise<void> }> {
  const sock = join(dir, 'ferry.sock');
  const root = join(dir, 'root');
  const api = join(root, 'api.sock');
  const { openSync } = await import('node:fs');
  const fd = openSync(join(dir, 'snapshotter.log'), 'w');
  const child = spawn(
    process.execPath,
    [FERRY, 'snapshotter', '--address', sock, '--root', root, '--plain-http', host, '--log-level', 'debug'],
    { stdio: ['ignore', fd, fd] },
  );
  let exited = false;
  const exit = new Promise<void>((r) =>
    child.on('exit', () => {
      exited = true;
      r();
    }),
  );
  for (let i = 0; i < 600 && !(existsSync(sock) && existsSync(api)); i++) {
    if (exited) throw new Error(`ferry snapshotter exited: ${await readFile(join(dir, 'snapshotter.log'), 'utf8')}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    sock,
    api,
    async stop() {
      if (!exited) child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exit;
      clearTimeout(t);
    },
  };
}

/** The snapshotter's log lines that carry a duration, as `msg ms` (pino JSON). */
async function steps(logPath: string, t0Wall: number): Promise<string> {
  const out: string[] = [];
  for (const l of (await readFile(logPath, 'utf8')).split('\n')) {
    if (!l.startsWith('{')) continue;
    const j = JSON.parse(l) as { msg?: string; ms?: number; time?: number; timings?: Record<string, number>; blobs?: number };
    if (j.ms === undefined && !j.timings) continue;
    const at = j.time ? `@${j.time - t0Wall}` : '';
    out.push(`${j.msg} ${j.ms ?? ''}ms${at}${j.timings ? ` ${JSON.stringify({ ...j.timings, blobs: j.blobs })}` : ''}`);
  }
  return out.join('; ');
}

type Counts = Map<string, number>;

/** ferry registry's request counter by route, method and status. */
async function routeCounts(metrics: Awaited<ReturnType<typeof startRegistry>>['metrics']): Promise<Counts> {
  const out: Counts = new Map();
  const m = metrics.getSingleMetric('ferry_registry_requests_total');
  for (const v of (await m?.get())?.values ?? []) {
    const l = v.labels as Record<string, string>;
    out.set(`${l.method} ${l.route} ${l.status}`, v.value);
  }
  return out;
}

function diff(a: Counts, b: Counts): string {
  const parts: string[] = [];
  for (const [k, v] of b) if (v - (a.get(k) ?? 0) > 0) parts.push(`${k}×${v - (a.get(k) ?? 0)}`);
  return parts.join(', ');
}

async function oneRun(o: { client: string; ref: string; host: string; requests?: () => Promise<Counts> }): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'ferry-pull-probe-'));
  let cd: Containerd | undefined;
  let sn: Awaited<ReturnType<typeof startSnapshotter>> | undefined;
  try {
    sn = await startSnapshotter(dir, o.host);
    cd = await startContainerd({ dir: join(dir, 'cd'), snapshotters: { ferry: sn.sock }, namespace: `pp-${process.pid}` });
    await dropCaches();
    const r0 = (await o.requests?.()) ?? new Map();
    const wall0 = Date.now();
    let t = performance.now();
    const pull =
      o.client === 'ferry'
        ? await exec(process.execPath, [
            FERRY,
            'pull',
            '--address',
            cd.address,
            '--namespace',
            cd.namespace,
            '--plain-http',
            '--quiet',
            '--snapshotter-api',
            sn.api,
            o.ref,
          ])
        : await exec('ctr-remote', [
            '--address',
            cd.address,
            '-n',
            cd.namespace,
            'images',
            'rpull',
            '--plain-http',
            '--snapshotter',
            'ferry',
            o.ref,
          ]);
    if (pull.code !== 0) throw new Error(`${o.client} pull: ${pull.stderr}`);
    const pullMs = ms(t);
    const pullReq = diff(r0, (await o.requests?.()) ?? new Map());
    t = performance.now();
    const c = await cd.ctr(['containers', 'create', '--net-host', '--snapshotter', 'ferry', o.ref, 'probe']);
    if (c.code !== 0) throw new Error(`create: ${c.stderr}`);
    const createMs = ms(t);
    t = performance.now();
    const s = await cd.ctr(['tasks', 'start', 'probe']);
    const runMs = ms(t);
    if (!s.stdout.includes('hello')) throw new Error(`run: ${s.stdout} ${s.stderr}`);
    await cd.ctr(['tasks', 'delete', 'probe']);
    const total = pullMs + createMs + runMs;
    return `pull ${pullMs} create ${createMs} run ${runMs} total ${total} ms${o.requests ? `, pull requests: ${pullReq}` : ''}\n    ${await steps(join(dir, 'snapshotter.log'), wall0)}`;
  } finally {
    await cd?.stop().catch(() => undefined);
    await sn?.stop().catch(() => undefined);
    await rm(dir, { recursive: true, force: true }).catch(() => undefined);
  }
}

async function main(): Promise<void> {
  const repeat = Number(arg('repeat', '3'));
  const clients = arg('clients', 'ferry,ctr-remote').split(',');
  const registries = arg('registries', 'ferry,distribution').split(',');
  const built = await prepareWorkloadImage(findWorkload('python')!);
  const dir = await mkdtemp(join(tmpdir(), 'ferry-pull-probe-reg-'));
  const reg = await startRegistry({ listen: '127.0.0.1:0', dataDir: join(dir, 'reg'), adminPassword: PW });
  const dist = registries.includes('distribution') ? await startDistributionRegistry({ dir: join(dir, 'dist') }) : undefined;
  try {
    await mkdir(join(dir, 'x'), { recursive: true });
    const credsFile = join(dir, 'x', 'creds');
    await writeFile(credsFile, `admin:${PW}`, { mode: 0o600 });
    const targets: Array<{ kind: string; host: string; requests?: () => Promise<Counts> }> = [];
    if (registries.includes('ferry')) targets.push({ kind: 'ferry', host: reg.host, requests: () => routeCounts(reg.metrics) });
    if (dist) targets.push({ kind: 'distribution', host: dist.host });
    const refs = new Map<string, string>();
    for (const tg of targets) {
      const oci = `${tg.host}/library/probe-python:oci`;
      const creds = tg.kind === 'ferry' ? `admin:${PW}` : undefined;
      await pushImage(built.layoutDir, oci, creds ? { creds } : {});
      const nydus = `${tg.host}/library/probe-python:nydus`;
      await execCheck(process.execPath, [
        FERRY,
        'convert',
        '--source',
        oci,
        '--source-plain-http',
        '--target',
        nydus,
        '--target-plain-http',
        ...(creds ? ['--source-creds-file', credsFile, '--target-creds-file', credsFile] : []),
      ]);
      refs.set(tg.kind, nydus);
    }
    process.stdout.write(`load ${(await readFile('/proc/loadavg', 'utf8')).trim()}\n`);
    for (let rep = 0; rep < repeat; rep++) {
      for (const tg of targets) {
        for (const client of rep % 2 ? [...clients].reverse() : clients) {
          const line = await oneRun({ client, ref: refs.get(tg.kind)!, host: tg.host, ...(tg.requests ? { requests: tg.requests } : {}) });
          process.stdout.write(`${tg.kind} ${client} #${rep + 1}: ${line}\n`);
        }
      }
    }
    process.stdout.write(`load ${(await readFile('/proc/loadavg', 'utf8')).trim()}\n`);
  } finally {
    await dist?.close().catch(() => undefined);
    await reg.close();
    await rm(dir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
