/**
 * @module registry/metadata/testsuite
 * The RegistryMetadata contract as a reusable suite: the SQLite store runs it, and a PostgreSQL
 * store would run it unchanged. Distribution records, Harbor objects, the webhook outbox (committed
 * with manifest changes, superseded untagged events) and what garbage collection relies on.
 */
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { FerryError } from '../../core/index.js';
import { MissingContentError, QuotaExceededError, type ManifestRecord, type NewDelivery, type RegistryMetadata } from './metadata.js';

const d = (c: string): string => `sha256:${c.repeat(64)}`;

function rec(repo: string, digest: string, extra: Partial<ManifestRecord> = {}): ManifestRecord {
  return {
    repo,
    digest,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    size: 2,
    body: Buffer.from('{}'),
    createdAt: Date.now(),
    ...extra,
  };
}

/** Registers the contract tests for a fresh store from `make`. */
export function metadataSuite(name: string, make: () => Promise<{ meta: RegistryMetadata; cleanup(): Promise<void> }>): void {
  const withMeta = (title: string, fn: (m: RegistryMetadata) => Promise<void>): void => {
    it(`${name}: ${title}`, async () => {
      const { meta, cleanup } = await make();
      try {
        await fn(meta);
      } finally {
        await cleanup();
      }
    });
  };

  withMeta('commits blobs into a repository and links them elsewhere only by mount', async (m) => {
    let published = false;
    await m.commitBlob('a/x', d('1'), 10, async () => {
      published = true;
    });
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
    await assert.rejects(
      m.commitBlob('a/x', d('3'), 1, async () => {
        throw new Error('rename failed');
      }),
      /rename failed/,
    );
    assert.equal(await m.blobInRepo('a/x', d('3')), undefined);
  });

  withMeta('stores manifests with tags only when their references exist', async (m) => {
    await m.commitBlob('a/x', d('1'), 10, async () => undefined);
    await assert.rejects(
      m.putManifest(rec('a/x', d('a')), 'v1', { blobs: [d('1'), d('2')], manifests: [] }),
      (e: unknown) => e instanceof MissingContentError && FerryError.hasCode(e, 'FAILED_PRECONDITION') && e.missing.join() === d('2'),
    );
    assert.equal(await m.resolveTag('a/x', 'v1'), undefined);
    assert.equal(await m.repositoryExists('a/x'), false);
    await m.putManifest(rec('a/x', d('a')), 'v1', { blobs: [d('1')], manifests: [] });
    assert.equal(await m.resolveTag('a/x', 'v1'), d('a'));
    assert.deepEqual((await m.getManifest('a/x', d('a')))?.body, Buffer.from('{}'));
    assert.equal(await m.repositoryExists('a/x'), true);
    const index = rec('a/x', d('b'), { mediaType: 'application/vnd.oci.image.index.v1+json' });
    await assert.rejects(m.putManifest(index, 'idx', { blobs: [], manifests: [d('c')] }));
    await m.putManifest(rec('a/x', d('b')), 'idx', { blobs: [], manifests: [d('a')] });
    assert.deepEqual(await m.tagsOf('a/x', d('a')), ['v1']);
  });

  withMeta('lists tags and repositories in order with pagination', async (m) => {
    for (const [repo, tag, c] of [
      ['b/r', 'z', 'a'],
      ['b/r', 'a', 'b'],
      ['b/r', 'm', 'c'],
      ['a/r', 'x', 'd'],
    ] as const) {
      await m.putManifest(rec(repo, d(c)), tag, { blobs: [], manifests: [] });
    }
    assert.deepEqual(await m.listTags('b/r', {}), ['a', 'm', 'z']);
    assert.deepEqual(await m.listTags('b/r', { n: 2 }), ['a', 'm']);
    assert.deepEqual(await m.listTags('b/r', { last: 'a' }), ['m', 'z']);
    assert.deepEqual(await m.listRepositories({}), ['a/r', 'b/r']);
    assert.deepEqual(await m.listRepositories({ n: 1, last: 'a/r' }), ['b/r']);
    assert.deepEqual(await m.listRepositories({ project: 'b' }), ['b/r']);
  });

  withMeta('deletes tags and manifests (with their tags)', async (m) => {
    await m.putManifest(rec('a/x', d('a')), 'v1', { blobs: [], manifests: [] });
    await m.putManifest(rec('a/x', d('a')), 'v2', { blobs: [], manifests: [] });
    assert.equal(await m.deleteTag('a/x', 'v1'), true);
    assert.equal(await m.deleteTag('a/x', 'v1'), false);
    assert.equal(await m.resolveTag('a/x', 'v2'), d('a'));
    assert.equal(await m.deleteManifest('a/x', d('a')), true);
    assert.equal(await m.resolveTag('a/x', 'v2'), undefined);
    assert.equal(await m.getManifest('a/x', d('a')), undefined);
    assert.equal(await m.deleteManifest('a/x', d('a')), false);
  });

  withMeta('indexes referrers by subject with artifactType filtering', async (m) => {
    const none = { blobs: [], manifests: [] };
    await m.putManifest(rec('a/x', d('1'), { subject: d('s'), artifactType: 't/a', annotations: { k: 'v' } }), undefined, none);
    await m.putManifest(rec('a/x', d('2'), { subject: d('s'), artifactType: 't/b' }), undefined, { blobs: [], manifests: [] });
    await m.putManifest(rec('a/y', d('3'), { subject: d('s'), artifactType: 't/a' }), undefined, { blobs: [], manifests: [] });
    const all = await m.referrers('a/x', d('s'));
    assert.deepEqual(all.map((r) => r.digest).sort(), [d('1'), d('2')]);
    assert.deepEqual(all.find((r) => r.digest === d('1'))?.annotations, { k: 'v' });
    assert.deepEqual(
      (await m.referrers('a/x', d('s'), 't/a')).map((r) => r.digest),
      [d('1')],
    );
    assert.deepEqual(await m.referrers('a/x', d('0')), []);
  });

  const delivery = (repo: string, digest: string, extra: Partial<NewDelivery> = {}): NewDelivery => ({
    policyId: 1,
    eventType: 'PUSH_ARTIFACT',
    target: { type: 'http', address: 'http://127.0.0.1:9/' },
    payload: '{}',
    repo,
    digest,
    notBefore: 0,
    untagged: false,
    ...extra,
  });

  withMeta('projects, users and robots: created once (ALREADY_EXISTS after), found by name and id, updated, deleted', async (m) => {
    const p = await m.createProject('proj', false, 'admin');
    assert.equal((await m.getProject('proj'))?.id, p.id);
    assert.equal((await m.getProject(p.id))?.name, 'proj');
    await assert.rejects(m.createProject('proj', true, 'admin'), { code: 'ALREADY_EXISTS' });
    assert.equal((await m.ensureProject('proj', true, 'x')).public, false, 'ensureProject keeps an existing project');
    assert.equal((await m.ensureProject('other', true, 'x')).public, true);
    await m.updateProject(p.id, true);
    assert.equal((await m.getProject('proj'))?.public, true);
    assert.deepEqual(
      (await m.listProjects()).map((x) => x.name),
      ['other', 'proj'],
    );
    await m.deleteProject(p.id);
    assert.equal(await m.getProject('proj'), undefined);

    const u = await m.upsertUser('alice', 'h1', false);
    assert.equal((await m.upsertUser('alice', 'h2', true)).id, u.id);
    assert.deepEqual({ ...(await m.getUserById(u.id)) }, { ...(await m.getUser('alice')) });
    assert.equal((await m.getUser('alice'))?.passwordHash, 'h2');
    assert.equal(await m.getUser('bob'), undefined);

    const r = await m.createRobot({
      name: 'robot$other+ci',
      description: '',
      level: 'project',
      secretHash: 's',
      permissions: [{ kind: 'project', namespace: 'other', access: [] }],
      disabled: false,
      expiresAt: -1,
      duration: -1,
    });
    await assert.rejects(m.createRobot({ ...r }), { code: 'ALREADY_EXISTS' });
    await m.updateRobot(r.id, { disabled: true });
    assert.equal((await m.getRobot('robot$other+ci'))?.disabled, true);
    assert.equal((await m.getRobot(r.id))?.secretHash, 's');
    assert.equal((await m.listRobots()).length, 1);
    assert.equal(await m.deleteRobot(r.id), true);
    assert.equal(await m.deleteRobot(r.id), false);
  });

  withMeta('repository records: created with the first manifest, counted pulls, manifests newest first', async (m) => {
    await m.putManifest(rec('p/app', d('a'), { createdAt: 1000 }), 'v1', { blobs: [], manifests: [] });
    await m.putManifest(rec('p/app', d('b'), { createdAt: 2000 }), 'v2', { blobs: [], manifests: [] });
    await m.countPull('p/app');
    const r = await m.getRepository('p/app');
    assert.equal(r?.project, 'p');
    assert.equal(r?.createdAt, 1000, 'a repository is as old as its first manifest');
    assert.equal(r?.pullCount, 1);
    assert.equal(r?.artifactCount, 2);
    assert.deepEqual(
      (await m.listRepositoryRecords('p')).map((x) => x.name),
      ['p/app'],
    );
    assert.deepEqual(
      (await m.listManifests('p/app')).map((x) => x.digest),
      [d('b'), d('a')],
    );
    assert.equal(await m.getRepository('p/none'), undefined);
  });

  withMeta('webhook policies: unique per project, updated, listed, deleted', async (m) => {
    const base = { projectId: 7, description: '', enabled: true, eventTypes: ['PUSH_ARTIFACT'], targets: [], creator: 'admin' };
    const p = await m.createPolicy({ ...base, name: 'hook' });
    await assert.rejects(m.createPolicy({ ...base, name: 'hook' }), { code: 'ALREADY_EXISTS' });
    await m.createPolicy({ ...base, projectId: 8, name: 'hook' });
    await m.updatePolicy(p.id, { name: 'hook2', description: 'd', enabled: false, eventTypes: ['PULL_ARTIFACT'], targets: [] });
    const got = await m.getPolicy(p.id);
    assert.deepEqual([got?.name, got?.enabled, got?.eventTypes], ['hook2', false, ['PULL_ARTIFACT']]);
    assert.deepEqual(
      (await m.listPolicies(7)).map((x) => x.id),
      [p.id],
    );
    assert.equal(await m.deletePolicy(p.id), true);
    assert.equal(await m.getPolicy(p.id), undefined);
  });

  withMeta('the outbox commits with the manifest change, or not at all; claims, attempts and due times', async (m) => {
    const refused = m.putManifest(rec('a/x', d('a')), 'v1', { blobs: [d('9')], manifests: [] }, { enqueue: [delivery('a/x', d('a'))] });
    await assert.rejects(refused);
    assert.equal(await m.nextDue(), undefined, 'a refused push enqueues nothing');
    await m.putManifest(rec('a/x', d('a')), 'v1', { blobs: [], manifests: [] }, { enqueue: [delivery('a/x', d('a'), { notBefore: 500 })] });
    await m.enqueueDeliveries([delivery('a/x', d('a'), { eventType: 'PULL_ARTIFACT', notBefore: 100 })]);
    assert.equal(await m.nextDue(), 100);
    const pulls = await m.claimDue(200, 10, 0);
    assert.deepEqual(
      pulls.map((x) => x.eventType),
      ['PULL_ARTIFACT'],
    );
    const claimed = await m.claimDue(1000, 10, 0);
    assert.equal(claimed.length, 1);
    assert.equal(claimed[0]!.status, 'Running');
    assert.deepEqual(await m.claimDue(1000, 10, 0), [], 'a claimed delivery is not claimed twice');
    const id = claimed[0]!.id;
    const attempt = { attempt: 1, at: 1000, statusCode: 500, error: 'boom', durationMs: 3 };
    await m.recordAttempt(id, attempt, { status: 'Pending', nextAt: 2000, error: 'boom' });
    assert.equal((await m.getDelivery(id))?.lastError, 'boom');
    assert.equal(await m.nextDue(), 2000);
    assert.deepEqual(
      (await m.listAttempts(id)).map((a) => [a.attempt, a.statusCode]),
      [[1, 500]],
    );
    assert.equal((await m.listDeliveries(1)).length, 2);
    const [stale] = await m.claimDue(2000, 10, 0);
    assert.ok(stale);
    const again = await m.claimDue(3000, 10, Date.now() + 1);
    assert.deepEqual(again.map((x) => x.id).sort(), [pulls[0]!.id, stale.id].sort(), 'Running claims older than staleBefore are due again');
  });

  withMeta('an outbox change supersedes pending untagged deliveries of the manifests it names', async (m) => {
    const untagged = delivery('a/x', d('1'), { untagged: true, notBefore: 10 });
    await m.putManifest(rec('a/x', d('1')), undefined, { blobs: [], manifests: [] }, { enqueue: [untagged] });
    await m.putManifest(rec('a/x', d('2')), 'v', { blobs: [], manifests: [] }, { enqueue: [delivery('a/x', d('2'), { notBefore: 10 })] });
    await m.putManifest(
      rec('a/x', d('i')),
      'latest',
      { blobs: [], manifests: [d('1'), d('2')] },
      {
        enqueue: [delivery('a/x', d('i'), { notBefore: 20 })],
        supersede: { repo: 'a/x', digests: [d('1'), d('2')], reason: 'replaced' },
      },
    );
    const all = await m.listDeliveries(1);
    const byDigest = new Map(all.map((x) => [x.digest, x]));
    assert.equal(byDigest.get(d('1'))?.status, 'Stopped');
    assert.equal(byDigest.get(d('1'))?.lastError, 'replaced');
    assert.equal(byDigest.get(d('2'))?.status, 'Pending', 'a tagged push is not superseded');
    assert.equal(byDigest.get(d('i'))?.status, 'Pending');
  });

  withMeta('garbage collection: only unreferenced blobs untouched since the cutoff go, with their links, inside the lock', async (m) => {
    await m.commitBlob('a/x', d('1'), 10, async () => undefined);
    await m.commitBlob('a/x', d('2'), 20, async () => undefined);
    await m.putManifest(rec('a/x', d('a')), 'v1', { blobs: [d('2')], manifests: [] });
    const later = Date.now() + 1000;
    assert.equal(await m.isCollectable(d('1'), later), true);
    assert.equal(await m.isCollectable(d('2'), later), false, 'referenced by a manifest');
    assert.equal(await m.isCollectable(d('1'), 0), false, 'touched after the cutoff');
    assert.deepEqual((await m.blobsTouchedBefore(later)).sort(), [d('1'), d('2')]);
    let removed = 0;
    assert.equal(
      await m.collectBlob(d('2'), later, async () => {
        removed++;
      }),
      false,
    );
    assert.equal(removed, 0, 'a kept blob is not removed');
    assert.equal(
      await m.collectBlob(d('1'), later, async () => {
        removed++;
      }),
      true,
    );
    assert.equal(removed, 1);
    assert.equal(await m.blobInRepo('a/x', d('1')), undefined);
    assert.equal(await m.linkBlob('a/y', d('1')), false, 'a collected blob is unknown');
    await assert.rejects(
      m.collectBlob(d('3'), later, async () => {
        throw new Error('unlink failed');
      }),
      /unlink failed/,
    );
    await m.commitBlob('a/x', d('3'), 1, async () => undefined);
    await assert.rejects(
      m.collectBlob(d('3'), Date.now() + 1000, async () => {
        throw new Error('unlink failed');
      }),
      /unlink failed/,
    );
    assert.equal(await m.blobInRepo('a/x', d('3')), 1, 'a failed removal forgets nothing');
  });

  withMeta('quotas: usage counted once per digest per project, limits enforced, freed with the last reference', async (m) => {
    const p = await m.createProject('q', false, 'admin', 100);
    const [quota] = await m.listQuotas(p.id);
    assert.deepEqual([quota?.project, quota?.hard, quota?.used], ['q', 100, 0]);
    await m.commitBlob('q/a', d('1'), 60, async () => undefined);
    await m.commitBlob('q/b', d('1'), 60, async () => undefined);
    assert.equal((await m.getQuota(quota!.id))?.used, 60, 'one digest counted once');
    let published = false;
    await assert.rejects(
      m.commitBlob('q/a', d('2'), 50, async () => {
        published = true;
      }),
      (e: unknown) => e instanceof QuotaExceededError && e.hard === 100 && e.used === 60 && e.adding === 50,
    );
    assert.equal(published, false, 'refused before publishing');
    assert.equal(await m.setQuotaLimit(quota!.id, -1), true);
    await m.commitBlob('q/a', d('2'), 50, async () => undefined);
    assert.equal((await m.getQuota(quota!.id))?.used, 110);
    await m.unlinkBlob('q/a', d('1'));
    assert.equal((await m.getQuota(quota!.id))?.used, 110, 'still linked in q/b');
    await m.unlinkBlob('q/b', d('1'));
    assert.equal((await m.getQuota(quota!.id))?.used, 50);
  });

  withMeta('audit entries: recorded, filtered, paged newest first, purged', async (m) => {
    const e = (op: string, resource: string, at: number) => ({
      projectId: 1,
      username: 'admin',
      resource,
      resourceType: 'artifact',
      operation: op,
      description: `${op} ${resource}`,
      success: true,
      at,
    });
    await m.recordAudit([e('create', 'library/a:1', 1000), e('pull', 'library/a:1', 2000), e('delete', 'library/b:2', 3000)]);
    const all = await m.listAudit({ offset: 0, limit: 10 });
    assert.equal(all.total, 3);
    assert.deepEqual(
      all.items.map((x) => x.at),
      [3000, 2000, 1000],
    );
    const some = await m.listAudit({ operation: ['create', 'delete'], resource: 'library/a', offset: 0, limit: 10 });
    assert.deepEqual(
      some.items.map((x) => x.operation),
      ['create'],
    );
    assert.equal((await m.listAudit({ from: 1500, to: 2500, offset: 0, limit: 10 })).total, 1);
    assert.equal((await m.listAudit({ offset: 1, limit: 1 })).items[0]?.at, 2000);
    assert.equal(await m.purgeAudit(2500), 2);
    assert.equal((await m.listAudit({ offset: 0, limit: 10 })).total, 1);
  });

  withMeta('gc runs: one Running at a time, stale ones marked Error, stop requests, a due schedule taken once', async (m) => {
    const a = await m.createGcRun('MANUAL', '{"dry_run":true}');
    const b = await m.createGcRun('MANUAL', '{}');
    const claimed = await m.claimGcRun('r1', 10_000, 0);
    assert.equal(claimed?.id, a.id);
    assert.equal(claimed?.status, 'Running');
    assert.equal(await m.claimGcRun('r2', 10_001, 0), undefined, 'one Running at a time');
    await m.updateGcRun(a.id, { log: 'line 1\n' }, 20_000);
    assert.equal(await m.claimGcRun('r2', 30_000, 15_000), undefined, 'heartbeat keeps it');
    const next = await m.claimGcRun('r2', 90_000, 25_000);
    assert.equal(next?.id, b.id, 'a stale run is given up');
    const lost = await m.getGcRun(a.id);
    assert.equal(lost?.status, 'Error');
    assert.match(lost!.log, /line 1\n.*run lost/s);
    assert.equal(await m.requestGcStop(b.id), true);
    assert.equal((await m.getGcRun(b.id))?.stopRequested, true);
    await m.updateGcRun(b.id, { status: 'Stopped' }, 91_000);
    assert.equal(await m.requestGcStop(b.id), false, 'finished');
    const c = await m.createGcRun('MANUAL', '{}');
    assert.equal(await m.requestGcStop(c.id), true);
    assert.equal((await m.getGcRun(c.id))?.status, 'Stopped', 'a Pending run stops at once');
    const page = await m.listGcRuns(0, 2);
    assert.equal(page.total, 3);
    assert.deepEqual(
      page.items.map((r) => r.id),
      [c.id, b.id],
    );
    await m.setGcSchedule({ type: 'Hourly', cron: '0 0 * * * *', parameters: '{}', nextRun: 100_000 }, 1);
    assert.equal(await m.takeScheduledGc(99_999, 200_000), undefined, 'not due');
    const due = await m.takeScheduledGc(100_000, 200_000);
    assert.equal(due?.trigger, 'SCHEDULE');
    assert.equal(await m.takeScheduledGc(100_000, 200_000), undefined, 'taken once');
    assert.equal((await m.getGcSchedule())?.nextRun, 200_000);
    await m.setGcSchedule(undefined, 2);
    assert.equal(await m.getGcSchedule(), undefined);
  });
}
