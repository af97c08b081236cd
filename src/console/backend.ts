/**
 * @module console/backend
 * What the console needs from the registry, as plain views: the registry implements this
 * (registry/console-backend.ts) with its own user store and authorization, so the console never
 * decides on its own who may see or change what. `viewer` undefined is an anonymous visitor.
 */

/** A logged-in console user (admins and users; robots cannot log in). */
export interface ConsoleUser {
  name: string;
  admin: boolean;
}

export type Viewer = ConsoleUser | undefined;

export interface ProjectView {
  name: string;
  public: boolean;
  repoCount: number;
  createdAt: number;
  /** The storage quota, for viewers who may see quotas (system admins, as Harbor's /quotas). */
  quota?: QuotaView;
}

export interface QuotaView {
  /** Bytes of distinct blobs and manifests in the project. */
  used: number;
  /** Bytes; -1 = unlimited. */
  hard: number;
}

/** One webhook delivery (Harbor's execution). */
export interface DeliveryView {
  id: number;
  eventType: string;
  repo: string;
  /** Pending, Running, Success, Error, Stopped. */
  status: string;
  attempts: number;
  lastError: string;
  createdAt: number;
  updatedAt: number;
}

/** A webhook policy: its target addresses only (never their auth headers) and its recent deliveries. */
export interface WebhookPolicyView {
  id: number;
  name: string;
  enabled: boolean;
  eventTypes: string[];
  addresses: string[];
  /** Newest first, at most a few. */
  deliveries: DeliveryView[];
}

export interface RepositoryView {
  /** Full name, `<project>/<repo…>`. */
  name: string;
  artifactCount: number;
  pullCount: number;
  updatedAt: number;
}

export interface ArtifactView {
  digest: string;
  mediaType: string;
  size: number;
  pushedAt: number;
  tags: string[];
  /** The digest this artifact refers to (an OCI 1.1 referrer, e.g. a Nydus image of its source). */
  subject?: string;
  /** A Nydus image: its bootstrap's facts (undefined when unreadable) and whether a prefetch trace refers to it. */
  nydus?: { rafs?: 5 | 6; chunks?: number; blobs?: number; trace: boolean };
}

export interface RobotView {
  id: number;
  name: string;
  description: string;
  disabled: boolean;
  /** Unix seconds, -1 = never. */
  expiresAt: number;
  /** `<project>: pull, push` per permission. */
  scopes: string[];
  createdAt: number;
}

export interface NewRobot {
  project: string;
  name: string;
  description: string;
  /** Repository actions granted in the project: `pull`, `push`. */
  actions: string[];
}

/** A conversion task's state as the console shows it (accel's PROCESSING split by whether a worker holds it). */
export type ConversionState = 'queued' | 'running' | 'completed' | 'failed';

export interface ConversionView {
  id: string;
  /** The source reference (`host/project/repo:tag`). */
  source: string;
  /** The Nydus reference pushed (empty before it is known). */
  target: string;
  state: ConversionState;
  /** Why it failed (`CODE: message`), or the last attempt's error while it is retried. */
  reason: string;
  attempts: number;
  createdAt: number;
  /** ms since epoch; undefined while not finished. */
  finishedAt?: number;
  /** Finished − created, or now − created while not finished. */
  durationMs: number;
  sourceSize: number;
  targetSize: number;
  /** Whether this viewer may queue it again (it failed and the viewer may push its repository). */
  canRetry: boolean;
}

export interface ConversionsView {
  /** false: the registry is not linked to an accel service (console.accel unset). */
  configured: boolean;
  tasks: ConversionView[];
  /** Set when the accel service could not be asked (the page says so instead of failing). */
  error?: string;
}

/** What the P2P scheduler knows (for system admins: task URLs name repositories of every project). */
export interface P2pView {
  /** false: the registry is not linked to a scheduler (console.scheduler unset). */
  configured: boolean;
  error?: string;
  hosts: Array<{ hostname: string; ip: string; seed: boolean; peers: number }>;
  tasks: Array<{
    id: string;
    url: string;
    state: string;
    contentLength: number;
    peers: number;
    succeededPeers: number;
    backToSourcePeers: number;
  }>;
  /** Bytes peers reported downloading from other peers and from the source (registry). */
  traffic: { fromPeers: number; fromSource: number };
  jobs: PreheatJobView[];
}

export interface PreheatJobView {
  id: number;
  state: string;
  url: string;
  createdAt: string;
  updatedAt: string;
  successTasks: number;
  failureTasks: number;
  error: string;
}

/** The newest `ferry bench` report of the configured directory. */
export interface BenchReportView {
  /** false: no directory configured (console.benchDir). */
  configured: boolean;
  /** The report's directory, relative to console.benchDir. */
  name?: string;
  startedAt?: string;
  finishedAt?: string;
  gitCommit?: string;
  machine?: string;
  settings?: string;
  modes: Array<{ label: string; run: boolean; reason: string }>;
  rows: Array<{
    workload: string;
    registry: string;
    bandwidth: string;
    nodes: number;
    mode: string;
    runs: number;
    failures: number;
    readyMedianMs: number;
    registryBytesMedian: number;
    registryBytesPerImage: number;
    speedup: number | null;
  }>;
  notes: string[];
  /** Reports that could not be read, each with why. */
  skipped: string[];
}

export interface ConsoleBackend {
  /**
   * Checks a login (limited and audited like the registry's own Basic logins). UNAUTHENTICATED for
   * wrong credentials, RESOURCE_EXHAUSTED while locked out, PERMISSION_DENIED for a robot account.
   */
  login(username: string, password: string, source: string | undefined): Promise<ConsoleUser>;
  /** The user behind a session now (undefined once deleted): rights are re-read on every request. */
  user(name: string): Promise<ConsoleUser | undefined>;
  /** The projects `viewer` may see. */
  projects(viewer: Viewer): Promise<ProjectView[]>;
  /** NOT_FOUND when `viewer` may not see it (whether or not it exists). */
  project(viewer: Viewer, name: string): Promise<ProjectView>;
  createProject(viewer: Viewer, name: string, isPublic: boolean): Promise<void>;
  repositories(viewer: Viewer, project: string): Promise<RepositoryView[]>;
  /** The project's webhook policies with recent deliveries; undefined for viewers who may not manage them. */
  webhookPolicies(viewer: Viewer, project: string): Promise<WebhookPolicyView[] | undefined>;
  /** NOT_FOUND when `viewer` may not pull `repo`. */
  artifacts(viewer: Viewer, repo: string): Promise<ArtifactView[]>;
  robots(viewer: Viewer): Promise<RobotView[]>;
  /** The new robot's full name and its secret — the only time the secret is available. */
  createRobot(viewer: Viewer, r: NewRobot): Promise<{ name: string; secret: string }>;
  setRobotDisabled(viewer: Viewer, id: number, disabled: boolean): Promise<void>;
  /** The conversion tasks of repositories `viewer` may pull, newest first. */
  conversions(viewer: Viewer): Promise<ConversionsView>;
  /** Queues a failed task again; NOT_FOUND unless `viewer` may see it, PERMISSION_DENIED without push. */
  retryConversion(viewer: Viewer, id: string): Promise<void>;
  /** The P2P scheduler's view; PERMISSION_DENIED unless `viewer` is a system admin. */
  p2p(viewer: Viewer): Promise<P2pView>;
  /** The newest bench report; UNAUTHENTICATED for anonymous visitors. */
  benchReport(viewer: Viewer): Promise<BenchReportView>;
}
