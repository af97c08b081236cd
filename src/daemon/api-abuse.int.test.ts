/**
 * The daemon control API (`ferry daemon --apisock`) against hostile local clients: who may connect
 * (the socket is 0600 and its owner's whatever the umask; another user is refused by the kernel),
 * what happens to whatever is at the socket path already, and requests with hostile ids and paths,
 * bad JSON, oversized bodies, malformed URLs and unknown mounts. test/e2e/daemon-api.test.ts covers
 * the API with real mounts (and an id with a space, an id taken, an unknown umount); nothing here
 * mounts anything: every request is refused before a mount is attempted.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, lstatSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { requirePrereqs } from '../../test/support/prereq.js';
import { ferry } from '../../test/support/ferry.js';
import { silentLogger } from '../observe/index.js';
import { Daemon, startApi, type ApiServer } from './index.js';
import { assertRefused, chunkedBody, wire, type WireAnswer } from '../../test/support/raw-http.js';

/** The API's body limit (4 MiB: a mount request with a prefetch trace). */
const MAX_API_BODY = 4 * 1024 * 1024;

let dir: string;
let sock: string;
let daemon: Daemon;
let api: ApiServer;

before(async () => {
  requirePrereqs({ root: true });
  dir = mkdtempSync(join(tmpdir(), 'ferry-daemon-abuse-'));
  chmodSync(dir, 0o755); // other users may reach the socket path: only its own mode protects it
  sock = join(dir, 'run', 'daemon.sock');
  daemon = new Daemon({ log: silentLogger(), dataDir: join(dir, 'data'), prewarm: false });
  // the most permissive umask a daemon can inherit: the socket's mode must not depend on it
  const old = process.umask(0);
  try {
    api = await startApi(daemon, sock, silentLogger());
  } finally {
    process.umask(old);
  }
});

after(async () => {
  await api?.close();
  await daemon?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

interface Answer {
  status: number;
  body: string;
  headers: Record<string, string | string[] | undefined>;
}

function call(method: string, path: string, o: { body?: string | Buffer; socketPath?: string } = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string | number> = { 'content-type': 'application/json' };
    if (o.body !== undefined) headers['content-length'] = Buffer.byteLength(o.body);
    const req = request({ socketPath: o.socketPath ?? sock, method, path, headers }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        body += c;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, headers: res.headers }));
    });
    req.on('error', reject);
    req.end(o.body);
  });
}

const raw = (head: string, body: Buffer[] = []): Promise<WireAnswer> => wire({ path: sock }, 'daemon', head, body);

const errorOf = (a: Answer): { code: string; message: string } => JSON.parse(a.body) as { code: string; message: string };

const good = (): Record<string, unknown> => ({
  id: 'm1',
  mountpoint: join(dir, 'mnt'),
  bootstrapPath: join(dir, 'image.boot'),
  backend: { type: 'localfs', dir: join(dir, 'blobs') },
});

async function assertNothingMounted(): Promise<void> {
  assert.deepEqual(await daemon.list(), []);
  assert.equal(existsSync(join(dir, 'data', 'mounts')) ? readdirSync(join(dir, 'data', 'mounts')).length : 0, 0, 'no mount record written');
  assert.equal((await call('GET', '/api/v1/daemon')).status, 200, 'the API still answers');
}

test('socket: mode 0600 and owned by the daemon whatever the umask; another user is refused by the kernel', () => {
  const st = lstatSync(sock);
  assert.ok(st.isSocket());
  assert.equal(st.mode & 0o777, 0o600);
  assert.equal(st.uid, process.getuid!());
  assert.equal(st.gid, process.getgid!());
  assert.deepEqual(readdirSync(join(dir, 'run')), ['daemon.sock'], 'no temporary left beside it');
  // nobody (65534) can reach the path (directories 0755) but not connect
  const probe = spawnSync(
    process.execPath,
    [
      '-e',
      `
    const c = require('node:net').connect(${JSON.stringify(sock)});
    c.on('connect', () => { console.log('CONNECTED'); process.exit(0); });
    c.on('error', (e) => { console.log(e.code); process.exit(0); });
  `,
    ],
    { uid: 65534, gid: 65534, encoding: 'utf8', timeout: 10_000 },
  );
  assert.equal(probe.stdout.trim(), 'EACCES', probe.stderr);
});

