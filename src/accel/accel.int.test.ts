import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, mkdir, rm, writeFile } from 'node:fs/promises';
import { existsSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'node:http';
import { spawn } from 'node:child_process';
import { FerryError } from '../core/index.js';
import { createLogger, type Logger } from '../observe/index.js';
import { startRegistry } from '../registry/index.js';
import { FERRY_BIN } from '../../test/support/paths.js';
import { ferry } from '../../test/support/ferry.js';
import { AccelClient, startAccel } from './index.js';

test('startAccel listens on server.uds when configured', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'ferry-accel-uds-'));
  const sock = join(dir, 'accel.sock');
  const h = await startAccel({ config: { server: { uds: sock }, provider: { work_dir: join(dir, 'work') } } });
  try {
    assert.equal(h.url, `unix:${sock}`);
    const body = await new Promise<string>((resolve, reject) => {
      const req = request({ socketPath: sock, path: '/api/v1/health' }, (res) => {
        let b = '';
        res.on('data', (d: Buffer) => {
          b += d;
        });
        res.on('end', () => resolve(b));
      });
      req.on('error', reject);
      req.end();
    });
    assert.equal(body, 'Ok');
    // the socket of a running service is not taken over; a file at server.uds is not deleted
    await assert.rejects(
      startAccel({ config: { server: { uds: sock }, provider: { work_dir: join(dir, 'work2') } } }),
      /server\.uds .*accel\.sock is served by another process/,
    );
    await writeFile(join(dir, 'precious'), 'data');
    await assert.rejects(
      startAccel({ config: { server: { uds: join(dir, 'precious') }, provider: { work_dir: join(dir, 'work3') } } }),
      /exists and is not a socket/,
    );
    assert.equal(readFileSync(join(dir, 'precious'), 'utf8'), 'data');
  } finally {
    await h.close();
    await rm(dir, { recursive: true, force: true });
  }
});

/** Collects a logger's JSON lines. */
function captureLog(): { log: Logger; lines: Array<{ level: number; msg: string } & Record<string, unknown>> } {
  const lines: Array<{ level: number; msg: string } & Record<string, unknown>> = [];
  const log = createLogger({
    level: 'info',
    destination: {
      write: (s: string) => {
        lines.push(JSON.parse(s) as (typeof lines)[number]);
      },
    },
  });
  return { log, lines };
}

