/**
 * The registry's refusals in one place: hostile and malformed requests against a real registry on
 * loopback, each asserting the exact refusal (status and OCI/Harbor error code) and that nothing
 * leaked or broke. What the conformance and auth suites already pin down (NAME_INVALID for the
 * basic name grammar, bad manifests, digest mismatch on upload, anonymous/robot access on the happy
 * paths) is not repeated here; this file adds the adversarial side: traversal in its encoded forms,
 * header garbage, size abuse, cross-project credentials, token scopes, downloads cut off mid-body,
 * and password guessing.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { createLogger, metricValue } from '../observe/index.js';
import { connect } from 'node:net';
import { SignJWT, decodeJwt } from 'jose';
import { startTestRegistry, sha256, basic, makeImage, ADMIN_PASSWORD, type TestRegistry } from './testing/client.js';

const MiB = 1024 * 1024;
let reg: TestRegistry;

/** A small deterministic PRNG so a failing fuzz run can be replayed (the seed is in the message). */
function prng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 0x1_0000_0000;
  };
}

interface RawResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

interface RawOptions {
  method?: string;
  auth?: string;
  headers?: Record<string, string>;
  body?: Buffer | string;
  /** Another registry than the shared one. */
  base?: string;
  /** The client's address (any of 127.0.0.0/8): another source as the registry sees it. */
  from?: string;
}

/** One request on its own connection, path sent byte for byte (fetch would normalise it). */
function raw(path: string, opts: RawOptions = {}): Promise<RawResponse> {
  const u = new URL(opts.base ?? reg.url);
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { ...(opts.headers ?? {}) };
    if (opts.auth) headers.authorization = opts.auth;
    const req = httpRequest(
      {
        host: u.hostname,
        port: u.port,
        method: opts.method ?? 'GET',
        path,
        headers,
        agent: false,
        ...(opts.from ? { localAddress: opts.from } : {}),
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(opts.body);
  });
}

/**
 * Starts a GET and cuts the connection once `after` body bytes arrived: 'reset' sends a TCP RST,
 * 'destroy' closes the socket. Resolves with the bytes received, when the socket is gone.
 */
function getAndAbort(path: string, after: number, how: 'reset' | 'destroy', auth?: string, range?: string): Promise<number> {
  const u = new URL(reg.url);
  return new Promise((resolve) => {
    let got = 0;
    let cut = false;
    const headers: Record<string, string> = {};
    if (auth) headers.authorization = auth;
    if (range) headers.range = range;
    const req = httpRequest({ host: u.hostname, port: u.port, path, headers, agent: false });
    const abort = (): void => {
      if (cut) return;
      cut = true;
      if (how === 'reset' && req.socket) req.socket.resetAndDestroy();
      else req.destroy();
    };
    req.on('response', (res) => {
      res.on('data', (c: Buffer) => {
        got += c.length;
        if (got >= after) abort();
      });
      res.on('error', () => undefined);
      res.on('end', () => resolve(got));
    });
    req.on('error', () => undefined);
    req.on('close', () => resolve(got));
    if (after === 0) req.on('socket', (s) => s.once('connect', () => setImmediate(abort)));
    req.end();
  });
}

async function errorCode(r: RawResponse): Promise<string> {
  return (JSON.parse(r.body.toString('utf8')) as { errors: Array<{ code: string }> }).errors[0]!.code;
}

/**
 * Asserts a refusal: one of `statuses`, an error JSON body with one of `codes` (when given and the
 * body is JSON), and none of the `secrets` in the body.
 */
async function refused(r: RawResponse, what: string, statuses: number[], codes?: string[], secrets: Buffer[] = []): Promise<void> {
  assert.ok(
    statuses.includes(r.status),
    `${what}: status ${r.status} (want ${statuses.join('/')}) ${r.body.toString('utf8').slice(0, 200)}`,
  );
  if (codes && r.body.length > 0 && String(r.headers['content-type']).startsWith('application/json')) {
    assert.ok(codes.includes(await errorCode(r)), `${what}: code ${await errorCode(r)} (want ${codes.join('/')})`);
  }
  for (const sec of secrets) assert.ok(!r.body.includes(sec), `${what}: the body holds protected bytes`);
}

/**
 * Sends a request head as written (plus `body`) on a raw socket and resolves the status of the answer,
 * which must come before the rest of a declared body is sent: a server that waited for it fails the
 * check after `patienceMs` (a liveness guard, not a speed limit).
 */
function rawHead(head: string, body = '', patienceMs = 10_000): Promise<{ status: number; text: string }> {
  const u = new URL(reg.url);
  return new Promise((resolve, reject) => {
    const sock = connect(Number(u.port), u.hostname);
    let text = '';
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`no answer to ${head.split('\r\n')[0]} before the declared body was sent`));
    }, patienceMs);
    sock.setEncoding('latin1');
    sock.on('data', (c: string) => {
      text += c;
      const m = /^HTTP\/1\.1 (\d{3})/.exec(text);
      if (m && text.includes('\r\n\r\n')) {
        clearTimeout(timer);
        sock.destroy();
        resolve({ status: Number(m[1]), text });
      }
    });
    sock.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    sock.write(head + body);
  });
}

async function createProject(name: string, isPublic: boolean): Promise<void> {
  const r = await reg.req('/api/v2.0/projects', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ project_name: name, metadata: { public: String(isPublic) } }),
  });
  assert.equal(r.status, 201, await r.text());
}

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
/** Lines the shared registry logged at error level: a request that failed with a 500. */
const errorLines: string[] = [];
/** A public image, a private one, and robots: `reader` pulls `secret`, `otherbot` pulls and pushes `other`. */
const pubImg = makeImage('abuse-public');
const secImg = makeImage('abuse-secret');
const robots: Record<'reader' | 'otherbot', string> = { reader: '', otherbot: '' };

async function createRobot(name: string, project: string, actions: string[]): Promise<string> {
  const b = await reg.createRobot(project, name, actions);
  return basic(b.name, b.secret);
}

