/**
 * Abuse of a scheduler by strangers (bounded, loopback): the peer RPC answers only requests signed
 * with the cluster secret (unsigned, forged, stale and replayed signatures are refused before the
 * body is read or state changes), malformed bodies are refused with 400, oversized ones with 413, and the
 * server stays up, the preheat API keeps its own bearer tokens, and a scheduler reachable from the
 * network refuses to start without a cluster secret.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { ClusterAuth, CLUSTER_AUTH_WINDOW_MS } from '../common/cluster-auth.js';
import { rawRequest, hugeRequest } from '../testing/raw.js';
import { createLogger } from '../../observe/index.js';
import { startOrigin } from '../testing/origin.js';
import { startScheduler, type SchedulerHandle } from './index.js';

const SECRET = 'scheduler-abuse-cluster-secret';
const auth = new ClusterAuth(SECRET);
const stranger = new ClusterAuth('some-other-cluster-secret');
const HOST = { id: 'h1', ip: '127.0.0.1', hostname: 'h1', type: 'normal', uploadUrl: 'http://127.0.0.1:9' };
const TASK = 'ab'.repeat(32);

describe('scheduler abuse', () => {
  let s: SchedulerHandle;
  before(async () => {
    s = await startScheduler({ listen: '127.0.0.1:0', config: { cluster: { token: SECRET }, preheat: { tokens: ['pat-abuse'] } } });
  });
  after(async () => {
    await s.close();
  });

  const signed = (
    method: string,
    path: string,
    body?: string,
    signer = auth,
    at?: number,
  ): Promise<ReturnType<typeof rawRequest> extends Promise<infer R> ? R : never> =>
    rawRequest(`${s.url}${path}`, {
      method,
      ...(body !== undefined ? { body } : {}),
      headers: { authorization: signer.sign(method, path, body, at), 'content-type': 'application/json' },
    });

  test('unsigned, forged and stale RPC is refused with 401 and changes nothing', async () => {
    const announce = JSON.stringify(HOST);
    const register = JSON.stringify({
      peerId: 'p1',
      hostId: 'h1',
      taskId: TASK,
      download: { url: 'http://127.0.0.1:9/v2/x/blobs/sha256:00', contentLength: 10, actualPieceLength: 10 },
    });
    const calls: [string, string, string | undefined][] = [
      ['PUT', '/api/v1/hosts/h1', announce],
      ['POST', '/api/v1/peers', register],
      ['POST', '/api/v1/peers/p1/events', '{"events":[]}'],
      ['POST', '/api/v1/peers/p1/reschedule', '{}'],
      ['DELETE', '/api/v1/peers/p1', undefined],
      ['DELETE', '/api/v1/hosts/h1', undefined],
      ['DELETE', `/api/v1/tasks/${TASK}/hosts/h1`, undefined],
      ['GET', '/api/v1/hosts', undefined],
      ['GET', `/api/v1/tasks/${TASK}`, undefined],
    ];
    for (const [method, path, body] of calls) {
      const none = await rawRequest(`${s.url}${path}`, { method, ...(body !== undefined ? { body } : {}) });
      assert.equal(none.status, 401, `unsigned ${method} ${path}: ${none.body.toString()}`);
      assert.equal(none.headers['www-authenticate'], 'Ferry-Cluster');
      assert.match(none.body.toString(), /no cluster credentials/);
      // The secret as a bearer token is not a credential either.
      assert.equal(
        (
          await rawRequest(`${s.url}${path}`, {
            method,
            ...(body !== undefined ? { body } : {}),
            headers: { authorization: `Bearer ${SECRET}` },
          })
        ).status,
        401,
      );
      const forged = await signed(method, path, body, stranger);
      assert.equal(forged.status, 401, `forged ${method} ${path}`);
      assert.match(forged.body.toString(), /bad cluster signature/);
      const stale = await signed(method, path, body, auth, Date.now() - CLUSTER_AUTH_WINDOW_MS - 60_000);
      assert.equal(stale.status, 401, `stale ${method} ${path}`);
      assert.match(stale.body.toString(), /window/);
      const future = await signed(method, path, body, auth, Date.now() + CLUSTER_AUTH_WINDOW_MS + 60_000);
      assert.equal(future.status, 401);
    }
    // A signature for one request does not authorise another (path, method, body).
    const h = auth.sign('GET', '/api/v1/hosts');
    assert.equal((await rawRequest(`${s.url}/api/v1/tasks/${TASK}`, { headers: { authorization: h } })).status, 401);
    const p = auth.sign('PUT', '/api/v1/hosts/h1', announce);
    assert.equal(
      (
        await rawRequest(`${s.url}/api/v1/hosts/h1`, {
          method: 'PUT',
          body: JSON.stringify({ ...HOST, uploadUrl: 'http://169.254.169.254' }),
          headers: { authorization: p },
        })
      ).status,
      401,
    );
    assert.equal(s.service.hostsOf().length, 0, 'no host was registered by a stranger');
    assert.equal(s.service.state.tasks.size, 0);
  });

  test('a signed request works once; its replay is refused', async () => {
    const announce = JSON.stringify({ ...HOST, id: 'h2', hostname: 'h2' });
    const h = auth.sign('PUT', '/api/v1/hosts/h2', announce);
    const first = await rawRequest(`${s.url}/api/v1/hosts/h2`, { method: 'PUT', body: announce, headers: { authorization: h } });
    assert.equal(first.status, 200, first.body.toString());
    assert.equal(s.service.hostsOf().length, 1);
    const again = await rawRequest(`${s.url}/api/v1/hosts/h2`, { method: 'PUT', body: announce, headers: { authorization: h } });
    assert.equal(again.status, 401);
    assert.match(again.body.toString(), /replayed/);
    const list = await signed('GET', '/api/v1/hosts');
    assert.equal(list.status, 200);
    assert.deepEqual(
      (JSON.parse(list.body.toString()) as { id: string }[]).map((x) => x.id),
      ['h2'],
    );
    assert.equal((await signed('DELETE', '/api/v1/hosts/h2')).status, 200);
  });

  test('malformed bodies from members: 400, never a crash', async () => {
    const bad: [string, string, string][] = [
      ['PUT', '/api/v1/hosts/h3', '{"id":'],
      ['PUT', '/api/v1/hosts/h3', '[]'],
      ['PUT', '/api/v1/hosts/h3', 'null'],
      ['PUT', '/api/v1/hosts/h3', '"x"'],
      ['PUT', '/api/v1/hosts/h3', JSON.stringify({ ...HOST, id: 'h3', uploadUrl: 'file:///etc/passwd' })],
      ['PUT', '/api/v1/hosts/h3', JSON.stringify({ ...HOST, id: 'h3', type: 'root' })],
      ['POST', '/api/v1/peers', '{}'],
      [
        'POST',
        '/api/v1/peers',
        JSON.stringify({
          peerId: 'p',
          hostId: 'h',
          taskId: '../../x',
          download: { url: 'http://x/', contentLength: 1, actualPieceLength: 1 },
        }),
      ],
      [
        'POST',
        '/api/v1/peers',
        JSON.stringify({ peerId: 'p', hostId: 'h', taskId: TASK, download: { url: 'http://x/', contentLength: -1, actualPieceLength: 1 } }),
      ],
      ['POST', '/api/v1/peers/p/events', '{"events":"no"}'],
      ['POST', '/api/v1/peers/p/events', '{"events":[null]}'],
      ['POST', '/api/v1/peers/p/events', '{"events":[{"kind":"pieceFinished"}]}'],
      ['POST', '/api/v1/peers/p/reschedule', '{"candidateParentIds":[1]}'],
    ];
    for (const [method, path, body] of bad) {
      const r = await signed(method, path, body);
      assert.equal(r.status, 400, `${method} ${path} ${body}: ${r.status} ${r.body.toString()}`);
    }
    assert.equal((await rawRequest(`${s.url}/healthy`)).status, 200);
  });

  test("huge bodies: a stranger's is refused unread, a member's above 8 MiB with 413; the server stays up", async () => {
    // A stranger announcing 1 GiB: refused at once, the connection closed, far less than that read.
    const strangerBig = await hugeRequest(`${s.url}/api/v1/peers`, { declared: 1024 * 1024 * 1024, max: 1024 * 1024 * 1024 });
    assert.equal(strangerBig.status, 401);
    assert.ok(strangerBig.sent < 64 * 1024 * 1024, `sent ${strangerBig.sent} bytes before the answer`);
    // A signed request declaring more than the limit: refused before reading.
    const declared = await hugeRequest(`${s.url}/api/v1/peers`, {
      declared: 9 * 1024 * 1024,
      max: 9 * 1024 * 1024,
      headers: { authorization: auth.sign('POST', '/api/v1/peers') },
    });
    assert.equal(declared.status, 413);
    assert.match(declared.body.toString(), /exceeds/);
    // Chunked, no length: read up to the limit, then refused.
    const chunked = await hugeRequest(`${s.url}/api/v1/peers`, {
      max: 12 * 1024 * 1024,
      headers: { authorization: auth.sign('POST', '/api/v1/peers') },
    });
    assert.equal(chunked.status, 413);
    // The preheat API: without a token refused unread; with one, bodies over 1 MiB refused.
    const job = await hugeRequest(`${s.url}/oapi/v1/jobs`, { declared: 512 * 1024 * 1024, max: 512 * 1024 * 1024 });
    assert.equal(job.status, 401);
    const bigJob = await hugeRequest(`${s.url}/oapi/v1/jobs`, {
      declared: 2 * 1024 * 1024,
      max: 2 * 1024 * 1024,
      headers: { authorization: 'Bearer pat-abuse' },
    });
    assert.equal(bigJob.status, 413);
    assert.equal((await rawRequest(`${s.url}/healthy`)).status, 200);
    assert.equal((await signed('GET', '/api/v1/hosts')).status, 200);
  });

  test('preheat API: no token or a wrong one is refused; the right one is accepted; cluster signatures are not preheat tokens', async () => {
    const job = JSON.stringify({ type: 'preheat', args: { type: 'file', url: 'http://127.0.0.1:9/v2/x/blobs/sha256:00' } });
    const none = await rawRequest(`${s.url}/oapi/v1/jobs`, { method: 'POST', body: job });
    assert.equal(none.status, 401);
    assert.equal(none.headers['www-authenticate'], 'Bearer');
    for (const a of [
      'Bearer pat-abusx',
      'Bearer pat-abuse2',
      'Bearer ',
      'Basic cGF0LWFidXNl',
      auth.sign('POST', '/oapi/v1/jobs', job),
      `Bearer ${SECRET}`,
    ]) {
      assert.equal(
        (await rawRequest(`${s.url}/oapi/v1/jobs`, { method: 'POST', body: job, headers: { authorization: a } })).status,
        401,
        a,
      );
      assert.equal((await rawRequest(`${s.url}/oapi/v1/jobs`, { headers: { authorization: a } })).status, 401, a);
    }
    const ok = await rawRequest(`${s.url}/oapi/v1/jobs`, {
      method: 'POST',
      body: job,
      headers: { authorization: 'Bearer pat-abuse', 'content-type': 'application/json' },
    });
    assert.equal(ok.status, 200, ok.body.toString());
    const malformed = await rawRequest(`${s.url}/oapi/v1/jobs`, {
      method: 'POST',
      body: '{"type":',
      headers: { authorization: 'Bearer pat-abuse' },
    });
    assert.equal(malformed.status, 400);
    const notObject = await rawRequest(`${s.url}/oapi/v1/jobs`, {
      method: 'POST',
      body: '[1,2]',
      headers: { authorization: 'Bearer pat-abuse' },
    });
    assert.equal(notObject.status, 400);
  });
});

test('a scheduler on a non-loopback address without a cluster secret refuses to start, naming the fix', async () => {
  await assert.rejects(startScheduler({ listen: '0.0.0.0:0' }), (err: Error) => {
    assert.match(err.message, /no cluster secret/);
    assert.match(err.message, /cluster\.tokenFile/);
    assert.match(err.message, /FERRY_CLUSTER_TOKEN/);
    assert.match(err.message, /--cluster-token-file/);
    assert.match(err.message, /--listen 127\.0\.0\.1:0/);
    return true;
  });
  await assert.rejects(startScheduler({ listen: '127.0.0.1:0', config: { cluster: { token: 'short' } } }), /too short/);
});

test('preheat job answers and logs never carry the credentials a job was given', async () => {
  const lines: string[] = [];
  const log = createLogger({
    level: 'debug',
    destination: {
      write: (l: string) => {
        lines.push(l);
      },
    },
  });
  const origin = await startOrigin();
  const s = await startScheduler({
    listen: '127.0.0.1:0',
    log,
    config: { cluster: { token: SECRET }, preheat: { tokens: ['pat-redact'] } },
  });
  const secrets = ['urlpass-S1', 'Bearer registry-S2', 'apikey-S3', 'password-S4', 'amzsig-S5', 'token-S6'];
  try {
    const jobs = [
      {
        type: 'preheat',
        args: {
          type: 'image',
          url: `http://user:urlpass-S1@${origin.host}/v2/library/none/manifests/v1`,
          headers: { Authorization: 'Bearer registry-S2', 'X-Api-Key': 'apikey-S3' },
          username: 'u',
          password: 'password-S4',
        },
      },
      {
        type: 'preheat',
        args: {
          type: 'file',
          urls: [`${origin.url}/v2/x/blobs/sha256:${'0'.repeat(64)}?X-Amz-Signature=amzsig-S5&access_token=token-S6&keep=1`],
          headers: { authorization: 'Bearer registry-S2' },
        },
      },
    ];
    const ids: number[] = [];
    const bodies: string[] = [];
    for (const j of jobs) {
      const r = await rawRequest(`${s.url}/oapi/v1/jobs`, {
        method: 'POST',
        body: JSON.stringify(j),
        headers: { authorization: 'Bearer pat-redact', 'content-type': 'application/json' },
      });
      assert.equal(r.status, 200, r.body.toString());
      bodies.push(r.body.toString());
      ids.push((JSON.parse(r.body.toString()) as { id: number }).id);
    }
    // Both fail (no manifest, no seed peer): the failure paths are answered and logged too.
    for (const id of ids) {
      let state = 'PENDING';
      for (let i = 0; i < 200 && state === 'PENDING'; i++) {
        const r = await rawRequest(`${s.url}/oapi/v1/jobs/${id}`, { headers: { authorization: 'Bearer pat-redact' } });
        bodies.push(r.body.toString());
        state = (JSON.parse(r.body.toString()) as { state: string }).state;
        if (state === 'PENDING') await new Promise((res) => setTimeout(res, 25));
      }
      assert.equal(state, 'FAILURE');
    }
    bodies.push((await rawRequest(`${s.url}/oapi/v1/jobs`, { headers: { authorization: 'Bearer pat-redact' } })).body.toString());
    const all = bodies.join('\n');
    for (const x of secrets) {
      assert.ok(!all.includes(x.replace(/^Bearer /, '')), `a job answer carries ${x}`);
      assert.ok(!lines.join('').includes(x.replace(/^Bearer /, '')), `a log line carries ${x}`);
    }
    const first = JSON.parse(bodies[0]!) as { args: { headers: Record<string, string>; password: string; url: string; username: string } };
    assert.deepEqual(first.args.headers, { Authorization: '<redacted>', 'X-Api-Key': '<redacted>' }, 'header names stay, values go');
    assert.equal(first.args.password, '<redacted>');
    assert.equal(first.args.username, 'u');
    assert.match(first.args.url, /^http:\/\/user:redacted@/);
    assert.match(all, /keep=1/, 'other query parameters stay');
    assert.ok(
      lines.some((l) => l.includes('preheat job finished')),
      'the jobs were logged',
    );
  } finally {
    await s.close();
    await origin.close();
  }
});
