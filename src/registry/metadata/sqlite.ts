/**
 * @module registry/metadata/sqlite
 * (Over 600 lines: one backend implements the whole RegistryMetadata interface, one prepared statement per query.)
 * The metadata store in one SQLite file (WAL, synchronous=NORMAL, busy timeout so `ferry registry gc`
 * in another process can share it). In WAL mode NORMAL loses nothing when the process dies
 * (kill -9); a power failure may drop the last acknowledged transactions but never leaves the
 * database inconsistent, and blob files are fsynced before their rows are written, so a row never
 * points at a missing blob. FULL would put an fsync on the event loop for every push. Statements are prepared once. Every multi-row change runs in
 * one IMMEDIATE transaction, so a crash leaves either all of a manifest push (manifest, tag,
 * references, webhook outbox rows) or none of it.
 */
import Database from 'better-sqlite3';
import { FerryError } from '../../core/index.js';
import {
  MissingContentError,
  type Delivery,
  type DeliveryAttempt,
  type DeliveryStatus,
  type ManifestRecord,
  type ManifestRefs,
  type NewDelivery,
  type OutboxChange,
  type Project,
  type ReferrerRecord,
  type RegistryMetadata,
  type RepositoryRecord,
  type Robot,
  type RobotPatch,
  type RobotPermission,
  type DeliveryNext,
  type User,
  type WebhookPolicy,
  type WebhookTarget,
} from './metadata.js';

type Row = Record<string, unknown>;

const SCHEMA = `
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
CREATE INDEX IF NOT EXISTS webhook_attempts_outbox ON webhook_attempts (outbox_id);
`;

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

function num(v: unknown): number {
  return typeof v === 'bigint' ? Number(v) : (v as number);
}

function manifestOf(r: Row): ManifestRecord {
  return {
    repo: r.repo as string,
    digest: r.digest as string,
    mediaType: r.media_type as string,
    size: num(r.size),
    body: r.body as Buffer,
    artifactType: (r.artifact_type as string | null) ?? undefined,
    subject: (r.subject as string | null) ?? undefined,
    annotations: r.annotations ? (JSON.parse(r.annotations as string) as Record<string, string>) : undefined,
    createdAt: num(r.created_at),
  };
}

function projectOfRow(r: Row): Project {
  return {
    id: num(r.id),
    name: r.name as string,
    public: num(r.public) === 1,
    ownerName: r.owner as string,
    createdAt: num(r.created_at),
    updatedAt: num(r.updated_at),
  };
}

function userOfRow(r: Row): User {
  return {
    id: num(r.id),
    username: r.username as string,
    passwordHash: r.password_hash as string,
    sysadmin: num(r.sysadmin) === 1,
    createdAt: num(r.created_at),
    updatedAt: num(r.updated_at),
  };
}

function robotOfRow(r: Row): Robot {
  return {
    id: num(r.id),
    name: r.name as string,
    description: r.description as string,
    level: r.level as 'system' | 'project',
    secretHash: r.secret_hash as string,
    permissions: JSON.parse(r.permissions as string) as RobotPermission[],
    disabled: num(r.disabled) === 1,
    expiresAt: num(r.expires_at),
    duration: num(r.duration),
    createdAt: num(r.created_at),
    updatedAt: num(r.updated_at),
  };
}

function policyOfRow(r: Row): WebhookPolicy {
  return {
    id: num(r.id),
    projectId: num(r.project_id),
    name: r.name as string,
    description: r.description as string,
    enabled: num(r.enabled) === 1,
    eventTypes: JSON.parse(r.event_types as string) as string[],
    targets: JSON.parse(r.targets as string) as WebhookTarget[],
    creator: r.creator as string,
    createdAt: num(r.created_at),
    updatedAt: num(r.updated_at),
  };
}

function deliveryOfRow(r: Row): Delivery {
  return {
    id: num(r.id),
    policyId: num(r.policy_id),
    eventType: r.event_type as string,
    target: JSON.parse(r.target as string) as WebhookTarget,
    payload: r.payload as string,
    status: r.status as DeliveryStatus,
    attempts: num(r.attempts),
    nextAt: num(r.next_at),
    repo: r.repo as string,
    digest: r.digest as string,
    lastError: r.last_error as string,
    createdAt: num(r.created_at),
    updatedAt: num(r.updated_at),
  };
}

/** SQLite-backed registry metadata (see module doc). */
export class SqliteMetadata implements RegistryMetadata {
  readonly #db: Database.Database;
  readonly #s: Record<string, Database.Statement>;

