/**
 * @module registry/console-backend
 * The registry's side of the web console: console views from the metadata, decided by the same
 * rules as the registry's APIs — logins through `Auth` (limited, audited; robots refused), project
 * visibility by `canSee`, artifacts only to whoever may pull the repository, projects and robots
 * created by the management operations Harbor's API uses, both for the system admin only.
 */
import { FerryError } from '../core/index.js';
import type {
  ArtifactView,
  BenchReportView,
  ConversionsView,
  P2pView,
  ConsoleBackend,
  ConsoleUser,
  NewRobot,
  ProjectView,
  RepositoryView,
  RobotView,
  Viewer,
  WebhookPolicyView,
} from '../console/index.js';
import type { Logger } from '../observe/index.js';
import { LoginLockedError, type Auth, type Principal } from './auth.js';
import type { AuditLog } from './audit.js';
import { canSee, createProject, createRobot, type ManagementDeps } from './management.js';
import type { Project, RegistryMetadata, Robot } from './metadata/metadata.js';
import { isValidName } from './names.js';
import type { ConsoleConversions } from './console-conversions.js';
import type { ConsoleP2p } from './console-p2p.js';
import { latestBenchReport } from './console-bench.js';
import { bootstrapLayerOf, type ConsoleNydus } from './console-nydus.js';
import { PREFETCH_TRACE_ARTIFACT_TYPE } from '../oci/index.js';

export interface ConsoleBackendDeps {
  meta: RegistryMetadata;
  auth: Auth;
  audit: AuditLog;
  log: Logger;
  /** The accel service's conversion tasks (console.accel). */
  conversions: ConsoleConversions;
  /** The P2P scheduler's overview and preheat jobs (console.scheduler). */
  p2p: ConsoleP2p;
  /** Reads Nydus bootstraps for the artifacts page (chunk counts); without it they are not shown. */
  nydus?: ConsoleNydus | undefined;
  /** Where `ferry bench` reports are (console.benchDir). */
  benchDir?: string | undefined;
}

/** An address without any `user:password@` in it (a target's credentials belong in its auth header). */
function withoutUserinfo(address: string): string {
  try {
    const u = new URL(address);
    u.username = '';
    u.password = '';
    return u.toString();
  } catch {
    return '(not a URL)';
  }
}

/** Deliveries shown per webhook policy. */
const RECENT_DELIVERIES = 10;

const notFound = (what: string): FerryError => new FerryError('NOT_FOUND', `${what} not found`);

function principalOf(v: Viewer): Principal {
  return v ? { kind: 'user', name: v.name, sysadmin: v.admin } : { kind: 'anonymous', name: '' };
}

function requireAdmin(v: Viewer): ConsoleUser {
  if (!v) throw new FerryError('UNAUTHENTICATED', 'log in first');
  if (!v.admin) throw new FerryError('PERMISSION_DENIED', 'system admin required');
  return v;
}

export class RegistryConsoleBackend implements ConsoleBackend {
  readonly #d: ConsoleBackendDeps;
  readonly #mgmt: ManagementDeps;

  constructor(d: ConsoleBackendDeps) {
    this.#d = d;
    this.#mgmt = { meta: d.meta, audit: d.audit, log: d.log.child({ component: 'console' }) };
  }

  async login(username: string, password: string, source: string | undefined): Promise<ConsoleUser> {
    if (username === '' || username.includes(':')) throw new FerryError('UNAUTHENTICATED', 'invalid credentials');
    const header = `Basic ${Buffer.from(`${username}:${password}`).toString('base64')}`;
    let p: Principal;
    try {
      p = await this.#d.auth.authenticate(header, { source, path: '/login', method: 'POST' });
    } catch (err) {
      if (!(err instanceof LoginLockedError)) {
        const name = username.slice(0, 255);
        await this.#d.audit.record({ username: name, resource: name, resourceType: 'user', operation: 'login', success: false });
      }
      throw err;
    }
    if (p.kind !== 'user') throw new FerryError('PERMISSION_DENIED', 'robot accounts cannot log in to the console');
    return { name: p.name, admin: p.sysadmin };
  }

  async user(name: string): Promise<ConsoleUser | undefined> {
    const u = await this.#d.meta.getUser(name);
    return u ? { name: u.username, admin: u.sysadmin } : undefined;
  }

  async #view(pr: Project, v: Viewer): Promise<ProjectView> {
    const quota = v?.admin ? (await this.#d.meta.listQuotas(pr.id))[0] : undefined;
    return {
      name: pr.name,
      public: pr.public,
      repoCount: (await this.#d.meta.listRepositoryRecords(pr.name)).length,
      createdAt: pr.createdAt,
      ...(quota ? { quota: { used: quota.used, hard: quota.hard } } : {}),
    };
  }

  async #visible(v: Viewer, name: string): Promise<Project> {
    const pr = await this.#d.meta.getProject(name);
    if (!pr || !canSee(principalOf(v), pr)) throw notFound(`project ${name}`);
    return pr;
  }

