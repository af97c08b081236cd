import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, request as httpRequest, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Readable } from 'node:stream';
import { randomBytes, createHash } from 'node:crypto';
import { requirePrereqs } from '../../test/support/prereq.js';
import { RegistryClient, parseReference } from './index.js';
import { startDistributionRegistry, type DistributionRegistry } from '../bench/env/index.js';
import { MediaType } from '../oci/index.js';

const sha = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;
async function readAll(s: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of s) parts.push(c as Buffer);
  return Buffer.concat(parts);
}

let plain: DistributionRegistry;
let tokened: DistributionRegistry;

before(async () => {
  requirePrereqs({ commands: ['docker-registry', 'openssl'] });
  [plain, tokened] = await Promise.all([
    startDistributionRegistry(),
    startDistributionRegistry({ tokenAuth: { users: { alice: 'secret' } } }),
  ]);
});
after(async () => {
  await Promise.all([plain?.close(), tokened?.close()]);
});

async function pushImage(
  c: RegistryClient,
  host: string,
  repo: string,
  tag: string,
  layers: Buffer[],
): Promise<{ manifest: Buffer; digest: string }> {
  const descs = [];
  for (const l of layers) descs.push(await c.pushBuffer(host, repo, l, MediaType.OCI_LAYER_GZIP));
  const cfg = Buffer.from(
    JSON.stringify({ architecture: 'amd64', os: 'linux', rootfs: { type: 'layers', diff_ids: descs.map((d) => d.digest) } }),
  );
  const config = await c.pushBuffer(host, repo, cfg, MediaType.OCI_CONFIG);
  const manifest = Buffer.from(JSON.stringify({ schemaVersion: 2, mediaType: MediaType.OCI_MANIFEST, config, layers: descs }));
  const digest = await c.putManifest(parseReference(`${host}/${repo}:${tag}`), manifest, MediaType.OCI_MANIFEST);
  return { manifest, digest };
}

test('docker-registry: monolithic and chunked pushes, manifest round trip, ranges, mount, tags, index', async () => {
  const c = new RegistryClient({ uploadChunkSize: 64 * 1024 });
  const host = plain.host;
  const small = randomBytes(1000);
  const big = randomBytes(300 * 1024 + 7);
  const { digest } = await pushImage(c, host, 'lib/app', 'v1', [small]);
  // chunked upload from a stream factory (5 PATCHes)
  const r = await c.pushBlob(host, 'lib/app', sha(big), big.length, () => Readable.from([big.subarray(0, 100_000), big.subarray(100_000)]));
  assert.equal(r.existed, false);
  assert.equal((await c.pushBlob(host, 'lib/app', sha(big), big.length, big)).existed, true);
  assert.equal(await c.headBlob(host, 'lib/app', sha(big)), big.length);
  assert.deepEqual(await readAll(await c.getBlob(host, 'lib/app', sha(big))), big);
  assert.deepEqual(await readAll(await c.getBlob(host, 'lib/app', sha(big), { range: [1000, 70_000] })), big.subarray(1000, 70_001));
  // a stream whose content does not match the digest is refused and not committed
  const wrong = `sha256:${'0'.repeat(64)}`;
  await assert.rejects(c.pushBlob(host, 'lib/app', wrong, 10, Readable.from([Buffer.alloc(10)])), { code: 'DATA_LOSS' });
  assert.equal(await c.headBlob(host, 'lib/app', wrong), undefined);

  const m = await c.getManifest(parseReference(`${host}/lib/app:v1`));
  assert.equal(m.digest, digest);
  assert.equal(m.mediaType, MediaType.OCI_MANIFEST);
  const head = await c.headManifest(parseReference(`${host}/lib/app:v1`));
  assert.equal(head?.digest, digest);
  assert.equal(await c.headManifest(parseReference(`${host}/lib/app:nope`)), undefined);
  await assert.rejects(c.getManifest(parseReference(`${host}/lib/app:nope`)), { code: 'NOT_FOUND' });
  // index (Docker manifest list) by digest
  const list = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MediaType.DOCKER_MANIFEST_LIST,
      manifests: [{ mediaType: MediaType.OCI_MANIFEST, digest, size: m.body.length, platform: { os: 'linux', architecture: 'amd64' } }],
    }),
  );
  const ld = await c.putManifest(parseReference(`${host}/lib/app:multi`), list, MediaType.DOCKER_MANIFEST_LIST);
  const got = await c.getManifest(parseReference(`${host}/lib/app@${ld}`));
  assert.equal(got.mediaType, MediaType.DOCKER_MANIFEST_LIST);
  assert.deepEqual((await c.listTags(host, 'lib/app')).sort(), ['multi', 'v1']);
  // cross-repo mount
  assert.equal(await c.mountBlob(host, 'other/repo', sha(big), 'lib/app'), true);
  assert.equal(await c.headBlob(host, 'other/repo', sha(big)), big.length);
  assert.equal(await c.mountBlob(host, 'other/repo', `sha256:${'1'.repeat(64)}`, 'lib/app'), false);
});

