/**
 * The acceleration service scaled out on one real PostgreSQL 15 (test/support/postgres.ts): three
 * `ferry accel` processes share the task queue. Pushes to the registry fire webhooks to two of them
 * (as two registry replicas delivering one event would): each push makes one task, each task is
 * converted once, by whichever worker claims it; the task list and the retry API answer the same
 * from every process. A worker killed with SIGKILL mid-conversion loses its task to another after the
 * lease (moved on with a fake clock); a worker that lost its lease is fenced off.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import { stringify } from 'yaml';
import { requirePrereqs } from '../support/prereq.js';
import { FERRY_BIN } from '../support/paths.js';
import { ferry } from '../support/ferry.js';
import { FakeClock } from '../support/clock.js';
import { startPostgres, type PostgresInstance } from '../support/postgres.js';
import { startRegistry, type RegistryHandle } from '../../src/registry/index.js';
import { startAccel, AccelClient, type AccelHandle, type TaskView } from '../../src/accel/index.js';
import { RegistryClient } from '../../src/remote/index.js';
import { checkImage } from '../../src/convert/index.js';
import { pushImage, type BuiltImage } from '../../src/bench/env/index.js';
import { createLogger, metricValue, type Logger } from '../../src/observe/index.js';
import { makeTestImage, startFaultProxy, eventually, type FaultProxy } from './convert-support.js';

const PASSWORD = 'Adm1nSecret';
const HEADER = 'Bearer accel-pg';
const PW_ENV = 'FERRY_TEST_ACCEL_DB_PASSWORD';
const LEASE_MS = 10_000;
/** Conversions of the scale-out test (the issue's figure). */
const IMAGES = 30;
let dir: string;
let db: PostgresInstance;
let reg: RegistryHandle;
let proxy: FaultProxy;
let image: BuiltImage;
let direct: RegistryClient;
const children: ChildProcess[] = [];

/** The database URL without its password: that comes from PW_ENV. */
function dbUrl(): string {
  const u = new URL(db.url);
  u.password = '';
  return u.toString();
}

function config(workDir: string, host: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    server: { name: 'API', host: '127.0.0.1', port: 0 },
    database: { postgres: { url: dbUrl(), password_env: PW_ENV } },
    provider: {
      source: { [host]: { auth: Buffer.from(`admin:${PASSWORD}`).toString('base64'), insecure: true, webhook: { auth_header: HEADER } } },
      work_dir: workDir,
    },
    converter: {
      worker: 2,
      retry_limit: 3,
      retry_backoff: '300ms',
      task_lease: LEASE_MS,
      poll_interval: '200ms',
      driver: { type: 'nydus', config: { fs_version: '6', compressor: 'zstd' } },
      rules: [{ tag_suffix: '-nydus' }],
      ...extra,
    },
  };
}

async function startAccelProcess(name: string, cfg: Record<string, unknown>): Promise<{ url: string; proc: ChildProcess }> {
  const cfgPath = join(dir, `${name}.yaml`);
  await writeFile(cfgPath, stringify(cfg));
  const proc = spawn(process.execPath, [FERRY_BIN, 'accel', '--config', cfgPath, '--listen', '127.0.0.1:0'], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, FERRY_LOG_LEVEL: 'warn', [PW_ENV]: db.password },
  });
  children.push(proc);
  let err = '';
  proc.stderr!.on('data', (d: Buffer) => {
    err = (err + d.toString()).slice(-4000);
  });
  const url = await new Promise<string>((resolve, reject) => {
    let out = '';
    const t = setTimeout(() => reject(new Error(`accel ${name} did not start: ${err}`)), 30_000);
    proc.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /accel listening on (\S+)/.exec(out);
      if (m) {
        clearTimeout(t);
        resolve(m[1]!);
      }
    });
    proc.once('exit', (code) => {
      clearTimeout(t);
      reject(new Error(`accel ${name} exited ${code}: ${err}`));
    });
  });
  return { url, proc };
}

async function stopProcess(proc: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (proc.exitCode !== null || proc.signalCode !== null) return;
  const exited = new Promise((r) => proc.once('exit', r));
  proc.kill(signal);
  await exited;
}