test('socket path: a live socket is not taken over, a stale one is replaced, a file or symlink there is refused untouched', async () => {
  const d2 = new Daemon({ log: silentLogger(), dataDir: join(dir, 'data2'), prewarm: false });
  try {
    await assert.rejects(startApi(d2, sock, silentLogger()), (e: Error) => /another process serves .*daemon\.sock/.test(e.message));
    assert.equal((await call('GET', '/api/v1/daemon')).status, 200, 'the first daemon still serves');
    // `ferry daemon` refuses before restoring anything (the mounts recorded there are the live daemon's)
    const cli = await ferry(['daemon', '--apisock', sock, '--data-dir', join(dir, 'data')], { timeoutMs: 20_000 });
    assert.equal(cli.code, 2, cli.stderr);
    assert.match(cli.stderr, /^ferry daemon: another process serves .*daemon\.sock: stop it or choose another --apisock\n$/);
    assert.equal((await call('GET', '/api/v1/daemon')).status, 200);

    // a socket left by a killed process
    const stale = join(dir, 'stale.sock');
    const child = spawn(
      process.execPath,
      ['-e', `require('node:net').createServer().listen(${JSON.stringify(stale)}, () => console.log('up'))`],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    await new Promise<void>((r) => child.stdout.once('data', () => r()));
    child.kill('SIGKILL');
    await new Promise((r) => child.once('exit', r));
    assert.ok(lstatSync(stale).isSocket());
    const api2 = await startApi(d2, stale, silentLogger());
    try {
      assert.equal((await call('GET', '/api/v1/daemon', { socketPath: stale })).status, 200);
      assert.equal(lstatSync(stale).mode & 0o777, 0o600);
    } finally {
      await api2.close();
    }

    const file = join(dir, 'not-a-socket');
    writeFileSync(file, 'precious');
    await assert.rejects(startApi(d2, file, silentLogger()), /exists and is not a socket/);
    assert.equal(readFileSync(file, 'utf8'), 'precious');
    const link = join(dir, 'link.sock');
    symlinkSync(file, link);
    await assert.rejects(startApi(d2, link, silentLogger()), /exists and is not a socket/);
    assert.ok(lstatSync(link).isSymbolicLink());
    assert.equal(readFileSync(file, 'utf8'), 'precious');
  } finally {
    await d2.close();
  }
});

test('mount requests with hostile ids or paths are 400 naming the field; nothing is mounted or recorded', async () => {
  const bad: Array<[Record<string, unknown>, RegExp]> = [];
  for (const id of ['../x', 'a/b', '', '.', '..', '.hidden', 'x'.repeat(129), 'ünï', 'a\u0000b', '-rf'])
    bad.push([{ ...good(), id }, /^mount request: id: /]);
  for (const mountpoint of ['/', 'relative/mnt', `${dir}/x/../mnt`, `${dir}//mnt`, `${dir}/./mnt`, `${dir}/mnt/`, `${dir}/m\u0000nt`, '']) {
    bad.push([{ ...good(), mountpoint }, /^mount request: mountpoint: /]);
  }
  bad.push([
    { ...good(), bootstrapPath: `${dir}/../../etc/shadow` },
    /bootstrapPath: bootstrapPath must be in normal form .*"\/etc\/shadow"/,
  ]);
  bad.push([{ ...good(), cacheDir: 'cache' }, /cacheDir: cacheDir must be absolute/]);
  bad.push([{ ...good(), cacheDir: `${dir}/c/../../d` }, /cacheDir: .*normal form/]);
  bad.push([{ ...good(), backend: { type: 'localfs', dir: 'blobs' } }, /backend\.dir must be absolute/]);
  bad.push([{ ...good(), backend: { type: 'exec', cmd: 'sh' } }, /backend/]);
  bad.push([{ ...good(), extra: true }, /extra/]);
  bad.push([{ ...good(), mode: 'bind' }, /mode/]);
  bad.push([{ ...good(), startup: { argv: [] } }, /startup\.argv/]);
  bad.push([{ ...good(), trace: { schemaVersion: 99 } }, /trace/]);
  for (const [body, re] of bad) {
    const r = await call('POST', '/api/v1/mounts', { body: JSON.stringify(body) });
    assert.equal(r.status, 400, `${JSON.stringify(body)} → ${r.status} ${r.body}`);
    assert.equal(errorOf(r).code, 'INVALID_ARGUMENT');
    assert.match(errorOf(r).message, re, JSON.stringify(body));
  }
  await assertNothingMounted();
});

test('bad JSON, oversized bodies (declared or chunked), malformed URLs and unknown mounts get 4xx; the daemon keeps serving', async () => {
  for (const body of ['', 'not json', '{"id":', 'null', '[]', '"x"', '42']) {
    const r = await call('POST', '/api/v1/mounts', { body });
    assert.equal(r.status, 400, `${JSON.stringify(body)} → ${r.status} ${r.body}`);
    assert.equal(errorOf(r).code, 'INVALID_ARGUMENT');
  }
  // declared: refused from the header, before any of the body is sent
  const declared = await raw(`POST /api/v1/mounts HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: ${MAX_API_BODY + 1}`);
  assertRefused(declared, 413, 'declared 4 MiB + 1');
  assert.match(declared.text, /request body over 4194304 bytes/);
  // chunked: read up to the limit, then refused (or reset, should the daemon close before reading our last bytes)
  assertRefused(
    await raw('POST /api/v1/mounts HTTP/1.1\r\nTransfer-Encoding: chunked', chunkedBody(MAX_API_BODY + (64 << 10))),
    413,
    'chunked 4 MiB + 64 KiB',
    true,
  );

  for (const [method, path] of [
    ['GET', '/api/v1/mounts/nope'],
    ['DELETE', '/api/v1/mounts/nope'],
    ['GET', '/api/v1/mounts/nope/trace'],
    ['GET', '/api/v1/mounts/..%2F..%2Fetc%2Fpasswd'],
    ['DELETE', '/api/v1/mounts/..%2F..%2Fdata'],
    ['GET', '/api/v1/mounts/%2e%2e/trace'],
  ] as const) {
    const r = await call(method, path);
    assert.equal(r.status, 404, `${method} ${path} → ${r.status} ${r.body}`);
    assert.equal(errorOf(r).code, 'NOT_FOUND');
  }
  for (const path of ['/api/v1/mounts/%E0%A4%A', '/api/v1/mounts/%zz/trace']) {
    const r = await call('GET', path);
    assert.equal(r.status, 400, `${path} → ${r.status} ${r.body}`);
    assert.match(errorOf(r).message, /not valid percent-encoding/);
  }
  assert.equal((await call('PUT', '/api/v1/mounts')).status, 405);
  assert.equal((await call('GET', '/api/v1/nope')).status, 404);
  for (const line of ['GET // HTTP/1.1', 'GET http://[ HTTP/1.1', 'DELETE // HTTP/1.1']) {
    const out = (await raw(`${line}\r\nConnection: close`)).text;
    assert.match(out, /^HTTP\/1\.1 400 /, `${line} → ${out.split('\r\n')[0]}`);
    assert.match(out, /invalid request target/);
  }
  await assertNothingMounted();
});
