import { test } from 'node:test';
import { createHash } from 'node:crypto';
import assert from 'node:assert/strict';
import { FerryError } from '../core/index.js';
import { matchesAny, parseFilter } from './filters.js';
import { imageLayersLabel, chainIds } from './pull.js';
import { remoteHint, validateLabels, Label } from './labels.js';

const info = {
  name: 'sha256:abc',
  parent: '',
  kind: 'committed',
  labels: { 'containerd.io/snapshot.ref': 'sha256:abc', 'a.b': 'x y' } as Record<string, string>,
};
const adapt = (path: string[]): string | undefined => {
  const [h, ...rest] = path;
  if (h === 'labels') return info.labels[rest.join('.')];
  return (info as unknown as Record<string, string>)[h!];
};

test('containerd filter syntax: quoted field parts, quoted and bare values, AND within, OR across', () => {
  assert.ok(matchesAny([parseFilter(`labels."containerd.io/snapshot.ref"==sha256:abc,parent==""`)], adapt));
  assert.ok(!matchesAny([parseFilter(`labels."containerd.io/snapshot.ref"==sha256:abc,parent=="p"`)], adapt));
  assert.ok(matchesAny([parseFilter('labels."a.b"=="x y"')], adapt));
  assert.ok(matchesAny([parseFilter('kind==view'), parseFilter('kind==committed')], adapt));
  assert.ok(matchesAny([parseFilter('name~=^sha256:a')], adapt));
  assert.ok(matchesAny([parseFilter('labels."a.b"')], adapt)); // presence
  assert.ok(!matchesAny([parseFilter('labels.missing')], adapt));
  assert.ok(matchesAny([parseFilter('name!=other')], adapt));
  assert.ok(matchesAny([parseFilter('name=="sha\\u0032\\x35\\x36:abc"')], adapt));
  assert.ok(matchesAny([], adapt));
  assert.ok(matchesAny([parseFilter('')], adapt));
  for (const bad of ['name=="x', 'name~=(', '==x', 'name==x,', 'name=="\\q"']) {
    assert.throws(
      () => parseFilter(bad),
      (e: unknown) => FerryError.hasCode(e, 'INVALID_ARGUMENT'),
      bad,
    );
  }
});

test('chain ids follow the OCI definition', () => {
  const a = `sha256:${'a'.repeat(64)}`;
  const b = `sha256:${'b'.repeat(64)}`;
  const [c0, c1] = chainIds([a, b]);
  assert.equal(c0, a);
  // sha256("sha256:aaa… sha256:bbb…")
  assert.equal(c1, `sha256:${require_sha256(`${a} ${b}`)}`);
});

function require_sha256(s: string): string {
  return createHashHex(s);
}

function createHashHex(s: string): string {
  return createHash('sha256').update(s).digest('hex');
}

test("image-layers label is truncated to containerd's 4096-byte limit", () => {
  const digests = Array.from({ length: 100 }, (_, i) => `sha256:${String(i).padStart(64, '0')}`);
  const v = imageLayersLabel(digests);
  assert.ok(Buffer.byteLength(Label.CRI_IMAGE_LAYERS) + v.length <= 4096);
  assert.ok(v.split(',').length > 50 && v.split(',').length < 100);
  assert.equal(v.split(',')[0], digests[0]);
  assert.doesNotThrow(() => validateLabels({ [Label.CRI_IMAGE_LAYERS]: v }));
  assert.throws(
    () => validateLabels({ k: 'x'.repeat(4096) }),
    (e: unknown) => FerryError.hasCode(e, 'INVALID_ARGUMENT'),
  );
});

test('remote hints read both label families, cri first', () => {
  assert.equal(remoteHint({}), undefined);
  const h = remoteHint({
    [Label.SNAPSHOT_REF]: 'sha256:c',
    [Label.STARGZ_REFERENCE]: 'r/s:1',
    [Label.STARGZ_DIGEST]: 'sha256:l',
    [Label.STARGZ_LAYERS]: 'sha256:l,sha256:m',
    [Label.NYDUS_BLOB]: 'true',
  })!;
  assert.equal(h.ref, 'r/s:1');
  assert.equal(h.layerDigest, 'sha256:l');
  assert.deepEqual(h.layers, ['sha256:l', 'sha256:m']);
  assert.ok(h.nydusBlob && !h.nydusBootstrap && !h.plainHttp);
  const c = remoteHint({
    [Label.SNAPSHOT_REF]: 'sha256:c',
    [Label.CRI_IMAGE_REF]: 'a/b:1',
    [Label.STARGZ_REFERENCE]: 'x/y:2',
    [Label.FERRY_PLAIN_HTTP]: 'true',
  })!;
  assert.equal(c.ref, 'a/b:1');
  assert.ok(c.plainHttp);
});