/** A metric's value in a process's /metrics text. */
async function scrape(url: string, name: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  let sum = 0;
  for (const line of text.split('\n'))
    if (line.startsWith(`${name}{`) || line.startsWith(`${name} `)) sum += Number(line.split(' ').at(-1));
  return sum;
}

async function taskById(c: AccelClient, id: string): Promise<TaskView | undefined> {
  return (await c.listTasks()).find((t) => t.id === id);
}

function captureLog(): { log: Logger; lines: Array<Record<string, unknown> & { msg: string }> } {
  const lines: Array<Record<string, unknown> & { msg: string }> = [];
  const log = createLogger({ level: 'info', destination: { write: (s: string) => void lines.push(JSON.parse(s)) } });
  return { log, lines };
}

/** `p`, or a failure naming `what` after `ms` of real time (a guard against a hang, not a measurement). */
async function bounded<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

async function pushAll(refs: string[]): Promise<void> {
  // a few skopeo processes at a time (2 cores), every push bounded by pushImage's timeout
  for (let i = 0; i < refs.length; i += 5) {
    await Promise.all(refs.slice(i, i + 5).map((r) => pushImage(image.layoutDir, r, { creds: `admin:${PASSWORD}` })));
  }
}

before(async () => {
  requirePrereqs({ commands: ['skopeo', 'setfattr', 'tar'] });
  dir = await mkdtemp(join(tmpdir(), 'ferry-accel-pg-'));
  db = await startPostgres();
  process.env[PW_ENV] = db.password; // for the workers started in this process (password_env)
  reg = await startRegistry({
    listen: '127.0.0.1:0',
    dataDir: join(dir, 'registry'),
    adminPassword: PASSWORD,
    config: { webhook: { settleDelay: 200, pollInterval: 100 } },
  });
  proxy = await startFaultProxy(reg.url);
  direct = new RegistryClient({ credentials: () => ({ username: 'admin', password: PASSWORD }) });
  image = await makeTestImage(join(dir, 'img'));
});
after(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  await proxy?.close();
  await reg?.close();
  await db?.stop();
  delete process.env[PW_ENV];
  if (dir) await rm(dir, { recursive: true, force: true });
});

