/**
 * @module registry/metadata/metadata
 * What the registry records besides blob bytes: which blobs each repository may serve, manifests
 * (stored bytes and the facts the API needs), tags, and the references garbage
 * collection follows. Harbor's objects (projects, users, robots, webhook policies and their durable
 * outbox) live in the same store so a push and its webhook are committed together.
 *
 * `RegistryMetadata` is the whole interface the registry uses: SQLite (`sqlite.ts`, one process and
 * the `ferry registry gc` CLI beside it) and PostgreSQL (`postgres.ts`, any number of replicas)
 * implement it and pass the same conformance suite (`testsuite.ts`). The callbacks `publish` and
 * `remove` (the blob store's rename/copy/delete, see content/content.ts `Critical`) run inside the
 * store's lock for that digest — SQLite's write transaction, PostgreSQL's transaction holding the
 * digest's advisory lock — so a blob row and its bytes appear and disappear together. Errors are
 * FerryErrors; the registry maps them to OCI or Harbor errors at its edge. Webhook policy (which
 * deliveries an event makes, which pending ones it supersedes) is decided in webhooks.ts; the store
 * only commits the outbox and audit rows it is handed with the change that caused them. Project
 * storage usage (Harbor's quota) is counted here, inside the transactions that link content into a
 * project, once per digest per project.
 */
import { FerryError } from '../../core/index.js';

/** A stored manifest. */
export interface ManifestRecord {
  repo: string;
  digest: string;
  mediaType: string;
  size: number;
  body: Buffer;
  /** `artifactType`, else (image manifests) `config.mediaType`; used by the referrers API. */
  artifactType?: string | undefined;
  /** Digest of `subject`, when present. */
  subject?: string | undefined;
  annotations?: Record<string, string> | undefined;
  createdAt: number;
}

/** The manifest facts the referrers API lists. */
export type ReferrerRecord = Pick<ManifestRecord, 'digest' | 'mediaType' | 'size' | 'artifactType' | 'annotations'>;

export interface ManifestRefs {
  /** Blobs the manifest needs (config, layers): must be linked in the repository. */
  blobs: string[];
  /** Manifests the index needs: must exist in the repository. */
  manifests: string[];
}

export interface Project {
  id: number;
  name: string;
  public: boolean;
  ownerName: string;
  createdAt: number;
  updatedAt: number;
}

export interface User {
  id: number;
  username: string;
  passwordHash: string;
  sysadmin: boolean;
  createdAt: number;
  updatedAt: number;
}

export interface RobotPermission {
  kind: 'project' | 'system';
  namespace: string;
  access: Array<{ resource: string; action: string; effect?: string }>;
}

export interface Robot {
  id: number;
  /** Full name, e.g. `robot$library+ci`. */
  name: string;
  description: string;
  level: 'system' | 'project';
  secretHash: string;
  permissions: RobotPermission[];
  disabled: boolean;
  /** Unix seconds, -1 = never. */
  expiresAt: number;
  duration: number;
  createdAt: number;
  updatedAt: number;
}

export interface WebhookTarget {
  type: 'http';
  address: string;
  auth_header?: string;
  skip_cert_verify?: boolean;
  payload_format?: string;
}

export interface WebhookPolicy {
  id: number;
  projectId: number;
  name: string;
  description: string;
  enabled: boolean;
  eventTypes: string[];
  targets: WebhookTarget[];
  creator: string;
  createdAt: number;
  updatedAt: number;
}

export type DeliveryStatus = 'Pending' | 'Running' | 'Success' | 'Error' | 'Stopped';

/** One webhook delivery (a Harbor "execution" with one task). */
export interface Delivery {
  id: number;
  policyId: number;
  eventType: string;
  target: WebhookTarget;
  payload: string;
  status: DeliveryStatus;
  attempts: number;
  nextAt: number;
  repo: string;
  digest: string;
  lastError: string;
  createdAt: number;
  updatedAt: number;
}

