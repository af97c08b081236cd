/**
 * @module registry/metadata/sqlite
 * (Over 600 lines: one backend implements the whole RegistryMetadata interface, one prepared statement per query.)
 * The metadata store in one SQLite file (WAL, synchronous=NORMAL, busy timeout so `ferry registry gc`
 * in another process can share it). In WAL mode NORMAL loses nothing when the process dies
 * (kill -9); a power failure may drop the last acknowledged transactions but never leaves the
 * database inconsistent, and blob files are fsynced before their rows are written, so a row never
 * points at a missing blob. FULL would put an fsync on the event loop for every push.
 *
 * Every multi-row change runs in one IMMEDIATE transaction, so a crash leaves either all of a
 * manifest push (manifest, tag, references, usage, webhook outbox and audit rows) or none of it.
 * Writes of this process go through one queue: a blob commit or collection holds its transaction
 * open while the blob store's `publish`/`remove` runs (it may be I/O, an object store's copy), and
 * nothing else may write on the connection meanwhile — its statements would join that
 * transaction. Other processes wait on SQLite's lock (busy timeout). The schema is versioned
 * (`PRAGMA user_version`) and migrated at open.
 */
import Database from 'better-sqlite3';
import { FerryError } from '../../core/index.js';
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

/** The project of a repository name, as SQL (single-segment names belong to `library`). */
const PROJECT_SQL = (col: string): string =>
  `CASE WHEN instr(${col}, '/') = 0 THEN 'library' ELSE substr(${col}, 1, instr(${col}, '/') - 1) END`;

/** Schema versions, applied in order; `PRAGMA user_version` is the last one applied. */
const MIGRATIONS: ReadonlyArray<{ name: string; sql: string }> = [
  {
    name: 'distribution, projects, users, robots, webhooks',
    sql: `
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS blobs (digest TEXT PRIMARY KEY, size INTEGER NOT NULL, touched_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS repo_blobs (repo TEXT NOT NULL, digest TEXT NOT NULL, created_at INTEGER NOT NULL,
  PRIMARY KEY (repo, digest)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS repo_blobs_digest ON repo_blobs (digest);
CREATE TABLE IF NOT EXISTS repositories (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL UNIQUE,
  project TEXT NOT NULL, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL, pull_count INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS manifests (repo TEXT NOT NULL, digest TEXT NOT NULL, media_type TEXT NOT NULL,
  size INTEGER NOT NULL, body BLOB NOT NULL, artifact_type TEXT, subject TEXT, annotations TEXT,
  created_at INTEGER NOT NULL, PRIMARY KEY (repo, digest));
CREATE INDEX IF NOT EXISTS manifests_subject ON manifests (repo, subject);
CREATE TABLE IF NOT EXISTS manifest_refs (repo TEXT NOT NULL, manifest TEXT NOT NULL, digest TEXT NOT NULL,
  kind TEXT NOT NULL, PRIMARY KEY (repo, manifest, kind, digest)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS manifest_refs_digest ON manifest_refs (digest, kind);
CREATE TABLE IF NOT EXISTS tags (repo TEXT NOT NULL, tag TEXT NOT NULL, digest TEXT NOT NULL,
  updated_at INTEGER NOT NULL, PRIMARY KEY (repo, tag)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS tags_digest ON tags (repo, digest);
CREATE TABLE IF NOT EXISTS projects (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL UNIQUE,
  public INTEGER NOT NULL, owner TEXT NOT NULL, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS users (id INTEGER PRIMARY KEY AUTOINCREMENT, username TEXT NOT NULL UNIQUE,
  password_hash TEXT NOT NULL, sysadmin INTEGER NOT NULL, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS robots (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL UNIQUE,
  description TEXT NOT NULL, level TEXT NOT NULL, secret_hash TEXT NOT NULL, permissions TEXT NOT NULL,
  disabled INTEGER NOT NULL, expires_at INTEGER NOT NULL, duration INTEGER NOT NULL,
  created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS webhook_policies (id INTEGER PRIMARY KEY AUTOINCREMENT, project_id INTEGER NOT NULL,
  name TEXT NOT NULL, description TEXT NOT NULL, enabled INTEGER NOT NULL, event_types TEXT NOT NULL,
  targets TEXT NOT NULL, creator TEXT NOT NULL, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL,
  UNIQUE (project_id, name));
CREATE TABLE IF NOT EXISTS webhook_outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, policy_id INTEGER NOT NULL,
  event_type TEXT NOT NULL, target TEXT NOT NULL, payload TEXT NOT NULL, status TEXT NOT NULL,
  attempts INTEGER NOT NULL, next_at INTEGER NOT NULL, repo TEXT NOT NULL, digest TEXT NOT NULL,
  untagged INTEGER NOT NULL, last_error TEXT NOT NULL, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS webhook_outbox_due ON webhook_outbox (status, next_at);
CREATE TABLE IF NOT EXISTS webhook_attempts (id INTEGER PRIMARY KEY AUTOINCREMENT, outbox_id INTEGER NOT NULL,
  attempt INTEGER NOT NULL, at INTEGER NOT NULL, status_code INTEGER NOT NULL, error TEXT NOT NULL,
  duration_ms INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS webhook_attempts_outbox ON webhook_attempts (outbox_id);`,
  },
  {
    name: 'quotas and project usage, audit log, gc runs and schedule, shared settings',
    sql: `
CREATE TABLE project_blobs (project TEXT NOT NULL, digest TEXT NOT NULL, size INTEGER NOT NULL, refs INTEGER NOT NULL,
  PRIMARY KEY (project, digest)) WITHOUT ROWID;
INSERT INTO project_blobs (project, digest, size, refs)
  SELECT project, digest, MAX(size), COUNT(*) FROM (
    SELECT ${PROJECT_SQL('r.repo')} AS project, r.digest AS digest, b.size AS size FROM repo_blobs r JOIN blobs b ON b.digest = r.digest
    UNION ALL
    SELECT ${PROJECT_SQL('m.repo')}, m.digest, m.size FROM manifests m
  ) GROUP BY project, digest;
CREATE TABLE quotas (id INTEGER PRIMARY KEY AUTOINCREMENT, project TEXT NOT NULL UNIQUE, hard INTEGER NOT NULL,
  used INTEGER NOT NULL, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);
INSERT INTO quotas (project, hard, used, created_at, updated_at)
  SELECT p.name, -1, COALESCE((SELECT SUM(pb.size) FROM project_blobs pb WHERE pb.project = p.name), 0), p.created_at, p.updated_at
  FROM projects p;
CREATE TABLE audit_log (id INTEGER PRIMARY KEY AUTOINCREMENT, project_id INTEGER NOT NULL, username TEXT NOT NULL,
  resource TEXT NOT NULL, resource_type TEXT NOT NULL, operation TEXT NOT NULL, description TEXT NOT NULL,
  success INTEGER NOT NULL, op_time INTEGER NOT NULL);
CREATE INDEX audit_log_time ON audit_log (op_time);
CREATE INDEX audit_log_project ON audit_log (project_id, op_time);
CREATE TABLE gc_runs (id INTEGER PRIMARY KEY AUTOINCREMENT, trigger_kind TEXT NOT NULL, parameters TEXT NOT NULL,
  status TEXT NOT NULL, stop_requested INTEGER NOT NULL DEFAULT 0, log TEXT NOT NULL DEFAULT '', owner TEXT NOT NULL DEFAULT '',
  created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);
CREATE TABLE gc_schedule (id INTEGER PRIMARY KEY CHECK (id = 1), type TEXT NOT NULL, cron TEXT NOT NULL,
  parameters TEXT NOT NULL, next_run INTEGER NOT NULL, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL);
CREATE TABLE settings (key TEXT PRIMARY KEY, value TEXT NOT NULL);`,
  },
];