test(`three accel processes on one PostgreSQL: ${IMAGES} pushes, one task each (webhooks to two replicas), each converted once`, async (t) => {
  const workers = await Promise.all(['a', 'b', 'c'].map((n) => startAccelProcess(`scale-${n}`, config(join(dir, `work-${n}`), reg.host))));
  const [a, b, c] = workers.map((w) => ({ ...w, client: new AccelClient(w.url, { authHeader: HEADER }) }));
  try {
    // two webhook policies on `library`, to A and to B: every push event is delivered twice, as two
    // registry replicas (or a retried delivery) would; C gets no webhook and finds work by polling.
    const admin = { authorization: `Basic ${Buffer.from(`admin:${PASSWORD}`).toString('base64')}`, 'content-type': 'application/json' };
    for (const [name, w] of [
      ['to-a', a!],
      ['to-b', b!],
    ] as const) {
      const res = await fetch(`${reg.url}/api/v2.0/projects/library/webhook/policies`, {
        method: 'POST',
        headers: admin,
        body: JSON.stringify({
          name,
          event_types: ['PUSH_ARTIFACT'],
          enabled: true,
          targets: [{ type: 'http', address: `${w.url}/api/v1/conversions`, auth_header: HEADER, payload_format: 'Default' }],
        }),
      });
      assert.equal(res.status, 201, await res.text());
    }
    const repos = Array.from({ length: IMAGES }, (_, i) => `library/app${i}`);
    await pushAll(repos.map((r) => `${reg.host}/${r}:v1`));
    const done = await eventually(
      `${IMAGES} tasks finished`,
      async () => {
        const list = await c!.client.listTasks();
        return list.length >= IMAGES && list.every((x) => x.status !== 'PROCESSING') ? list : undefined;
      },
      300_000,
      250,
    );
    assert.equal(done.length, IMAGES, `one task per push, not one per delivery: ${done.map((x) => x.source).join(' ')}`);
    assert.deepEqual(done.map((x) => x.source).sort(), repos.map((r) => `${reg.host}/${r}:v1`).sort());
    for (const x of done) {
      assert.equal(x.status, 'COMPLETED', `${x.source}: ${x.reason}`);
      assert.equal(x.attempts, 1, `${x.source} converted in one attempt`);
      assert.equal(x.source_digest, image.manifestDigest);
    }
    // each conversion ran once, in all three processes together
    const attempts = await Promise.all(workers.map((w) => scrape(w.url, 'acceleration_service_core_conversions_op_total')));
    assert.equal(
      attempts.reduce((s, n) => s + n, 0),
      IMAGES,
      `conversion attempts per process: ${attempts.join(', ')}`,
    );
    const byWorker = new Map<string, number>();
    for (const x of done) byWorker.set(x.worker, (byWorker.get(x.worker) ?? 0) + 1);
    t.diagnostic(
      `tasks per worker (in no particular order): ${[...byWorker.values()].join(', ')}; attempts per process: ${attempts.join(', ')}`,
    );
    assert.ok(byWorker.size >= 2, `the work was shared: ${JSON.stringify([...byWorker])}`);
    // every process lists the same tasks
    const ids = (l: TaskView[]): string[] => l.map((x) => x.id).sort();
    assert.deepEqual(ids(await a!.client.listTasks()), ids(done));
    assert.deepEqual(ids(await b!.client.listTasks()), ids(done));
    for (const r of [repos[0]!, repos.at(-1)!]) {
      const chk = await checkImage({ source: `${reg.host}/${r}:v1`, target: `${reg.host}/${r}:v1-nydus`, sourceClient: direct });
      assert.deepEqual(chk.differences, [], r);
    }

    // retry API across processes: a task FAILED on one worker, queued again through another
    const [late] = await c!.client.createTask(`${reg.host}/library/late:v1`);
    const failed = await eventually('the task of a missing image fails', async () => {
      const x = await taskById(a!.client, late!);
      return x?.status === 'FAILED' ? x : undefined;
    });
    assert.match(failed.reason, /^NOT_FOUND: source .*does not exist/);
    await assert.rejects(c!.client.retryTask('no-such-task'), /404 ERR_INVALID_ENDPOINT task no-such-task not found/);
    await pushImage(image.layoutDir, `${reg.host}/other/late:v1`, { creds: `admin:${PASSWORD}` }); // (no webhook: not library)
    await pushImage(image.layoutDir, `${reg.host}/library/late:v1`, { creds: `admin:${PASSWORD}` });
    // `ferry task retry` through B (the header from the environment, not the command line)
    const env = { FERRY_ACCEL_AUTH_HEADER: HEADER };
    const retried = await ferry(['task', 'retry', late!, '--addr', b!.url], { env });
    assert.equal(retried.code, 0, retried.stderr);
    assert.equal(retried.stdout, `${late} PROCESSING ${reg.host}/library/late:v1\n`);
    const twice = await ferry(['task', 'retry', late!, '--addr', b!.url], { env });
    assert.equal(twice.code, 1);
    assert.match(twice.stderr, /412 .*only a FAILED task can be retried/);
    const ok = await eventually('the retried task completes', async () => {
      const x = await taskById(c!.client, late!);
      return x && x.status !== 'PROCESSING' ? x : undefined;
    });
    assert.equal(ok.status, 'COMPLETED', ok.reason);
  } finally {
    await Promise.all(workers.map((w) => stopProcess(w.proc)));
  }
});

