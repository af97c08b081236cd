import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { z } from 'zod';
import { ERROR_CODES, FerryError } from '../core/index.js';
import {
  HTTP_STATUS,
  JsonClient,
  MethodNotAllowed,
  PayloadTooLarge,
  Router,
  codeOfStatus,
  decodeError,
  parseJson,
  readBody,
  readJson,
  requestUrl,
  sendError,
  sendJson,
  statusOf,
} from './index.js';

/** A fake request: `chunks` as its body, `headers` as its head. */
function fakeReq(chunks: Buffer[], headers: Record<string, string> = {}): IncomingMessage {
  return Object.assign(Readable.from(chunks), { headers }) as unknown as IncomingMessage;
}

test('router: literals, :params, :param(regex), :rest+; decoded params; 404 and 405 with Allow', async () => {
  const seen: string[] = [];
  const r = new Router<string>()
    .get('/api/v1/mounts', (c) => {
      seen.push(`${c} list`);
    })
    .post('/api/v1/mounts', (c) => {
      seen.push(`${c} mount`);
    })
    .get('/api/v1/mounts/:id', (_c, p) => {
      seen.push(`get ${p.id}`);
    })
    .delete('/api/v1/mounts/:id', (_c, p) => {
      seen.push(`del ${p.id}`);
    })
    .get('/api/v1/tasks/:task([a-f0-9]{4})/pieces/:n(\\d+)', (_c, p) => {
      seen.push(`piece ${p.task} ${p.n}`);
    })
    .get('/v2/:name+/blobs/:digest', (_c, p) => {
      seen.push(`blob ${p.name} ${p.digest}`);
    });
  await r.dispatch('GET', '/api/v1/mounts', 'ctx');
  await r.dispatch('POST', '/api/v1/mounts', 'ctx');
  await r.dispatch('GET', '/api/v1/mounts/a%2Fb', 'ctx');
  await r.dispatch('DELETE', '/api/v1/mounts/x', 'ctx');
  await r.dispatch('GET', '/api/v1/tasks/ab12/pieces/7', 'ctx');
  await r.dispatch('GET', '/v2/library/a/b/blobs/sha256:1', 'ctx');
  assert.deepEqual(seen, ['ctx list', 'ctx mount', 'get a/b', 'del x', 'piece ab12 7', 'blob library/a/b sha256:1']);

  const notFound = (m: string, p: string): void => {
    assert.throws(
      () => r.match(m, p),
      (e) => FerryError.hasCode(e, 'NOT_FOUND') && !(e instanceof MethodNotAllowed),
      `${m} ${p}`,
    );
  };
  notFound('GET', '/api/v1/mounts/');
  notFound('GET', '/api/v1/mounts/a/b');
  notFound('GET', '/api/v1/tasks/ab12x/pieces/7');
  notFound('GET', '/api/v1/tasks/ab12/pieces/x');
  notFound('GET', '/v2/blobs/sha256:1');
  notFound('GET', '//');
  assert.throws(
    () => r.match('PUT', '/api/v1/mounts'),
    (e) => e instanceof MethodNotAllowed && e.allow.join() === 'GET,POST' && statusOf(e) === 405,
  );
  assert.throws(
    () => r.match('GET', '/api/v1/mounts/%E0%A4%A'),
    (e) => FerryError.hasCode(e, 'INVALID_ARGUMENT') && /not valid percent-encoding/.test((e as Error).message),
  );

  const loose = new Router<void>({ looseSlashes: true, notFound: () => new FerryError('NOT_FOUND', 'Endpoint not found') }).get(
    '/api/v1/health',
    () => undefined,
  );
  loose.match('GET', '/api/v1/health/');
  loose.match('GET', '//api/v1//health');
  assert.throws(() => loose.match('GET', '/api/v1/nope'), /Endpoint not found/);
});

