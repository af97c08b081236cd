/**
 * The PostgreSQL metadata store against a real, private PostgreSQL 15 (test/support/postgres.ts):
 * the same conformance suite as SQLite (each test in its own schema), then what only several
 * replicas on one database show — outbox claims, quota races, gc against a push, auth change
 * notifications, migrations at start.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import pg from 'pg';
import { startPostgres, type PostgresInstance } from '../../../test/support/postgres.js';
import type { PgSettings } from '../../db/index.js';
import { metadataSuite } from './testsuite.js';
import { PostgresMetadata } from './postgres.js';
import { QuotaExceededError, type ManifestRecord, type NewDelivery } from './metadata.js';

const PW_ENV = 'FERRY_TEST_REGISTRY_DB_PASSWORD';
const d = (c: string): string => `sha256:${c.repeat(64)}`;

function rec(repo: string, digest: string): ManifestRecord {
  return { repo, digest, mediaType: 'application/vnd.oci.image.manifest.v1+json', size: 2, body: Buffer.from('{}'), createdAt: Date.now() };
}

describe('PostgreSQL registry metadata', { timeout: 300_000 }, () => {
  let db: PostgresInstance;
  let admin: pg.Pool;
  const open: PostgresMetadata[] = [];

  /** Settings of a fresh schema (one per test: tests do not see each other's rows). */
  const freshSchema = async (): Promise<PgSettings> => {
    const schema = `t_${randomBytes(6).toString('hex')}`;
    await admin.query(`CREATE SCHEMA ${schema}`);
    const u = new URL(db.url);
    u.password = '';
    u.searchParams.set('options', `-c search_path=${schema}`);
    return { url: u.toString(), passwordEnv: PW_ENV, maxConnections: 3 };
  };
  const store = async (settings: PgSettings): Promise<PostgresMetadata> => {
    const m = await PostgresMetadata.open(settings, { env: { [PW_ENV]: db.password } });
    open.push(m);
    return m;
  };

  before(async () => {
    db = await startPostgres();
    admin = new pg.Pool({ connectionString: db.url, max: 2 });
  });
  after(async () => {
    for (const m of open) await m.close().catch(() => undefined);
    await admin?.end();
    await db?.stop();
  });

  metadataSuite('postgres', async () => {
    const meta = await PostgresMetadata.open(await freshSchema(), { env: { [PW_ENV]: db.password } });
    return { meta, cleanup: () => meta.close() };
  });

  it('applies its schema migrations once at start; two replicas opening together agree', async () => {
    const s = await freshSchema();
    const [a, b] = await Promise.all([store(s), store(s)]);
    assert.ok(a && b);
    const schema = new URL(s.url).searchParams.get('options')!.split('=')[1]!;
    const r = await admin.query(
      `SELECT version, name FROM ${schema}.ferry_schema_migrations WHERE component = 'registry' ORDER BY version`,
    );
    assert.deepEqual(
      r.rows.map((x) => x.version),
      [1, 2],
    );
    await store(s); // a restart: nothing to apply, no error
  });

  it('replicas claim each due webhook delivery once (FOR UPDATE SKIP LOCKED)', async () => {
    const s = await freshSchema();
    const replicas = await Promise.all([store(s), store(s), store(s)]);
    const list: NewDelivery[] = Array.from({ length: 60 }, (_, i) => ({
      policyId: 1,
      eventType: 'PUSH_ARTIFACT',
      target: { type: 'http', address: 'http://127.0.0.1:9/hook' },
      payload: `{"n":${i}}`,
      repo: 'library/x',
      digest: d('a'),
      notBefore: 0,
      untagged: false,
    }));
    await replicas[0]!.enqueueDeliveries(list);
    const now = Date.now();
    const claimed: number[] = [];
    // every replica claims in small batches until nothing is due (bounded)
    await Promise.all(
      replicas.map(async (m) => {
        for (let i = 0; i < 60; i++) {
          const got = await m.claimDue(now, 3, now - 60_000);
          if (!got.length) return;
          claimed.push(...got.map((x) => x.id));
        }
      }),
    );
    assert.equal(claimed.length, 60, 'every delivery claimed');
    assert.equal(new Set(claimed).size, 60, 'no delivery claimed twice');
  });

  it('two replicas pushing into one project cannot both pass a limit only one push fits under', async () => {
    const s = await freshSchema();
    const [a, b] = await Promise.all([store(s), store(s)]);
    const p = await a.createProject('team', false, 'admin', 150);
    assert.equal((await b.listQuotas(p.id))[0]?.hard, 150);
    const results = await Promise.allSettled([
      a.commitBlob('team/x', d('1'), 100, async () => undefined),
      b.commitBlob('team/y', d('2'), 100, async () => undefined),
    ]);
    assert.equal(results.filter((r) => r.status === 'fulfilled').length, 1, 'exactly one push fits');
    const failed = results.find((r) => r.status === 'rejected') as PromiseRejectedResult;
    assert.ok(failed.reason instanceof QuotaExceededError, String(failed.reason));
    assert.equal((await a.listQuotas(p.id))[0]?.used, 100, 'usage counts the one that fitted');
    // the same blob linked into another repository of the project counts once
    const first = (await a.blobInRepo('team/x', d('1'))) !== undefined ? d('1') : d('2');
    assert.equal(await b.linkBlob('team/z', first), true);
    assert.equal((await b.listQuotas(p.id))[0]?.used, 100);
  });

  it('gc on one replica and a manifest push on another: the manifest never points at a collected blob', async () => {
    const s = await freshSchema();
    const [pusher, gc] = await Promise.all([store(s), store(s)]);
    for (let round = 0; round < 20; round++) {
      const blob = `sha256:${round.toString(16).padStart(2, '0')}${'b'.repeat(62)}`;
      const manifest = `sha256:${round.toString(16).padStart(2, '0')}${'c'.repeat(62)}`;
      await pusher.commitBlob('library/race', blob, 10, async () => undefined);
      const later = Date.now() + 60_000;
      let removed = false;
      const [pushed, collected] = await Promise.allSettled([
        pusher.putManifest(rec('library/race', manifest), `t${round}`, { blobs: [blob], manifests: [] }),
        gc.collectBlob(blob, later, async () => {
          removed = true;
        }),
      ]);
      const gone = collected.status === 'fulfilled' && collected.value;
      assert.equal(gone, removed, 'bytes removed exactly when the row went');
      if (pushed.status === 'fulfilled') assert.equal(gone, false, `round ${round}: a pushed manifest's blob was collected`);
      else assert.equal(gone, true, `round ${round}: the push failed although the blob stayed`);
      await pusher.deleteManifest('library/race', manifest);
    }
  });

  it('a robot change on one replica reaches another replica listening for auth changes', async () => {
    const s = await freshSchema();
    const [a, b] = await Promise.all([store(s), store(s)]);
    let seen = 0;
    let wake: () => void = () => undefined;
    const changed = new Promise<void>((resolve) => {
      wake = resolve;
    });
    const stop = b.watchAuth(() => {
      seen++;
      wake();
    });
    // LISTEN is issued asynchronously; wait until the listener's connection is registered (bounded)
    for (let i = 0; i < 100; i++) {
      const r = await admin.query("SELECT count(*)::int AS n FROM pg_stat_activity WHERE query LIKE 'LISTEN ferry_registry_auth%'");
      if (r.rows[0].n > 0) break;
      await new Promise((res) => setTimeout(res, 50));
    }
    await a.createRobot({
      name: 'robot$ci',
      description: '',
      level: 'system',
      secretHash: 'x',
      permissions: [],
      disabled: false,
      expiresAt: -1,
      duration: -1,
    });
    const timeout = new Promise<void>((res) => setTimeout(res, 10_000).unref());
    await Promise.race([changed, timeout]);
    assert.ok(seen >= 1, 'no auth change notification within 10 s');
    stop();
  });
});