test('a worker killed with SIGKILL mid-conversion: its task is taken over once the lease runs out, and completes', async () => {
  await pushImage(image.layoutDir, `${reg.host}/team/killed:v1`, { creds: `admin:${PASSWORD}` });
  let holding = true;
  proxy.rule = (m, p) => (holding && m === 'GET' && p.includes('/team/killed/blobs/') ? { delayMs: 3000 } : 'pass');
  const k = await startAccelProcess('killed', config(join(dir, 'work-killed'), proxy.host, { worker: 1 }));
  const kc = new AccelClient(k.url, { authHeader: HEADER });
  const [id] = await kc.createTask(`${proxy.host}/team/killed:v1`);
  assert.ok(id);
  const held = await eventually(
    'the conversion under way',
    async () => {
      const x = await taskById(kc, id);
      return x?.running && proxy.requests.some((r) => r.path.includes('/team/killed/blobs/')) ? x : undefined;
    },
    60_000,
    20,
  );
  await stopProcess(k.proc, 'SIGKILL');
  holding = false;

  // another worker, its clock at the real time of the kill: the lease is still live for it
  const clock = new FakeClock(Date.now());
  const { log, lines } = captureLog();
  const other = await startAccel({
    config: config(join(dir, 'work-taker'), proxy.host, { worker: 1 }),
    listen: '127.0.0.1:0',
    clock,
    log,
  });
  try {
    await clock.timerSet();
    const before = (await other.service.queue.get(id))!;
    assert.deepEqual([before.worker, before.attempts, before.status], [held.worker, 1, 'PROCESSING'], 'not taken while the lease lasts');
    // the lease runs out; the next poll (its timer set by the poll before) claims the task
    await clock.advance(LEASE_MS);
    await clock.timerSet();
    await clock.advance(200);
    const done = await bounded(other.service.waitFor(id), 120_000, 'the taken-over task to finish');
    assert.equal(done.status, 'COMPLETED', done.reason);
    assert.equal(done.worker, other.service.worker, 'completed by the taker');
    assert.equal(done.attempts, 2, "the killed worker's attempt counts");
    const chk = await checkImage({
      source: `${reg.host}/team/killed:v1`,
      target: `${reg.host}/team/killed:v1-nydus`,
      sourceClient: direct,
    });
    assert.deepEqual(chk.differences, []);
    assert.ok(!lines.some((l) => /lease lost/.test(l.msg)), 'the taker kept its lease');
  } finally {
    await other.close();
  }
});

test('fencing: a worker whose lease was taken over stops and writes nothing about the task', async () => {
  await pushImage(image.layoutDir, `${reg.host}/team/fenced:v1`, { creds: `admin:${PASSWORD}` });
  let holding = true;
  // A's blob request is held long enough for B to take over and finish first
  proxy.rule = (m, p) => (holding && m === 'GET' && p.includes('/team/fenced/blobs/') ? { delayMs: 8000 } : 'pass');
  const clockA = new FakeClock(Date.now());
  const la = captureLog();
  let a: AccelHandle | undefined;
  let b: AccelHandle | undefined;
  try {
    a = await startAccel({
      config: config(join(dir, 'work-fence-a'), proxy.host, { worker: 1 }),
      listen: '127.0.0.1:0',
      clock: clockA,
      log: la.log,
    });
    const [id] = await new AccelClient(a.url, { authHeader: HEADER }).createTask(`${proxy.host}/team/fenced:v1`);
    assert.ok(id);
    await eventually(
      'A converting',
      async () => (proxy.requests.some((r) => r.path.includes('/team/fenced/blobs/')) ? true : undefined),
      60_000,
      20,
    );
    holding = false;
    // B's clock is past A's lease (A paused, or cut off from the database): B takes the task over
    const clockB = new FakeClock(clockA.now() + LEASE_MS + 1);
    b = await startAccel({ config: config(join(dir, 'work-fence-b'), proxy.host, { worker: 1 }), listen: '127.0.0.1:0', clock: clockB });
    const byB = await bounded(b.service.waitFor(id), 120_000, "B's conversion");
    assert.deepEqual([byB.status, byB.worker, byB.attempts], ['COMPLETED', b.service.worker, 2], byB.reason);
    // A's next heartbeat finds its lease gone: it abandons the conversion
    await clockA.advance(Math.floor(LEASE_MS / 3));
    await eventually('A saw its lease lost', async () =>
      (await metricValue(a!.metrics, 'ferry_accel_leases_lost_total')) === 1 ? true : undefined,
    );
    await eventually(
      'A stopped',
      async () => (la.lines.some((l) => /the lease was lost, the task is another worker's now/.test(l.msg)) ? true : undefined),
      30_000,
    );
    const after = (await b.service.queue.get(id))!;
    assert.deepEqual(after, byB, 'the task is as B left it');
  } finally {
    await a?.close();
    await b?.close();
  }
});