test('request targets: a path parses, one the URL parser refuses (`//`, `http://[`) is INVALID_ARGUMENT', () => {
  const req = (url: string): IncomingMessage => ({ url }) as IncomingMessage;
  assert.equal(requestUrl(req('/api/v1/mounts?x=1')).pathname, '/api/v1/mounts');
  for (const bad of ['//', 'http://[']) {
    assert.throws(
      () => requestUrl(req(bad)),
      (e) => FerryError.hasCode(e, 'INVALID_ARGUMENT') && /invalid request target/.test((e as Error).message),
    );
  }
});

test("status table: every code has one status; HTTP's own refusals are 413 and 405", () => {
  for (const c of ERROR_CODES) assert.ok(HTTP_STATUS[c] >= 400 && HTTP_STATUS[c] < 600, c);
  assert.equal(HTTP_STATUS.DATA_LOSS, 500);
  assert.equal(HTTP_STATUS.INVALID_ARGUMENT, 400);
  assert.equal(statusOf(new PayloadTooLarge(10)), 413);
  assert.equal(new PayloadTooLarge(10).code, 'RESOURCE_EXHAUSTED');
  assert.equal(statusOf(new FerryError('RESOURCE_EXHAUSTED', 'quota')), 429);
  // the client's inverse agrees with the table wherever the table is one-to-one
  for (const c of ERROR_CODES) {
    const s = HTTP_STATUS[c];
    if (ERROR_CODES.filter((x) => HTTP_STATUS[x] === s).length === 1) assert.equal(codeOfStatus(s), c, `${c} ${s}`);
  }
});

test('bodies: a declared length over the limit is refused before reading; a streamed one when it passes the limit', async () => {
  let pulled = 0;
  const body = new Readable({
    read() {
      pulled++;
      this.push(Buffer.alloc(10));
      this.push(null);
    },
  });
  const lazy = Object.assign(body, { headers: { 'content-length': '11' } }) as unknown as IncomingMessage;
  await assert.rejects(readBody(lazy, 10), (e) => e instanceof PayloadTooLarge && /Content-Length 11/.test(e.message));
  assert.equal(pulled, 0, 'nothing was read');
  await assert.rejects(
    readBody(fakeReq([Buffer.alloc(6), Buffer.alloc(6)]), 10),
    (e) => e instanceof PayloadTooLarge && /request body over 10 bytes/.test(e.message),
  );
  assert.equal((await readBody(fakeReq([Buffer.from('ab'), Buffer.from('c')]), 3)).toString(), 'abc');
});

test('JSON bodies: not JSON / not an object / schema issues are INVALID_ARGUMENT naming every problem', async () => {
  const bad = (buf: string, o: Parameters<typeof parseJson>[1], re: RegExp): void =>
    assert.throws(
      () => parseJson(Buffer.from(buf), o),
      (e) => FerryError.hasCode(e, 'INVALID_ARGUMENT') && re.test((e as Error).message),
      buf,
    );
  bad('{', {}, /request body is not JSON/);
  bad('[1]', { object: true }, /must be a JSON object/);
  bad('', {}, /not JSON/);
  assert.deepEqual(parseJson(Buffer.alloc(0), { empty: {} }), {});
  const schema = z.strictObject({ ref: z.string().min(1), n: z.number().optional() });
  bad('{"ref":"","n":"x","extra":1}', { schema, what: 'pull request' }, /^pull request: .*ref.*n.*extra/);
  const ok: { ref: string; n?: number | undefined } = await readJson(fakeReq([Buffer.from('{"ref":"a"}')]), 100, { schema });
  assert.deepEqual(ok, { ref: 'a' });
});

