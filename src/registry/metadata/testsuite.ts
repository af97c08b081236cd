/**
 * @module registry/metadata/testsuite
 * The DistributionMetadata contract as a reusable suite: the SQLite store runs it, and a
 * PostgreSQL store would run it unchanged.
 */
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { OciError } from '../errors.js';
import type { DistributionMetadata, ManifestRecord } from './metadata.js';

const d = (c: string): string => `sha256:${c.repeat(64)}`;

function rec(repo: string, digest: string, extra: Partial<ManifestRecord> = {}): ManifestRecord {
  return { repo, digest, mediaType: 'application/vnd.oci.image.manifest.v1+json', size: 2, body: Buffer.from('{}'), createdAt: Date.now(), ...extra };
}

/** Registers the contract tests for a fresh store from `make`. */
export function metadataSuite(name: string, make: () => Promise<{ meta: DistributionMetadata; cleanup(): Promise<void> }>): void {
  const withMeta = (title: string, fn: (m: DistributionMetadata) => Promise<void>): void => {
    it(`${name}: ${title}`, async () => {
      const { meta, cleanup } = await make();
      try { await fn(meta); } finally { await cleanup(); }
    });
  };

  withMeta('commits blobs into a repository and links them elsewhere only by mount', async (m) => {
    let published = false;
    await m.commitBlob('a/x', d('1'), 10, () => { published = true; });
    assert.ok(published);
    assert.equal(await m.blobInRepo('a/x', d('1')), 10);
    assert.equal(await m.blobInRepo('a/y', d('1')), undefined);
    assert.equal(await m.linkBlob('a/y', d('1')), true);
    assert.equal(await m.blobInRepo('a/y', d('1')), 10);
    assert.equal(await m.linkBlob('a/y', d('2')), false);
    assert.equal(await m.unlinkBlob('a/y', d('1')), true);
    assert.equal(await m.unlinkBlob('a/y', d('1')), false);
    assert.equal(await m.blobInRepo('a/x', d('1')), 10);
  });

  withMeta('a blob publish that throws records nothing', async (m) => {
    await assert.rejects(m.commitBlob('a/x', d('3'), 1, () => { throw new Error('rename failed'); }), /rename failed/);
    assert.equal(await m.blobInRepo('a/x', d('3')), undefined);
  });

  withMeta('stores manifests with tags only when their references exist', async (m) => {
    await m.commitBlob('a/x', d('1'), 10, () => undefined);
    await assert.rejects(m.putManifest(rec('a/x', d('a')), 'v1', { blobs: [d('1'), d('2')], manifests: [] }, () => []),
      (e: unknown) => e instanceof OciError && e.oci === 'MANIFEST_BLOB_UNKNOWN' && (e.detail as Array<{ digest: string }>)[0]!.digest === d('2'));
    assert.equal(await m.resolveTag('a/x', 'v1'), undefined);
    assert.equal(await m.repositoryExists('a/x'), false);
    await m.putManifest(rec('a/x', d('a')), 'v1', { blobs: [d('1')], manifests: [] }, () => []);
    assert.equal(await m.resolveTag('a/x', 'v1'), d('a'));
    assert.deepEqual((await m.getManifest('a/x', d('a')))?.body, Buffer.from('{}'));
    assert.equal(await m.repositoryExists('a/x'), true);
    await assert.rejects(m.putManifest(rec('a/x', d('b'), { mediaType: 'application/vnd.oci.image.index.v1+json' }), 'idx', { blobs: [], manifests: [d('c')] }, () => []));
    await m.putManifest(rec('a/x', d('b')), 'idx', { blobs: [], manifests: [d('a')] }, () => []);
    assert.deepEqual(await m.tagsOf('a/x', d('a')), ['v1']);
  });

  withMeta('lists tags and repositories in order with pagination', async (m) => {
    for (const [repo, tag, c] of [['b/r', 'z', 'a'], ['b/r', 'a', 'b'], ['b/r', 'm', 'c'], ['a/r', 'x', 'd']] as const) {
      await m.putManifest(rec(repo, d(c)), tag, { blobs: [], manifests: [] }, () => []);
    }
    assert.deepEqual(await m.listTags('b/r', {}), ['a', 'm', 'z']);
    assert.deepEqual(await m.listTags('b/r', { n: 2 }), ['a', 'm']);
    assert.deepEqual(await m.listTags('b/r', { last: 'a' }), ['m', 'z']);
    assert.deepEqual(await m.listRepositories({}), ['a/r', 'b/r']);
    assert.deepEqual(await m.listRepositories({ n: 1, last: 'a/r' }), ['b/r']);
    assert.deepEqual(await m.listRepositories({ project: 'b' }), ['b/r']);
  });

  withMeta('deletes tags and manifests (with their tags)', async (m) => {
    await m.putManifest(rec('a/x', d('a')), 'v1', { blobs: [], manifests: [] }, () => []);
    await m.putManifest(rec('a/x', d('a')), 'v2', { blobs: [], manifests: [] }, () => []);
    assert.equal(await m.deleteTag('a/x', 'v1'), true);
    assert.equal(await m.deleteTag('a/x', 'v1'), false);
    assert.equal(await m.resolveTag('a/x', 'v2'), d('a'));
    assert.equal(await m.deleteManifest('a/x', d('a')), true);
    assert.equal(await m.resolveTag('a/x', 'v2'), undefined);
    assert.equal(await m.getManifest('a/x', d('a')), undefined);
    assert.equal(await m.deleteManifest('a/x', d('a')), false);
  });

  withMeta('indexes referrers by subject with artifactType filtering', async (m) => {
    await m.putManifest(rec('a/x', d('1'), { subject: d('s'), artifactType: 't/a', annotations: { k: 'v' } }), undefined, { blobs: [], manifests: [] }, () => []);
    await m.putManifest(rec('a/x', d('2'), { subject: d('s'), artifactType: 't/b' }), undefined, { blobs: [], manifests: [] }, () => []);
    await m.putManifest(rec('a/y', d('3'), { subject: d('s'), artifactType: 't/a' }), undefined, { blobs: [], manifests: [] }, () => []);
    const all = await m.referrers('a/x', d('s'));
    assert.deepEqual(all.map((r) => r.digest).sort(), [d('1'), d('2')]);
    assert.deepEqual(all.find((r) => r.digest === d('1'))?.annotations, { k: 'v' });
    assert.deepEqual((await m.referrers('a/x', d('s'), 't/a')).map((r) => r.digest), [d('1')]);
    assert.deepEqual(await m.referrers('a/x', d('0')), []);
  });
}