export interface DeliveryAttempt {
  id: number;
  deliveryId: number;
  attempt: number;
  at: number;
  statusCode: number;
  error: string;
  durationMs: number;
}

/** A delivery to enqueue with a manifest change. */
export interface NewDelivery {
  policyId: number;
  eventType: string;
  target: WebhookTarget;
  payload: string;
  repo: string;
  digest: string;
  /** Not sent before this time (ms); used for the settle delay of untagged pushes. */
  notBefore: number;
  /** Marks an untagged by-digest push, whose event an index push may cancel. */
  untagged: boolean;
}

export interface RepositoryRecord {
  id: number;
  name: string;
  project: string;
  createdAt: number;
  updatedAt: number;
  pullCount: number;
  artifactCount: number;
}

/** Outbox and audit rows committed in the same transaction as the manifest change that caused them. */
export interface OutboxChange {
  /** Deliveries to enqueue. */
  enqueue: NewDelivery[];
  /** Pending deliveries marked `untagged` of these manifests of `repo` stop (status Stopped, `reason`). */
  supersede?: { repo: string; digests: string[]; reason: string };
  /** Audit log entries of the change. */
  audit?: NewAuditEntry[];
}

/** One audit log entry (Harbor's audit log: legacy `AuditLog` and `AuditLogExt` are views of it). */
export interface AuditEntry {
  id: number;
  /** The project the resource belongs to; 0 for system-level entries (robots, users, gc). */
  projectId: number;
  username: string;
  /** `project/repo:tag`, `project/repo@digest`, a robot or user name, a policy name… */
  resource: string;
  /** `artifact`, `repository`, `project`, `robot`, `user`, `webhook_policy`, `quota`, `gc`. */
  resourceType: string;
  /** `create`, `delete`, `pull`, `update`, `login`. */
  operation: string;
  /** A sentence for humans (Harbor's `operation_description`). */
  description: string;
  success: boolean;
  /** ms since the epoch */
  at: number;
}

export type NewAuditEntry = Omit<AuditEntry, 'id'>;

/** A query of the audit log: exact or fuzzy (`~`) matches, a time range, a page. */
export interface AuditQuery {
  projectId?: number;
  operation?: string[];
  resourceType?: string[];
  username?: string;
  /** Substring of the resource. */
  resource?: string;
  from?: number;
  to?: number;
  /** Newest first (default) or oldest first. */
  ascending?: boolean;
  offset: number;
  limit: number;
}

/** A project's storage quota (Harbor's `Quota` with the `storage` resource). */
export interface Quota {
  id: number;
  projectId: number;
  project: string;
  owner: string;
  /** Bytes; -1 = unlimited. */
  hard: number;
  /** Bytes of distinct blobs and manifests linked into the project's repositories. */
  used: number;
  createdAt: number;
  updatedAt: number;
}

/** Harbor's largest storage limit: 1024 TiB. */
export const MAX_STORAGE_LIMIT = 1024 ** 5;

/** Harbor's byte display (`byteCountToDisplaySize`): `512 B`, `1.5 MiB`. */
export function displaySize(n: number): string {
  if (n < 1024) return `${n} B`;
  let div = 1024;
  let exp = 0;
  for (let v = Math.floor(n / 1024); v >= 1024; v = Math.floor(v / 1024)) {
    div *= 1024;
    exp++;
  }
  return `${(n / div).toFixed(1)} ${'KMGTPE'[exp]}iB`;
}

/** A push would take a project over its storage limit (Harbor answers 403 DENIED with this message). */
export class QuotaExceededError extends FerryError {
  readonly project: string;
  readonly hard: number;
  readonly used: number;
  readonly adding: number;
  constructor(project: string, hard: number, used: number, adding: number) {
    super(
      'PERMISSION_DENIED',
      `adding ${displaySize(adding)} of storage resource, which when updated to current usage of ${displaySize(used)} ` +
        `will exceed the configured upper limit of ${displaySize(hard)}.`,
    );
    this.name = 'QuotaExceededError';
    this.project = project;
    this.hard = hard;
    this.used = used;
    this.adding = adding;
  }
}

