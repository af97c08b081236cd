/**
 * Durability of ferry accel: a conversion interrupted by SIGKILL resumes after a restart (and the
 * scratch dir the killed attempt left is removed at start); a registry
 * that goes away mid-push makes the attempt fail with its reason kept and nothing tagged, and the
 * retry converts it; a permanent failure stops after the retry limit; one target is never converted
 * twice at once.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import { stringify } from 'yaml';
import { requirePrereqs } from '../support/prereq.js';
import { FERRY_BIN } from '../support/paths.js';
import { startRegistry, type RegistryHandle } from '../../src/registry/index.js';
import { startAccel, AccelClient, type TaskView } from '../../src/accel/index.js';
import { RegistryClient, parseReference } from '../../src/remote/index.js';
import { checkImage } from '../../src/convert/index.js';
import { pushImage } from '../../src/bench/env/index.js';
import { makeTestImage, startFaultProxy, eventually, type FaultProxy } from './convert-support.js';

const PASSWORD = 'Adm1nSecret';
const HEADER = 'Bearer accel-test';
let dir: string;
let reg: RegistryHandle;
let proxy: FaultProxy;
let direct: RegistryClient;
const children: ChildProcess[] = [];
let layerDigests: string[] = [];

function config(workDir: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    server: { name: 'API', host: '127.0.0.1', port: 0 },
    metric: { enabled: true },
    provider: {
      source: {
        [proxy.host]: { auth: Buffer.from(`admin:${PASSWORD}`).toString('base64'), insecure: true, webhook: { auth_header: HEADER } },
      },
      work_dir: workDir,
      gcpolicy: { threshold: '1000MB' },
    },
    converter: {
      worker: 2,
      retry_limit: 3,
      retry_backoff: '300ms',
      driver: { type: 'nydus', config: { fs_version: '6', compressor: 'zstd' } },
      rules: [{ tag_suffix: '-nydus' }],
      ...extra,
    },
  };
}

async function startAccelProcess(cfgPath: string): Promise<{ url: string; proc: ChildProcess }> {
  const proc = spawn(process.execPath, [FERRY_BIN, 'accel', '--config', cfgPath, '--listen', '127.0.0.1:0'], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, FERRY_LOG_LEVEL: 'warn' },
  });
  children.push(proc);
  let err = '';
  proc.stderr!.on('data', (d: Buffer) => {
    err = (err + d.toString()).slice(-4000);
  });
  const url = await new Promise<string>((resolve, reject) => {
    let out = '';
    const t = setTimeout(() => reject(new Error(`accel did not start: ${err}`)), 20_000);
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
      reject(new Error(`accel exited ${code}: ${err}`));
    });
  });
  return { url, proc };
}

/** The conversions' scratch dirs in a work dir (convert's `ferry-convert-*`). */
function scratchDirs(workDir: string): string[] {
  return readdirSync(workDir)
    .filter((n) => n.startsWith('ferry-convert-'))
    .sort();
}

async function task(c: AccelClient, id: string): Promise<TaskView> {
  const t = (await c.listTasks()).find((x) => x.id === id);
  assert.ok(t, `task ${id} listed`);
  return t;
}

