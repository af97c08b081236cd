/**
 * @module registry/audit
 * Harbor's audit log: who pushed, pulled or deleted which artifact, failed logins, and changes to
 * robots, projects, quotas, webhook policies and gc. Artifact entries are committed with the change
 * they record (they ride in the manifest change's OutboxChange); the others are written when the
 * change succeeded. A purge loop removes entries older than the retention (every replica runs it;
 * the DELETE is idempotent). The API shapes (legacy `AuditLog`, `AuditLogExt`) are made in
 * harbor-api.ts.
 */
import { systemClock, type Clock } from '../core/index.js';
import type { Logger } from '../observe/index.js';
import type { NewAuditEntry, RegistryMetadata } from './metadata/metadata.js';
import { projectOf } from './names.js';

export interface AuditOptions {
  enabled: boolean;
  /** Record artifact pulls (a write per manifest GET; Harbor: `pull_audit_log_disable`). */
  pulls: boolean;
  /** Entries older than this are purged; 0 keeps them forever. */
  retentionMs: number;
  /** How often the purge runs. */
  purgeIntervalMs: number;
}

export type ArtifactOperation = 'create' | 'delete' | 'pull';

/** Writes audit entries and purges old ones. */
export class AuditLog {
  readonly #meta: RegistryMetadata;
  readonly #log: Logger;
  readonly #clock: Clock;
  readonly #opts: AuditOptions;
  #timer: (() => void) | undefined;

  constructor(deps: { meta: RegistryMetadata; log: Logger; clock?: Clock | undefined }, opts: AuditOptions) {
    this.#meta = deps.meta;
    this.#log = deps.log.child({ component: 'audit' });
    this.#clock = deps.clock ?? systemClock;
    this.#opts = opts;
  }

  /**
   * The entry of an artifact operation on `repo` by `reference` (a tag or a digest), as Harbor's
   * legacy log names it: `project/repo:tag` or `project/repo@sha256:…`; none when auditing (or,
   * for pulls, auditing pulls) is off.
   */
  async artifact(operation: ArtifactOperation, repo: string, reference: string, operator: string): Promise<NewAuditEntry[]> {
    if (!this.#opts.enabled || (operation === 'pull' && !this.#opts.pulls)) return [];
    const project = await this.#meta.getProject(projectOf(repo));
    const resource = `${repo}${reference.includes(':') ? '@' : ':'}${reference}`;
    return [
      {
        projectId: project?.id ?? 0,
        username: operator || 'anonymous',
        resource,
        resourceType: 'artifact',
        operation,
        description: `${operation} artifact ${resource}`,
        success: true,
        at: this.#clock.now(),
      },
    ];
  }

  /** Records a standalone entry (robots, projects, logins…); a failure is logged, never thrown. */
  async record(e: Omit<NewAuditEntry, 'at' | 'success' | 'projectId' | 'description'> & Partial<NewAuditEntry>): Promise<void> {
    if (!this.#opts.enabled) return;
    const entry: NewAuditEntry = {
      projectId: e.projectId ?? 0,
      username: e.username || 'anonymous',
      resource: e.resource,
      resourceType: e.resourceType,
      operation: e.operation,
      description: e.description ?? `${e.operation} ${e.resourceType} ${e.resource}`,
      success: e.success ?? true,
      at: e.at ?? this.#clock.now(),
    };
    try {
      await this.#meta.recordAudit([entry]);
    } catch (err) {
      this.#log.error({ err, operation: entry.operation, resource: entry.resource }, 'audit entry not recorded');
    }
  }

  /** Records standalone entries (a pull); a failure is logged. */
  async recordAll(entries: NewAuditEntry[]): Promise<void> {
    if (!entries.length) return;
    try {
      await this.#meta.recordAudit(entries);
    } catch (err) {
      this.#log.error({ err }, 'audit entries not recorded');
    }
  }

  /** Removes entries older than the retention; returns how many. */
  async purge(): Promise<number> {
    if (this.#opts.retentionMs <= 0) return 0;
    const removed = await this.#meta.purgeAudit(this.#clock.now() - this.#opts.retentionMs);
    if (removed) this.#log.info({ removed }, 'audit entries past retention purged');
    return removed;
  }

  /** Starts the purge loop (first purge at once). */
  start(): void {
    if (this.#opts.retentionMs <= 0) return;
    const tick = (): void => {
      void this.purge()
        .catch((err: unknown) => this.#log.error({ err }, 'audit purge failed'))
        .finally(() => {
          if (this.#timer) this.#timer = this.#clock.setTimer(this.#opts.purgeIntervalMs, tick, { unref: true });
        });
    };
    this.#timer = this.#clock.setTimer(0, tick, { unref: true });
  }

  stop(): void {
    this.#timer?.();
    this.#timer = undefined;
  }
}