test("work dir: a killed predecessor's scratch dirs are removed at start; a second service on the same work dir is refused and touches nothing", async () => {
  const dir = await mkdtemp(join(tmpdir(), 'ferry-accel-workdir-'));
  const work = join(dir, 'work');
  try {
    // what a SIGKILL mid-conversion leaves: convert's scratch dir, and files that are not scratch
    await mkdir(join(work, 'ferry-convert-AbC123', 'layer-x'), { recursive: true });
    await writeFile(join(work, 'ferry-convert-AbC123', 'layer-x', 'blob'), Buffer.alloc(4096));
    await writeFile(join(work, 'ferry-convert-not-a-dir'), 'kept');
    await mkdir(join(work, 'other-dir'));
    const { log, lines } = captureLog();
    const a = await startAccel({ config: { provider: { work_dir: work } }, listen: '127.0.0.1:0', log });
    try {
      assert.equal(existsSync(join(work, 'ferry-convert-AbC123')), false, 'leftover scratch dir removed');
      assert.ok(existsSync(join(work, 'ferry-convert-not-a-dir')) && existsSync(join(work, 'other-dir')), 'nothing else touched');
      assert.ok(lines.some((l) => /removed the scratch dirs/.test(l.msg) && JSON.stringify(l.removed) === '["ferry-convert-AbC123"]'));
      // a conversion of the running service is under way: its scratch dir must survive a second start
      await mkdir(join(work, 'ferry-convert-InUse1'));
      const second = await startAccel({ config: { provider: { work_dir: work } }, listen: '127.0.0.1:0' }).then(
        async (h) => {
          await h.close();
          return undefined;
        },
        (e: unknown) => e,
      );
      assert.ok(FerryError.hasCode(second, 'FAILED_PRECONDITION'), `second start refused, got ${String(second)}`);
      assert.match((second as Error).message, /in use by another running ferry accel \(pid \d+\).*own provider\.work_dir/);
      assert.ok(existsSync(join(work, 'ferry-convert-InUse1')), "the running service's scratch dir survives");
      assert.equal((await fetch(`${a.url}/api/v1/health`)).status, 200, 'the first service still serves');
    } finally {
      await a.close();
    }
    // closed cleanly: the lock is free again, and the next start cleans up
    const b = await startAccel({ config: { provider: { work_dir: work } }, listen: '127.0.0.1:0' });
    await b.close();
    assert.equal(existsSync(join(work, 'ferry-convert-InUse1')), false);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test("work dir: with driver.config.work_dir elsewhere, scratch lives in a subdir only this work dir's holder uses; foreign ferry-convert-* stay", async () => {
  const dir = await mkdtemp(join(tmpdir(), 'ferry-accel-scratch-'));
  const shared = join(dir, 'shared-scratch'); // e.g. a big disk several accels (or ferry convert) use
  const cfg = (work: string): Record<string, unknown> => ({
    provider: { work_dir: work },
    converter: { driver: { type: 'nydus', config: { work_dir: shared } } },
  });
  try {
    await mkdir(join(shared, 'ferry-convert-someone-else'), { recursive: true });
    const a = await startAccel({ config: cfg(join(dir, 'work-a')), listen: '127.0.0.1:0' });
    const b = await startAccel({ config: cfg(join(dir, 'work-b')), listen: '127.0.0.1:0' });
    const sa = a.service.scratchDir;
    const sb = b.service.scratchDir;
    await Promise.all([a.close(), b.close()]);
    assert.match(sa, /\/shared-scratch\/ferry-accel-scratch-[0-9a-f]{12}$/);
    assert.notEqual(sa, sb, 'two work dirs, two scratch dirs');
    await mkdir(join(sa, 'ferry-convert-leftover'), { recursive: true });
    await mkdir(join(sb, 'ferry-convert-of-b'), { recursive: true });
    const a2 = await startAccel({ config: cfg(join(dir, 'work-a')), listen: '127.0.0.1:0' });
    await a2.close();
    assert.equal(a2.service.scratchDir, sa, 'the same work dir finds its scratch dir again');
    assert.equal(existsSync(join(sa, 'ferry-convert-leftover')), false);
    assert.ok(existsSync(join(sb, 'ferry-convert-of-b')), "another accel's scratch is not touched");
    assert.ok(existsSync(join(shared, 'ferry-convert-someone-else')), 'nothing directly in the shared dir is touched');
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('work dir: a second `ferry accel` process on a work dir in use exits 2 naming the fix', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'ferry-accel-twice-'));
  const cfg = join(dir, 'config.yaml');
  await writeFile(cfg, `server: {host: 127.0.0.1, port: 0}\nprovider: {work_dir: ${join(dir, 'work')}}\n`);
  const first = spawn(process.execPath, [FERRY_BIN, 'accel', '--config', cfg], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, FERRY_LOG_LEVEL: 'warn' },
  });
  try {
    await new Promise<void>((resolve, reject) => {
      let out = '';
      first.stdout.on('data', (d: Buffer) => {
        out += d.toString();
        if (out.includes('accel listening on')) resolve();
      });
      first.once('exit', (code) => reject(new Error(`first accel exited ${code}`)));
    });
    // (killed after 20 s should it start anyway)
    const second = await ferry(['accel', '--config', cfg], { env: { FERRY_LOG_LEVEL: 'warn' }, timeoutMs: 20_000 });
    assert.equal(second.code, 2, second.stderr);
    assert.match(
      second.stderr,
      new RegExp(`ferry accel: work dir ${join(dir, 'work')} is in use by another running ferry accel \\(pid ${first.pid}\\)`),
    );
  } finally {
    first.kill('SIGTERM');
    await new Promise((r) => first.once('exit', r));
    await rm(dir, { recursive: true, force: true });
  }
});

test('a config without any webhook.auth_header: a warning at start, creation and listing refused', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'ferry-accel-noauth-'));
  const { log, lines } = captureLog();
  const h = await startAccel({
    config: { provider: { work_dir: join(dir, 'work'), source: { 'reg.example:5000': { insecure: true } } } },
    listen: '127.0.0.1:0',
    log,
  });
  try {
    assert.ok(
      lines.some((l) => l.level === 40 && /no provider\.source\.<host>\.webhook\.auth_header is configured/.test(l.msg)),
      JSON.stringify(lines),
    );
    const list = await fetch(`${h.url}/api/v1/conversions`);
    assert.equal(list.status, 401);
    assert.match(((await list.json()) as { message: string }).message, /Ferry requires one to create or list tasks/);
    const create = await fetch(`${h.url}/api/v1/conversions`, { method: 'POST', headers: { authorization: 'anything' }, body: '{}' });
    assert.equal(create.status, 401);
  } finally {
    await h.close();
    await rm(dir, { recursive: true, force: true });
  }
});

