/**
 * RegistryClient.resolveImage against a registry on loopback serving fixed documents: an index with
 * plain and Nydus entries (platform choice, Nydus preference), and broken documents (malformed JSON,
 * a manifest without layers, an index entry that is itself an index).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createHash } from 'node:crypto';
import { FerryError, type ErrorCode } from '../core/index.js';
import { MediaType, NYDUS_MANIFEST_ARTIFACT_TYPE, type Descriptor } from '../oci/index.js';
import { RegistryClient, parseReference } from './index.js';

const sha = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const docs = new Map<string, { body: Buffer; type: string }>();
let server: Server;
let host: string;

function put(ref: string, doc: unknown, type: string): Descriptor {
  const body = Buffer.from(typeof doc === 'string' ? doc : JSON.stringify(doc));
  const d = sha(body);
  docs.set(ref, { body, type });
  docs.set(d, { body, type });
  return { mediaType: type, digest: d, size: body.length };
}

function image(arch: string, nydus: boolean): Descriptor {
  const cfg = { mediaType: MediaType.OCI_CONFIG, digest: sha(Buffer.from(arch)), size: 1 };
  return put(`${arch}-${nydus}`, { schemaVersion: 2, mediaType: MediaType.OCI_MANIFEST, config: cfg, layers: [] }, MediaType.OCI_MANIFEST);
}

before(async () => {
  server = createServer((req, res) => {
    const m = /^\/v2\/lib\/app\/manifests\/(.+)$/.exec(req.url ?? '');
    const doc = m ? docs.get(decodeURIComponent(m[1]!)) : undefined;
    if (!doc) {
      res.writeHead(404);
      res.end();
      return;
    }
    res.writeHead(200, { 'content-type': doc.type, 'docker-content-digest': sha(doc.body) });
    res.end(doc.body);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  host = `127.0.0.1:${(server.address() as AddressInfo).port}`;
  const entry = (d: Descriptor, arch: string, nydus: boolean): Descriptor => ({
    ...d,
    platform: { os: 'linux', architecture: arch },
    ...(nydus ? { artifactType: NYDUS_MANIFEST_ARTIFACT_TYPE } : {}),
  });
  put(
    'idx',
    {
      schemaVersion: 2,
      mediaType: MediaType.OCI_INDEX,
      manifests: [
        entry(image('amd64', false), 'amd64', false),
        entry(image('amd64', true), 'amd64', true),
        entry(image('arm64', false), 'arm64', false),
      ],
    },
    MediaType.OCI_INDEX,
  );
  put('broken', '{"schemaVersion":2,', MediaType.OCI_MANIFEST);
  const cfg = { mediaType: 'x', digest: sha(Buffer.from('c')), size: 1 };
  put('nolayers', { schemaVersion: 2, mediaType: MediaType.OCI_MANIFEST, config: cfg }, MediaType.OCI_MANIFEST);
  const inner = put('inner', { schemaVersion: 2, mediaType: MediaType.OCI_INDEX, manifests: [] }, MediaType.OCI_INDEX);
  const nested = [{ ...inner, platform: { os: 'linux', architecture: 'amd64' } }];
  put('nested', { schemaVersion: 2, mediaType: MediaType.OCI_INDEX, manifests: nested }, MediaType.OCI_INDEX);
});
after(() => {
  server?.close();
});

test('resolveImage: an index resolves to the platform entry, the Nydus one first when preferred; a manifest to itself', async () => {
  const c = new RegistryClient();
  const ref = parseReference(`${host}/lib/app:idx`);
  const plain = await c.resolveImage(ref, { platform: 'linux/amd64' });
  assert.equal(plain.fetched.digest, sha(docs.get('amd64-false')!.body));
  assert.equal(plain.ref.digest, plain.fetched.digest);
  assert.equal(plain.index?.entry.digest, plain.fetched.digest);
  assert.equal(plain.index?.fetched.digest, sha(docs.get('idx')!.body));
  const lazy = await c.resolveImage(ref, { platform: 'linux/amd64', prefer: 'nydus' });
  assert.equal(lazy.fetched.digest, sha(docs.get('amd64-true')!.body));
  const arm = await c.resolveImage(ref, { platform: 'linux/arm64', prefer: 'nydus' });
  assert.equal(arm.fetched.digest, sha(docs.get('arm64-false')!.body), 'no Nydus entry for arm64: the plain one');
  await assert.rejects(c.resolveImage(ref, { platform: 'linux/s390x' }), { code: 'NOT_FOUND' });
  const single = await c.resolveImage(parseReference(`${host}/lib/app:amd64-true`));
  assert.equal(single.index, undefined);
  assert.equal(single.manifest.layers.length, 0);
});

test('resolveImage: malformed documents are INVALID_ARGUMENT naming the reference, an index entry that is an index DATA_LOSS', async () => {
  const c = new RegistryClient();
  const reason =
    (code: ErrorCode, re: RegExp) =>
    (e: unknown): boolean =>
      FerryError.hasCode(e, code) && re.test((e as Error).message);
  const ref = (tag: string): ReturnType<typeof parseReference> => parseReference(`${host}/lib/app:${tag}`);
  await assert.rejects(c.resolveImage(ref('broken')), reason('INVALID_ARGUMENT', /lib\/app:broken: not valid JSON/));
  await assert.rejects(c.resolveImage(ref('nolayers')), reason('INVALID_ARGUMENT', /layers must be an array/));
  await assert.rejects(c.resolveImage(ref('nested'), { platform: 'linux/amd64' }), reason('DATA_LOSS', /is an index/));
});