/** No webhook rows. */
const NO_OUTBOX: OutboxChange = { enqueue: [] };

/** How long a writer waits for another process's write lock (`ferry registry gc` beside a running registry). */
const BUSY_TIMEOUT_MS = 10_000;

/** SQLite's constraint failures (a UNIQUE name taken) as ALREADY_EXISTS, anything else as INTERNAL. */
function sqlError(err: unknown, what: string): FerryError {
  if (FerryError.is(err)) return err;
  const code = (err as { code?: unknown }).code;
  if (typeof code === 'string' && code.startsWith('SQLITE_CONSTRAINT')) {
    return new FerryError('ALREADY_EXISTS', `${what}: already exists`, { cause: err });
  }
  return new FerryError('INTERNAL', `${what}: ${(err as Error).message}`, { cause: err });
}

/** Runs writes one after another (see the module comment). */
class WriteQueue {
  #tail: Promise<unknown> = Promise.resolve();

  run<T>(fn: () => T | Promise<T>): Promise<T> {
    const result = this.#tail.then(fn);
    this.#tail = result.then(
      () => undefined,
      () => undefined,
    );
    return result;
  }
}

const QUOTA_SELECT = `SELECT q.id, q.project, q.hard, q.used, q.created_at, q.updated_at, p.id AS project_id, p.owner AS owner
  FROM quotas q JOIN projects p ON p.name = q.project`;

/** SQLite-backed registry metadata (see module doc). */
export class SqliteMetadata implements RegistryMetadata {
  readonly #db: Database.Database;
  readonly #s: Record<string, Database.Statement>;
  readonly #writes = new WriteQueue();