before(async () => {
  const log = createLogger({
    level: 'error',
    destination: {
      write: (line: string) => {
        errorLines.push(line);
      },
    },
  });
  reg = await startTestRegistry({ config: { fsync: false, maxBlobSize: '64MiB' }, log });
  await createProject('secret', false);
  await createProject('other', false);
  for (const [repo, img] of [
    ['library/pub', pubImg],
    ['secret/img', secImg],
  ] as const) {
    await reg.pushBlob(repo, img.config);
    await reg.pushBlob(repo, img.layer);
    assert.equal((await reg.putManifest(repo, 'v1', img.manifest, OCI_MANIFEST)).status, 201);
  }
  robots.reader = await createRobot('reader', 'secret', ['pull']);
  robots.otherbot = await createRobot('otherbot', 'other', ['pull', 'push']);
});
after(async () => {
  await reg.destroy();
});

describe('paths built to escape', () => {
  const ADMIN = basic('admin', ADMIN_PASSWORD);
  const protectedBytes = [secImg.manifest, Buffer.from('SQLite format')];

  it('repository names with dot segments in any spelling, encoded slashes, backslashes or NUL reach nothing, with any credentials', async () => {
    const paths = [
      '/v2/library/%2e%2e/secret/img/manifests/v1',
      '/v2/library/%2E%2E/secret/img/manifests/v1',
      '/v2/library/.%2e/secret/img/manifests/v1',
      '/v2/library/..%2fsecret/img/manifests/v1',
      '/v2/library%2f..%2fsecret/img/manifests/v1',
      '/v2/library/%252e%252e/secret/img/manifests/v1',
      '/v2/library/pub/..%5c..%5csecret/img/manifests/v1',
      '/v2/library\\..\\secret/img/manifests/v1',
      '/v2/library/pub%00/manifests/v1',
      '/v2//secret/img/manifests/v1',
      '//v2/secret/img/manifests/v1',
      '/v2/./secret/img/manifests/v1',
      '/v2/library/pub/../../secret/img/manifests/v1',
      `/v2/library/pub/blobs/../../../secret/img/blobs/${secImg.layerDigest}`,
      'http://registry.invalid/v2/secret/img/manifests/v1',
      `/v2/${'a/'.repeat(200)}b/manifests/v1`,
    ];
    const pubToken = await tokenFor('repository:library/pub:pull', ADMIN);
    for (const path of paths) {
      for (const [who, auth] of [
        ['anonymous', undefined],
        ['admin', ADMIN],
        ['a library/pub token', `Bearer ${pubToken}`],
      ] as const) {
        const r = await raw(path, auth ? { auth } : {});
        await refused(
          r,
          `${who} ${path}`,
          [400, 404],
          ['NAME_INVALID', 'NAME_UNKNOWN', 'MANIFEST_UNKNOWN', 'BLOB_UNKNOWN'],
          protectedBytes,
        );
      }
    }
  });

  it('digests and references built to reach files are DIGEST_INVALID or unknown, never a file; DELETE with them deletes nothing', async () => {
    const hex = secImg.layerDigest.slice('sha256:'.length);
    const refs = [
      'sha256:%2e%2e%2f%2e%2e%2fregistry.db',
      'sha256:..%5c..%5cregistry.db',
      `sha256:${hex.slice(1)}`,
      `sha256:${hex.toUpperCase()}`,
      `sha256:${hex}%00`,
      `sha256:${hex}%2f..`,
      `sha256%3a${hex}`,
      'registry.db',
      '..%2fregistry.db',
      `md5:${hex.slice(0, 32)}`,
      `sha256+b64:${hex}`,
      `sha256:${hex}:${hex}`,
      'sha256:',
      ':',
    ];
    for (const ref of refs) {
      // Where only a digest fits, a malformed one is DIGEST_INVALID before anything is looked up;
      // a manifest reference may also be read as a (valid or invalid) tag: unknown.
      for (const kind of ['blobs', 'referrers']) {
        await refused(
          await raw(`/v2/library/pub/${kind}/${ref}`, { auth: ADMIN }),
          `${kind}/${ref}`,
          [400],
          ['DIGEST_INVALID'],
          protectedBytes,
        );
      }
      await refused(
        await raw(`/v2/library/pub/manifests/${ref}`, { auth: ADMIN }),
        `manifests/${ref}`,
        [400, 404],
        ['DIGEST_INVALID', 'MANIFEST_UNKNOWN'],
        protectedBytes,
      );
      await refused(
        await raw(`/v2/library/pub/blobs/${ref}`, { method: 'DELETE', auth: ADMIN }),
        `DELETE blobs/${ref}`,
        [400],
        ['DIGEST_INVALID'],
      );
      await refused(
        await raw(`/v2/library/pub/manifests/${ref}`, { method: 'DELETE', auth: ADMIN }),
        `DELETE manifests/${ref}`,
        [400, 404],
      );
    }
    for (const id of ['%2e%2e%2f%2e%2e%2fregistry.db', '..........', `${'a'.repeat(100)}`, 'x%00y']) {
      await refused(
        await raw(`/v2/library/pub/blobs/uploads/${id}`, { method: 'PATCH', auth: ADMIN, body: 'x' }),
        `upload ${id}`,
        [400, 404],
        ['BLOB_UPLOAD_UNKNOWN', 'NAME_INVALID'],
      );
    }
    assert.equal((await raw(`/v2/library/pub/manifests/v1`, { auth: ADMIN })).status, 200, 'nothing was deleted');
    const db = await raw(`/v2/secret/img/blobs/${secImg.layerDigest}`, { auth: ADMIN });
    assert.equal(sha256(db.body), secImg.layerDigest);
  });

  it('Harbor API path values with broken percent-encoding or traversal are 400/404, never a 500 or another project', async () => {
    const cases: Array<[string, string | undefined]> = [
      ['/api/v2.0/projects/%E0%A4%A', ADMIN],
      ['/api/v2.0/projects/%', ADMIN],
      ['/api/v2.0/projects/library/repositories/%25E0%25A4%25A/artifacts', ADMIN],
      ['/api/v2.0/projects/library/repositories/%25/artifacts', ADMIN],
      ['/api/v2.0/projects/library/repositories/..%252F..%252Fsecret%252Fimg/artifacts', undefined],
      ['/api/v2.0/projects/library/repositories/..%252F..%252Fsecret%252Fimg/artifacts', ADMIN],
      ['/api/v2.0/projects/%2e%2e/repositories', ADMIN],
      ['/api/v2.0/projects/secret', undefined],
      ['/api/v2.0/projects/secret/repositories', undefined],
      ['/api/v2.0/projects/secret/repositories/img/artifacts', robots.otherbot],
      ['/api/v2.0/projects/library%2f..%2fsecret/repositories', undefined],
    ];
    for (const [path, auth] of cases) {
      await refused(
        await raw(path, auth ? { auth } : {}),
        `${auth ? 'with credentials' : 'anonymous'} ${path}`,
        [400, 404],
        ['BAD_REQUEST', 'NOT_FOUND', 'NAME_INVALID'],
        [Buffer.from('secret/img')],
      );
    }
  });
});

