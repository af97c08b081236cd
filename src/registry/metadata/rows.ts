/**
 * @module registry/metadata/rows
 * What the SQL stores share: database rows → records, the order of the migrations' tables, and
 * small helpers both dialects use (the project of a repository, JSON columns).
 */
import type {
  AuditEntry,
  Delivery,
  DeliveryStatus,
  GcRun,
  GcSchedule,
  GcStatus,
  ManifestRecord,
  Project,
  Quota,
  RepositoryRecord,
  Robot,
  RobotPermission,
  User,
  WebhookPolicy,
  WebhookTarget,
} from './metadata.js';

export type Row = Record<string, unknown>;

/** A number from a column (SQLite may give bigint, pg gives int8 as a string). */
export function num(v: unknown): number {
  if (typeof v === 'bigint') return Number(v);
  if (typeof v === 'string') return Number(v);
  return v as number;
}

/** A boolean column (SQLite 0/1, PostgreSQL boolean). */
export function bool(v: unknown): boolean {
  return v === true || v === 1 || v === 1n;
}

export function manifestOf(r: Row): ManifestRecord {
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

export function projectOfRow(r: Row): Project {
  return {
    id: num(r.id),
    name: r.name as string,
    public: bool(r.public),
    ownerName: r.owner as string,
    createdAt: num(r.created_at),
    updatedAt: num(r.updated_at),
  };
}

export function userOfRow(r: Row): User {
  return {
    id: num(r.id),
    username: r.username as string,
    passwordHash: r.password_hash as string,
    sysadmin: bool(r.sysadmin),
    createdAt: num(r.created_at),
    updatedAt: num(r.updated_at),
  };
}

export function robotOfRow(r: Row): Robot {
  return {
    id: num(r.id),
    name: r.name as string,
    description: r.description as string,
    level: r.level as 'system' | 'project',
    secretHash: r.secret_hash as string,
    permissions: JSON.parse(r.permissions as string) as RobotPermission[],
    disabled: bool(r.disabled),
    expiresAt: num(r.expires_at),
    duration: num(r.duration),
    createdAt: num(r.created_at),
    updatedAt: num(r.updated_at),
  };
}

export function policyOfRow(r: Row): WebhookPolicy {
  return {
    id: num(r.id),
    projectId: num(r.project_id),
    name: r.name as string,
    description: r.description as string,
    enabled: bool(r.enabled),
    eventTypes: JSON.parse(r.event_types as string) as string[],
    targets: JSON.parse(r.targets as string) as WebhookTarget[],
    creator: r.creator as string,
    createdAt: num(r.created_at),
    updatedAt: num(r.updated_at),
  };
}

export function deliveryOfRow(r: Row): Delivery {
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

export function repositoryOfRow(r: Row): RepositoryRecord {
  return {
    id: num(r.id),
    name: r.name as string,
    project: r.project as string,
    createdAt: num(r.created_at),
    updatedAt: num(r.updated_at),
    pullCount: num(r.pull_count),
    artifactCount: num(r.artifact_count),
  };
}

export function quotaOfRow(r: Row): Quota {
  return {
    id: num(r.id),
    projectId: num(r.project_id),
    project: r.project as string,
    owner: r.owner as string,
    hard: num(r.hard),
    used: num(r.used),
    createdAt: num(r.created_at),
    updatedAt: num(r.updated_at),
  };
}

export function auditOfRow(r: Row): AuditEntry {
  return {
    id: num(r.id),
    projectId: num(r.project_id),
    username: r.username as string,
    resource: r.resource as string,
    resourceType: r.resource_type as string,
    operation: r.operation as string,
    description: r.description as string,
    success: bool(r.success),
    at: num(r.op_time),
  };
}

export function gcRunOfRow(r: Row): GcRun {
  return {
    id: num(r.id),
    trigger: r.trigger_kind as GcRun['trigger'],
    parameters: r.parameters as string,
    status: r.status as GcStatus,
    stopRequested: bool(r.stop_requested),
    log: r.log as string,
    createdAt: num(r.created_at),
    updatedAt: num(r.updated_at),
  };
}

export function gcScheduleOfRow(r: Row): GcSchedule {
  return {
    type: r.type as string,
    cron: r.cron as string,
    parameters: r.parameters as string,
    nextRun: num(r.next_run),
    createdAt: num(r.created_at),
    updatedAt: num(r.updated_at),
  };
}