export type GcStatus = 'Pending' | 'Running' | 'Success' | 'Error' | 'Stopped';

/** One garbage collection run (Harbor's GC execution). */
export interface GcRun {
  id: number;
  /** `MANUAL` or `SCHEDULE` (Harbor's trigger). */
  trigger: 'MANUAL' | 'SCHEDULE';
  /** JSON of the run's parameters (`dry_run`, `delete_untagged`, `workers`). */
  parameters: string;
  status: GcStatus;
  /** Set by a stop request; the run stops at its next check. */
  stopRequested: boolean;
  log: string;
  createdAt: number;
  updatedAt: number;
}

/** The GC schedule (Harbor's `Schedule`: a cron type, a 6-field cron and the run parameters). */
export interface GcSchedule {
  type: string;
  cron: string;
  parameters: string;
  nextRun: number;
  createdAt: number;
  updatedAt: number;
}

/** A manifest names content its repository does not hold (the registry's MANIFEST_BLOB_UNKNOWN). */
export class MissingContentError extends FerryError {
  /** The digests that are missing. */
  readonly missing: string[];
  constructor(missing: string[]) {
    super('FAILED_PRECONDITION', `manifest references unknown content: ${missing.join(', ')}`);
    this.name = 'MissingContentError';
    this.missing = missing;
  }
}

/** The Distribution core of the metadata store. */
export interface DistributionMetadata {
  /**
   * Records a blob as committed and linked into `repo`; `publish` (the blob store's rename or copy)
   * runs inside the digest's lock, before the rows are written. Counts the blob into its project's
   * usage unless the project holds it already: QuotaExceededError (nothing recorded; `publish` not
   * run when a check before it fails already) when that would exceed the project's limit.
   */
  commitBlob(repo: string, digest: string, size: number, publish: () => Promise<void>): Promise<void>;
  /** Links an existing blob into `repo` (cross-repository mount); false when the blob is unknown. QuotaExceededError as commitBlob. */
  linkBlob(repo: string, digest: string, from?: string): Promise<boolean>;
  /** The blob's size when it is linked into `repo`. */
  blobInRepo(repo: string, digest: string): Promise<number | undefined>;
  /** Removes the blob's link from `repo`; false when it was not linked. */
  unlinkBlob(repo: string, digest: string): Promise<boolean>;

  /**
   * Stores a manifest, an optional tag and `outbox`; MissingContentError (nothing stored) when a
   * reference is missing; QuotaExceededError when the manifest is new to its project and its bytes
   * would exceed the project's limit.
   */
  putManifest(rec: ManifestRecord, tag: string | undefined, refs: ManifestRefs, outbox?: OutboxChange): Promise<void>;
  getManifest(repo: string, digest: string): Promise<ManifestRecord | undefined>;
  resolveTag(repo: string, tag: string): Promise<string | undefined>;
  /** Deletes a manifest with its tags and references (and `outbox` with it); false when absent. */
  deleteManifest(repo: string, digest: string, outbox?: OutboxChange): Promise<boolean>;
  deleteTag(repo: string, tag: string, outbox?: OutboxChange): Promise<boolean>;
  /** Tags of a repository in lexical order after `last`, at most `n`. */
  listTags(repo: string, opts: { n?: number; last?: string }): Promise<string[]>;
  tagsOf(repo: string, digest: string): Promise<string[]>;
  repositoryExists(repo: string): Promise<boolean>;
  listRepositories(opts: { n?: number; last?: string; project?: string }): Promise<string[]>;
  referrers(repo: string, subject: string, artifactType?: string): Promise<ReferrerRecord[]>;
}

/** The fields of a robot account an update may change. */
export type RobotPatch = { disabled?: boolean; secretHash?: string; description?: string; permissions?: RobotPermission[] };
/** A delivery's state after an attempt. */
export type DeliveryNext = { status: DeliveryStatus; nextAt: number; error: string };