type Serve = (req: IncomingMessage, res: ServerResponse) => Promise<void>;
async function serve(handler: Serve): Promise<{ server: Server; url: string }> {
  const server = createServer((req, res) => {
    handler(req, res).catch((err: unknown) => sendError(res, err));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

test('server and client: the envelope carries the code both ways; 405 has Allow; an unread body closes the connection', async () => {
  const router = new Router<{ req: IncomingMessage; res: ServerResponse }>()
    .get('/ok', ({ res }) => sendJson(res, 200, { fine: true }))
    .get('/gone', () => {
      throw new FerryError('DATA_LOSS', 'stored piece altered');
    })
    .post('/echo', async ({ req, res }) => sendJson(res, 201, await readJson(req, 64, { object: true })))
    .delete('/nothing', ({ res }) => sendJson(res, 204, undefined));
  const { server, url } = await serve(async (req, res) => {
    await router.dispatch(req.method ?? 'GET', new URL(req.url ?? '/', 'http://x').pathname, { req, res });
  });
  try {
    const c = new JsonClient({ what: 'test API', baseUrl: url, timeoutMs: 5000 });
    assert.deepEqual(await c.json('GET', '/ok'), { fine: true });
    assert.deepEqual(await c.json('POST', '/echo', { a: 1 }), { a: 1 });
    assert.equal(await c.json('DELETE', '/nothing'), undefined);
    await assert.rejects(
      c.json('GET', '/gone'),
      (e) => FerryError.hasCode(e, 'DATA_LOSS') && (e as Error).message === 'stored piece altered',
    );
    await assert.rejects(c.json('GET', '/nope'), (e) => FerryError.hasCode(e, 'NOT_FOUND'));
    await assert.rejects(c.json('POST', '/echo', [1]), (e) => FerryError.hasCode(e, 'INVALID_ARGUMENT'));
    await assert.rejects(c.json('POST', '/echo', { big: 'x'.repeat(100) }), (e) => FerryError.hasCode(e, 'RESOURCE_EXHAUSTED'));
    const gone = await c.raw('GET', '/gone');
    assert.equal(gone.status, 500);
    assert.match(String(gone.headers['content-type']), /^application\/json/);
    const put = await c.raw('PUT', '/ok');
    assert.equal(put.status, 405);
    assert.equal(put.headers.allow, 'GET');
    assert.equal((JSON.parse(put.body.toString()) as { code: string }).code, 'NOT_IMPLEMENTED');
    // 1 MiB declared, nothing sent: answered at once, and the connection is not kept for a next request
    const head = await new Promise<string>((resolve, reject) => {
      const u = new URL(url);
      const s = connect(Number(u.port), u.hostname, () => s.write('POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1048576\r\n\r\n'));
      let text = '';
      s.on('data', (d) => {
        text += d.toString();
      });
      s.on('end', () => resolve(text));
      s.on('error', reject);
    });
    assert.match(head, /^HTTP\/1\.1 413 /);
    assert.match(head, /connection: close/i);
    const down = new JsonClient({ what: 'test API', baseUrl: 'http://127.0.0.1:1', timeoutMs: 5000 });
    await assert.rejects(
      down.json('GET', '/ok'),
      (e) => FerryError.hasCode(e, 'UNAVAILABLE') && /test API at http:\/\/127\.0\.0\.1:1: ECONNREFUSED/.test((e as Error).message),
    );
  } finally {
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  }
});

test('decodeError: a service vocabulary, a prefix, and answers without an envelope', () => {
  const category = (c: string): 'UNAUTHENTICATED' | undefined => (c === 'ERR_UNAUTHORIZED' ? 'UNAUTHENTICATED' : undefined);
  const e = decodeError(401, '{"code":"ERR_UNAUTHORIZED","message":"no"}', { category, prefix: 'accel: ' });
  assert.equal(e.code, 'UNAUTHENTICATED');
  assert.equal(e.message, 'accel: no');
  assert.equal(decodeError(502, 'bad gateway').code, 'UNAVAILABLE');
  assert.equal(decodeError(502, 'bad gateway').message, 'bad gateway');
  assert.equal(decodeError(404, '{"code":"NOPE","message":"m"}').code, 'NOT_FOUND');
  assert.equal(decodeError(500, '{"code":"DATA_LOSS","message":"m"}').code, 'DATA_LOSS');
  assert.equal(decodeError(500, '').message, 'status 500');
});