  constructor(path: string) {
    this.#db = new Database(path);
    this.#db.pragma('journal_mode = WAL');
    this.#db.pragma('synchronous = NORMAL');
    this.#db.pragma(`busy_timeout = ${BUSY_TIMEOUT_MS}`);
    this.#db.pragma('foreign_keys = OFF');
    this.#db.exec(SCHEMA);
    const p = (sql: string): Database.Statement => this.#db.prepare(sql);
    this.#s = {
      blobUpsert: p(`INSERT INTO blobs (digest, size, touched_at) VALUES (?, ?, ?)
        ON CONFLICT (digest) DO UPDATE SET touched_at = excluded.touched_at, size = excluded.size`),
      blobTouch: p('UPDATE blobs SET touched_at = ? WHERE digest = ?'),
      blobGet: p('SELECT size FROM blobs WHERE digest = ?'),
      linkInsert: p('INSERT OR IGNORE INTO repo_blobs (repo, digest, created_at) VALUES (?, ?, ?)'),
      linkGet: p('SELECT b.size AS size FROM repo_blobs r JOIN blobs b ON b.digest = r.digest WHERE r.repo = ? AND r.digest = ?'),
      linkDelete: p('DELETE FROM repo_blobs WHERE repo = ? AND digest = ?'),
      repoUpsert: p(`INSERT INTO repositories (name, project, created_at, updated_at) VALUES (?, ?, ?, ?)
        ON CONFLICT (name) DO UPDATE SET updated_at = excluded.updated_at`),
      repoGet: p('SELECT * FROM repositories WHERE name = ?'),
      manifestGet: p('SELECT * FROM manifests WHERE repo = ? AND digest = ?'),
      manifestExists: p('SELECT 1 FROM manifests WHERE repo = ? AND digest = ?'),
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
      linksDelete: p('DELETE FROM repo_blobs WHERE digest = ?'),
      blobsTouchedBefore: p('SELECT digest FROM blobs WHERE touched_at < ?'),
    };
  }

  async close(): Promise<void> {
    this.#db.close();
  }

  /** Runs `fn` in an IMMEDIATE transaction (holds the write lock, also against other processes). */
  #tx<T>(fn: () => T): T {
    return this.#db.transaction(fn).immediate();
  }

  // ---- distribution ----

  async commitBlob(repo: string, digest: string, size: number, publish: () => void): Promise<void> {
    const now = Date.now();
    this.#tx(() => {
      publish();
      this.#s.blobUpsert!.run(digest, size, now);
      this.#s.linkInsert!.run(repo, digest, now);
    });
  }

  async linkBlob(repo: string, digest: string): Promise<boolean> {
    const now = Date.now();
    return this.#tx(() => {
      if (!this.#s.blobGet!.get(digest)) return false;
      this.#s.blobTouch!.run(now, digest);
      this.#s.linkInsert!.run(repo, digest, now);
      return true;
    });
  }

  async blobInRepo(repo: string, digest: string): Promise<number | undefined> {
    const r = this.#s.linkGet!.get(repo, digest) as Row | undefined;
    return r ? num(r.size) : undefined;
  }

  async unlinkBlob(repo: string, digest: string): Promise<boolean> {
    return this.#s.linkDelete!.run(repo, digest).changes > 0;
  }

  async putManifest(rec: ManifestRecord, tag: string | undefined, refs: ManifestRefs, outbox: OutboxChange = NO_OUTBOX): Promise<void> {
    const now = Date.now();
    this.#tx(() => {
      const missing: string[] = [];
      for (const d of refs.blobs) if (!this.#s.linkGet!.get(rec.repo, d)) missing.push(d);
      for (const d of refs.manifests) if (!this.#s.manifestExists!.get(rec.repo, d)) missing.push(d);
      if (missing.length) throw new MissingContentError(missing);
      const slash = rec.repo.indexOf('/');
      // a new repository is as old as its first manifest (webhook payloads computed before this say so too)
      this.#s.repoUpsert!.run(rec.repo, slash < 0 ? 'library' : rec.repo.slice(0, slash), rec.createdAt, now);
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

  async enqueueDeliveries(list: NewDelivery[]): Promise<void> {
    if (list.length) this.#tx(() => this.#enqueue(list, Date.now()));
  }

  async getManifest(repo: string, digest: string): Promise<ManifestRecord | undefined> {
    const r = this.#s.manifestGet!.get(repo, digest) as Row | undefined;
    return r ? manifestOf(r) : undefined;
  }

  async resolveTag(repo: string, tag: string): Promise<string | undefined> {
    return (this.#s.tagGet!.get(repo, tag) as Row | undefined)?.digest as string | undefined;
  }

  async deleteManifest(repo: string, digest: string, deliveries: NewDelivery[] = []): Promise<boolean> {
    return this.#tx(() => {
      if (this.#s.manifestDelete!.run(repo, digest).changes === 0) return false;
      this.#s.tagsDeleteOf!.run(repo, digest);
      this.#s.refsDelete!.run(repo, digest);
      this.#enqueue(deliveries, Date.now());
      return true;
    });
  }

  async deleteTag(repo: string, tag: string, deliveries: NewDelivery[] = []): Promise<boolean> {
    return this.#tx(() => {
      if (this.#s.tagDelete!.run(repo, tag).changes === 0) return false;
      this.#enqueue(deliveries, Date.now());
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
    this.#db.prepare('UPDATE repositories SET pull_count = pull_count + 1 WHERE name = ?').run(repo);
  }

  async getRepository(name: string): Promise<RepositoryRecord | undefined> {
    const r = this.#db
      .prepare(`SELECT r.*, (SELECT COUNT(*) FROM manifests m WHERE m.repo = r.name) AS artifact_count
      FROM repositories r WHERE r.name = ?`)
      .get(name) as Row | undefined;
    return r
      ? {
          id: num(r.id),
          name: r.name as string,
          project: r.project as string,
          createdAt: num(r.created_at),
          updatedAt: num(r.updated_at),
          pullCount: num(r.pull_count),
          artifactCount: num(r.artifact_count),
        }
      : undefined;
  }

  async listRepositoryRecords(project: string): Promise<RepositoryRecord[]> {
    return (
      this.#db
        .prepare(`SELECT r.*, (SELECT COUNT(*) FROM manifests m WHERE m.repo = r.name) AS artifact_count
      FROM repositories r WHERE r.project = ? AND EXISTS (SELECT 1 FROM manifests m WHERE m.repo = r.name) ORDER BY r.name`)
        .all(project) as Row[]
    ).map((r) => ({
      id: num(r.id),
      name: r.name as string,
      project: r.project as string,
      createdAt: num(r.created_at),
      updatedAt: num(r.updated_at),
      pullCount: num(r.pull_count),
      artifactCount: num(r.artifact_count),
    }));
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

  async createProject(name: string, isPublic: boolean, owner: string): Promise<Project> {
    const now = Date.now();
    try {
      const info = this.#db
        .prepare('INSERT INTO projects (name, public, owner, created_at, updated_at) VALUES (?, ?, ?, ?, ?)')
        .run(name, isPublic ? 1 : 0, owner, now, now);
      return this.#project(num(info.lastInsertRowid))!;
    } catch (err) {
      throw sqlError(err, `project ${name}`);
    }
  }

  /** Creates the project unless it exists; returns it. */
  async ensureProject(name: string, isPublic: boolean, owner: string): Promise<Project> {
    const cur = this.#project(name);
    if (cur) return cur;
    this.#db
      .prepare('INSERT OR IGNORE INTO projects (name, public, owner, created_at, updated_at) VALUES (?, ?, ?, ?, ?)')
      .run(name, isPublic ? 1 : 0, owner, Date.now(), Date.now());
    return this.#project(name)!;
  }

  async updateProject(id: number, isPublic: boolean): Promise<void> {
    this.#db.prepare('UPDATE projects SET public = ?, updated_at = ? WHERE id = ?').run(isPublic ? 1 : 0, Date.now(), id);
  }

  async deleteProject(id: number): Promise<void> {
    this.#tx(() => {
      this.#db.prepare('DELETE FROM webhook_policies WHERE project_id = ?').run(id);
      this.#db.prepare('DELETE FROM projects WHERE id = ?').run(id);
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
    this.#db
      .prepare(`INSERT INTO users (username, password_hash, sysadmin, created_at, updated_at) VALUES (?, ?, ?, ?, ?)
      ON CONFLICT (username) DO UPDATE SET password_hash = excluded.password_hash, sysadmin = excluded.sysadmin,
      updated_at = excluded.updated_at`)
      .run(username, passwordHash, sysadmin ? 1 : 0, now, now);
    return this.#user(username)!;
  }

  // ---- robots ----

  async createRobot(r: Omit<Robot, 'id' | 'createdAt' | 'updatedAt'>): Promise<Robot> {
    const now = Date.now();
    try {
      const info = this.#db
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
  }

  async deleteRobot(id: number): Promise<boolean> {
    return this.#db.prepare('DELETE FROM robots WHERE id = ?').run(id).changes > 0;
  }

  // ---- webhooks ----

  async createPolicy(p: Omit<WebhookPolicy, 'id' | 'createdAt' | 'updatedAt'>): Promise<WebhookPolicy> {
    const now = Date.now();
    try {
      const info = this.#db
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
      this.#db
        .prepare(`UPDATE webhook_policies SET name = ?, description = ?, enabled = ?, event_types = ?, targets = ?,
        updated_at = ? WHERE id = ?`)
        .run(p.name, p.description, p.enabled ? 1 : 0, JSON.stringify(p.eventTypes), JSON.stringify(p.targets), Date.now(), id);
    } catch (err) {
      throw sqlError(err, `webhook policy ${p.name}`);
    }
  }

  async deletePolicy(id: number): Promise<boolean> {
    return this.#db.prepare('DELETE FROM webhook_policies WHERE id = ?').run(id).changes > 0;
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
    this.#tx(() => {
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
    return this.#tx(() => this.#collectable(digest, cutoff));
  }

  async collectBlob(digest: string, cutoff: number, remove: () => void): Promise<boolean> {
    return this.#tx(() => {
      if (!this.#collectable(digest, cutoff)) return false;
      this.#s.linksDelete!.run(digest);
      this.#s.blobDelete!.run(digest);
      remove();
      return true;
    });
  }

  async blobsTouchedBefore(cutoff: number): Promise<string[]> {
    return (this.#s.blobsTouchedBefore!.all(cutoff) as Row[]).map((r) => r.digest as string);
  }
}