/** A token from the token endpoint for `scope`, as `auth` (anonymous when undefined). */
async function tokenFor(scope: string, auth?: string): Promise<string> {
  const r = await raw(`/service/token?service=harbor-registry&scope=${encodeURIComponent(scope)}`, auth ? { auth } : {});
  assert.equal(r.status, 200, r.body.toString('utf8'));
  return (JSON.parse(r.body.toString('utf8')) as { token: string }).token;
}

describe('sizes and bodies', () => {
  const ADMIN = basic('admin', ADMIN_PASSWORD);
  const head = (line: string, headers: Record<string, string>): string =>
    `${line} HTTP/1.1\r\nHost: ${reg.host}\r\n${Object.entries(headers)
      .map(([k, v]) => `${k}: ${v}\r\n`)
      .join('')}\r\n`;

  it('a huge declared Content-Length is refused before the body is read (manifests, blobs beyond maxBlobSize, API bodies)', async () => {
    const huge = String(10 ** 12);
    const session = await reg.req('/v2/library/pub/blobs/uploads/', { method: 'POST' });
    const loc = session.headers.get('location')!;
    const cases: Array<[string, Record<string, string>]> = [
      ['PUT /v2/library/pub/manifests/huge', { 'content-type': OCI_MANIFEST }],
      [`POST /v2/library/pub/blobs/uploads/?digest=${sha256('x')}`, {}],
      [`PATCH ${loc}`, { 'content-type': 'application/octet-stream' }],
      [`PUT ${loc}?digest=${sha256('x')}`, { 'content-type': 'application/octet-stream' }],
      ['POST /api/v2.0/projects', { 'content-type': 'application/json' }],
    ];
    for (const [line, headers] of cases) {
      const r = await rawHead(head(line, { ...headers, authorization: ADMIN, 'content-length': huge }), 'abcdefgh');
      assert.equal(r.status, 413, `${line}: ${r.text.slice(0, 300)}`);
    }
    // Beyond what an HTTP parser takes: refused by it.
    const r = await rawHead(
      head('PUT /v2/library/pub/manifests/huger', { authorization: ADMIN, 'content-length': '99999999999999999999999' }),
    );
    assert.equal(r.status, 400);
    // The session the PATCH aimed at is untouched.
    const st = await reg.req(loc);
    assert.equal(st.status, 204);
    assert.equal(st.headers.get('range'), '0-0');
  });

  it('a manifest streamed without Content-Length past the limit is 413 and stores nothing', async () => {
    const u = new URL(reg.url);
    const status = await new Promise<number>((resolve, reject) => {
      const req = httpRequest(
        {
          host: u.hostname,
          port: u.port,
          method: 'PUT',
          path: '/v2/library/pub/manifests/streamed',
          agent: false,
          headers: { authorization: ADMIN, 'content-type': OCI_MANIFEST, 'transfer-encoding': 'chunked' },
        },
        (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        },
      );
      req.on('error', (err: NodeJS.ErrnoException) => (err.code === 'ECONNRESET' || err.code === 'EPIPE' ? undefined : reject(err)));
      const chunk = Buffer.alloc(MiB, 0x20);
      let n = 0;
      const write = (): void => {
        while (n < 6) {
          n++;
          if (!req.write(chunk)) {
            req.once('drain', write);
            return;
          }
        }
        req.end();
      };
      write();
    });
    assert.equal(status, 413);
    assert.equal((await raw('/v2/library/pub/manifests/streamed', { auth: ADMIN })).status, 404);
  });

  it('malformed and hostile JSON manifests are MANIFEST_INVALID, never a 500, and pollute no prototype', async () => {
    const d = sha256('x');
    const desc = (extra: Record<string, unknown> = {}): Record<string, unknown> => ({
      mediaType: 'application/vnd.oci.image.config.v1+json',
      digest: pubImg.configDigest,
      size: pubImg.config.length,
      ...extra,
    });
    const m = (extra: Record<string, unknown>): string =>
      JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, config: desc(), layers: [], ...extra });
    const cases: Array<[string, string | Buffer]> = [
      ['invalid utf-8', Buffer.from([0x7b, 0xff, 0xfe, 0x7d])],
      ['null', 'null'],
      ['number', '42'],
      ['string', '"manifest"'],
      ['empty', ''],
      ['deep nesting', `{"schemaVersion":2,"x":${'['.repeat(200_000)}${']'.repeat(200_000)}}`],
      ['layers an object', m({ layers: {} })],
      ['layers null', m({ layers: null })],
      ['config missing', JSON.stringify({ schemaVersion: 2, mediaType: OCI_MANIFEST, layers: [] })],
      ['schemaVersion a string', m({ schemaVersion: '2' })],
      ['descriptor digest escaping', m({ config: desc({ digest: 'sha256:../../../registry.db' }) })],
      ['descriptor size infinite', m({ config: desc({ size: Number.POSITIVE_INFINITY }) }).replace('null', '1e400')],
      ['descriptor size a string', m({ config: desc({ size: '10' }) })],
      ['descriptor size beyond 2^53', m({ config: desc({ size: 2 ** 64 }) })],
      ['layer not an object', m({ layers: [d] })],
      ['subject escaping', m({ subject: { mediaType: OCI_MANIFEST, digest: 'sha256:%2e%2e', size: 1 } })],
    ];
    for (const [what, body] of cases) {
      const r = await reg.putManifest('library/pub', 'hostile', body, OCI_MANIFEST);
      assert.equal(r.status, 400, `${what}: ${r.status}`);
      assert.equal(((await r.json()) as { errors: Array<{ code: string }> }).errors[0]!.code, 'MANIFEST_INVALID', what);
    }
    // Prototype keys are data, not object structure.
    const polluting =
      `{"schemaVersion":2,"mediaType":"${OCI_MANIFEST}","config":${JSON.stringify(desc())},"layers":[],` +
      `"__proto__":{"polluted":"yes"},"constructor":{"prototype":{"polluted":"yes"}},"annotations":{"__proto__":{"polluted":"yes"}}}`;
    const r = await reg.putManifest('library/pub', 'proto', polluting, OCI_MANIFEST);
    assert.ok(r.status === 201 || r.status === 400, `prototype keys: ${r.status}`);
    await r.arrayBuffer();
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
    assert.equal((Object.prototype as Record<string, unknown>).polluted, undefined);
    if (r.status === 201) {
      const back = await raw('/v2/library/pub/manifests/proto', { auth: ADMIN });
      assert.equal(back.body.toString('utf8'), polluting, 'served byte for byte');
    }
  });
});

