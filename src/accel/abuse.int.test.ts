/**
 * Hostile clients of the accel API (a real service on 127.0.0.1:0). What test/e2e/accel-webhook
 * already covers is not repeated here (a wrong header, non-JSON, CloudEvents, an unknown event
 * type, an empty resource list, an upper-case repository, a host missing from provider.source).
 * Covered here: requests without the header refused before their body is read, listing without it,
 * one host's header used for another host (alone or mixed with its own), forged payload shapes,
 * repository names and tags with traversal, oversized bodies (declared and chunked), request
 * targets that are not paths (these used to crash the process). Nothing may be queued by any of it.
 * Every source host is a closed loopback port, so nothing here reaches a network.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { request } from 'node:http';
import { startAccel, type AccelHandle } from './index.js';
import { assertRefused, chunkedBody, wire, type WireAnswer } from '../../test/support/raw-http.js';

const A = '127.0.0.1:9';
const B = '127.0.0.1:19';
const NO_HEADER_HOST = '127.0.0.1:29';
const HA = 'Bearer host-a-secret';
const HB = 'Bearer host-b-secret';
let dir: string;
let accel: AccelHandle;
let port: number;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'ferry-accel-abuse-'));
  accel = await startAccel({
    listen: '127.0.0.1:0',
    config: {
      provider: {
        work_dir: join(dir, 'work'),
        source: {
          [A]: { insecure: true, webhook: { auth_header: HA } },
          [B]: { insecure: true, webhook: { auth_header: HB } },
          [NO_HEADER_HOST]: { insecure: true },
        },
      },
      converter: { retry_limit: 1 },
    },
  });
  port = Number(new URL(accel.url).port);
});

after(async () => {
  await accel?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

interface Answer {
  status: number;
  body: string;
  headers: Record<string, string | string[] | undefined>;
}

/** One request through node:http. */
function call(method: string, path: string, o: { headers?: Record<string, string>; body?: string | Buffer } = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string | number> = { ...(o.headers ?? {}) };
    if (o.body !== undefined) headers['content-length'] = Buffer.byteLength(o.body);
    const req = request({ host: '127.0.0.1', port, method, path, headers }, (res) => {
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

const raw = (head: string, body: Buffer[] = []): Promise<WireAnswer> => wire({ port }, 'accel', head, body);

const payload = (resourceUrls: string[], type: string = 'PUSH_ARTIFACT'): string =>
  JSON.stringify({
    type,
    occur_at: 1700000000,
    operator: 'mallory',
    event_data: { resources: resourceUrls.map((u) => ({ resource_url: u, tag: 'v1' })), repository: { name: 'app', namespace: 'library' } },
  });

const codeOf = (a: Answer): string => (JSON.parse(a.body) as { code: string }).code;

async function assertNothingQueued(): Promise<void> {
  assert.deepEqual(await accel.service.queue.list(), [], 'no task was created');
  assert.equal((await call('GET', '/api/v1/health')).body, 'Ok', 'the service still answers');
}

test('without the Authorization header: create and list are 401, decided before the body is read', async () => {
  for (const body of [payload([`${A}/library/app:v1`]), payload([`${A}/library/app:v1`], 'PULL_ARTIFACT'), 'not even json']) {
    const r = await call('POST', '/api/v1/conversions', { headers: { 'content-type': 'application/json' }, body });
    assert.equal(r.status, 401, body);
    assert.equal(codeOf(r), 'ERR_UNAUTHORIZED');
  }
  // 8 MiB declared, none sent: the answer comes without waiting for the body (and is 401, not 413)
  assertRefused(
    await raw('POST /api/v1/conversions HTTP/1.1\r\nContent-Type: application/json\r\nContent-Length: 8388608'),
    401,
    'unauthenticated 8 MiB',
  );
  for (const headers of [{}, { authorization: 'Bearer wrong' }, { authorization: `${HA}x` }, { authorization: '' }]) {
    const r = await call('GET', '/api/v1/conversions', { headers });
    assert.equal(r.status, 401, JSON.stringify(headers));
    assert.equal(codeOf(r), 'ERR_UNAUTHORIZED');
  }
  await assertNothingQueued();
});

test("one host's header never creates tasks of another host, even mixed with its own resources", async () => {
  const post = (body: string, auth: string): Promise<Answer> =>
    call('POST', '/api/v1/conversions', { headers: { authorization: auth, 'content-type': 'application/json' }, body });
  let r = await post(payload([`${B}/library/app:v1`]), HA);
  assert.equal(r.status, 401);
  assert.match(JSON.parse(r.body).message as string, /not the webhook\.auth_header of 127\.0\.0\.1:19/);
  r = await post(payload([`${A}/library/app:v1`, `${B}/library/app:v1`]), HA);
  assert.equal(r.status, 401, 'a mixed payload is refused as a whole');
  r = await post(payload([`${NO_HEADER_HOST}/library/app:v1`]), HA);
  assert.equal(r.status, 401);
  assert.match(JSON.parse(r.body).message as string, /no webhook\.auth_header configured for 127\.0\.0\.1:29/);
  // a scheme in front of the host changes nothing
  r = await post(payload([`http://${B}/library/app:v1`]), HA);
  assert.equal(r.status, 401);
  await assertNothingQueued();
});

test('forged payload shapes and traversal in names are 400 (authenticated), nothing queued', async () => {
  const post = (body: string): Promise<Answer> =>
    call('POST', '/api/v1/conversions', { headers: { authorization: HA, 'content-type': 'application/json' }, body });
  const shapes = [
    'null',
    '[]',
    '"PUSH_ARTIFACT"',
    '42',
    '{}',
    JSON.stringify({ type: 'PUSH_ARTIFACT' }),
    JSON.stringify({ type: 'PUSH_ARTIFACT', event_data: {} }),
    JSON.stringify({ type: 'PUSH_ARTIFACT', event_data: { resources: {} } }),
    JSON.stringify({ type: 'PUSH_ARTIFACT', event_data: { resources: [{ tag: 'v1' }] } }),
    JSON.stringify({ type: 'PUSH_ARTIFACT', event_data: { resources: [{ resource_url: '' }] } }),
    JSON.stringify({ type: 'PUSH_ARTIFACT', event_data: { resources: [{ resource_url: 42 }] } }),
    JSON.stringify({ type: 42, event_data: { resources: [{ resource_url: `${A}/library/app:v1` }] } }),
    JSON.stringify({ event_data: { resources: [{ resource_url: `${A}/library/app:v1` }] } }),
    JSON.stringify({ type: '__proto__', event_data: { resources: [{ resource_url: `${A}/library/app:v1` }] } }),
    `{"type":"PUSH_ARTIFACT","event_data":{"resources":[{"resource_url":"${A}/library/app:v1"}]}`, // truncated
  ];
  for (const body of shapes) {
    const r = await post(body);
    assert.equal(r.status, 400, `${body} → ${r.status} ${r.body}`);
    assert.equal(codeOf(r), 'ERR_ILLEGAL_PARAMETER');
  }
  const names = [
    `${A}/../../etc/passwd:v1`,
    `${A}/library/..:v1`,
    `${A}/library/../app:v1`,
    `${A}/./library/app:v1`,
    `${A}/library/%2e%2e/app:v1`,
    `${A}//library/app:v1`,
    `${A}/library/app:../../x`,
    `${A}/library/app:v1/../x`,
    `${A}/library/app@sha256:../../etc`,
    `${A}/library/app\u0000:v1`,
    `${A}/library/app:v1\nX-Injected: 1`,
    `${A}/${'a/'.repeat(200)}x:v1`,
  ];
  for (const u of names) {
    const r = await post(payload([u]));
    assert.equal(r.status, 400, `${JSON.stringify(u)} → ${r.status} ${r.body}`);
  }
  // 10 000 resources of which the last is bad: nothing of the rest is queued
  const many = payload([...Array.from({ length: 9999 }, (_, i) => `${A}/library/app${i}:v1`), `${A}/library/..:v1`]);
  assert.equal((await post(many)).status, 400);
  await assertNothingQueued();
});

test('oversized bodies are 413 whether declared or chunked; the service keeps serving', async () => {
  // declared: refused from the header, before any of the body is sent
  assertRefused(
    await raw(`POST /api/v1/conversions HTTP/1.1\r\nAuthorization: ${HA}\r\nContent-Length: ${(1 << 20) + 1}`),
    413,
    'declared 1 MiB + 1',
  );
  // chunked: read up to the limit, then refused (or reset, should the server close before reading our last bytes)
  assertRefused(
    await raw(
      `POST /api/v1/conversions HTTP/1.1\r\nAuthorization: ${HA}\r\nTransfer-Encoding: chunked`,
      chunkedBody((1 << 20) + (64 << 10)),
    ),
    413,
    'chunked 1 MiB + 64 KiB',
    true,
  );
  await assertNothingQueued();
});

test('request targets that are not paths are 400 and the service survives them', async () => {
  for (const line of ['GET // HTTP/1.1', 'GET http://[ HTTP/1.1', 'POST // HTTP/1.1', 'GET http://a:99999/ HTTP/1.1']) {
    const out = (await raw(`${line}\r\nConnection: close`)).text;
    assert.match(out, /^HTTP\/1\.1 400 /, `${line} → ${out.split('\r\n')[0]}`);
    assert.match(out, /invalid request target/);
  }
  // `//api/v1/conversions` names host "api": not the conversions route
  assert.match((await raw('POST //api/v1/conversions HTTP/1.1\r\nConnection: close')).text, /^HTTP\/1\.1 404 /);
  // unknown query values do not widen or break the list
  for (const q of ['?limit=-1', '?limit=abc', '?limit=1e9', '?limit=0']) {
    const r = await call('GET', `/api/v1/conversions${q}`, { headers: { authorization: HA } });
    assert.equal(r.status, 200, q);
    assert.deepEqual(JSON.parse(r.body), []);
  }
  await assertNothingQueued();
});