/** Harbor's objects: projects, users, robot accounts, repository records. */
export interface HarborMetadata {
  getProject(nameOrId: string | number): Promise<Project | undefined>;
  listProjects(): Promise<Project[]>;
  /** ALREADY_EXISTS when a project of that name exists. Creates its quota (`storageLimit` bytes, -1 = unlimited). */
  createProject(name: string, isPublic: boolean, owner: string, storageLimit?: number): Promise<Project>;
  /** Creates the project unless it exists; returns it. */
  ensureProject(name: string, isPublic: boolean, owner: string): Promise<Project>;
  updateProject(id: number, isPublic: boolean): Promise<void>;
  /** Deletes a project with its webhook policies, quota and remaining blob links. */
  deleteProject(id: number): Promise<void>;

  getUser(username: string): Promise<User | undefined>;
  getUserById(id: number): Promise<User | undefined>;
  /** Creates the user or replaces its password hash and admin flag. */
  upsertUser(username: string, passwordHash: string, sysadmin: boolean): Promise<User>;

  /**
   * Calls `onChange` when another replica changes users or robots (PostgreSQL: LISTEN/NOTIFY), so
   * cached credential checks are dropped at once; returns the unsubscribe function. A store with
   * one process (SQLite) never calls it: the API drops its own cache.
   */
  watchAuth(onChange: () => void): () => void;
  /** A setting shared by every replica (the token signing key); `init` is stored when none is, and the stored value returned. */
  sharedSetting(key: string, init: () => string): Promise<string>;

  /** ALREADY_EXISTS when a robot of that name exists. */
  createRobot(r: Omit<Robot, 'id' | 'createdAt' | 'updatedAt'>): Promise<Robot>;
  getRobot(idOrName: number | string): Promise<Robot | undefined>;
  listRobots(): Promise<Robot[]>;
  updateRobot(id: number, patch: RobotPatch): Promise<void>;
  deleteRobot(id: number): Promise<boolean>;

  /** Records a pull (Harbor's pull_count). */
  countPull(repo: string): Promise<void>;
  getRepository(name: string): Promise<RepositoryRecord | undefined>;
  /** The project's repositories that hold manifests, by name. */
  listRepositoryRecords(project: string): Promise<RepositoryRecord[]>;
  /** A repository's manifests, newest first. */
  listManifests(repo: string): Promise<ManifestRecord[]>;
}

/** Webhook policies and the durable delivery outbox. */
export interface WebhookMetadata {
  /** ALREADY_EXISTS when the project has a policy of that name. */
  createPolicy(p: Omit<WebhookPolicy, 'id' | 'createdAt' | 'updatedAt'>): Promise<WebhookPolicy>;
  getPolicy(id: number): Promise<WebhookPolicy | undefined>;
  listPolicies(projectId: number): Promise<WebhookPolicy[]>;
  updatePolicy(id: number, p: Pick<WebhookPolicy, 'name' | 'description' | 'enabled' | 'eventTypes' | 'targets'>): Promise<void>;
  deletePolicy(id: number): Promise<boolean>;

  /** Enqueues deliveries on their own (e.g. PULL_ARTIFACT). */
  enqueueDeliveries(list: NewDelivery[]): Promise<void>;
  /** Claims up to `limit` due deliveries (status → Running); Running ones not updated since `staleBefore` are due again. */
  claimDue(now: number, limit: number, staleBefore: number): Promise<Delivery[]>;
  /** Records one attempt and the delivery's next state. */
  recordAttempt(id: number, attempt: Omit<DeliveryAttempt, 'id' | 'deliveryId'>, next: DeliveryNext): Promise<void>;
  /** A policy's deliveries, newest first. */
  listDeliveries(policyId: number): Promise<Delivery[]>;
  getDelivery(id: number): Promise<Delivery | undefined>;
  listAttempts(deliveryId: number): Promise<DeliveryAttempt[]>;
  /** The earliest next_at of pending deliveries (for scheduling the dispatcher). */
  nextDue(): Promise<number | undefined>;
}