  constructor(path: string) {
    this.#db = new Database(path);
    this.#db.pragma('journal_mode = WAL');
    this.#db.pragma('synchronous = NORMAL');
    this.#db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
    this.#db.pragma('foreign_keys = OFF');
    this.#migrate();
    const p = (sql: string): Database.Statement => this.#db.prepare(sql);
    this.#s = {
      blobUpsert: p(`INSERT INTO blobs (digest, size, touched_at) VALUES (?, ?, ?)
        ON CONFLICT (digest) DO UPDATE SET touched_at = excluded.touched_at, size = excluded.size`),
      blobTouch: p('UPDATE blobs SET touched_at = ? WHERE digest = ?'),
      blobGet: p('SELECT size FROM blobs WHERE digest = ?'),
      linkInsert: p('INSERT OR IGNORE INTO repo_blobs (repo, digest, created_at) VALUES (?, ?, ?)'),
      linkExists: p('SELECT 1 FROM repo_blobs WHERE repo = ? AND digest = ?'),
      linkGet: p('SELECT b.size AS size FROM repo_blobs r JOIN blobs b ON b.digest = r.digest WHERE r.repo = ? AND r.digest = ?'),
      linkDelete: p('DELETE FROM repo_blobs WHERE repo = ? AND digest = ?'),
      repoUpsert: p(`INSERT INTO repositories (name, project, created_at, updated_at) VALUES (?, ?, ?, ?)
        ON CONFLICT (name) DO UPDATE SET updated_at = excluded.updated_at`),
      manifestGet: p('SELECT * FROM manifests WHERE repo = ? AND digest = ?'),
      manifestExists: p('SELECT 1 FROM manifests WHERE repo = ? AND digest = ?'),
      manifestSize: p('SELECT size FROM manifests WHERE repo = ? AND digest = ?'),
      manifestUpsert: p(`INSERT INTO manifests (repo, digest, media_type, size, body, artifact_type, subject, annotations, created_at)
        VALUES (@repo, @digest, @mediaType, @size, @body, @artifactType, @subject, @annotations, @createdAt)
        ON CONFLICT (repo, digest) DO UPDATE SET media_type = excluded.media_type`),
      manifestDelete: p('DELETE FROM manifests WHERE repo = ? AND digest = ?'),
      refsDelete: p('DELETE FROM manifest_refs WHERE repo = ? AND manifest = ?'),
      refInsert: p('INSERT OR IGNORE INTO manifest_refs (repo, manifest, digest, kind) VALUES (?, ?, ?, ?)'),
      tagUpsert: p(`INSERT INTO tags (repo, tag, digest, updated_at) VALUES (?, ?, ?, ?)
        ON CONFLICT (repo, tag) DO UPDATE SET digest = excluded.digest, updated_at = excluded.updated_at`),
      tagGet: p('SELECT digest FROM tags WHERE repo = ? AND tag = ?'),
      tagDelete: p('DELETE FROM tags WHERE repo = ? AND tag = ?'),
      tagsDeleteOf: p('DELETE FROM tags WHERE repo = ? AND digest = ?'),
      tagsOf: p('SELECT tag FROM tags WHERE repo = ? AND digest = ? ORDER BY tag'),
      tagsList: p('SELECT tag FROM tags WHERE repo = ? AND tag > ? ORDER BY tag LIMIT ?'),
      repoHasManifest: p('SELECT 1 FROM manifests WHERE repo = ? LIMIT 1'),
      reposList: p('SELECT DISTINCT repo FROM manifests WHERE repo > ? ORDER BY repo LIMIT ?'),
      reposListProject: p(`SELECT DISTINCT repo FROM manifests WHERE repo > ? AND (repo LIKE ? ESCAPE '\\')
        ORDER BY repo LIMIT ?`),
      referrers: p(
        'SELECT digest, media_type, size, artifact_type, annotations FROM manifests WHERE repo = ? AND subject = ? ORDER BY created_at, digest',
      ),
      outboxInsert: p(`INSERT INTO webhook_outbox (policy_id, event_type, target, payload, status, attempts, next_at, repo,
        digest, untagged, last_error, created_at, updated_at)
        VALUES (?, ?, ?, ?, 'Pending', 0, ?, ?, ?, ?, '', ?, ?)`),
      outboxStopUntagged: p(`UPDATE webhook_outbox SET status = 'Stopped', last_error = ?, updated_at = ?
        WHERE status = 'Pending' AND untagged = 1 AND repo = ? AND digest = ?`),
      blobReferenced: p("SELECT 1 FROM manifest_refs WHERE digest = ? AND kind = 'blob' LIMIT 1"),
      blobTouched: p('SELECT touched_at FROM blobs WHERE digest = ?'),
      blobDelete: p('DELETE FROM blobs WHERE digest = ?'),
      linksOf: p('SELECT repo FROM repo_blobs WHERE digest = ?'),
      linksDelete: p('DELETE FROM repo_blobs WHERE digest = ?'),
      blobsTouchedBefore: p('SELECT digest FROM blobs WHERE touched_at < ?'),
      usageGet: p('SELECT refs FROM project_blobs WHERE project = ? AND digest = ?'),
      usageRef: p('UPDATE project_blobs SET refs = refs + ? WHERE project = ? AND digest = ?'),
      usageInsert: p('INSERT INTO project_blobs (project, digest, size, refs) VALUES (?, ?, ?, 1)'),
      usageDrop: p('DELETE FROM project_blobs WHERE project = ? AND digest = ? AND refs <= 0 RETURNING size'),
      quotaOf: p('SELECT hard, used FROM quotas WHERE project = ?'),
      quotaAdd: p('UPDATE quotas SET used = used + ?, updated_at = ? WHERE project = ?'),
      auditInsert: p(`INSERT INTO audit_log (project_id, username, resource, resource_type, operation, description, success, op_time)
        VALUES (?, ?, ?, ?, ?, ?, ?, ?)`),
      projectIdOf: p('SELECT id FROM projects WHERE name = ?'),
    };
  }

  #migrate(): void {
    const version = this.#db.pragma('user_version', { simple: true }) as number;
    for (let v = version; v < MIGRATIONS.length; v++) {
      this.#db.transaction(() => {
        this.#db.exec(MIGRATIONS[v]!.sql);
        this.#db.pragma(`user_version = ${v + 1}`);
      })();
    }
  }

  async close(): Promise<void> {
    await this.#writes.run(() => undefined);
    this.#db.close();
  }

  /** Runs `fn` in an IMMEDIATE transaction (holds the write lock, also against other processes), after this process's earlier writes. */
  #tx<T>(fn: () => T): Promise<T> {
    return this.#writes.run(() => this.#db.transaction(fn).immediate());
  }

  /**
   * An IMMEDIATE transaction held open while `act` (the blob store's I/O) runs: `before` decides
   * (and may throw, then `act` is not run), `after` writes the rows; nothing else of this process
   * writes meanwhile.
   */
  #txAround<B, T>(before: () => B, act: (b: B) => Promise<void>, after: (b: B) => T): Promise<T> {
    return this.#writes.run(async () => {
      this.#db.exec('BEGIN IMMEDIATE');
      try {
        const b = before();
        await act(b);
        const out = after(b);
        this.#db.exec('COMMIT');
        return out;
      } catch (err) {
        if (this.#db.inTransaction) this.#db.exec('ROLLBACK');
        throw err;
      }
    });
  }

  // ---- project usage ----

  /** Whether linking `digest` into `project` adds to its usage; QuotaExceededError when it would exceed the limit. */
  #checkUsage(project: string, digest: string, size: number): void {
    if (this.#s.usageGet!.get(project, digest)) return;
    const q = this.#s.quotaOf!.get(project) as Row | undefined;
    if (!q) return;
    const hard = num(q.hard);
    const used = num(q.used);
    if (hard >= 0 && used + size > hard) throw new QuotaExceededError(project, hard, used, size);
  }

  /** One more reference of `digest` in `project` (a link or a manifest); counted into usage the first time. */
  #addRef(project: string, digest: string, size: number, now: number): void {
    if (this.#s.usageRef!.run(1, project, digest).changes > 0) return;
    this.#checkUsage(project, digest, size);
    this.#s.usageInsert!.run(project, digest, size);
    this.#s.quotaAdd!.run(size, now, project);
  }

  /** One reference less; the digest leaves the project's usage with its last one. */
  #dropRef(project: string, digest: string, now: number): void {
    this.#s.usageRef!.run(-1, project, digest);
    const gone = this.#s.usageDrop!.get(project, digest) as Row | undefined;
    if (gone) this.#s.quotaAdd!.run(-num(gone.size), now, project);
  }

  // ---- distribution ----

  async commitBlob(repo: string, digest: string, size: number, publish: () => Promise<void>): Promise<void> {
    const project = projectOf(repo);
    await this.#txAround(
      () => {
        if (!this.#s.linkExists!.get(repo, digest)) this.#checkUsage(project, digest, size);
      },
      publish,
      () => {
        const now = Date.now();
        this.#s.blobUpsert!.run(digest, size, now);
        if (this.#s.linkInsert!.run(repo, digest, now).changes > 0) this.#addRef(project, digest, size, now);
      },
    );
  }

  async linkBlob(repo: string, digest: string): Promise<boolean> {
    const now = Date.now();
    return this.#tx(() => {
      const b = this.#s.blobGet!.get(digest) as Row | undefined;
      if (!b) return false;
      this.#s.blobTouch!.run(now, digest);
      if (this.#s.linkInsert!.run(repo, digest, now).changes > 0) this.#addRef(projectOf(repo), digest, num(b.size), now);
      return true;
    });
  }

  async blobInRepo(repo: string, digest: string): Promise<number | undefined> {
    const r = this.#s.linkGet!.get(repo, digest) as Row | undefined;
    return r ? num(r.size) : undefined;
  }

  async unlinkBlob(repo: string, digest: string): Promise<boolean> {
    return this.#tx(() => {
      if (this.#s.linkDelete!.run(repo, digest).changes === 0) return false;
      this.#dropRef(projectOf(repo), digest, Date.now());
      return true;
    });
  }

  async putManifest(rec: ManifestRecord, tag: string | undefined, refs: ManifestRefs, outbox: OutboxChange = NO_OUTBOX): Promise<void> {
    const now = Date.now();
    await this.#tx(() => {
      const missing: string[] = [];
      for (const d of refs.blobs) if (!this.#s.linkGet!.get(rec.repo, d)) missing.push(d);
      for (const d of refs.manifests) if (!this.#s.manifestExists!.get(rec.repo, d)) missing.push(d);
      if (missing.length) throw new MissingContentError(missing);
      const project = projectOf(rec.repo);
      const isNew = !this.#s.manifestExists!.get(rec.repo, rec.digest);
      // a new repository is as old as its first manifest (webhook payloads computed before this say so too)
      this.#s.repoUpsert!.run(rec.repo, project, rec.createdAt, now);
      this.#s.manifestUpsert!.run({
        repo: rec.repo,
        digest: rec.digest,
        mediaType: rec.mediaType,
        size: rec.size,
        body: rec.body,
        artifactType: rec.artifactType ?? null,
        subject: rec.subject ?? null,
        annotations: rec.annotations ? JSON.stringify(rec.annotations) : null,
        createdAt: rec.createdAt,
      });
      if (isNew) this.#addRef(project, rec.digest, rec.size, now);
      this.#s.refsDelete!.run(rec.repo, rec.digest);
      for (const d of refs.blobs) {
        this.#s.refInsert!.run(rec.repo, rec.digest, d, 'blob');
        this.#s.blobTouch!.run(now, d);
      }
      for (const d of refs.manifests) this.#s.refInsert!.run(rec.repo, rec.digest, d, 'manifest');
      if (rec.subject) this.#s.refInsert!.run(rec.repo, rec.digest, rec.subject, 'subject');
      if (tag !== undefined) this.#s.tagUpsert!.run(rec.repo, tag, rec.digest, now);
      this.#outbox(outbox, now);
    });
  }

  #outbox(change: OutboxChange, now: number): void {
    const stop = change.supersede;
    if (stop) for (const d of stop.digests) this.#s.outboxStopUntagged!.run(stop.reason, now, stop.repo, d);
    this.#enqueue(change.enqueue, now);
    this.#audit(change.audit ?? []);
  }

  #enqueue(list: NewDelivery[], now: number): void {
    for (const d of list) {
      this.#s.outboxInsert!.run(
        d.policyId,
        d.eventType,
        JSON.stringify(d.target),
        d.payload,
        d.notBefore,
        d.repo,
        d.digest,
        d.untagged ? 1 : 0,
        now,
        now,
      );
    }
  }

  #audit(list: NewAuditEntry[]): void {
    for (const e of list) {
      this.#s.auditInsert!.run(e.projectId, e.username, e.resource, e.resourceType, e.operation, e.description, e.success ? 1 : 0, e.at);
    }
  }

  async enqueueDeliveries(list: NewDelivery[]): Promise<void> {
    if (list.length) await this.#tx(() => this.#enqueue(list, Date.now()));
  }

  async getManifest(repo: string, digest: string): Promise<ManifestRecord | undefined> {
    const r = this.#s.manifestGet!.get(repo, digest) as Row | undefined;
    return r ? manifestOf(r) : undefined;
  }

  async resolveTag(repo: string, tag: string): Promise<string | undefined> {
    return (this.#s.tagGet!.get(repo, tag) as Row | undefined)?.digest as string | undefined;
  }

  async deleteManifest(repo: string, digest: string, outbox: OutboxChange = NO_OUTBOX): Promise<boolean> {
    return this.#tx(() => {
      if (this.#s.manifestDelete!.run(repo, digest).changes === 0) return false;
      const now = Date.now();
      this.#s.tagsDeleteOf!.run(repo, digest);
      this.#s.refsDelete!.run(repo, digest);
      this.#dropRef(projectOf(repo), digest, now);
      this.#outbox(outbox, now);
      return true;
    });
  }

  async deleteTag(repo: string, tag: string, outbox: OutboxChange = NO_OUTBOX): Promise<boolean> {
    return this.#tx(() => {
      if (this.#s.tagDelete!.run(repo, tag).changes === 0) return false;
      this.#outbox(outbox, Date.now());
      return true;
    });
  }

  async listTags(repo: string, opts: { n?: number; last?: string }): Promise<string[]> {
    return (this.#s.tagsList!.all(repo, opts.last ?? '', opts.n ?? -1) as Row[]).map((r) => r.tag as string);
  }

  async tagsOf(repo: string, digest: string): Promise<string[]> {
    return (this.#s.tagsOf!.all(repo, digest) as Row[]).map((r) => r.tag as string);
  }

  async repositoryExists(repo: string): Promise<boolean> {
    return this.#s.repoHasManifest!.get(repo) !== undefined;
  }

  async listRepositories(opts: { n?: number; last?: string; project?: string }): Promise<string[]> {
    const rows =
      opts.project !== undefined
        ? this.#s.reposListProject!.all(opts.last ?? '', `${opts.project.replace(/[\\%_]/g, (c) => `\\${c}`)}/%`, opts.n ?? -1)
        : this.#s.reposList!.all(opts.last ?? '', opts.n ?? -1);
    return (rows as Row[]).map((r) => r.repo as string);
  }

  async referrers(repo: string, subject: string, artifactType?: string): Promise<ReferrerRecord[]> {
    const rows = (this.#s.referrers!.all(repo, subject) as Row[]).map((r) => ({
      digest: r.digest as string,
      mediaType: r.media_type as string,
      size: num(r.size),
      artifactType: (r.artifact_type as string | null) ?? undefined,
      annotations: r.annotations ? (JSON.parse(r.annotations as string) as Record<string, string>) : undefined,
    }));
    return artifactType === undefined ? rows : rows.filter((r) => r.artifactType === artifactType);
  }

  /** Records a pull (Harbor's pull_count). */
  async countPull(repo: string): Promise<void> {
    await this.#writes.run(() => this.#db.prepare('UPDATE repositories SET pull_count = pull_count + 1 WHERE name = ?').run(repo));
  }

  async getRepository(name: string): Promise<RepositoryRecord | undefined> {
    const r = this.#db
      .prepare(`SELECT r.*, (SELECT COUNT(*) FROM manifests m WHERE m.repo = r.name) AS artifact_count
      FROM repositories r WHERE r.name = ?`)
      .get(name) as Row | undefined;
    return r ? repositoryOfRow(r) : undefined;
  }

  async listRepositoryRecords(project: string): Promise<RepositoryRecord[]> {
    return (
      this.#db
        .prepare(`SELECT r.*, (SELECT COUNT(*) FROM manifests m WHERE m.repo = r.name) AS artifact_count
      FROM repositories r WHERE r.project = ? AND EXISTS (SELECT 1 FROM manifests m WHERE m.repo = r.name) ORDER BY r.name`)
        .all(project) as Row[]
    ).map(repositoryOfRow);
  }

  async listManifests(repo: string): Promise<ManifestRecord[]> {
    return (this.#db.prepare('SELECT * FROM manifests WHERE repo = ? ORDER BY created_at DESC').all(repo) as Row[]).map(manifestOf);
  }

  // ---- projects ----

  async getProject(nameOrId: string | number): Promise<Project | undefined> {
    return this.#project(nameOrId);
  }

  #project(nameOrId: string | number): Project | undefined {
    const r = (
      typeof nameOrId === 'number'
        ? this.#db.prepare('SELECT * FROM projects WHERE id = ?').get(nameOrId)
        : this.#db.prepare('SELECT * FROM projects WHERE name = ?').get(nameOrId)
    ) as Row | undefined;
    return r ? projectOfRow(r) : undefined;
  }

  async listProjects(): Promise<Project[]> {
    return (this.#db.prepare('SELECT * FROM projects ORDER BY name').all() as Row[]).map(projectOfRow);
  }

  /** Inserts a project and its quota (usage already recorded for the name counts). */
  #insertProject(name: string, isPublic: boolean, owner: string, storageLimit: number, orIgnore: boolean): number | undefined {
    const now = Date.now();
    const info = this.#db
      .prepare(`INSERT ${orIgnore ? 'OR IGNORE ' : ''}INTO projects (name, public, owner, created_at, updated_at) VALUES (?, ?, ?, ?, ?)`)
      .run(name, isPublic ? 1 : 0, owner, now, now);
    if (info.changes === 0) return undefined;
    this.#db
      .prepare(`INSERT INTO quotas (project, hard, used, created_at, updated_at)
        VALUES (?, ?, (SELECT COALESCE(SUM(size), 0) FROM project_blobs WHERE project = ?), ?, ?)
        ON CONFLICT (project) DO UPDATE SET hard = excluded.hard, updated_at = excluded.updated_at`)
      .run(name, storageLimit, name, now, now);
    return num(info.lastInsertRowid);
  }

  async createProject(name: string, isPublic: boolean, owner: string, storageLimit = -1): Promise<Project> {
    try {
      const id = await this.#tx(() => this.#insertProject(name, isPublic, owner, storageLimit, false));
      return this.#project(id!)!;
    } catch (err) {
      throw sqlError(err, `project ${name}`);
    }
  }

  /** Creates the project unless it exists; returns it. */
  async ensureProject(name: string, isPublic: boolean, owner: string, storageLimit = -1): Promise<Project> {
    const cur = this.#project(name);
    if (cur) return cur;
    await this.#tx(() => this.#insertProject(name, isPublic, owner, storageLimit, true));
    return this.#project(name)!;
  }

  async updateProject(id: number, isPublic: boolean): Promise<void> {
    await this.#tx(() =>
      this.#db.prepare('UPDATE projects SET public = ?, updated_at = ? WHERE id = ?').run(isPublic ? 1 : 0, Date.now(), id),
    );
  }

  async deleteProject(id: number): Promise<void> {
    await this.#tx(() => {
      const p = this.#project(id);
      this.#db.prepare('DELETE FROM webhook_policies WHERE project_id = ?').run(id);
      this.#db.prepare('DELETE FROM projects WHERE id = ?').run(id);
      if (!p) return;
      this.#db.prepare('DELETE FROM quotas WHERE project = ?').run(p.name);
      this.#db.prepare('DELETE FROM project_blobs WHERE project = ?').run(p.name);
      const prefix = `${p.name.replace(/[\\%_]/g, (c) => `\\${c}`)}/%`;
      this.#db.prepare("DELETE FROM repo_blobs WHERE repo LIKE ? ESCAPE '\\'").run(prefix);
      if (p.name === 'library') this.#db.prepare("DELETE FROM repo_blobs WHERE instr(repo, '/') = 0").run();
    });
  }

  // ---- users ----

  async getUser(username: string): Promise<User | undefined> {
    return this.#user(username);
  }

  #user(username: string): User | undefined {
    const r = this.#db.prepare('SELECT * FROM users WHERE username = ?').get(username) as Row | undefined;
    return r ? userOfRow(r) : undefined;
  }

  async getUserById(id: number): Promise<User | undefined> {
    const r = this.#db.prepare('SELECT * FROM users WHERE id = ?').get(id) as Row | undefined;
    return r ? userOfRow(r) : undefined;
  }

  async upsertUser(username: string, passwordHash: string, sysadmin: boolean): Promise<User> {
    const now = Date.now();
    await this.#tx(() =>
      this.#db
        .prepare(`INSERT INTO users (username, password_hash, sysadmin, created_at, updated_at) VALUES (?, ?, ?, ?, ?)
      ON CONFLICT (username) DO UPDATE SET password_hash = excluded.password_hash, sysadmin = excluded.sysadmin,
      updated_at = excluded.updated_at`)
        .run(username, passwordHash, sysadmin ? 1 : 0, now, now),
    );
    return this.#user(username)!;
  }

  /** One process owns a SQLite file for the API: its own invalidation suffices. */
  watchAuth(_onChange: () => void): () => void {
    return () => undefined;
  }

  async sharedSetting(key: string, init: () => string): Promise<string> {
    const get = (): string | undefined =>
      (this.#db.prepare('SELECT value FROM settings WHERE key = ?').get(key) as Row | undefined)?.value as string | undefined;
    const cur = get();
    if (cur !== undefined) return cur;
    await this.#tx(() => this.#db.prepare('INSERT OR IGNORE INTO settings (key, value) VALUES (?, ?)').run(key, init()));
    return get()!;
  }

  // ---- robots ----

  async createRobot(r: Omit<Robot, 'id' | 'createdAt' | 'updatedAt'>): Promise<Robot> {
    const now = Date.now();
    try {
      const info = await this.#tx(() =>
        this.#db
          .prepare(`INSERT INTO robots (name, description, level, secret_hash, permissions, disabled,
        expires_at, duration, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
          .run(
            r.name,
            r.description,
            r.level,
            r.secretHash,
            JSON.stringify(r.permissions),
            r.disabled ? 1 : 0,
            r.expiresAt,
            r.duration,
            now,
            now,
          ),
      );
      return this.#robot(num(info.lastInsertRowid))!;
    } catch (err) {
      throw sqlError(err, `robot ${r.name}`);
    }
  }

  async getRobot(idOrName: number | string): Promise<Robot | undefined> {
    return this.#robot(idOrName);
  }

  #robot(idOrName: number | string): Robot | undefined {
    const r = (
      typeof idOrName === 'number'
        ? this.#db.prepare('SELECT * FROM robots WHERE id = ?').get(idOrName)
        : this.#db.prepare('SELECT * FROM robots WHERE name = ?').get(idOrName)
    ) as Row | undefined;
    return r ? robotOfRow(r) : undefined;
  }

  async listRobots(): Promise<Robot[]> {
    return (this.#db.prepare('SELECT * FROM robots ORDER BY id').all() as Row[]).map(robotOfRow);
  }

  async updateRobot(id: number, patch: RobotPatch): Promise<void> {
    await this.#tx(() => {
      const cur = this.#robot(id);
      if (!cur) return;
      this.#db
        .prepare('UPDATE robots SET disabled = ?, secret_hash = ?, description = ?, permissions = ?, updated_at = ? WHERE id = ?')
        .run(
          (patch.disabled ?? cur.disabled) ? 1 : 0,
          patch.secretHash ?? cur.secretHash,
          patch.description ?? cur.description,
          JSON.stringify(patch.permissions ?? cur.permissions),
          Date.now(),
          id,
        );
    });
  }

  async deleteRobot(id: number): Promise<boolean> {
    return this.#tx(() => this.#db.prepare('DELETE FROM robots WHERE id = ?').run(id).changes > 0);
  }

  // ---- webhooks ----

  async createPolicy(p: Omit<WebhookPolicy, 'id' | 'createdAt' | 'updatedAt'>): Promise<WebhookPolicy> {
    const now = Date.now();
    try {
      const info = await this.#tx(() =>
        this.#db
          .prepare(`INSERT INTO webhook_policies (project_id, name, description, enabled, event_types, targets,
        creator, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`)
          .run(
            p.projectId,
            p.name,
            p.description,
            p.enabled ? 1 : 0,
            JSON.stringify(p.eventTypes),
            JSON.stringify(p.targets),
            p.creator,
            now,
            now,
          ),
      );
      return policyOfRow(this.#db.prepare('SELECT * FROM webhook_policies WHERE id = ?').get(num(info.lastInsertRowid)) as Row);
    } catch (err) {
      throw sqlError(err, `webhook policy ${p.name}`);
    }
  }

  async getPolicy(id: number): Promise<WebhookPolicy | undefined> {
    const r = this.#db.prepare('SELECT * FROM webhook_policies WHERE id = ?').get(id) as Row | undefined;
    return r ? policyOfRow(r) : undefined;
  }

  async listPolicies(projectId: number): Promise<WebhookPolicy[]> {
    return (this.#db.prepare('SELECT * FROM webhook_policies WHERE project_id = ? ORDER BY id').all(projectId) as Row[]).map(policyOfRow);
  }

  async updatePolicy(id: number, p: Pick<WebhookPolicy, 'name' | 'description' | 'enabled' | 'eventTypes' | 'targets'>): Promise<void> {
    try {
      await this.#tx(() =>
        this.#db
          .prepare(`UPDATE webhook_policies SET name = ?, description = ?, enabled = ?, event_types = ?, targets = ?,
        updated_at = ? WHERE id = ?`)
          .run(p.name, p.description, p.enabled ? 1 : 0, JSON.stringify(p.eventTypes), JSON.stringify(p.targets), Date.now(), id),
      );
    } catch (err) {
      throw sqlError(err, `webhook policy ${p.name}`);
    }
  }

  async deletePolicy(id: number): Promise<boolean> {
    return this.#tx(() => this.#db.prepare('DELETE FROM webhook_policies WHERE id = ?').run(id).changes > 0);
  }

  /** Claims up to `limit` due deliveries (status → Running). Running rows left by a crash are due again. */
  async claimDue(now: number, limit: number, staleBefore: number): Promise<Delivery[]> {
    return this.#tx(() => {
      const rows = this.#db
        .prepare(`SELECT * FROM webhook_outbox WHERE (status = 'Pending' AND next_at <= ?)
        OR (status = 'Running' AND updated_at < ?) ORDER BY next_at, id LIMIT ?`)
        .all(now, staleBefore, limit) as Row[];
      const upd = this.#db.prepare("UPDATE webhook_outbox SET status = 'Running', updated_at = ? WHERE id = ?");
      for (const r of rows) upd.run(now, r.id);
      return rows.map((r) => ({ ...deliveryOfRow(r), status: 'Running' as const }));
    });
  }

  /** Records one attempt and the delivery's next state. */
  async recordAttempt(id: number, attempt: Omit<DeliveryAttempt, 'id' | 'deliveryId'>, next: DeliveryNext): Promise<void> {
    await this.#tx(() => {
      this.#db
        .prepare(`INSERT INTO webhook_attempts (outbox_id, attempt, at, status_code, error, duration_ms)
        VALUES (?, ?, ?, ?, ?, ?)`)
        .run(id, attempt.attempt, attempt.at, attempt.statusCode, attempt.error, attempt.durationMs);
      this.#db
        .prepare('UPDATE webhook_outbox SET status = ?, attempts = ?, next_at = ?, last_error = ?, updated_at = ? WHERE id = ?')
        .run(next.status, attempt.attempt, next.nextAt, next.error, Date.now(), id);
    });
  }

  async listDeliveries(policyId: number): Promise<Delivery[]> {
    const rows = this.#db.prepare('SELECT * FROM webhook_outbox WHERE policy_id = ? ORDER BY id DESC').all(policyId) as Row[];
    return rows.map(deliveryOfRow);
  }

  async getDelivery(id: number): Promise<Delivery | undefined> {
    const r = this.#db.prepare('SELECT * FROM webhook_outbox WHERE id = ?').get(id) as Row | undefined;
    return r ? deliveryOfRow(r) : undefined;
  }

  async listAttempts(deliveryId: number): Promise<DeliveryAttempt[]> {
    return (this.#db.prepare('SELECT * FROM webhook_attempts WHERE outbox_id = ? ORDER BY id').all(deliveryId) as Row[]).map((r) => ({
      id: num(r.id),
      deliveryId: num(r.outbox_id),
      attempt: num(r.attempt),
      at: num(r.at),
      statusCode: num(r.status_code),
      error: r.error as string,
      durationMs: num(r.duration_ms),
    }));
  }

  /** The earliest next_at of pending deliveries (for scheduling the dispatcher). */
  async nextDue(): Promise<number | undefined> {
    const r = this.#db.prepare("SELECT MIN(next_at) AS t FROM webhook_outbox WHERE status = 'Pending'").get() as Row;
    return r.t === null ? undefined : num(r.t);
  }

  // ---- garbage collection ----

  #collectable(digest: string, cutoff: number): boolean {
    if (this.#s.blobReferenced!.get(digest)) return false;
    const r = this.#s.blobTouched!.get(digest) as Row | undefined;
    return !(r && num(r.touched_at) >= cutoff);
  }

  async isCollectable(digest: string, cutoff: number): Promise<boolean> {
    return this.#collectable(digest, cutoff);
  }

  async collectBlob(digest: string, cutoff: number, remove: () => Promise<void>): Promise<boolean> {
    let kept = false;
    await this.#txAround(
      () => {
        kept = !this.#collectable(digest, cutoff);
      },
      async () => {
        if (!kept) await remove();
      },
      () => {
        if (kept) return;
        const now = Date.now();
        for (const r of this.#s.linksOf!.all(digest) as Row[]) this.#dropRef(projectOf(r.repo as string), digest, now);
        this.#s.linksDelete!.run(digest);
        this.#s.blobDelete!.run(digest);
      },
    );
    return !kept;
  }

  async blobsTouchedBefore(cutoff: number): Promise<string[]> {
    return (this.#s.blobsTouchedBefore!.all(cutoff) as Row[]).map((r) => r.digest as string);
  }

  async untaggedManifests(cutoff: number): Promise<Array<{ repo: string; digest: string }>> {
    return (
      this.#db
        .prepare(`SELECT m.repo, m.digest FROM manifests m WHERE m.created_at < ?
          AND NOT EXISTS (SELECT 1 FROM tags t WHERE t.repo = m.repo AND t.digest = m.digest)
          AND NOT EXISTS (SELECT 1 FROM manifest_refs r WHERE r.repo = m.repo AND r.digest = m.digest AND r.kind = 'manifest')
          AND NOT (m.subject IS NOT NULL AND EXISTS (SELECT 1 FROM manifests s WHERE s.repo = m.repo AND s.digest = m.subject))
          ORDER BY m.repo, m.digest`)
        .all(cutoff) as Row[]
    ).map((r) => ({ repo: r.repo as string, digest: r.digest as string }));
  }

  // ---- quotas ----

  async listQuotas(projectId?: number): Promise<Quota[]> {
    const rows =
      projectId === undefined
        ? this.#db.prepare(`${QUOTA_SELECT} ORDER BY q.id`).all()
        : this.#db.prepare(`${QUOTA_SELECT} WHERE p.id = ? ORDER BY q.id`).all(projectId);
    return (rows as Row[]).map(quotaOfRow);
  }

  async getQuota(id: number): Promise<Quota | undefined> {
    const r = this.#db.prepare(`${QUOTA_SELECT} WHERE q.id = ?`).get(id) as Row | undefined;
    return r ? quotaOfRow(r) : undefined;
  }

  async setQuotaLimit(id: number, hard: number): Promise<boolean> {
    return this.#tx(
      () => this.#db.prepare('UPDATE quotas SET hard = ?, updated_at = ? WHERE id = ?').run(hard, Date.now(), id).changes > 0,
    );
  }

  // ---- audit log ----

  async recordAudit(entries: NewAuditEntry[]): Promise<void> {
    if (entries.length) await this.#tx(() => this.#audit(entries));
  }

  async listAudit(q: AuditQuery): Promise<{ total: number; items: AuditEntry[] }> {
    const where: string[] = [];
    const args: Array<string | number> = [];
    if (q.projectId !== undefined) {
      where.push('project_id = ?');
      args.push(q.projectId);
    }
    if (q.operation?.length) {
      where.push(`operation IN (${q.operation.map(() => '?').join(', ')})`);
      args.push(...q.operation);
    }
    if (q.resourceType?.length) {
      where.push(`resource_type IN (${q.resourceType.map(() => '?').join(', ')})`);
      args.push(...q.resourceType);
    }
    if (q.username !== undefined) {
      where.push('username = ?');
      args.push(q.username);
    }
    if (q.resource !== undefined) {
      where.push("resource LIKE ? ESCAPE '\\'");
      args.push(`%${q.resource.replace(/[\\%_]/g, (c) => `\\${c}`)}%`);
    }
    if (q.from !== undefined) {
      where.push('op_time >= ?');
      args.push(q.from);
    }
    if (q.to !== undefined) {
      where.push('op_time <= ?');
      args.push(q.to);
    }
    const cond = where.length ? `WHERE ${where.join(' AND ')}` : '';
    const total = num((this.#db.prepare(`SELECT COUNT(*) AS n FROM audit_log ${cond}`).get(...args) as Row).n);
    const order = q.ascending ? 'ASC' : 'DESC';
    const items = (
      this.#db
        .prepare(`SELECT * FROM audit_log ${cond} ORDER BY op_time ${order}, id ${order} LIMIT ? OFFSET ?`)
        .all(...args, q.limit, q.offset) as Row[]
    ).map(auditOfRow);
    return { total, items };
  }

  async purgeAudit(before: number): Promise<number> {
    return this.#tx(() => this.#db.prepare('DELETE FROM audit_log WHERE op_time < ?').run(before).changes);
  }

  // ---- gc runs and schedule ----

  #gcRun(id: number): GcRun | undefined {
    const r = this.#db.prepare('SELECT * FROM gc_runs WHERE id = ?').get(id) as Row | undefined;
    return r ? gcRunOfRow(r) : undefined;
  }

  #insertGcRun(trigger: GcRun['trigger'], parameters: string, now: number): GcRun {
    const info = this.#db
      .prepare("INSERT INTO gc_runs (trigger_kind, parameters, status, created_at, updated_at) VALUES (?, ?, 'Pending', ?, ?)")
      .run(trigger, parameters, now, now);
    return this.#gcRun(num(info.lastInsertRowid))!;
  }

  async createGcRun(trigger: GcRun['trigger'], parameters: string): Promise<GcRun> {
    return this.#tx(() => this.#insertGcRun(trigger, parameters, Date.now()));
  }

  async claimGcRun(owner: string, now: number, staleBefore: number): Promise<GcRun | undefined> {
    return this.#tx(() => {
      this.#db
        .prepare(`UPDATE gc_runs SET status = 'Error', log = log || ?, updated_at = ? WHERE status = 'Running' AND updated_at < ?`)
        .run(`${new Date(now).toISOString()} run lost: its replica stopped updating it\n`, now, staleBefore);
      if (this.#db.prepare("SELECT 1 FROM gc_runs WHERE status = 'Running'").get()) return undefined;
      const next = this.#db.prepare("SELECT id FROM gc_runs WHERE status = 'Pending' ORDER BY id LIMIT 1").get() as Row | undefined;
      if (!next) return undefined;
      this.#db.prepare("UPDATE gc_runs SET status = 'Running', owner = ?, updated_at = ? WHERE id = ?").run(owner, now, next.id);
      return this.#gcRun(num(next.id));
    });
  }

  async updateGcRun(id: number, patch: { status?: GcStatus; log?: string }, now: number): Promise<void> {
    await this.#tx(() =>
      this.#db
        .prepare('UPDATE gc_runs SET status = COALESCE(?, status), log = log || ?, updated_at = ? WHERE id = ?')
        .run(patch.status ?? null, patch.log ?? '', now, id),
    );
  }

  async requestGcStop(id: number): Promise<boolean> {
    return this.#tx(() => {
      const run = this.#gcRun(id);
      if (!run || (run.status !== 'Pending' && run.status !== 'Running')) return false;
      if (run.status === 'Pending') {
        this.#db.prepare("UPDATE gc_runs SET status = 'Stopped', stop_requested = 1, updated_at = ? WHERE id = ?").run(Date.now(), id);
      } else {
        this.#db.prepare('UPDATE gc_runs SET stop_requested = 1 WHERE id = ?').run(id);
      }
      return true;
    });
  }

  async getGcRun(id: number): Promise<GcRun | undefined> {
    return this.#gcRun(id);
  }

  async listGcRuns(offset: number, limit: number): Promise<{ total: number; items: GcRun[] }> {
    const total = num((this.#db.prepare('SELECT COUNT(*) AS n FROM gc_runs').get() as Row).n);
    const items = (this.#db.prepare('SELECT * FROM gc_runs ORDER BY id DESC LIMIT ? OFFSET ?').all(limit, offset) as Row[]).map(gcRunOfRow);
    return { total, items };
  }

  async getGcSchedule(): Promise<GcSchedule | undefined> {
    const r = this.#db.prepare('SELECT * FROM gc_schedule WHERE id = 1').get() as Row | undefined;
    return r ? gcScheduleOfRow(r) : undefined;
  }

  async setGcSchedule(s: Omit<GcSchedule, 'createdAt' | 'updatedAt'> | undefined, now: number): Promise<void> {
    await this.#tx(() => {
      if (!s) {
        this.#db.prepare('DELETE FROM gc_schedule').run();
        return;
      }
      this.#db
        .prepare(`INSERT INTO gc_schedule (id, type, cron, parameters, next_run, created_at, updated_at) VALUES (1, ?, ?, ?, ?, ?, ?)
          ON CONFLICT (id) DO UPDATE SET type = excluded.type, cron = excluded.cron, parameters = excluded.parameters,
          next_run = excluded.next_run, updated_at = excluded.updated_at`)
        .run(s.type, s.cron, s.parameters, s.nextRun, now, now);
    });
  }

  async takeScheduledGc(now: number, next: number): Promise<GcRun | undefined> {
    return this.#tx(() => {
      const s = this.#db.prepare('SELECT * FROM gc_schedule WHERE id = 1 AND next_run <= ?').get(now) as Row | undefined;
      if (!s) return undefined;
      this.#db.prepare('UPDATE gc_schedule SET next_run = ? WHERE id = 1').run(next);
      return this.#insertGcRun('SCHEDULE', s.parameters as string, now);
    });
  }
}