describe('digests that do not match the bytes', () => {
  const ADMIN = basic('admin', ADMIN_PASSWORD);

  it("an upload claiming an existing blob's digest is DIGEST_INVALID in every upload form, and that blob keeps its bytes", async () => {
    const victim = pubImg.layerDigest;
    const forged = Buffer.from("forged bytes under someone else's digest");
    // Monolithic POST+PUT, single POST, chunked PATCH then PUT, and a repeated digest parameter.
    const open = async (): Promise<string> =>
      (await reg.req('/v2/library/pub/blobs/uploads/', { method: 'POST' })).headers.get('location')!;
    let r = await raw(`${await open()}?digest=${victim}`, { method: 'PUT', auth: ADMIN, body: forged });
    await refused(r, 'monolithic', [400], ['DIGEST_INVALID']);
    r = await raw(`/v2/library/pub/blobs/uploads/?digest=${victim}`, { method: 'POST', auth: ADMIN, body: forged });
    await refused(r, 'single POST', [400], ['DIGEST_INVALID']);
    const loc = await open();
    assert.equal((await raw(loc, { method: 'PATCH', auth: ADMIN, body: forged })).status, 202);
    r = await raw(`${loc}?digest=${victim}`, { method: 'PUT', auth: ADMIN });
    await refused(r, 'chunked', [400], ['DIGEST_INVALID']);
    r = await raw(`/v2/library/pub/blobs/uploads/?digest=${victim}&digest=${sha256(forged)}`, {
      method: 'POST',
      auth: ADMIN,
      body: forged,
    });
    await refused(r, 'two digest parameters', [400], ['DIGEST_INVALID']);
    r = await raw(`${await open()}?digest=sha512:${'0'.repeat(128)}`, { method: 'PUT', auth: ADMIN, body: forged });
    await refused(r, 'sha512', [400], ['DIGEST_INVALID']);
    const back = await raw(`/v2/library/pub/blobs/${victim}`);
    assert.equal(back.status, 200);
    assert.deepEqual(back.body, pubImg.layer);
    assert.equal((await raw(`/v2/library/pub/blobs/${sha256(forged)}`, { method: 'HEAD' })).status, 404);
  });

  it('a manifest PUT by the digest of another manifest is DIGEST_INVALID and does not replace it', async () => {
    const other = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: OCI_MANIFEST,
        config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: pubImg.configDigest, size: pubImg.config.length },
        layers: [],
      }),
    );
    const r = await reg.putManifest('library/pub', pubImg.digest, other, OCI_MANIFEST);
    assert.equal(r.status, 400);
    assert.equal(((await r.json()) as { errors: Array<{ code: string }> }).errors[0]!.code, 'DIGEST_INVALID');
    const back = await raw(`/v2/library/pub/manifests/${pubImg.digest}`);
    assert.deepEqual(back.body, pubImg.manifest);
  });
});

describe('Range headers', () => {
  it('garbage Range headers get 416 or the whole blob, a satisfiable one exactly its slice; never a 500', async () => {
    const big = randomBytes(9 * MiB + 5);
    const bigDigest = await reg.pushBlob('library/ranges', big);
    for (const [data, digest] of [
      [pubImg.layer, pubImg.layerDigest],
      [big, bigDigest],
    ] as const) {
      const n = data.length;
      const cases: Array<[string, 'whole' | 'slice' | 416]> = [
        ['bytes=abc', 416],
        ['bytes=5-2', 416],
        ['bytes=-0', 416],
        [`bytes=${n}-`, 416],
        ['bytes=-', 416],
        ['bytes=--5', 416],
        ['items=0-5', 416],
        ['bytes 0-5', 416],
        ['bytes=0x10-0x20', 416],
        ['bytes=1e3-2e3', 416],
        ['bytes=-5-3', 416],
        ['bytes=99999999999999999999999-', 416],
        [`bytes=${'9'.repeat(5000)}-`, 416],
        ['bytes=0-0,2-3', 'whole'],
        ['bytes=0-99999999999999999999999', 'slice'],
        ['bytes=-99999999999999', 'slice'],
        [' bytes=1-2 ', 'slice'],
        ['bytes=0-0', 'slice'],
      ];
      for (const [range, want] of cases) {
        const r = await raw(`/v2/library/${digest === bigDigest ? 'ranges' : 'pub'}/blobs/${digest}`, { headers: { range } });
        const what = `${n} bytes, Range ${range.slice(0, 40)}`;
        if (want === 416) {
          await refused(r, what, [416], ['RANGE_INVALID']);
        } else if (want === 'whole') {
          assert.equal(r.status, 200, what);
          assert.equal(sha256(r.body), digest, what);
        } else {
          assert.equal(r.status, 206, what);
          const m = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(String(r.headers['content-range']));
          assert.ok(m, `${what}: Content-Range ${r.headers['content-range']}`);
          assert.equal(Number(m[3]), n);
          assert.ok(r.body.equals(data.subarray(Number(m[1]), Number(m[2]) + 1)), `${what}: the slice's bytes`);
        }
      }
    }
  });
});