test('docker-registry with token auth: bearer tokens cached per scope, bad credentials rejected', async () => {
  const host = tokened.host;
  const c = new RegistryClient({ credentials: (h) => (h === host ? { username: 'alice', password: 'secret' } : undefined) });
  const before = tokened.tokensIssued();
  await pushImage(c, host, 'team/app', 'v1', [randomBytes(500), randomBytes(700)]);
  const m = await c.getManifest(parseReference(`${host}/team/app:v1`));
  assert.equal(m.mediaType, MediaType.OCI_MANIFEST);
  const issued = tokened.tokensIssued() - before;
  assert.ok(issued >= 1 && issued <= 3, `tokens issued: ${issued}`);
  const anon = new RegistryClient({ credentials: () => undefined });
  await assert.rejects(anon.getManifest(parseReference(`${host}/team/app:v1`)), { code: 'UNAUTHENTICATED' });
  const bad = new RegistryClient({ credentials: () => ({ username: 'alice', password: 'nope' }) });
  await assert.rejects(bad.getManifest(parseReference(`${host}/team/app:v1`)), { code: 'UNAUTHENTICATED' });
});

test('readBlobRange: ranged reads on kept-alive connections, token auth reused, bytes reported as they arrive, bad ranges refused', async () => {
  const host = tokened.host;
  const c = new RegistryClient({ credentials: (h) => (h === host ? { username: 'alice', password: 'secret' } : undefined) });
  const blob = randomBytes(3 * 1024 * 1024);
  await c.pushBlob(host, 'team/ranges', sha(blob), blob.length, blob);
  const tokens = tokened.tokensIssued();
  // the first read learns the auth scheme (general path), the next ones take the fast path
  for (const [off, len] of [
    [0, 1],
    [1000, 70_000],
    [blob.length - 5, 5],
    [0, blob.length],
  ] as Array<[number, number]>) {
    const seen: number[] = [];
    const got = await c.readBlobRange(host, 'team/ranges', sha(blob), off, len, {
      progress: (buf, filled) => {
        assert.ok(filled <= len && buf.length === len);
        seen.push(filled);
      },
    });
    assert.ok(got.equals(blob.subarray(off, off + len)), `[${off}, +${len})`);
    assert.equal(seen[seen.length - 1], len, 'progress reaches the whole range');
    assert.ok(
      seen.every((n, i) => i === 0 || n > seen[i - 1]!),
      'progress only grows',
    );
  }
  assert.ok(tokened.tokensIssued() - tokens <= 1, 'one token for all the reads of the scope');
  await assert.rejects(c.readBlobRange(host, 'team/ranges', sha(blob), -1, 10), { code: 'INVALID_ARGUMENT' });
  await assert.rejects(c.readBlobRange(host, 'team/ranges', sha(blob), 0, 0), { code: 'INVALID_ARGUMENT' });
  await assert.rejects(c.readBlobRange(host, 'team/ranges', 'sha256:nothex', 0, 10));
  // past the end of the blob: an error, not a short buffer
  await assert.rejects(c.readBlobRange(host, 'team/ranges', sha(blob), blob.length - 5, 10));
  // no credentials: refused on the fast path too (the registry answers 401, the general path says so)
  const anon = new RegistryClient({ credentials: () => undefined });
  await assert.rejects(anon.readBlobRange(host, 'team/ranges', sha(blob), 0, 10), { code: 'UNAUTHENTICATED' });
});

test('retries 5xx and connection resets, follows redirects, gives up with UNAVAILABLE', async () => {
  const upstream = new URL(plain.url);
  const c0 = new RegistryClient();
  const blob = randomBytes(5000);
  await c0.pushBuffer(plain.host, 'lib/flaky', blob, MediaType.OCI_LAYER_GZIP);
  let failures = 2;
  let requests = 0;
  let mode: 'flaky' | 'down' = 'flaky';
  const proxy: Server = createServer((req, res) => {
    requests++;
    if (mode === 'down') {
      res.writeHead(503);
      res.end();
      return;
    }
    if (failures > 0) {
      failures--;
      if (failures % 2 === 0) {
        req.socket.destroy();
        return;
      }
      res.writeHead(502);
      res.end('bad gateway');
      return;
    }
    if (req.url?.includes('/blobs/') && !req.url.includes('redirected=1')) {
      res.writeHead(307, { location: `${req.url}?redirected=1` });
      res.end();
      return;
    }
    const up = httpRequest(
      {
        host: upstream.hostname,
        port: upstream.port,
        path: req.url!.replace('?redirected=1', ''),
        method: req.method,
        headers: req.headers,
      },
      (ur) => {
        res.writeHead(ur.statusCode!, ur.headers);
        ur.pipe(res);
      },
    );
    req.pipe(up);
  });
  await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
  try {
    const host = `127.0.0.1:${(proxy.address() as AddressInfo).port}`;
    const c = new RegistryClient({ backoffMs: 5, retries: 3 });
    assert.deepEqual(await readAll(await c.getBlob(host, 'lib/flaky', sha(blob))), blob);
    assert.ok(requests >= 4, `requests ${requests}`);
    mode = 'down';
    const before = requests;
    await assert.rejects(c.headBlob(host, 'lib/flaky', sha(blob)), { code: 'UNAVAILABLE' });
    assert.equal(requests - before, 4);
  } finally {
    await new Promise<void>((r) => proxy.close(() => r()));
  }
});