test('task list needs the auth header and shows only the tasks of the hosts configured with it; a never-pushed source "does not exist"', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'ferry-accel-list-'));
  const reg = await startRegistry({ listen: '127.0.0.1:0', dataDir: join(dir, 'registry'), adminPassword: 'Adm1n-pw' });
  const other = '127.0.0.1:9'; // nothing listens: its tasks fail (connection refused)
  const h = await startAccel({
    listen: '127.0.0.1:0',
    config: {
      provider: {
        work_dir: join(dir, 'work'),
        source: {
          [reg.host]: { auth: Buffer.from('admin:Adm1n-pw').toString('base64'), insecure: true, webhook: { auth_header: 'Bearer for-a' } },
          [other]: { insecure: true, webhook: { auth_header: 'Bearer for-b' } },
        },
      },
      converter: { retry_limit: 1 },
    },
  });
  const addr = h.url.replace('http://', '');
  try {
    const a = new AccelClient(addr, { authHeader: 'Bearer for-a' });
    const b = new AccelClient(addr, { authHeader: 'Bearer for-b' });
    const [ida] = await a.createTask(`${reg.host}/team/never-pushed:v1`);
    const [idb] = await b.createTask(`${other}/team/x:v1`);
    assert.ok(ida && idb);
    await h.service.waitFor(ida);
    await h.service.waitFor(idb);
    assert.deepEqual(
      (await a.listTasks()).map((t) => t.id),
      [ida],
    );
    assert.deepEqual(
      (await b.listTasks()).map((t) => t.id),
      [idb],
    );
    await assert.rejects(new AccelClient(addr).listTasks(), (e: unknown) => FerryError.hasCode(e, 'UNAUTHENTICATED'));
    await assert.rejects(new AccelClient(addr, { authHeader: 'Bearer for-ab' }).listTasks(), (e: unknown) =>
      FerryError.hasCode(e, 'UNAUTHENTICATED'),
    );
    // a header of host B does not create tasks of host A
    await assert.rejects(
      b.createTask(`${reg.host}/team/y:v1`),
      (e: unknown) => FerryError.hasCode(e, 'UNAUTHENTICATED') && /not the webhook\.auth_header of/.test((e as Error).message),
    );

    const never = (await a.listTasks())[0]!;
    assert.equal(never.status, 'FAILED');
    assert.match(never.reason, /^NOT_FOUND: source .*team\/never-pushed:v1 does not exist in the registry/);
    assert.doesNotMatch(never.reason, /no longer/);

    // the CLI: list without the header names the flag and where `ferry up` keeps the value
    const noHeader = await ferry(['task', 'list', '--addr', addr], { env: { FERRY_ACCEL_AUTH_HEADER: '' } });
    assert.equal(noHeader.code, 2);
    assert.match(noHeader.stderr, /401 ERR_UNAUTHORIZED/);
    assert.match(noHeader.stderr, /no --auth-header given: pass --auth-header VALUE \(or set FERRY_ACCEL_AUTH_HEADER\)/);
    assert.match(noHeader.stderr, /~\/\.ferry\/up-secrets\.json, key webhookAuthHeader/);
    const create = await ferry(['task', 'create', `${reg.host}/team/z:v1`, '--addr', addr], { env: { FERRY_ACCEL_AUTH_HEADER: '' } });
    assert.equal(create.code, 2);
    assert.match(create.stderr, /--auth-header.*up-secrets\.json/s);
    const wrong = await ferry(['task', 'list', '--addr', addr, '--auth-header', 'nope']);
    assert.match(wrong.stderr, /the --auth-header value is not accepted/);
    const listed = await ferry(['task', 'list', '--addr', addr, '--json'], { env: { FERRY_ACCEL_AUTH_HEADER: 'Bearer for-b' } });
    assert.equal(listed.code, 0, listed.stderr);
    assert.deepEqual(
      (JSON.parse(listed.stdout) as Array<{ id: string }>).map((t) => t.id),
      [idb],
    );
    const synced = await ferry([
      'task',
      'create',
      `${reg.host}/team/never-pushed:v2`,
      '--sync',
      '--addr',
      addr,
      '--auth-header',
      'Bearer for-a',
    ]);
    assert.equal(synced.code, 1);
    assert.match(synced.stderr, /ERR_CONVERT_FAILED .*never-pushed:v2: NOT_FOUND: source .* does not exist in the registry/);
  } finally {
    await h.close();
    await reg.close();
    await rm(dir, { recursive: true, force: true });
  }
});