  async projects(v: Viewer): Promise<ProjectView[]> {
    const p = principalOf(v);
    const visible = (await this.#d.meta.listProjects()).filter((pr) => canSee(p, pr));
    return Promise.all(visible.map((pr) => this.#view(pr, v)));
  }

  async project(v: Viewer, name: string): Promise<ProjectView> {
    return this.#view(await this.#visible(v, name), v);
  }

  async createProject(v: Viewer, name: string, isPublic: boolean): Promise<void> {
    const admin = requireAdmin(v);
    await createProject(this.#mgmt, admin.name, { name, public: isPublic, limit: -1 });
  }

  async repositories(v: Viewer, project: string): Promise<RepositoryView[]> {
    const pr = await this.#visible(v, project);
    return (await this.#d.meta.listRepositoryRecords(pr.name)).map((r) => ({
      name: r.name,
      artifactCount: r.artifactCount,
      pullCount: r.pullCount,
      updatedAt: r.updatedAt,
    }));
  }

  async webhookPolicies(v: Viewer, project: string): Promise<WebhookPolicyView[] | undefined> {
    const pr = await this.#visible(v, project);
    // Harbor's webhook API is for system admins here (harbor-api.ts), so is this view.
    if (!v?.admin) return undefined;
    const out: WebhookPolicyView[] = [];
    for (const po of await this.#d.meta.listPolicies(pr.id)) {
      const deliveries = (await this.#d.meta.listDeliveries(po.id)).slice(0, RECENT_DELIVERIES);
      out.push({
        id: po.id,
        name: po.name,
        enabled: po.enabled,
        eventTypes: po.eventTypes,
        addresses: po.targets.map((t) => withoutUserinfo(t.address)),
        deliveries: deliveries.map((d) => ({
          id: d.id,
          eventType: d.eventType,
          repo: d.repo,
          status: d.status,
          attempts: d.attempts,
          lastError: d.lastError,
          createdAt: d.createdAt,
          updatedAt: d.updatedAt,
        })),
      });
    }
    return out;
  }

  async artifacts(v: Viewer, repo: string): Promise<ArtifactView[]> {
    if (!isValidName(repo) || !(await this.#d.auth.allowed(principalOf(v), repo)).has('pull')) throw notFound(`repository ${repo}`);
    const out: ArtifactView[] = [];
    const manifests = await this.#d.meta.listManifests(repo);
    const traced = new Set(manifests.filter((m) => m.artifactType === PREFETCH_TRACE_ARTIFACT_TYPE && m.subject).map((m) => m.subject));
    for (const m of manifests) {
      const isNydus = bootstrapLayerOf(m.body) !== undefined;
      const facts = isNydus && this.#d.nydus ? await this.#d.nydus.of(m.body) : undefined;
      out.push({
        digest: m.digest,
        mediaType: m.mediaType,
        size: m.size,
        pushedAt: m.createdAt,
        tags: await this.#d.meta.tagsOf(repo, m.digest),
        ...(m.subject ? { subject: m.subject } : {}),
        ...(isNydus ? { nydus: { ...facts, trace: traced.has(m.digest) } } : {}),
      });
    }
    if (out.length === 0) throw notFound(`repository ${repo}`);
    return out;
  }

  #robotView(r: Robot): RobotView {
    return {
      id: r.id,
      name: r.name,
      description: r.description,
      disabled: r.disabled,
      expiresAt: r.expiresAt,
      scopes: r.permissions.map((x) => `${x.kind} ${x.namespace}: ${x.access.map((a) => `${a.resource} ${a.action}`).join(', ')}`),
      createdAt: r.createdAt,
    };
  }

  async robots(v: Viewer): Promise<RobotView[]> {
    requireAdmin(v);
    return (await this.#d.meta.listRobots()).map((r) => this.#robotView(r));
  }

  async createRobot(v: Viewer, r: NewRobot): Promise<{ name: string; secret: string }> {
    const admin = requireAdmin(v);
    const actions = r.actions.filter((a) => a === 'pull' || a === 'push');
    if (actions.length === 0 || actions.length !== r.actions.length) throw new FerryError('INVALID_ARGUMENT', 'choose pull and/or push');
    const { robot, secret } = await createRobot(this.#mgmt, admin.name, {
      name: r.name,
      description: r.description,
      level: 'project',
      duration: -1,
      permissions: [{ kind: 'project', namespace: r.project, access: actions.map((action) => ({ resource: 'repository', action })) }],
    });
    return { name: robot.name, secret };
  }

  async setRobotDisabled(v: Viewer, id: number, disabled: boolean): Promise<void> {
    const admin = requireAdmin(v);
    const robot = await this.#d.meta.getRobot(id);
    if (!robot) throw notFound(`robot ${id}`);
    await this.#d.meta.updateRobot(robot.id, { disabled });
    this.#d.auth.invalidate();
    await this.#d.audit.record({
      username: admin.name,
      resource: robot.name,
      resourceType: 'robot',
      operation: disabled ? 'disable' : 'enable',
    });
    this.#mgmt.log.info({ robot: robot.name, disabled }, 'robot account updated');
  }

  conversions(v: Viewer): Promise<ConversionsView> {
    return this.#d.conversions.list(principalOf(v));
  }

  async retryConversion(v: Viewer, id: string): Promise<void> {
    if (!v) throw new FerryError('UNAUTHENTICATED', 'log in first');
    await this.#d.conversions.retry(principalOf(v), id);
  }

  p2p(v: Viewer): Promise<P2pView> {
    requireAdmin(v);
    return this.#d.p2p.view();
  }

  benchReport(v: Viewer): Promise<BenchReportView> {
    if (!v) throw new FerryError('UNAUTHENTICATED', 'log in first');
    return latestBenchReport(this.#d.benchDir);
  }
}