describe('private projects and foreign credentials', () => {
  const protectedBytes = (): Buffer[] => [secImg.manifest, secImg.layer, secImg.config];

  it('anonymous: every private route is refused; a private blob is not reachable through a public repository, nor mountable', async () => {
    const routes: Array<[string, string, number[]]> = [
      ['GET', `/v2/secret/img/blobs/${secImg.layerDigest}`, [401]],
      ['HEAD', `/v2/secret/img/blobs/${secImg.layerDigest}`, [401]],
      ['GET', `/v2/secret/img/manifests/${secImg.digest}`, [401]],
      ['GET', '/v2/secret/img/tags/list', [401]],
      ['GET', `/v2/secret/img/referrers/${secImg.digest}`, [401]],
      ['POST', '/v2/secret/img/blobs/uploads/', [401]],
      ['DELETE', '/v2/secret/img/manifests/v1', [401]],
      ['GET', '/v2/_catalog', [401]],
      ['GET', `/v2/library/pub/blobs/${secImg.layerDigest}`, [404]],
      ['HEAD', `/v2/library/pub/blobs/${secImg.layerDigest}`, [404]],
      ['GET', `/v2/library/pub/manifests/${secImg.digest}`, [404]],
      ['POST', `/v2/library/pub/blobs/uploads/?mount=${secImg.layerDigest}&from=secret/img`, [401]],
      ['GET', '/api/v2.0/robots', [401]],
      ['GET', '/api/v2.0/projects/secret/webhook/policies', [401, 404]],
    ];
    for (const [method, path, statuses] of routes) {
      await refused(
        await raw(path, { method }),
        `anonymous ${method} ${path}`,
        statuses,
        ['UNAUTHORIZED', 'BLOB_UNKNOWN', 'MANIFEST_UNKNOWN', 'NOT_FOUND'],
        protectedBytes(),
      );
    }
  });

  it('a robot of another project can neither pull, push, mount from nor list the private project', async () => {
    const auth = robots.otherbot;
    for (const [method, path] of [
      ['GET', `/v2/secret/img/manifests/v1`],
      ['GET', `/v2/secret/img/blobs/${secImg.layerDigest}`],
      ['GET', '/v2/secret/img/tags/list'],
      ['POST', '/v2/secret/img/blobs/uploads/'],
      ['PUT', '/v2/secret/img/manifests/v2'],
      ['DELETE', '/v2/secret/img/manifests/v1'],
      ['GET', '/v2/_catalog'],
    ] as const) {
      await refused(
        await raw(path, {
          method,
          auth,
          ...(method === 'PUT' ? { body: secImg.manifest, headers: { 'content-type': OCI_MANIFEST } } : {}),
        }),
        `otherbot ${method} ${path}`,
        [403],
        ['DENIED'],
        protectedBytes(),
      );
    }
    // Its own project works; a mount from the private project silently opens a plain upload instead.
    const m = await raw(`/v2/other/x/blobs/uploads/?mount=${secImg.layerDigest}&from=secret/img`, { method: 'POST', auth });
    assert.equal(m.status, 202, 'not mounted');
    assert.equal(
      (await raw(`/v2/other/x/blobs/${secImg.layerDigest}`, { method: 'HEAD', auth: basic('admin', ADMIN_PASSWORD) })).status,
      404,
    );
    for (const path of ['/api/v2.0/projects/secret', '/api/v2.0/projects/secret/repositories']) {
      await refused(await raw(path, { auth }), `otherbot ${path}`, [404], ['NOT_FOUND']);
    }
    const t = await tokenFor('repository:secret/img:pull,push,delete', auth);
    assert.deepEqual(
      (decodeJwt(t) as { access: Array<{ actions: string[] }> }).access.map((a) => a.actions),
      [[]],
    );
    await refused(
      await raw('/v2/secret/img/manifests/v1', { auth: `Bearer ${t}` }),
      'otherbot token',
      [401],
      ['UNAUTHORIZED'],
      protectedBytes(),
    );
  });

  it('a pull-only robot cannot write in any way: manifests, chunks into an admin session, commits, cancels, deletes, mounts', async () => {
    const auth = robots.reader;
    const session = (await reg.req('/v2/secret/img/blobs/uploads/', { method: 'POST' })).headers.get('location')!;
    const writes: Array<[string, string, Buffer | undefined]> = [
      ['PUT', '/v2/secret/img/manifests/v2', secImg.manifest],
      ['DELETE', '/v2/secret/img/manifests/v1', undefined],
      ['DELETE', `/v2/secret/img/blobs/${secImg.layerDigest}`, undefined],
      ['PATCH', session, Buffer.from('injected')],
      ['PUT', `${session}?digest=${sha256('injected')}`, Buffer.from('injected')],
      ['DELETE', session, undefined],
      ['POST', `/v2/secret/img2/blobs/uploads/?mount=${secImg.layerDigest}&from=secret/img`, undefined],
      ['POST', `/v2/secret/img/blobs/uploads/?digest=${sha256('injected')}`, Buffer.from('injected')],
    ];
    for (const [method, path, body] of writes) {
      await refused(
        await raw(path, { method, auth, ...(body ? { body, headers: { 'content-type': OCI_MANIFEST } } : {}) }),
        `reader ${method} ${path}`,
        [403],
        ['DENIED'],
      );
    }
    const st = await reg.req(session);
    assert.equal(st.status, 204);
    assert.equal(st.headers.get('range'), '0-0', "the admin's session got no bytes");
    const t = await tokenFor('repository:secret/img:pull,push,delete,*', auth);
    assert.deepEqual((decodeJwt(t) as { access: Array<{ actions: string[] }> }).access[0]!.actions, ['pull']);
    await refused(
      await raw('/v2/secret/img/manifests/v3', {
        method: 'PUT',
        auth: `Bearer ${t}`,
        body: secImg.manifest,
        headers: { 'content-type': OCI_MANIFEST },
      }),
      'reader token PUT',
      [401],
      ['UNAUTHORIZED'],
    );
    assert.deepEqual((await raw('/v2/secret/img/manifests/v1', { auth })).body, secImg.manifest, 'it still pulls');
  });
});