test('ferry accel with database.postgres: a password in the URL is refused, an unreachable database is named; the password is never printed', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'ferry-accel-pgcfg-'));
  try {
    const inUrl = join(dir, 'in-url.yaml');
    await writeFile(
      inUrl,
      `provider: {work_dir: ${join(dir, 'w1')}}\ndatabase: {postgres: "postgres://ferry:hunter2-secret@127.0.0.1:9/ferry"}\n`,
    );
    const a = await ferry(['accel', '--config', inUrl, '--listen', '127.0.0.1:0'], { timeoutMs: 30_000 });
    assert.equal(a.code, 2, a.stderr);
    assert.match(a.stderr, /database\.postgres.*carries a password/);
    assert.doesNotMatch(a.stdout + a.stderr, /hunter2-secret/);
    // nothing listens on port 9: the start fails naming the problem, not the password from the environment
    const down = join(dir, 'down.yaml');
    await writeFile(
      down,
      `provider: {work_dir: ${join(dir, 'w2')}}\ndatabase: {postgres: {url: "postgres://ferry@127.0.0.1:9/ferry", password_env: FERRY_TEST_PW}}\n`,
    );
    const b = await ferry(['accel', '--config', down, '--listen', '127.0.0.1:0'], {
      env: { FERRY_TEST_PW: 'hunter2-secret' },
      timeoutMs: 30_000,
    });
    assert.equal(b.code, 2, b.stderr);
    assert.match(b.stderr, /ferry accel: task queue database postgres:\/\/ferry@127\.0\.0\.1:9\/ferry: connect ECONNREFUSED/);
    assert.doesNotMatch(b.stdout + b.stderr, /hunter2-secret/);
    const c = await ferry(['accel', '--config', down, '--listen', '127.0.0.1:0'], { env: { FERRY_TEST_PW: '' }, timeoutMs: 30_000 });
    assert.equal(c.code, 2);
    assert.match(c.stderr, /environment variable FERRY_TEST_PW \(password_env\) is not set/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