/** Project quotas (Harbor's `/quotas`). */
export interface QuotaMetadata {
  /** All quotas, or the one of a project, by project name. */
  listQuotas(projectId?: number): Promise<Quota[]>;
  getQuota(id: number): Promise<Quota | undefined>;
  /** Sets a quota's limit (bytes, -1 = unlimited); false when there is no such quota. */
  setQuotaLimit(id: number, hard: number): Promise<boolean>;
}

/** The audit log. */
export interface AuditMetadata {
  recordAudit(entries: NewAuditEntry[]): Promise<void>;
  /** Entries matching `q` (a page of them) and how many match. */
  listAudit(q: AuditQuery): Promise<{ total: number; items: AuditEntry[] }>;
  /** Removes entries older than `before` (ms); returns how many. */
  purgeAudit(before: number): Promise<number>;
}

/** Garbage collection runs and their schedule (Harbor's `/system/gc`), shared by every replica. */
export interface GcJobMetadata {
  /** A new Pending run. */
  createGcRun(trigger: GcRun['trigger'], parameters: string): Promise<GcRun>;
  /**
   * Takes the oldest Pending run (status → Running, owned by `owner`) unless a run is Running and was
   * updated at or after `staleBefore`; a Running run updated before that (its replica died) becomes
   * Error first.
   */
  claimGcRun(owner: string, now: number, staleBefore: number): Promise<GcRun | undefined>;
  /** Updates a run: status, log lines appended; refreshes its heartbeat (updatedAt). */
  updateGcRun(id: number, patch: { status?: GcStatus; log?: string }, now: number): Promise<void>;
  /** Asks a Pending or Running run to stop; false when there is no such run or it is finished. */
  requestGcStop(id: number): Promise<boolean>;
  getGcRun(id: number): Promise<GcRun | undefined>;
  /** Runs, newest first, a page of them, and how many there are. */
  listGcRuns(offset: number, limit: number): Promise<{ total: number; items: GcRun[] }>;
  getGcSchedule(): Promise<GcSchedule | undefined>;
  /** Sets (or with undefined removes) the schedule. */
  setGcSchedule(s: Omit<GcSchedule, 'createdAt' | 'updatedAt'> | undefined, now: number): Promise<void>;
  /**
   * When the schedule is due at `now` (nextRun <= now), moves it to `next` and creates its run, in
   * one transaction, so that of several replicas exactly one starts it; the run or undefined.
   */
  takeScheduledGc(now: number, next: number): Promise<GcRun | undefined>;
  /** Untagged manifests created before `cutoff` that no index lists and that are no referrer of a present subject. */
  untaggedManifests(cutoff: number): Promise<Array<{ repo: string; digest: string }>>;
}

/** What garbage collection asks of the store (see gc.ts). */
export interface GcMetadata {
  /** True when no manifest references the blob and it was not committed, linked or referenced at or after `cutoff`. */
  isCollectable(digest: string, cutoff: number): Promise<boolean>;
  /**
   * Under the digest's lock: when the blob is collectable (see isCollectable), forgets it — its
   * record, its links into repositories and its share of project usage — and runs `remove` (the blob
   * store's unlink or delete). True when it was forgotten, false when it is kept (then `remove` did
   * not run). When `remove` throws nothing is forgotten.
   */
  collectBlob(digest: string, cutoff: number, remove: () => Promise<void>): Promise<boolean>;
  /** Blobs recorded but not touched since `cutoff` (gc looks for those whose file has vanished). */
  blobsTouchedBefore(cutoff: number): Promise<string[]>;
}

/** Everything the registry keeps besides blob bytes. */
export interface RegistryMetadata
  extends DistributionMetadata,
    HarborMetadata,
    WebhookMetadata,
    GcMetadata,
    QuotaMetadata,
    AuditMetadata,
    GcJobMetadata {
  close(): Promise<void>;
}