describe('the token endpoint', () => {
  type Access = Array<{ type: string; name: string; actions: string[] }>;
  const grant = async (scopes: string[], auth?: string, extra = ''): Promise<{ sub: string; access: Access }> => {
    const q = scopes.map((sc) => `scope=${encodeURIComponent(sc)}`).join('&');
    const r = await raw(`/service/token?service=harbor-registry&${q}${extra}`, auth ? { auth } : {});
    assert.equal(r.status, 200, r.body.toString('utf8'));
    const claims = decodeJwt((JSON.parse(r.body.toString('utf8')) as { token: string }).token) as { sub: string; access: Access };
    return { sub: claims.sub, access: claims.access };
  };

  it("grants nothing beyond the caller's rights whatever the scope says, and ignores what it cannot parse", async () => {
    const anon = await grant(
      [
        'repository:secret/img:pull',
        'repository:secret/img:*',
        'repository(plugin):secret/img:pull,push',
        'REPOSITORY:secret/img:pull',
        'repository:library/pub:pull,push,delete,*',
        'registry:catalog:*',
        'repository::pull',
        'repository:secret/img:',
        ':::',
        'repository',
        'repository:secret/../library/pub:pull',
        'repository:library/pub/../../secret/img:pull',
      ],
      undefined,
      '&account=admin',
    );
    assert.equal(anon.sub, '', 'account= does not make anyone admin');
    for (const a of anon.access) {
      if (a.type === 'repository' && a.name === 'library/pub') assert.deepEqual(a.actions, ['pull'], a.name);
      else assert.deepEqual(a.actions, [], `${a.type}:${a.name}`);
    }
    assert.ok(!anon.access.some((a) => a.type !== 'repository' && a.type !== 'registry'), 'unknown types are dropped');
    const reader = await grant(
      ['repository:secret/img:*', 'repository(plugin):secret/img:push', 'registry:catalog:*', 'repository:other/x:pull'],
      robots.reader,
    );
    assert.deepEqual(
      reader.access.map((a) => [a.name, a.actions]),
      [
        ['secret/img', ['pull']],
        ['secret/img', []],
        ['catalog', []],
        ['other/x', []],
      ],
    );
    const many = await grant(Array.from({ length: 250 }, (_, i) => `repository:secret/img${i}:pull`));
    assert.ok(many.access.every((a) => a.actions.length === 0));
  });

  it('refuses forged tokens: alg none, a symmetric key, a token presented for a token', async () => {
    const access = [{ type: 'repository', name: 'secret/img', actions: ['pull', 'push', 'delete'] }];
    const b64 = (o: unknown): string => Buffer.from(JSON.stringify(o)).toString('base64url');
    const now = Math.floor(Date.now() / 1000);
    const claims = { iss: 'harbor-token-issuer', aud: 'harbor-registry', sub: 'admin', iat: now, nbf: now - 5, exp: now + 600, access };
    const none = `${b64({ alg: 'none', typ: 'JWT' })}.${b64(claims)}.`;
    const hs = await new SignJWT({ access })
      .setProtectedHeader({ alg: 'HS256' })
      .setIssuer('harbor-token-issuer')
      .setAudience('harbor-registry')
      .setSubject('admin')
      .setIssuedAt(now)
      .setExpirationTime(now + 600)
      .sign(new TextEncoder().encode('guessable'));
    for (const [what, t] of [
      ['alg none', none],
      ['HS256', hs],
      ['garbage', 'a.b.c'],
      ['empty', ''],
    ] as const) {
      await refused(await raw('/v2/secret/img/manifests/v1', { auth: `Bearer ${t}` }), what, [401], ['UNAUTHORIZED'], [secImg.manifest]);
    }
    const real = await tokenFor('repository:secret/img:pull', basic('admin', ADMIN_PASSWORD));
    await refused(
      await raw('/service/token?service=harbor-registry&scope=repository:secret/img:pull,push', { auth: `Bearer ${real}` }),
      'token for a token',
      [401],
      ['UNAUTHORIZED'],
    );
  });
});

