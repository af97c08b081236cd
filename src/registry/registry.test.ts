/**
 * Table-driven unit tests of the registry's pure pieces: name/tag/digest grammars, Range parsing,
 * token scopes, manifest validation and the error → status table.
 */
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { FerryError } from '../core/index.js';
import { isValidName, isValidTag, parseReference, projectOf } from './names.js';
import { parseRange } from './http-util.js';
import { parseScope, generateSecret, isStrongSecret, hashSecret, verifySecret } from './auth.js';
import { parseManifest } from './distribution.js';
import { OCI_STATUS, OciError, toOciError } from './errors.js';
import { matchRoute } from './distribution.js';

const D = `sha256:${'a'.repeat(64)}`;

it('accepts and rejects repository names by the spec grammar', () => {
  for (const ok of ['a', 'library/busybox', 'a.b_c__d-e---f/g0', 'x/y/z', 'a'.repeat(255)]) assert.ok(isValidName(ok), ok);
  for (const bad of ['', 'A', 'a/', '/a', 'a//b', 'a/../b', '..', '.a', 'a_', 'a___b', 'a.-b', 'a'.repeat(256), 'a%2fb', 'a b']) {
    assert.ok(!isValidName(bad), bad);
  }
});

it('accepts and rejects tags and references', () => {
  for (const ok of ['latest', 'v1.0', '_x', 'A-b.c_d', 'x'.repeat(128)]) assert.ok(isValidTag(ok), ok);
  for (const bad of ['', '.x', '-x', 'x'.repeat(129), 'a/b', 'a:b']) assert.ok(!isValidTag(bad), bad);
  assert.deepEqual(parseReference(D), { digest: D });
  assert.deepEqual(parseReference('v1'), { tag: 'v1' });
  assert.throws(
    () => parseReference('sha256:short'),
    (e: unknown) => e instanceof OciError && e.oci === 'DIGEST_INVALID',
  );
  assert.throws(
    () => parseReference('-bad'),
    (e: unknown) => e instanceof OciError && e.oci === 'TAG_INVALID',
  );
  assert.equal(projectOf('busybox'), 'library');
  assert.equal(projectOf('team/app/x'), 'team');
});

it('parses single byte ranges and rejects unsatisfiable ones', () => {
  assert.equal(parseRange(undefined, 10), undefined);
  assert.deepEqual(parseRange('bytes=0-3', 10), { start: 0, end: 3 });
  assert.deepEqual(parseRange('bytes=5-', 10), { start: 5, end: 9 });
  assert.deepEqual(parseRange('bytes=-3', 10), { start: 7, end: 9 });
  assert.deepEqual(parseRange('bytes=-30', 10), { start: 0, end: 9 });
  assert.deepEqual(parseRange('bytes=8-100', 10), { start: 8, end: 9 });
  assert.equal(parseRange('bytes=0-1,4-5', 10), undefined, 'multi-range: served whole');
  for (const bad of ['bytes=10-', 'bytes=5-2', 'bytes=-0', 'bytes=-', 'items=0-1', 'bytes=a-b'])
    assert.equal(parseRange(bad, 10), 'invalid', bad);
  assert.equal(parseRange('bytes=0-0', 0), 'invalid');
});

it('parses token scopes, including names with host:port', () => {
  assert.deepEqual(parseScope('repository:library/x:pull,push'), { type: 'repository', name: 'library/x', actions: ['pull', 'push'] });
  assert.deepEqual(parseScope('repository:127.0.0.1:5000/a/b:pull'), { type: 'repository', name: '127.0.0.1:5000/a/b', actions: ['pull'] });
  assert.deepEqual(parseScope('repository(plugin):a:pull'), { type: 'repository', name: 'a', actions: ['pull'] });
  assert.deepEqual(parseScope('registry:catalog:*'), { type: 'registry', name: 'catalog', actions: ['*'] });
  assert.equal(parseScope('nonsense'), undefined);
  assert.equal(parseScope('repository:x'), undefined);
});

it('generates strong robot secrets and verifies hashed secrets', async () => {
  for (let i = 0; i < 20; i++) {
    const s = generateSecret();
    assert.match(s, /^[A-Za-z0-9]{32}$/);
    assert.ok(isStrongSecret(s));
  }
  assert.ok(!isStrongSecret('alllowercase1'));
  assert.ok(!isStrongSecret('Sh0rt'));
  const h = await hashSecret('Pa55word');
  assert.match(h, /^pbkdf2-sha256\$\d+\$/);
  assert.ok(await verifySecret('Pa55word', h));
  assert.ok(!(await verifySecret('Pa55wore', h)));
  assert.ok(!(await verifySecret('x', 'garbage')));
});

