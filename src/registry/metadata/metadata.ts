/**
 * @module registry/metadata/metadata
 * What the registry records besides blob bytes: which blobs each repository may serve, manifests
 * (stored bytes and the facts the API needs), tags, and the references garbage
 * collection follows. Harbor's objects (projects, users, robots, webhook policies and their durable
 * outbox) live in the same store so a push and its webhook are committed together.
 *
 * `RegistryMetadata` is the whole interface the registry uses; the default implementation is SQLite
 * (`sqlite.ts`), a PostgreSQL one would implement the same interface and pass the same conformance
 * suite (`testsuite.ts`). Methods are async so a networked database fits; the synchronous callbacks
 * (`publish`, `remove`) run inside the store's write lock (see content/content.ts `Critical`). Errors
 * are FerryErrors; the registry maps them to OCI or Harbor errors at its edge. Webhook policy (which
 * deliveries an event makes, which pending ones it supersedes) is decided in webhooks.ts; the store
 * only commits the outbox rows it is handed with the change that caused them.
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

/** Outbox rows committed in the same transaction as the manifest change that caused them. */
export interface OutboxChange {
  /** Deliveries to enqueue. */
  enqueue: NewDelivery[];
  /** Pending deliveries marked `untagged` of these manifests of `repo` stop (status Stopped, `reason`). */
  supersede?: { repo: string; digests: string[]; reason: string };
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
  /** Records a blob as committed and linked into `repo`; `publish` (the file rename) runs inside the lock. */
  commitBlob(repo: string, digest: string, size: number, publish: () => void): Promise<void>;
  /** Links an existing blob into `repo` (cross-repository mount); false when the blob is unknown. */
  linkBlob(repo: string, digest: string, from?: string): Promise<boolean>;
  /** The blob's size when it is linked into `repo`. */
  blobInRepo(repo: string, digest: string): Promise<number | undefined>;
  /** Removes the blob's link from `repo`; false when it was not linked. */
  unlinkBlob(repo: string, digest: string): Promise<boolean>;

  /** Stores a manifest, an optional tag and `outbox`; MissingContentError (nothing stored) when a reference is missing. */
  putManifest(rec: ManifestRecord, tag: string | undefined, refs: ManifestRefs, outbox?: OutboxChange): Promise<void>;
  getManifest(repo: string, digest: string): Promise<ManifestRecord | undefined>;
  resolveTag(repo: string, tag: string): Promise<string | undefined>;
  /** Deletes a manifest with its tags and references; false when absent. */
  deleteManifest(repo: string, digest: string, deliveries?: NewDelivery[]): Promise<boolean>;
  deleteTag(repo: string, tag: string, deliveries?: NewDelivery[]): Promise<boolean>;
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
  /** ALREADY_EXISTS when a project of that name exists. */
  createProject(name: string, isPublic: boolean, owner: string): Promise<Project>;
  /** Creates the project unless it exists; returns it. */
  ensureProject(name: string, isPublic: boolean, owner: string): Promise<Project>;
  updateProject(id: number, isPublic: boolean): Promise<void>;
  /** Deletes a project with its webhook policies. */
  deleteProject(id: number): Promise<void>;

  getUser(username: string): Promise<User | undefined>;
  getUserById(id: number): Promise<User | undefined>;
  /** Creates the user or replaces its password hash and admin flag. */
  upsertUser(username: string, passwordHash: string, sysadmin: boolean): Promise<User>;

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

/** What garbage collection asks of the store (see gc.ts). */
export interface GcMetadata {
  /** True when no manifest references the blob and it was not committed, linked or referenced at or after `cutoff`. */
  isCollectable(digest: string, cutoff: number): Promise<boolean>;
  /**
   * In one write lock: when the blob is collectable (see isCollectable), forgets it — its record and
   * its links into repositories — and runs `remove` (the blob store's unlink). True when it was
   * forgotten, false when it is kept (then `remove` did not run).
   */
  collectBlob(digest: string, cutoff: number, remove: () => void): Promise<boolean>;
  /** Blobs recorded but not touched since `cutoff` (gc looks for those whose file has vanished). */
  blobsTouchedBefore(cutoff: number): Promise<string[]>;
}

/** Everything the registry keeps besides blob bytes. */
export interface RegistryMetadata extends DistributionMetadata, HarborMetadata, WebhookMetadata, GcMetadata {
  close(): Promise<void>;
}