describe('downloads cut off mid-body', () => {
  const ADMIN = basic('admin', ADMIN_PASSWORD);
  interface Blob {
    repo: string;
    data: Buffer;
    digest: string;
    auth: string | undefined;
  }
  const pub: Blob[] = [];
  const priv: Blob[] = [];
  const blobPath = (b: Blob): string => `/v2/${b.repo}/blobs/${b.digest}`;

  /** A full GET whose body must hash to the digest the URL names (or the named slice of it). */
  async function checkedGet(b: Blob, what: string, range?: { start: number; end: number }): Promise<void> {
    const r = await raw(blobPath(b), {
      ...(b.auth ? { auth: b.auth } : {}),
      ...(range ? { headers: { range: `bytes=${range.start}-${range.end}` } } : {}),
    }).catch((err: Error) => assert.fail(`${what}: ${err.message} (the server cut the body off)`));
    assert.equal(
      r.status,
      range ? 206 : 200,
      `${what}: status ${r.status} ${r.status >= 400 ? r.body.toString('utf8').slice(0, 200) : ''}`,
    );
    assert.equal(r.headers['docker-content-digest'], b.digest, what);
    const want = range ? b.data.subarray(range.start, range.end + 1) : b.data;
    assert.equal(r.body.length, want.length, `${what}: length`);
    assert.equal(sha256(r.body), sha256(want), `${what}: the body is the bytes of ${b.digest}`);
  }

  before(async () => {
    // Larger than the store's single-read limit (8 MiB): served as streams.
    for (let i = 0; i < 2; i++) {
      const data = randomBytes(9 * MiB + 1000 * i + 7);
      pub.push({ repo: 'library/big', data, digest: await reg.pushBlob('library/big', data), auth: undefined });
    }
    for (let i = 0; i < 3; i++) {
      const data = randomBytes(i === 2 ? 5 * MiB : 9 * MiB + 333 * i);
      priv.push({ repo: 'secret/big', data, digest: await reg.pushBlob('secret/big', data), auth: ADMIN });
    }
  });

  it("an anonymous GET reset after 1 MiB: later GETs still answer 200 with the blob's own bytes, never a private blob's", async () => {
    const [p] = pub;
    const got = await getAndAbort(blobPath(p!), MiB, 'reset');
    assert.ok(got >= MiB && got < p!.data.length, `cut after ${got} bytes`);
    // Once broken, the store stayed broken (a closed descriptor, its number reused by the next
    // open): several rounds with private pulls in between catch it however the server's reads and
    // the reset interleave.
    for (let round = 0; round < 4; round++) {
      await new Promise((r) => setTimeout(r, 50));
      await checkedGet(p!, `round ${round}: anonymous public GET`);
      for (const b of priv) await checkedGet(b, `round ${round}: admin private GET`);
      await checkedGet(p!, `round ${round}: anonymous public GET after private pulls`);
      await checkedGet(p!, `round ${round}: anonymous public range GET`, { start: 17, end: p!.data.length - 2 });
    }
  });

  it('200 random aborts among concurrent pulls: every completed body hashes to its digest', async () => {
    const seed = Math.floor(Math.random() * 0xffff_ffff);
    const rnd = prng(seed);
    const all = [...pub, ...priv];
    type Job =
      | { kind: 'abort'; b: Blob; after: number; how: 'reset' | 'destroy'; range?: string }
      | { kind: 'full'; b: Blob; range?: { start: number; end: number } };
    const jobs: Job[] = [];
    for (let i = 0; i < 200; i++) {
      const b = all[Math.floor(rnd() * all.length)]!;
      const ranged = rnd() < 0.25;
      jobs.push({
        kind: 'abort',
        b,
        after: Math.floor(rnd() * 2 * MiB),
        how: rnd() < 0.5 ? 'reset' : 'destroy',
        ...(ranged ? { range: `bytes=${Math.floor(rnd() * 1000)}-` } : {}),
      });
    }
    for (let i = 0; i < 30; i++) {
      const b = all[Math.floor(rnd() * all.length)]!;
      const start = rnd() < 0.3 ? Math.floor(rnd() * 4096) : 0;
      jobs.splice(Math.floor(rnd() * jobs.length), 0, {
        kind: 'full',
        b,
        ...(start > 0 ? { range: { start, end: b.data.length - 1 } } : {}),
      });
    }
    let next = 0;
    let aborted = 0;
    let completed = 0;
    const worker = async (): Promise<void> => {
      while (next < jobs.length) {
        const j = jobs[next++]!;
        if (j.kind === 'abort') {
          await getAndAbort(blobPath(j.b), j.after, j.how, j.b.auth, j.range);
          aborted++;
        } else {
          await checkedGet(j.b, `seed ${seed}: concurrent GET`, j.range);
          completed++;
        }
      }
    };
    await Promise.all(Array.from({ length: 8 }, worker));
    assert.equal(aborted, 200);
    assert.equal(completed, 30);
    for (const b of all) await checkedGet(b, `seed ${seed}: after the storm`);
  });
});

