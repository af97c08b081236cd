/**
 * @module registry/metadata/metadata
 * What the registry records besides blob bytes: which blobs each repository may serve, manifests
 * (stored bytes and the facts the API needs), tags, and the references garbage
 * collection follows. Harbor's objects (projects, users, robots, webhook policies and their durable
 * outbox) live in the same store so a push and its webhook are committed together.
 *
 * The default implementation is SQLite (`sqlite.ts`); a PostgreSQL one would implement the same
 * interface. Methods are async so a networked database fits; `critical` callbacks run inside the
 * store's write lock (see content/content.ts `Critical`).
 */

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

  /** Stores a manifest and optional tag; throws MANIFEST_BLOB_UNKNOWN listing what is missing. */
  putManifest(rec: ManifestRecord, tag: string | undefined, refs: ManifestRefs, deliveries: (rec: ManifestRecord) => NewDelivery[]): Promise<void>;
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
