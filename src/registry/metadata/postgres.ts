/**
 * @module registry/metadata/postgres
 * (Over 600 lines: one backend implements the whole RegistryMetadata interface, one query per method.)
 * The metadata store on PostgreSQL, shared by any number of registry replicas. Same contract and
 * conformance suite as SQLite (sqlite.ts); the schema is versioned (postgres-schema.ts) and
 * migrated at open by db/migrate.
 *
 * How replicas stay consistent:
 * - Every multi-row change is one transaction (a push: manifest, tag, references, usage, outbox
 *   and audit rows — all or nothing).
 * - A blob's digest has an advisory lock (transaction-scoped): a blob commit and gc's collection
 *   take it exclusively and run the blob store's publish/remove while holding it; a manifest push
 *   takes it shared for each blob it references (in sorted order, then the project's quota row, so
 *   lock order is the same everywhere). So a manifest either sees a blob that stays, or does not see
 *   it at all; gc never deletes a blob a committed manifest references.
 * - A project's usage changes under its quota row's lock (`FOR UPDATE`): two replicas pushing into
 *   one project cannot both fit under the limit that only one push fits under.
 * - The webhook outbox and gc runs are claimed with `FOR UPDATE SKIP LOCKED`: each delivery is
 *   taken by one replica.
 * - User and robot changes `NOTIFY ferry_registry_auth`; `watchAuth` LISTENs so every replica drops
 *   its cached credential checks at once.
 */
import type pg from 'pg';
import { FerryError } from '../../core/index.js';
import { createPool, migrate, withTransaction, type PgSettings } from '../../db/index.js';
import { silentLogger, type Logger } from '../../observe/index.js';
import { projectOf } from '../names.js';
import {
  MissingContentError,
  QuotaExceededError,
  type AuditEntry,
  type AuditQuery,
  type Delivery,
  type DeliveryAttempt,
  type DeliveryNext,
  type GcRun,
  type GcSchedule,
  type GcStatus,
  type ManifestRecord,
  type ManifestRefs,
  type NewAuditEntry,
  type NewDelivery,
  type OutboxChange,
  type Project,
  type Quota,
  type ReferrerRecord,
  type RegistryMetadata,
  type RepositoryRecord,
  type Robot,
  type RobotPatch,
  type User,
  type WebhookPolicy,
} from './metadata.js';
import { REGISTRY_MIGRATIONS } from './postgres-schema.js';
import {
  auditOfRow,
  deliveryOfRow,
  gcRunOfRow,
  gcScheduleOfRow,
  manifestOf,
  num,
  policyOfRow,
  projectOfRow,
  quotaOfRow,
  repositoryOfRow,
  robotOfRow,
  userOfRow,
  type Row,
} from './rows.js';

const NO_OUTBOX: OutboxChange = { enqueue: [] };
/** First key of the registry's advisory locks ('FRRG'); the second is a hash of the digest. */
const LOCK_NS = 0x46525247;
/** Channel of user/robot change notifications. */
const AUTH_CHANNEL = 'ferry_registry_auth';
const QUOTA_SELECT = `SELECT q.id, q.project, q.hard, q.used, q.created_at, q.updated_at, p.id AS project_id, p.owner AS owner
  FROM quotas q JOIN projects p ON p.name = q.project`;

type Db = pg.Pool | pg.PoolClient;

/** A unique violation as ALREADY_EXISTS, anything else unchanged. */
function pgError(err: unknown, what: string): unknown {
  if ((err as { code?: unknown }).code === '23505') return new FerryError('ALREADY_EXISTS', `${what}: already exists`, { cause: err });
  return err;
}

/** A LIKE pattern matching names under `prefix/`. */
function underPrefix(prefix: string): string {
  return `${prefix.replace(/[\\%_]/g, (c) => `\\${c}`)}/%`;
}

async function rows(db: Db, sql: string, args: unknown[] = []): Promise<Row[]> {
  return (await db.query(sql, args)).rows as Row[];
}

async function one(db: Db, sql: string, args: unknown[] = []): Promise<Row | undefined> {
  return (await rows(db, sql, args))[0];
}

async function changed(db: Db, sql: string, args: unknown[] = []): Promise<number> {
  return (await db.query(sql, args)).rowCount ?? 0;
}

export interface PostgresMetadataOptions {
  log?: Logger;
  /** Environment the password is read from (tests). */
  env?: NodeJS.ProcessEnv;
}

/** PostgreSQL-backed registry metadata (see module doc). */
export class PostgresMetadata implements RegistryMetadata {
  readonly #pool: pg.Pool;
  readonly #log: Logger;
  #listener: pg.PoolClient | undefined;
  readonly #watchers = new Set<() => void>();

  private constructor(pool: pg.Pool, log: Logger) {
    this.#pool = pool;
    this.#log = log;
  }

  /** Connects, applies the schema migrations this database lacks, and returns the store. */
  static async open(settings: PgSettings, opts: PostgresMetadataOptions = {}): Promise<PostgresMetadata> {
    const log = (opts.log ?? silentLogger()).child({ component: 'registry-db' });
    const pool = createPool(settings, { log, ...(opts.env ? { env: opts.env } : {}) });
    try {
      await migrate(pool, 'registry', REGISTRY_MIGRATIONS, { log });
    } catch (err) {
      await pool.end();
      throw err;
    }
    return new PostgresMetadata(pool, log);
  }