it('validates manifests and derives references, artifactType and subject', () => {
  const cfg = { mediaType: 'application/vnd.oci.image.config.v1+json', digest: D, size: 2 };
  const m = parseManifest(
    Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        config: cfg,
        layers: [
          { ...cfg, mediaType: 'l', urls: ['http://x'] },
          { ...cfg, mediaType: 'l' },
        ],
        subject: cfg,
      }),
    ),
    'application/vnd.oci.image.manifest.v1+json',
  );
  assert.equal(m.mediaType, 'application/vnd.oci.image.manifest.v1+json');
  assert.deepEqual(m.blobs, [D]);
  assert.equal(m.subject, D);
  assert.equal(m.artifactType, cfg.mediaType);
  const idx = parseManifest(Buffer.from(JSON.stringify({ schemaVersion: 2, manifests: [cfg] })), undefined);
  assert.equal(idx.mediaType, 'application/vnd.oci.image.index.v1+json');
  assert.deepEqual(idx.manifests, [D]);
  assert.equal(idx.artifactType, undefined);
  const bad: Array<[string, string | undefined]> = [
    ['{', 'application/vnd.oci.image.manifest.v1+json'],
    ['"str"', undefined],
    [
      JSON.stringify({ schemaVersion: 2, mediaType: 'application/vnd.oci.image.index.v1+json', manifests: [] }),
      'application/vnd.oci.image.manifest.v1+json',
    ],
    [JSON.stringify({ schemaVersion: 3, config: cfg, layers: [] }), 'application/vnd.oci.image.manifest.v1+json'],
    [JSON.stringify({ schemaVersion: 2, config: cfg, layers: {} }), 'application/vnd.oci.image.manifest.v1+json'],
    [JSON.stringify({ schemaVersion: 2, config: cfg, layers: [], annotations: { a: 1 } }), 'application/vnd.oci.image.manifest.v1+json'],
    [JSON.stringify({ schemaVersion: 2, mediaType: 'application/x-unknown', config: cfg, layers: [] }), undefined],
    [JSON.stringify({ schemaVersion: 2, config: { ...cfg, digest: 'sha256:zz' }, layers: [] }), undefined],
  ];
  for (const [body, ct] of bad) {
    assert.throws(
      () => parseManifest(Buffer.from(body), ct),
      (e: unknown) => e instanceof OciError && e.oci === 'MANIFEST_INVALID',
      body,
    );
  }
});

it('maps error categories and OCI codes to statuses in one table', () => {
  assert.equal(OCI_STATUS.BLOB_UNKNOWN, 404);
  assert.equal(OCI_STATUS.UNAUTHORIZED, 401);
  assert.equal(OCI_STATUS.DENIED, 403);
  assert.equal(OCI_STATUS.UNSUPPORTED, 405);
  assert.equal(OCI_STATUS.SIZE_TOO_LARGE, 413);
  assert.equal(toOciError(new FerryError('DATA_LOSS', 'x')).oci, 'DIGEST_INVALID');
  assert.equal(toOciError(new FerryError('PERMISSION_DENIED', 'x')).status, 403);
  const internal = toOciError(new Error('secret detail'));
  assert.equal(internal.status, 500);
  assert.equal(internal.message, 'internal error', 'internal messages are not leaked');
  assert.equal(new OciError('BLOB_UPLOAD_INVALID', 'x', { status: 416 }).status, 416);
});

it('routes /v2 paths', () => {
  assert.deepEqual(matchRoute('/v2/'), { kind: 'base' });
  assert.deepEqual(matchRoute('/v2/a/b/blobs/uploads/'), { kind: 'uploads', name: 'a/b' });
  assert.deepEqual(matchRoute('/v2/a/blobs/uploads/xyz'), { kind: 'upload', name: 'a', id: 'xyz' });
  assert.deepEqual(matchRoute(`/v2/a/blobs/${D}`), { kind: 'blob', name: 'a', digest: D });
  assert.deepEqual(matchRoute('/v2/a/b/manifests/v1'), { kind: 'manifest', name: 'a/b', reference: 'v1' });
  assert.deepEqual(matchRoute('/v2/a/tags/list'), { kind: 'tags', name: 'a' });
  assert.deepEqual(matchRoute(`/v2/a/referrers/${D}`), { kind: 'referrers', name: 'a', digest: D });
  assert.deepEqual(matchRoute('/v2/manifests/blobs/x'), { kind: 'blob', name: 'manifests', digest: 'x' });
  assert.equal(matchRoute('/v2/a'), undefined);
  assert.equal(matchRoute('/v3/a/tags/list'), undefined);
});