test('Basic-challenge registries get Basic credentials; token expiry triggers a refresh on 401', async () => {
  const body = Buffer.from(
    JSON.stringify({
      schemaVersion: 2,
      mediaType: MediaType.OCI_MANIFEST,
      config: { mediaType: MediaType.OCI_CONFIG, digest: sha(Buffer.from('{}')), size: 2 },
      layers: [],
    }),
  );
  const seen: string[] = [];
  const server: Server = createServer((req, res) => {
    seen.push(req.headers.authorization ?? '-');
    if (req.headers.authorization !== `Basic ${Buffer.from('bob:pw').toString('base64')}`) {
      res.writeHead(401, { 'www-authenticate': 'Basic realm="test"' });
      res.end();
      return;
    }
    res.writeHead(200, { 'content-type': MediaType.OCI_MANIFEST, 'docker-content-digest': sha(body) });
    res.end(body);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  try {
    const host = `127.0.0.1:${(server.address() as AddressInfo).port}`;
    const c = new RegistryClient({ credentials: () => ({ username: 'bob', password: 'pw' }) });
    assert.equal((await c.getManifest(parseReference(`${host}/a/b:t`))).digest, sha(body));
    assert.equal((await c.getManifest(parseReference(`${host}/a/b:t`))).digest, sha(body));
    assert.deepEqual(
      seen.map((s) => s.split(' ')[0]),
      ['-', 'Basic', 'Basic'],
      'second request sends Basic up front',
    );
  } finally {
    await new Promise<void>((r) => server.close(() => r()));
  }
  // Bearer: a token the registry stops accepting (expired early) is refreshed once on 401.
  let tokens = 0;
  let accept = '';
  const tokenSrv: Server = createServer((_req, res) => {
    tokens++;
    accept = `tok${tokens}`;
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ token: accept, expires_in: 300 }));
  });
  await new Promise<void>((r) => tokenSrv.listen(0, '127.0.0.1', r));
  const realm = `http://127.0.0.1:${(tokenSrv.address() as AddressInfo).port}/token`;
  const regSrv: Server = createServer((req, res) => {
    if (req.headers.authorization !== `Bearer ${accept}`) {
      res.writeHead(401, { 'www-authenticate': `Bearer realm="${realm}",service="svc",scope="repository:a/b:pull"` });
      res.end();
      return;
    }
    res.writeHead(200, { 'content-type': MediaType.OCI_MANIFEST });
    res.end(body);
  });
  await new Promise<void>((r) => regSrv.listen(0, '127.0.0.1', r));
  try {
    const host = `127.0.0.1:${(regSrv.address() as AddressInfo).port}`;
    const c = new RegistryClient({ credentials: () => undefined });
    await c.getManifest(parseReference(`${host}/a/b:t`));
    await c.getManifest(parseReference(`${host}/a/b:t`));
    assert.equal(tokens, 1, 'token cached per scope');
    accept = 'rotated';
    await c.getManifest(parseReference(`${host}/a/b:t`));
    assert.equal(tokens, 2, 'refreshed after the 401');
  } finally {
    await new Promise<void>((r) => regSrv.close(() => r()));
    await new Promise<void>((r) => tokenSrv.close(() => r()));
  }
});

test('an upload session the registry loses mid-way is restarted from the stream factory', async () => {
  const upstream = new URL(plain.url);
  let lost = 1;
  const proxy: Server = createServer((req, res) => {
    if (req.method === 'PATCH' && lost > 0) {
      lost--;
      req.resume();
      res.writeHead(404, { 'content-type': 'application/json' });
      res.end('{"errors":[{"code":"BLOB_UPLOAD_UNKNOWN","message":"blob upload unknown to registry"}]}');
      return;
    }
    const up = httpRequest(
      { host: upstream.hostname, port: upstream.port, path: req.url, method: req.method, headers: req.headers },
      (ur) => {
        const h = { ...ur.headers };
        if (typeof h.location === 'string')
          h.location = h.location.replace(upstream.host, `127.0.0.1:${(proxy.address() as AddressInfo).port}`);
        res.writeHead(ur.statusCode!, h);
        ur.pipe(res);
      },
    );
    req.pipe(up);
  });
  await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
  try {
    const host = `127.0.0.1:${(proxy.address() as AddressInfo).port}`;
    const c = new RegistryClient({ backoffMs: 5, uploadChunkSize: 50_000 });
    const blob = randomBytes(120_000);
    let opened = 0;
    await c.pushBlob(host, 'lib/session', sha(blob), blob.length, () => {
      opened++;
      return Readable.from([blob]);
    });
    assert.equal(opened, 2);
    assert.equal(await c.headBlob(plain.host, 'lib/session', sha(blob)), blob.length);
  } finally {
    await new Promise<void>((r) => proxy.close(() => r()));
  }
});