  async close(): Promise<void> {
    this.#watchers.clear();
    this.#listener?.release();
    this.#listener = undefined;
    await this.#pool.end();
  }

  #tx<T>(fn: (c: pg.PoolClient) => Promise<T>): Promise<T> {
    return withTransaction(this.#pool, fn);
  }

  /** Locks digests for this transaction (sorted: the same order in every transaction). */
  async #lock(c: pg.PoolClient, digests: string[], shared: boolean): Promise<void> {
    const fn = shared ? 'pg_advisory_xact_lock_shared' : 'pg_advisory_xact_lock';
    for (const d of [...new Set(digests)].sort()) await c.query(`SELECT ${fn}($1, hashtext($2))`, [LOCK_NS, d]);
  }

  // ---- project usage ----

  /**
   * QuotaExceededError when adding `digest` (not yet counted) to `project` would exceed its limit.
   * `lock`: take the quota row's lock (held to the end of the transaction) — the check that counts;
   * without, an early check before slow work (a blob's publish).
   */
  async #checkUsage(c: pg.PoolClient, project: string, digest: string, size: number, lock: boolean): Promise<void> {
    const q = await one(c, `SELECT hard, used FROM quotas WHERE project = $1${lock ? ' FOR UPDATE' : ''}`, [project]);
    if (await one(c, 'SELECT 1 FROM project_blobs WHERE project = $1 AND digest = $2', [project, digest])) return;
    if (!q) return;
    const hard = num(q.hard);
    const used = num(q.used);
    if (hard >= 0 && used + size > hard) throw new QuotaExceededError(project, hard, used, size);
  }

  /** One more reference of `digest` in `project`; counted into usage the first time. */
  async #addRef(c: pg.PoolClient, project: string, digest: string, size: number, now: number): Promise<void> {
    await this.#checkUsage(c, project, digest, size, true);
    const r = await one(
      c,
      `INSERT INTO project_blobs (project, digest, size, refs) VALUES ($1, $2, $3, 1)
       ON CONFLICT (project, digest) DO UPDATE SET refs = project_blobs.refs + 1 RETURNING (xmax = 0) AS inserted`,
      [project, digest, size],
    );
    if (r?.inserted) await c.query('UPDATE quotas SET used = used + $1, updated_at = $2 WHERE project = $3', [size, now, project]);
  }

  /** One reference less; the digest leaves the project's usage with its last one. */
  async #dropRef(c: pg.PoolClient, project: string, digest: string, now: number): Promise<void> {
    await c.query('SELECT 1 FROM quotas WHERE project = $1 FOR UPDATE', [project]);
    await c.query('UPDATE project_blobs SET refs = refs - 1 WHERE project = $1 AND digest = $2', [project, digest]);
    const gone = await one(c, 'DELETE FROM project_blobs WHERE project = $1 AND digest = $2 AND refs <= 0 RETURNING size', [
      project,
      digest,
    ]);
    if (gone) await c.query('UPDATE quotas SET used = used - $1, updated_at = $2 WHERE project = $3', [num(gone.size), now, project]);
  }

  // ---- distribution ----

  async commitBlob(repo: string, digest: string, size: number, publish: () => Promise<void>): Promise<void> {
    const project = projectOf(repo);
    await this.#tx(async (c) => {
      await this.#lock(c, [digest], false);
      const linked = await one(c, 'SELECT 1 FROM repo_blobs WHERE repo = $1 AND digest = $2', [repo, digest]);
      if (!linked) await this.#checkUsage(c, project, digest, size, false);
      await publish();
      const now = Date.now();
      await c.query(
        `INSERT INTO blobs (digest, size, touched_at) VALUES ($1, $2, $3)
         ON CONFLICT (digest) DO UPDATE SET touched_at = excluded.touched_at, size = excluded.size`,
        [digest, size, now],
      );
      if (await this.#link(c, repo, digest, now)) await this.#addRef(c, project, digest, size, now);
    });
  }

  async #link(c: pg.PoolClient, repo: string, digest: string, now: number): Promise<boolean> {
    return (
      (await changed(c, 'INSERT INTO repo_blobs (repo, digest, created_at) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING', [
        repo,
        digest,
        now,
      ])) > 0
    );
  }

  async linkBlob(repo: string, digest: string): Promise<boolean> {
    return this.#tx(async (c) => {
      await this.#lock(c, [digest], true);
      const now = Date.now();
      const b = await one(c, 'UPDATE blobs SET touched_at = $1 WHERE digest = $2 RETURNING size', [now, digest]);
      if (!b) return false;
      if (await this.#link(c, repo, digest, now)) await this.#addRef(c, projectOf(repo), digest, num(b.size), now);
      return true;
    });
  }

  async blobInRepo(repo: string, digest: string): Promise<number | undefined> {
    const r = await one(
      this.#pool,
      'SELECT b.size FROM repo_blobs r JOIN blobs b ON b.digest = r.digest WHERE r.repo = $1 AND r.digest = $2',
      [repo, digest],
    );
    return r ? num(r.size) : undefined;
  }

  async unlinkBlob(repo: string, digest: string): Promise<boolean> {
    return this.#tx(async (c) => {
      if ((await changed(c, 'DELETE FROM repo_blobs WHERE repo = $1 AND digest = $2', [repo, digest])) === 0) return false;
      await this.#dropRef(c, projectOf(repo), digest, Date.now());
      return true;
    });
  }

  async putManifest(rec: ManifestRecord, tag: string | undefined, refs: ManifestRefs, outbox: OutboxChange = NO_OUTBOX): Promise<void> {
    await this.#tx(async (c) => {
      await this.#lock(c, refs.blobs, true);
      const now = Date.now();
      const missing: string[] = [];
      for (const d of refs.blobs) {
        if (
          !(await one(c, 'SELECT 1 FROM repo_blobs r JOIN blobs b ON b.digest = r.digest WHERE r.repo = $1 AND r.digest = $2', [
            rec.repo,
            d,
          ]))
        )
          missing.push(d);
      }
      for (const d of refs.manifests) if (!(await this.#hasManifest(c, rec.repo, d))) missing.push(d);
      if (missing.length) throw new MissingContentError(missing);
      const project = projectOf(rec.repo);
      const isNew = !(await this.#hasManifest(c, rec.repo, rec.digest));
      await c.query(
        `INSERT INTO repositories (name, project, created_at, updated_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (name) DO UPDATE SET updated_at = excluded.updated_at`,
        [rec.repo, project, rec.createdAt, now],
      );
      await c.query(
        `INSERT INTO manifests (repo, digest, media_type, size, body, artifact_type, subject, annotations, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (repo, digest) DO UPDATE SET media_type = excluded.media_type`,
        [
          rec.repo,
          rec.digest,
          rec.mediaType,
          rec.size,
          rec.body,
          rec.artifactType ?? null,
          rec.subject ?? null,
          rec.annotations ? JSON.stringify(rec.annotations) : null,
          rec.createdAt,
        ],
      );
      if (isNew) await this.#addRef(c, project, rec.digest, rec.size, now);
      await c.query('DELETE FROM manifest_refs WHERE repo = $1 AND manifest = $2', [rec.repo, rec.digest]);
      const addRef = (d: string, kind: string): Promise<unknown> =>
        c.query('INSERT INTO manifest_refs (repo, manifest, digest, kind) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING', [
          rec.repo,
          rec.digest,
          d,
          kind,
        ]);
      for (const d of refs.blobs) {
        await addRef(d, 'blob');
        await c.query('UPDATE blobs SET touched_at = $1 WHERE digest = $2', [now, d]);
      }
      for (const d of refs.manifests) await addRef(d, 'manifest');
      if (rec.subject) await addRef(rec.subject, 'subject');
      if (tag !== undefined) {
        await c.query(
          `INSERT INTO tags (repo, tag, digest, updated_at) VALUES ($1, $2, $3, $4)
           ON CONFLICT (repo, tag) DO UPDATE SET digest = excluded.digest, updated_at = excluded.updated_at`,
          [rec.repo, tag, rec.digest, now],
        );
      }
      await this.#outbox(c, outbox, now);
    });
  }

  async #hasManifest(c: Db, repo: string, digest: string): Promise<boolean> {
    return (await one(c, 'SELECT 1 FROM manifests WHERE repo = $1 AND digest = $2', [repo, digest])) !== undefined;
  }

  async #outbox(c: pg.PoolClient, change: OutboxChange, now: number): Promise<void> {
    const stop = change.supersede;
    if (stop) {
      await c.query(
        `UPDATE webhook_outbox SET status = 'Stopped', last_error = $1, updated_at = $2
         WHERE status = 'Pending' AND untagged AND repo = $3 AND digest = ANY($4::text[])`,
        [stop.reason, now, stop.repo, stop.digests],
      );
    }
    await this.#enqueue(c, change.enqueue, now);
    await this.#audit(c, change.audit ?? []);
  }

  async #enqueue(c: pg.PoolClient, list: NewDelivery[], now: number): Promise<void> {
    for (const d of list) {
      await c.query(
        `INSERT INTO webhook_outbox (policy_id, event_type, target, payload, status, attempts, next_at, repo, digest, untagged,
         last_error, created_at, updated_at) VALUES ($1, $2, $3, $4, 'Pending', 0, $5, $6, $7, $8, '', $9, $9)`,
        [d.policyId, d.eventType, JSON.stringify(d.target), d.payload, d.notBefore, d.repo, d.digest, d.untagged, now],
      );
    }
  }

  async #audit(c: Db, list: NewAuditEntry[]): Promise<void> {
    for (const e of list) {
      await c.query(
        `INSERT INTO audit_log (project_id, username, resource, resource_type, operation, description, success, op_time)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`,
        [e.projectId, e.username, e.resource, e.resourceType, e.operation, e.description, e.success, e.at],
      );
    }
  }

  async enqueueDeliveries(list: NewDelivery[]): Promise<void> {
    if (list.length) await this.#tx((c) => this.#enqueue(c, list, Date.now()));
  }

  async getManifest(repo: string, digest: string): Promise<ManifestRecord | undefined> {
    const r = await one(this.#pool, 'SELECT * FROM manifests WHERE repo = $1 AND digest = $2', [repo, digest]);
    return r ? manifestOf(r) : undefined;
  }

  async resolveTag(repo: string, tag: string): Promise<string | undefined> {
    return (await one(this.#pool, 'SELECT digest FROM tags WHERE repo = $1 AND tag = $2', [repo, tag]))?.digest as string | undefined;
  }

  async deleteManifest(repo: string, digest: string, outbox: OutboxChange = NO_OUTBOX): Promise<boolean> {
    return this.#tx(async (c) => {
      if ((await changed(c, 'DELETE FROM manifests WHERE repo = $1 AND digest = $2', [repo, digest])) === 0) return false;
      const now = Date.now();
      await c.query('DELETE FROM tags WHERE repo = $1 AND digest = $2', [repo, digest]);
      await c.query('DELETE FROM manifest_refs WHERE repo = $1 AND manifest = $2', [repo, digest]);
      await this.#dropRef(c, projectOf(repo), digest, now);
      await this.#outbox(c, outbox, now);
      return true;
    });
  }

  async deleteTag(repo: string, tag: string, outbox: OutboxChange = NO_OUTBOX): Promise<boolean> {
    return this.#tx(async (c) => {
      if ((await changed(c, 'DELETE FROM tags WHERE repo = $1 AND tag = $2', [repo, tag])) === 0) return false;
      await this.#outbox(c, outbox, Date.now());
      return true;
    });
  }

  async listTags(repo: string, opts: { n?: number; last?: string }): Promise<string[]> {
    const r = await rows(this.#pool, 'SELECT tag FROM tags WHERE repo = $1 AND tag > $2 ORDER BY tag LIMIT $3', [
      repo,
      opts.last ?? '',
      opts.n ?? null,
    ]);
    return r.map((x) => x.tag as string);
  }

  async tagsOf(repo: string, digest: string): Promise<string[]> {
    return (await rows(this.#pool, 'SELECT tag FROM tags WHERE repo = $1 AND digest = $2 ORDER BY tag', [repo, digest])).map(
      (x) => x.tag as string,
    );
  }

  async repositoryExists(repo: string): Promise<boolean> {
    return (await one(this.#pool, 'SELECT 1 FROM manifests WHERE repo = $1 LIMIT 1', [repo])) !== undefined;
  }

  async listRepositories(opts: { n?: number; last?: string; project?: string }): Promise<string[]> {
    const r =
      opts.project !== undefined
        ? await rows(this.#pool, 'SELECT DISTINCT repo FROM manifests WHERE repo > $1 AND repo LIKE $2 ORDER BY repo LIMIT $3', [
            opts.last ?? '',
            underPrefix(opts.project),
            opts.n ?? null,
          ])
        : await rows(this.#pool, 'SELECT DISTINCT repo FROM manifests WHERE repo > $1 ORDER BY repo LIMIT $2', [
            opts.last ?? '',
            opts.n ?? null,
          ]);
    return r.map((x) => x.repo as string);
  }

  async referrers(repo: string, subject: string, artifactType?: string): Promise<ReferrerRecord[]> {
    const r = await rows(
      this.#pool,
      'SELECT digest, media_type, size, artifact_type, annotations FROM manifests WHERE repo = $1 AND subject = $2 ORDER BY created_at, digest',
      [repo, subject],
    );
    const out = r.map((x) => ({
      digest: x.digest as string,
      mediaType: x.media_type as string,
      size: num(x.size),
      artifactType: (x.artifact_type as string | null) ?? undefined,
      annotations: x.annotations ? (JSON.parse(x.annotations as string) as Record<string, string>) : undefined,
    }));
    return artifactType === undefined ? out : out.filter((x) => x.artifactType === artifactType);
  }

  async countPull(repo: string): Promise<void> {
    await this.#pool.query('UPDATE repositories SET pull_count = pull_count + 1 WHERE name = $1', [repo]);
  }

  async getRepository(name: string): Promise<RepositoryRecord | undefined> {
    const r = await one(
      this.#pool,
      'SELECT r.*, (SELECT COUNT(*) FROM manifests m WHERE m.repo = r.name) AS artifact_count FROM repositories r WHERE r.name = $1',
      [name],
    );
    return r ? repositoryOfRow(r) : undefined;
  }

  async listRepositoryRecords(project: string): Promise<RepositoryRecord[]> {
    return (
      await rows(
        this.#pool,
        `SELECT r.*, (SELECT COUNT(*) FROM manifests m WHERE m.repo = r.name) AS artifact_count FROM repositories r
         WHERE r.project = $1 AND EXISTS (SELECT 1 FROM manifests m WHERE m.repo = r.name) ORDER BY r.name`,
        [project],
      )
    ).map(repositoryOfRow);
  }

  async listManifests(repo: string): Promise<ManifestRecord[]> {
    return (await rows(this.#pool, 'SELECT * FROM manifests WHERE repo = $1 ORDER BY created_at DESC', [repo])).map(manifestOf);
  }

  // ---- projects ----

  async getProject(nameOrId: string | number): Promise<Project | undefined> {
    const r =
      typeof nameOrId === 'number'
        ? await one(this.#pool, 'SELECT * FROM projects WHERE id = $1', [nameOrId])
        : await one(this.#pool, 'SELECT * FROM projects WHERE name = $1', [nameOrId]);
    return r ? projectOfRow(r) : undefined;
  }

  async listProjects(): Promise<Project[]> {
    return (await rows(this.#pool, 'SELECT * FROM projects ORDER BY name')).map(projectOfRow);
  }

  /** Inserts a project and its quota (usage already recorded for the name counts); undefined when it exists and `orIgnore`. */
  async #insertProject(
    c: pg.PoolClient,
    name: string,
    isPublic: boolean,
    owner: string,
    limit: number,
    orIgnore: boolean,
  ): Promise<Row | undefined> {
    const now = Date.now();
    const r = await one(
      c,
      `INSERT INTO projects (name, public, owner, created_at, updated_at) VALUES ($1, $2, $3, $4, $4)
       ${orIgnore ? 'ON CONFLICT (name) DO NOTHING' : ''} RETURNING *`,
      [name, isPublic, owner, now],
    );
    if (!r) return undefined;
    await c.query(
      `INSERT INTO quotas (project, hard, used, created_at, updated_at)
       VALUES ($1, $2, (SELECT COALESCE(SUM(size), 0) FROM project_blobs WHERE project = $1), $3, $3)
       ON CONFLICT (project) DO UPDATE SET hard = excluded.hard, updated_at = excluded.updated_at`,
      [name, limit, now],
    );
    return r;
  }

  async createProject(name: string, isPublic: boolean, owner: string, storageLimit = -1): Promise<Project> {
    try {
      return projectOfRow((await this.#tx((c) => this.#insertProject(c, name, isPublic, owner, storageLimit, false)))!);
    } catch (err) {
      throw pgError(err, `project ${name}`);
    }
  }

  async ensureProject(name: string, isPublic: boolean, owner: string, storageLimit = -1): Promise<Project> {
    const cur = await this.getProject(name);
    if (cur) return cur;
    await this.#tx((c) => this.#insertProject(c, name, isPublic, owner, storageLimit, true));
    return (await this.getProject(name))!;
  }

  async updateProject(id: number, isPublic: boolean): Promise<void> {
    await this.#pool.query('UPDATE projects SET public = $1, updated_at = $2 WHERE id = $3', [isPublic, Date.now(), id]);
  }

  async deleteProject(id: number): Promise<void> {
    await this.#tx(async (c) => {
      const p = await one(c, 'DELETE FROM projects WHERE id = $1 RETURNING name', [id]);
      await c.query('DELETE FROM webhook_policies WHERE project_id = $1', [id]);
      if (!p) return;
      const name = p.name as string;
      await c.query('DELETE FROM quotas WHERE project = $1', [name]);
      await c.query('DELETE FROM project_blobs WHERE project = $1', [name]);
      await c.query('DELETE FROM repo_blobs WHERE repo LIKE $1', [underPrefix(name)]);
      if (name === 'library') await c.query("DELETE FROM repo_blobs WHERE strpos(repo, '/') = 0");
    });
  }

  // ---- users and shared settings ----

  async getUser(username: string): Promise<User | undefined> {
    const r = await one(this.#pool, 'SELECT * FROM users WHERE username = $1', [username]);
    return r ? userOfRow(r) : undefined;
  }

  async getUserById(id: number): Promise<User | undefined> {
    const r = await one(this.#pool, 'SELECT * FROM users WHERE id = $1', [id]);
    return r ? userOfRow(r) : undefined;
  }

  async upsertUser(username: string, passwordHash: string, sysadmin: boolean): Promise<User> {
    const now = Date.now();
    const r = await this.#tx(async (c) => {
      const out = await one(
        c,
        `INSERT INTO users (username, password_hash, sysadmin, created_at, updated_at) VALUES ($1, $2, $3, $4, $4)
         ON CONFLICT (username) DO UPDATE SET password_hash = excluded.password_hash, sysadmin = excluded.sysadmin,
         updated_at = excluded.updated_at RETURNING *`,
        [username, passwordHash, sysadmin, now],
      );
      await this.#notifyAuth(c);
      return out!;
    });
    return userOfRow(r);
  }

  async #notifyAuth(c: pg.PoolClient): Promise<void> {
    await c.query('SELECT pg_notify($1, $2)', [AUTH_CHANNEL, '']);
  }

  watchAuth(onChange: () => void): () => void {
    this.#watchers.add(onChange);
    if (!this.#listener) void this.#listen();
    return () => this.#watchers.delete(onChange);
  }

  /** Holds one connection that LISTENs for user/robot changes of any replica. */
  async #listen(): Promise<void> {
    try {
      const c = await this.#pool.connect();
      this.#listener = c;
      c.on('notification', (n) => {
        if (n.channel !== AUTH_CHANNEL) return;
        for (const w of this.#watchers) w();
      });
      c.on('error', (err) => this.#log.warn({ err: err.message }, 'auth change listener failed'));
      await c.query(`LISTEN ${AUTH_CHANNEL}`);
    } catch (err) {
      this.#log.warn({ err: (err as Error).message }, 'cannot listen for auth changes');
    }
  }

  async sharedSetting(key: string, init: () => string): Promise<string> {
    const cur = await one(this.#pool, 'SELECT value FROM settings WHERE key = $1', [key]);
    if (cur) return cur.value as string;
    await this.#pool.query('INSERT INTO settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING', [key, init()]);
    return (await one(this.#pool, 'SELECT value FROM settings WHERE key = $1', [key]))!.value as string;
  }

  // ---- robots ----

  async createRobot(r: Omit<Robot, 'id' | 'createdAt' | 'updatedAt'>): Promise<Robot> {
    const now = Date.now();
    try {
      const row = await this.#tx(async (c) => {
        const out = await one(
          c,
          `INSERT INTO robots (name, description, level, secret_hash, permissions, disabled, expires_at, duration, created_at, updated_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9) RETURNING *`,
          [r.name, r.description, r.level, r.secretHash, JSON.stringify(r.permissions), r.disabled, r.expiresAt, r.duration, now],
        );
        await this.#notifyAuth(c);
        return out!;
      });
      return robotOfRow(row);
    } catch (err) {
      throw pgError(err, `robot ${r.name}`);
    }
  }

  async getRobot(idOrName: number | string): Promise<Robot | undefined> {
    const r =
      typeof idOrName === 'number'
        ? await one(this.#pool, 'SELECT * FROM robots WHERE id = $1', [idOrName])
        : await one(this.#pool, 'SELECT * FROM robots WHERE name = $1', [idOrName]);
    return r ? robotOfRow(r) : undefined;
  }

  async listRobots(): Promise<Robot[]> {
    return (await rows(this.#pool, 'SELECT * FROM robots ORDER BY id')).map(robotOfRow);
  }

  async updateRobot(id: number, patch: RobotPatch): Promise<void> {
    await this.#tx(async (c) => {
      const row = await one(c, 'SELECT * FROM robots WHERE id = $1 FOR UPDATE', [id]);
      if (!row) return;
      const cur = robotOfRow(row);
      await c.query(
        'UPDATE robots SET disabled = $1, secret_hash = $2, description = $3, permissions = $4, updated_at = $5 WHERE id = $6',
        [
          patch.disabled ?? cur.disabled,
          patch.secretHash ?? cur.secretHash,
          patch.description ?? cur.description,
          JSON.stringify(patch.permissions ?? cur.permissions),
          Date.now(),
          id,
        ],
      );
      await this.#notifyAuth(c);
    });
  }

  async deleteRobot(id: number): Promise<boolean> {
    return this.#tx(async (c) => {
      const n = await changed(c, 'DELETE FROM robots WHERE id = $1', [id]);
      if (n > 0) await this.#notifyAuth(c);
      return n > 0;
    });
  }

  // ---- webhooks ----

  async createPolicy(p: Omit<WebhookPolicy, 'id' | 'createdAt' | 'updatedAt'>): Promise<WebhookPolicy> {
    try {
      const r = await one(
        this.#pool,
        `INSERT INTO webhook_policies (project_id, name, description, enabled, event_types, targets, creator, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) RETURNING *`,
        [p.projectId, p.name, p.description, p.enabled, JSON.stringify(p.eventTypes), JSON.stringify(p.targets), p.creator, Date.now()],
      );
      return policyOfRow(r!);
    } catch (err) {
      throw pgError(err, `webhook policy ${p.name}`);
    }
  }

  async getPolicy(id: number): Promise<WebhookPolicy | undefined> {
    const r = await one(this.#pool, 'SELECT * FROM webhook_policies WHERE id = $1', [id]);
    return r ? policyOfRow(r) : undefined;
  }

  async listPolicies(projectId: number): Promise<WebhookPolicy[]> {
    return (await rows(this.#pool, 'SELECT * FROM webhook_policies WHERE project_id = $1 ORDER BY id', [projectId])).map(policyOfRow);
  }

  async updatePolicy(id: number, p: Pick<WebhookPolicy, 'name' | 'description' | 'enabled' | 'eventTypes' | 'targets'>): Promise<void> {
    try {
      await this.#pool.query(
        'UPDATE webhook_policies SET name = $1, description = $2, enabled = $3, event_types = $4, targets = $5, updated_at = $6 WHERE id = $7',
        [p.name, p.description, p.enabled, JSON.stringify(p.eventTypes), JSON.stringify(p.targets), Date.now(), id],
      );
    } catch (err) {
      throw pgError(err, `webhook policy ${p.name}`);
    }
  }

  async deletePolicy(id: number): Promise<boolean> {
    return (await changed(this.#pool, 'DELETE FROM webhook_policies WHERE id = $1', [id])) > 0;
  }

  /** Claims up to `limit` due deliveries (status → Running); rows another replica is claiming are skipped, not waited for. */
  async claimDue(now: number, limit: number, staleBefore: number): Promise<Delivery[]> {
    const r = await rows(
      this.#pool,
      `UPDATE webhook_outbox SET status = 'Running', updated_at = $1 WHERE id IN (
         SELECT id FROM webhook_outbox WHERE (status = 'Pending' AND next_at <= $1) OR (status = 'Running' AND updated_at < $2)
         ORDER BY next_at, id LIMIT $3 FOR UPDATE SKIP LOCKED)
       RETURNING *`,
      [now, staleBefore, limit],
    );
    return r.map(deliveryOfRow).sort((a, b) => a.nextAt - b.nextAt || a.id - b.id);
  }

  async recordAttempt(id: number, attempt: Omit<DeliveryAttempt, 'id' | 'deliveryId'>, next: DeliveryNext): Promise<void> {
    await this.#tx(async (c) => {
      await c.query(
        'INSERT INTO webhook_attempts (outbox_id, attempt, at, status_code, error, duration_ms) VALUES ($1, $2, $3, $4, $5, $6)',
        [id, attempt.attempt, attempt.at, attempt.statusCode, attempt.error, attempt.durationMs],
      );
      await c.query('UPDATE webhook_outbox SET status = $1, attempts = $2, next_at = $3, last_error = $4, updated_at = $5 WHERE id = $6', [
        next.status,
        attempt.attempt,
        next.nextAt,
        next.error,
        Date.now(),
        id,
      ]);
    });
  }

  async listDeliveries(policyId: number): Promise<Delivery[]> {
    return (await rows(this.#pool, 'SELECT * FROM webhook_outbox WHERE policy_id = $1 ORDER BY id DESC', [policyId])).map(deliveryOfRow);
  }

  async getDelivery(id: number): Promise<Delivery | undefined> {
    const r = await one(this.#pool, 'SELECT * FROM webhook_outbox WHERE id = $1', [id]);
    return r ? deliveryOfRow(r) : undefined;
  }

  async listAttempts(deliveryId: number): Promise<DeliveryAttempt[]> {
    return (await rows(this.#pool, 'SELECT * FROM webhook_attempts WHERE outbox_id = $1 ORDER BY id', [deliveryId])).map((r) => ({
      id: num(r.id),
      deliveryId: num(r.outbox_id),
      attempt: num(r.attempt),
      at: num(r.at),
      statusCode: num(r.status_code),
      error: r.error as string,
      durationMs: num(r.duration_ms),
    }));
  }

  async nextDue(): Promise<number | undefined> {
    const r = await one(this.#pool, "SELECT MIN(next_at) AS t FROM webhook_outbox WHERE status = 'Pending'");
    return r?.t === null || r?.t === undefined ? undefined : num(r.t);
  }

  // ---- garbage collection ----

  async #collectable(c: Db, digest: string, cutoff: number): Promise<boolean> {
    if (await one(c, "SELECT 1 FROM manifest_refs WHERE digest = $1 AND kind = 'blob' LIMIT 1", [digest])) return false;
    const r = await one(c, 'SELECT touched_at FROM blobs WHERE digest = $1', [digest]);
    return !(r && num(r.touched_at) >= cutoff);
  }

  async isCollectable(digest: string, cutoff: number): Promise<boolean> {
    return this.#collectable(this.#pool, digest, cutoff);
  }

  async collectBlob(digest: string, cutoff: number, remove: () => Promise<void>): Promise<boolean> {
    return this.#tx(async (c) => {
      await this.#lock(c, [digest], false);
      if (!(await this.#collectable(c, digest, cutoff))) return false;
      await remove();
      const now = Date.now();
      const repos = (await rows(c, 'DELETE FROM repo_blobs WHERE digest = $1 RETURNING repo', [digest])).map((r) => r.repo as string);
      // quota rows in one order everywhere
      for (const repo of repos.sort((a, b) => projectOf(a).localeCompare(projectOf(b))))
        await this.#dropRef(c, projectOf(repo), digest, now);
      await c.query('DELETE FROM blobs WHERE digest = $1', [digest]);
      return true;
    });
  }

  async blobsTouchedBefore(cutoff: number): Promise<string[]> {
    return (await rows(this.#pool, 'SELECT digest FROM blobs WHERE touched_at < $1', [cutoff])).map((r) => r.digest as string);
  }

  async untaggedManifests(cutoff: number): Promise<Array<{ repo: string; digest: string }>> {
    const r = await rows(
      this.#pool,
      `SELECT m.repo, m.digest FROM manifests m WHERE m.created_at < $1
       AND NOT EXISTS (SELECT 1 FROM tags t WHERE t.repo = m.repo AND t.digest = m.digest)
       AND NOT EXISTS (SELECT 1 FROM manifest_refs r WHERE r.repo = m.repo AND r.digest = m.digest AND r.kind = 'manifest')
       AND NOT (m.subject IS NOT NULL AND EXISTS (SELECT 1 FROM manifests s WHERE s.repo = m.repo AND s.digest = m.subject))
       ORDER BY m.repo, m.digest`,
      [cutoff],
    );
    return r.map((x) => ({ repo: x.repo as string, digest: x.digest as string }));
  }

  // ---- quotas ----

  async listQuotas(projectId?: number): Promise<Quota[]> {
    const r =
      projectId === undefined
        ? await rows(this.#pool, `${QUOTA_SELECT} ORDER BY q.id`)
        : await rows(this.#pool, `${QUOTA_SELECT} WHERE p.id = $1 ORDER BY q.id`, [projectId]);
    return r.map(quotaOfRow);
  }

  async getQuota(id: number): Promise<Quota | undefined> {
    const r = await one(this.#pool, `${QUOTA_SELECT} WHERE q.id = $1`, [id]);
    return r ? quotaOfRow(r) : undefined;
  }

  async setQuotaLimit(id: number, hard: number): Promise<boolean> {
    return (await changed(this.#pool, 'UPDATE quotas SET hard = $1, updated_at = $2 WHERE id = $3', [hard, Date.now(), id])) > 0;
  }

  // ---- audit log ----

  async recordAudit(entries: NewAuditEntry[]): Promise<void> {
    if (entries.length) await this.#tx((c) => this.#audit(c, entries));
  }

  async listAudit(q: AuditQuery): Promise<{ total: number; items: AuditEntry[] }> {
    const where: string[] = [];
    const args: unknown[] = [];
    const add = (cond: (n: string) => string, v: unknown): void => {
      args.push(v);
      where.push(cond(`$${args.length}`));
    };
    if (q.projectId !== undefined) add((n) => `project_id = ${n}`, q.projectId);
    if (q.operation?.length) add((n) => `operation = ANY(${n}::text[])`, q.operation);
    if (q.resourceType?.length) add((n) => `resource_type = ANY(${n}::text[])`, q.resourceType);
    if (q.username !== undefined) add((n) => `username = ${n}`, q.username);
    if (q.resource !== undefined) add((n) => `resource LIKE ${n}`, `%${q.resource.replace(/[\\%_]/g, (c) => `\\${c}`)}%`);
    if (q.from !== undefined) add((n) => `op_time >= ${n}`, q.from);
    if (q.to !== undefined) add((n) => `op_time <= ${n}`, q.to);
    const cond = where.length ? `WHERE ${where.join(' AND ')}` : '';
    const total = num((await one(this.#pool, `SELECT COUNT(*) AS n FROM audit_log ${cond}`, args))!.n);
    const order = q.ascending ? 'ASC' : 'DESC';
    const items = await rows(
      this.#pool,
      `SELECT * FROM audit_log ${cond} ORDER BY op_time ${order}, id ${order} LIMIT $${args.length + 1} OFFSET $${args.length + 2}`,
      [...args, q.limit, q.offset],
    );
    return { total, items: items.map(auditOfRow) };
  }

  async purgeAudit(before: number): Promise<number> {
    return changed(this.#pool, 'DELETE FROM audit_log WHERE op_time < $1', [before]);
  }

  // ---- gc runs and schedule ----

  async #insertGcRun(c: Db, trigger: GcRun['trigger'], parameters: string, now: number): Promise<GcRun> {
    const r = await one(
      c,
      "INSERT INTO gc_runs (trigger_kind, parameters, status, created_at, updated_at) VALUES ($1, $2, 'Pending', $3, $3) RETURNING *",
      [trigger, parameters, now],
    );
    return gcRunOfRow(r!);
  }

  async createGcRun(trigger: GcRun['trigger'], parameters: string): Promise<GcRun> {
    return this.#insertGcRun(this.#pool, trigger, parameters, Date.now());
  }

  async claimGcRun(owner: string, now: number, staleBefore: number): Promise<GcRun | undefined> {
    return this.#tx(async (c) => {
      // one claim at a time across replicas: the check "none Running" and the claim must not interleave
      await c.query('SELECT pg_advisory_xact_lock($1, 0)', [LOCK_NS]);
      await c.query("UPDATE gc_runs SET status = 'Error', log = log || $1, updated_at = $2 WHERE status = 'Running' AND updated_at < $3", [
        `${new Date(now).toISOString()} run lost: its replica stopped updating it\n`,
        now,
        staleBefore,
      ]);
      if (await one(c, "SELECT 1 FROM gc_runs WHERE status = 'Running'")) return undefined;
      const r = await one(
        c,
        `UPDATE gc_runs SET status = 'Running', owner = $1, updated_at = $2
         WHERE id = (SELECT id FROM gc_runs WHERE status = 'Pending' ORDER BY id LIMIT 1) RETURNING *`,
        [owner, now],
      );
      return r ? gcRunOfRow(r) : undefined;
    });
  }

  async updateGcRun(id: number, patch: { status?: GcStatus; log?: string }, now: number): Promise<void> {
    await this.#pool.query('UPDATE gc_runs SET status = COALESCE($1, status), log = log || $2, updated_at = $3 WHERE id = $4', [
      patch.status ?? null,
      patch.log ?? '',
      now,
      id,
    ]);
  }

  async requestGcStop(id: number): Promise<boolean> {
    const r = await one(
      this.#pool,
      `UPDATE gc_runs SET stop_requested = true, updated_at = CASE WHEN status = 'Pending' THEN $2 ELSE updated_at END,
       status = CASE WHEN status = 'Pending' THEN 'Stopped' ELSE status END
       WHERE id = $1 AND status IN ('Pending', 'Running') RETURNING id`,
      [id, Date.now()],
    );
    return r !== undefined;
  }

  async getGcRun(id: number): Promise<GcRun | undefined> {
    const r = await one(this.#pool, 'SELECT * FROM gc_runs WHERE id = $1', [id]);
    return r ? gcRunOfRow(r) : undefined;
  }

  async listGcRuns(offset: number, limit: number): Promise<{ total: number; items: GcRun[] }> {
    const total = num((await one(this.#pool, 'SELECT COUNT(*) AS n FROM gc_runs'))!.n);
    const items = await rows(this.#pool, 'SELECT * FROM gc_runs ORDER BY id DESC LIMIT $1 OFFSET $2', [limit, offset]);
    return { total, items: items.map(gcRunOfRow) };
  }

  async getGcSchedule(): Promise<GcSchedule | undefined> {
    const r = await one(this.#pool, 'SELECT * FROM gc_schedule WHERE id = 1');
    return r ? gcScheduleOfRow(r) : undefined;
  }

  async setGcSchedule(s: Omit<GcSchedule, 'createdAt' | 'updatedAt'> | undefined, now: number): Promise<void> {
    if (!s) {
      await this.#pool.query('DELETE FROM gc_schedule');
      return;
    }
    await this.#pool.query(
      `INSERT INTO gc_schedule (id, type, cron, parameters, next_run, created_at, updated_at) VALUES (1, $1, $2, $3, $4, $5, $5)
       ON CONFLICT (id) DO UPDATE SET type = excluded.type, cron = excluded.cron, parameters = excluded.parameters,
       next_run = excluded.next_run, updated_at = excluded.updated_at`,
      [s.type, s.cron, s.parameters, s.nextRun, now],
    );
  }

  async takeScheduledGc(now: number, next: number): Promise<GcRun | undefined> {
    return this.#tx(async (c) => {
      // the row lock of the UPDATE makes a second replica wait, then find next_run moved on
      const s = await one(c, 'UPDATE gc_schedule SET next_run = $2 WHERE id = 1 AND next_run <= $1 RETURNING parameters', [now, next]);
      return s ? this.#insertGcRun(c, 'SCHEDULE', s.parameters as string, now) : undefined;
    });
  }
}