describe('password guessing', () => {
  /** A registry of its own (limits chosen per test) whose log lines are kept. */
  async function guarded(
    auth: Record<string, number | string>,
  ): Promise<{ r: TestRegistry; lines: () => Array<Record<string, unknown>>; text: () => string }> {
    const out: string[] = [];
    const log = createLogger({
      level: 'info',
      destination: {
        write: (line: string) => {
          out.push(line);
        },
      },
    });
    const r = await startTestRegistry({ config: { fsync: false, auth }, log });
    return { r, lines: () => out.map((l) => JSON.parse(l) as Record<string, unknown>), text: () => out.join('') };
  }
  const code = async (x: RawResponse): Promise<string> => errorCode(x);

  it('a burst of 200 wrong admin passwords gets 5 checks and 429s; the right password is refused too while locked, on every endpoint; another source is not', async () => {
    const { r, lines, text } = await guarded({ maxFailures: 5, maxSourceFailures: 50, window: '10m', lockout: '1m', maxLockout: '10m' });
    try {
      const base = r.url;
      const burst = await Promise.all(
        Array.from({ length: 200 }, (_, i) => raw('/v2/', { base, auth: basic('admin', `wrong-guess-${i}`) })),
      );
      const statuses = burst.map((x) => x.status);
      assert.equal(statuses.filter((x) => x === 401).length, 5, 'only 5 passwords were checked');
      assert.equal(statuses.filter((x) => x === 429).length, 195);
      for (const x of burst.filter((y) => y.status === 429)) {
        assert.match(String(x.headers['retry-after']), /^[1-9]\d*$/);
        assert.equal(await code(x), 'TOOMANYREQUESTS');
      }
      assert.equal(await metricValue(r.metrics, 'ferry_registry_login_failures_total', { reason: 'wrong password' }), 5);
      // The correct password from the locked source: refused unchecked, wherever it is sent.
      const right = basic('admin', ADMIN_PASSWORD);
      for (const path of [
        '/v2/',
        '/service/token?service=harbor-registry&scope=repository:library/x:pull',
        '/api/v2.0/users/current',
        '/v2/_catalog',
      ]) {
        const x = await raw(path, { base, auth: right });
        assert.equal(x.status, 429, path);
        const retry = Number(x.headers['retry-after']);
        assert.ok(retry > 1 && retry <= 60, `${path}: Retry-After ${retry}`);
        assert.equal(await code(x), 'TOOMANYREQUESTS', path);
      }
      assert.equal((await raw('/v2/', { base })).status, 401, 'anonymous requests are no logins: a challenge as ever');
      // The same admin from another address is not locked out.
      assert.equal((await raw('/v2/', { base, auth: right, from: '127.0.0.2' })).status, 200);
      // One warn line per failed check, none with a password in it; one for the refusals.
      const failed = lines().filter((l) => l.msg === 'login failed');
      assert.equal(failed.length, 5);
      for (const l of failed) {
        assert.equal(l.level, 40);
        assert.equal(l.user, 'admin');
        assert.equal(l.source, '127.0.0.1');
        assert.equal(l.reason, 'wrong password');
        assert.equal(l.path, '/v2/');
      }
      assert.equal(failed.filter((l) => l.lockedForMs === 60_000).length, 1, 'the fifth failure started a 1 min lockout');
      const refused = lines().filter((l) => l.msg === 'login refused' && l.level === 40);
      assert.equal(refused.length, 1);
      assert.equal(refused[0]!.reason, 'locked out');
      assert.ok(!text().includes('wrong-guess-'), 'no password in the log');
      assert.ok(!text().includes(ADMIN_PASSWORD), 'no password in the log');
    } finally {
      await r.destroy();
    }
  });

  it('robot secrets are limited the same way, through Basic on /v2 and on the token endpoint', async () => {
    const { r, lines } = await guarded({ maxFailures: 5, lockout: '1m' });
    try {
      const base = r.url;
      const c = await r.req('/api/v2.0/robots', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({
          name: 'ci',
          level: 'project',
          duration: -1,
          permissions: [{ kind: 'project', namespace: 'library', access: [{ resource: 'repository', action: 'pull' }] }],
        }),
      });
      assert.equal(c.status, 201);
      const rb = (await c.json()) as { name: string; secret: string };
      const from = '127.0.0.5';
      const token = '/service/token?service=harbor-registry&scope=repository:library/x:pull';
      for (let i = 0; i < 3; i++) assert.equal((await raw('/v2/', { base, from, auth: basic(rb.name, `Wrong${i}secret`) })).status, 401);
      for (let i = 3; i < 5; i++) assert.equal((await raw(token, { base, from, auth: basic(rb.name, `Wrong${i}secret`) })).status, 401);
      const locked = await raw(token, { base, from, auth: basic(rb.name, rb.secret) });
      assert.equal(locked.status, 429);
      assert.ok(locked.headers['retry-after']);
      assert.equal((await raw(token, { base, from: '127.0.0.6', auth: basic(rb.name, rb.secret) })).status, 200);
      const failed = lines().filter((l) => l.msg === 'login failed');
      assert.deepEqual(
        failed.map((l) => [l.user, l.reason, l.source, String(l.path).split('?')[0]]),
        [
          ...Array.from({ length: 3 }, () => [rb.name, 'wrong secret', from, '/v2/']),
          ...Array.from({ length: 2 }, () => [rb.name, 'wrong secret', from, '/service/token']),
        ],
      );
    } finally {
      await r.destroy();
    }
  });

  it('one address guessing many accounts is locked as a whole, for every account; other addresses are not', async () => {
    const { r, lines } = await guarded({ maxFailures: 5, maxSourceFailures: 20, lockout: '1m' });
    try {
      const base = r.url;
      const from = '127.0.0.3';
      const sprayed = await Promise.all(
        Array.from({ length: 40 }, (_, i) => raw('/v2/', { base, from, auth: basic(`user${i}`, 'Passw0rd') })),
      );
      assert.equal(sprayed.filter((x) => x.status === 401).length, 20);
      assert.equal(sprayed.filter((x) => x.status === 429).length, 20);
      assert.equal((await raw('/v2/', { base, from, auth: basic('admin', ADMIN_PASSWORD) })).status, 429);
      assert.equal((await raw('/v2/', { base, from: '127.0.0.4', auth: basic('admin', ADMIN_PASSWORD) })).status, 200);
      assert.equal(lines().filter((l) => l.msg === 'login failed' && l.reason === 'unknown user').length, 20);
      const m = await raw('/v2/', { base, from: '127.0.0.4', auth: `Basic ${Buffer.from('no-colon').toString('base64')}` });
      assert.equal(m.status, 401);
      assert.equal(lines().filter((l) => l.msg === 'login failed' && l.reason === 'malformed credentials').length, 1);
    } finally {
      await r.destroy();
    }
  });

  it('after a lockout the right password gets in and starts the count afresh; a failure after a lockout locks for twice as long', async () => {
    const { r, lines } = await guarded({ maxFailures: 3, lockout: '1s', maxLockout: '10s' });
    try {
      const base = r.url;
      const wrong = basic('admin', 'Wrong1pass');
      const right = basic('admin', ADMIN_PASSWORD);
      for (let i = 0; i < 3; i++) assert.equal((await raw('/v2/', { base, auth: wrong })).status, 401);
      assert.equal((await raw('/v2/', { base, auth: right })).status, 429);
      /** Retries the right password as Retry-After says, until it is let in; returns how many 429s it saw. */
      const waitOut = async (): Promise<number> => {
        for (let n = 0; n < 200; n++) {
          const x = await raw('/v2/', { base, auth: right });
          if (x.status === 200) return n;
          assert.equal(x.status, 429);
          await new Promise((res) => setTimeout(res, 50));
        }
        return assert.fail('still locked out after 200 tries');
      };
      await waitOut();
      // The success reset the account: two failures are answered 401, the third locks again.
      for (let i = 0; i < 3; i++) assert.equal((await raw('/v2/', { base, auth: wrong })).status, 401, `failure ${i + 1}`);
      assert.equal((await raw('/v2/', { base, auth: wrong })).status, 429);
      // Without a success in between, the first failure after the lockout locks for 2 s.
      for (let n = 0; ; n++) {
        const x = await raw('/v2/', { base, auth: wrong });
        if (x.status === 401) break;
        assert.equal(x.status, 429);
        assert.ok(n < 200, 'still locked out after 200 tries');
        await new Promise((res) => setTimeout(res, 50));
      }
      assert.equal((await raw('/v2/', { base, auth: right })).status, 429);
      assert.deepEqual(
        lines()
          .filter((l) => l.lockedForMs !== undefined)
          .map((l) => l.lockedForMs),
        [1000, 1000, 2000],
      );
    } finally {
      await r.destroy();
    }
  });
});

it('none of the above made the shared registry fail: no 500, nothing logged at error level', () => {
  assert.deepEqual(
    errorLines.map((l) => (JSON.parse(l) as { msg: string; path?: string }).path ?? l.slice(0, 200)),
    [],
  );
});