before(async () => {
  requirePrereqs({ commands: ['skopeo', 'setfattr', 'tar'] });
  dir = await mkdtemp(join(tmpdir(), 'ferry-accel-restart-'));
  reg = await startRegistry({ listen: '127.0.0.1:0', dataDir: join(dir, 'registry'), adminPassword: PASSWORD });
  proxy = await startFaultProxy(reg.url);
  direct = new RegistryClient({ credentials: () => ({ username: 'admin', password: PASSWORD }) });
  const image = await makeTestImage(join(dir, 'img'));
  for (const repo of ['team/restart', 'team/flaky', 'team/broken', 'team/twice', 'team/cache']) {
    await pushImage(image.layoutDir, `${reg.host}/${repo}:v1`, { creds: `admin:${PASSWORD}` });
  }
  await pushImage(image.layoutDir, `${reg.host}/team/cache:v2`, { creds: `admin:${PASSWORD}` });
  layerDigests = image.layers.map((l) => l.digest);
});
after(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  await proxy?.close();
  await reg?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

test('a conversion interrupted by SIGTERM or SIGKILL resumes after restart and tags only when complete', async () => {
  const cfgPath = join(dir, 'restart.yaml');
  const workRestart = join(dir, 'work-restart');
  await writeFile(cfgPath, stringify(config(workRestart)));
  let slow = true;
  proxy.rule = (m, p) => (slow && m === 'GET' && p.includes('/team/restart/blobs/') ? { throttleBps: 256 * 1024 } : 'pass');
  // 1. SIGTERM mid-conversion: a clean stop puts the task back without counting the attempt.
  const zeroth = await startAccelProcess(cfgPath);
  const c0 = new AccelClient(zeroth.url, { authHeader: HEADER });
  const [id] = await c0.createTask(`${proxy.host}/team/restart:v1`);
  assert.ok(id);
  await eventually(
    'conversion under way',
    async () => {
      const t = await task(c0, id);
      return t.running && proxy.requests.some((r) => r.path.includes('/team/restart/blobs/')) ? t : undefined;
    },
    30_000,
  );
  zeroth.proc.kill('SIGTERM');
  const code = await new Promise<number | null>((r) => zeroth.proc.once('exit', (c) => r(c)));
  assert.equal(code, 0);

  // 2. SIGKILL mid-conversion: nothing can be cleaned up; the next start resumes the task.
  proxy.requests.length = 0;
  const first = await startAccelProcess(cfgPath);
  const c1 = new AccelClient(first.url, { authHeader: HEADER });
  const resumed = await eventually(
    'conversion resumed and under way',
    async () => {
      const t = await task(c1, id);
      return t.running && proxy.requests.some((r) => r.path.includes('/team/restart/blobs/')) ? t : undefined;
    },
    30_000,
  );
  assert.equal(resumed.attempts, 1, 'the SIGTERM-interrupted attempt was not counted');
  await new Promise((r) => setTimeout(r, 500));
  first.proc.kill('SIGKILL');
  await new Promise((r) => first.proc.once('exit', r));
  assert.equal(
    await direct.headManifest(parseReference(`${reg.host}/team/restart:v1-nydus`)),
    undefined,
    'nothing tagged by the killed attempt',
  );
  // the killed conversion's scratch dir is left behind (nothing could remove it) …
  const leftovers = scratchDirs(workRestart);
  assert.equal(leftovers.length, 1, `one scratch dir left by the killed attempt: ${leftovers.join(' ')}`);

  slow = false;
  const second = await startAccelProcess(cfgPath);
  // … and the next start removes it before converting again (in a new scratch dir)
  assert.ok(!scratchDirs(workRestart).includes(leftovers[0]!), `${leftovers[0]} removed at start`);
  const c2 = new AccelClient(second.url, { authHeader: HEADER });
  const done = await eventually(
    'resumed task completes',
    async () => {
      const t = await task(c2, id);
      return t.status === 'PROCESSING' ? undefined : t;
    },
    60_000,
  );
  assert.equal(done.status, 'COMPLETED', done.reason);
  assert.equal(done.attempts, 2);
  const chk = await checkImage({
    source: `${reg.host}/team/restart:v1`,
    target: `${reg.host}/team/restart:v1-nydus`,
    sourceClient: direct,
  });
  assert.deepEqual(chk.differences, []);
  second.proc.kill('SIGTERM');
  await new Promise((r) => second.proc.once('exit', r));
  assert.deepEqual(scratchDirs(workRestart), [], 'no scratch dir after the completed conversion');
});

test('registry going away mid-push: attempt fails with its reason, nothing tagged, the retry converts', async () => {
  let down = true;
  proxy.rule = (m, p) => (down && m === 'PUT' && p.includes('/team/flaky/manifests/') ? 'drop' : 'pass');
  const accel = await startAccel({ config: config(join(dir, 'work-flaky')), listen: '127.0.0.1:0' });
  try {
    const c = new AccelClient(accel.url, { authHeader: HEADER });
    const [id] = await c.createTask(`${proxy.host}/team/flaky:v1`);
    const failed = await eventually(
      'a failed attempt',
      async () => {
        const t = await task(c, id!);
        return t.attempts >= 1 && t.reason && !t.running ? t : undefined;
      },
      30_000,
      50,
    );
    assert.equal(failed.status, 'PROCESSING');
    assert.match(failed.reason, /UNAVAILABLE/);
    assert.equal(await direct.headManifest(parseReference(`${reg.host}/team/flaky:v1-nydus`)), undefined);
    down = false;
    const done = await eventually(
      'retry completes',
      async () => {
        const t = await task(c, id!);
        return t.status === 'PROCESSING' ? undefined : t;
      },
      30_000,
    );
    assert.equal(done.status, 'COMPLETED', done.reason);
    assert.ok(done.attempts >= 2);
    assert.ok(await direct.headManifest(parseReference(`${reg.host}/team/flaky:v1-nydus`)));
  } finally {
    await accel.close();
  }
});

test('a permanent registry failure stops after the retry limit with the error kept', async () => {
  proxy.rule = (m, p) => (m === 'PUT' && p.includes('/team/broken/manifests/') ? 'fail503' : 'pass');
  const accel = await startAccel({
    config: config(join(dir, 'work-broken'), { retry_limit: 2, retry_backoff: '100ms' }),
    listen: '127.0.0.1:0',
  });
  try {
    const c = new AccelClient(accel.url, { authHeader: HEADER });
    const [id] = await c.createTask(`${proxy.host}/team/broken:v1`);
    const t = await eventually(
      'task fails for good',
      async () => {
        const x = await task(c, id!);
        return x.status === 'FAILED' ? x : undefined;
      },
      60_000,
    );
    assert.equal(t.attempts, 2);
    assert.match(t.reason, /UNAVAILABLE.*503/);
    assert.equal(await direct.headManifest(parseReference(`${reg.host}/team/broken:v1-nydus`)), undefined);
  } finally {
    await accel.close();
  }
});

test('the same source + rule is never converted twice at once', async () => {
  let delayed = true;
  proxy.rule = (m, p) => (delayed && m === 'GET' && p.includes('/team/twice/blobs/') ? { delayMs: 300 } : 'pass');
  const accel = await startAccel({ config: config(join(dir, 'work-twice')), listen: '127.0.0.1:0' });
  try {
    const c = new AccelClient(accel.url, { authHeader: HEADER });
    const [a] = await c.createTask(`${proxy.host}/team/twice:v1`);
    await eventually('first running', async () => ((await task(c, a!)).running ? true : undefined), 20_000, 20);
    const [b] = await c.createTask(`${proxy.host}/team/twice:v1`);
    assert.notEqual(a, b);
    const [b2] = await c.createTask(`${proxy.host}/team/twice:v1`);
    assert.equal(b2, b, 'a duplicate of a queued task is coalesced');
    assert.equal((await task(c, b!)).running, false, 'second waits while the first runs');
    delayed = false;
    const tb = await eventually(
      'second finishes',
      async () => {
        const t = await task(c, b!);
        return t.status === 'PROCESSING' ? undefined : t;
      },
      60_000,
    );
    const ta = await task(c, a!);
    assert.equal(ta.status, 'COMPLETED');
    assert.equal(tb.status, 'COMPLETED');
    assert.equal(tb.reason, 'already converted');
    assert.ok(tb.finished >= ta.finished);
    const tagPuts = proxy.requests.filter((r) => r.method === 'PUT' && r.path.endsWith('/team/twice/manifests/v1-nydus'));
    assert.equal(tagPuts.length, 1);
  } finally {
    await accel.close();
  }
});

test('cache_tag: another accel instance with an empty work dir reuses conversions from the cache image', async () => {
  proxy.rule = () => 'pass';
  const withCache = (work: string): Record<string, unknown> => {
    const cfg = config(work, { rules: [{ tag_suffix: '-nydus' }, { cache_tag: 'nydus-cache' }] });
    (cfg.provider as Record<string, unknown>).cache_size = 10;
    (cfg.provider as Record<string, unknown>).cache_version = 'v1';
    return cfg;
  };
  const a = await startAccel({ config: withCache(join(dir, 'work-cache-a')), listen: '127.0.0.1:0' });
  try {
    await new AccelClient(a.url, { authHeader: HEADER }).createTask(`${proxy.host}/team/cache:v1`, { sync: true });
  } finally {
    await a.close();
  }
  const cm = await direct.getManifest(parseReference(`${reg.host}/team/cache:nydus-cache`));
  const cacheMan = JSON.parse(cm.body.toString()) as { artifactType?: string; layers: unknown[]; annotations?: Record<string, string> };
  assert.equal(cacheMan.artifactType, 'application/vnd.ferry.nydus.cache.v1+json');
  assert.equal(cacheMan.layers.length, 3);
  assert.equal(cacheMan.annotations?.['containerd.io/snapshot/nydus-cache-version'], 'v1');

  proxy.requests.length = 0;
  const b = await startAccel({ config: withCache(join(dir, 'work-cache-b')), listen: '127.0.0.1:0' });
  try {
    const c = new AccelClient(b.url, { authHeader: HEADER });
    const [id] = await c.createTask(`${proxy.host}/team/cache:v2`, { sync: true });
    assert.equal((await task(c, id!)).status, 'COMPLETED');
  } finally {
    await b.close();
  }
  const layerGets = proxy.requests.filter((r) => r.method === 'GET' && layerDigests.some((d) => r.path.endsWith(`/blobs/${d}`)));
  assert.deepEqual(layerGets, [], 'no source layer was downloaded again');
  const chk = await checkImage({ source: `${reg.host}/team/cache:v2`, target: `${reg.host}/team/cache:v2-nydus`, sourceClient: direct });
  assert.deepEqual(chk.differences, []);
});
