/**
 * (Over 600 lines: the Harbor API route table with its JSON shapes; quotas and audit log live in governance-api.ts.)
 * @module registry/harbor-api
 * The subset of Harbor's management API (`/api/v2.0/…`) an acceleration setup scripts against:
 * projects (public/private), the current user, repositories and artifacts (read), robot accounts
 * (secret shown once, stored hashed) and webhook policies with their delivery log. JSON shapes and
 * field names follow Harbor v2. A route table (httpx) maps each method + path to its handler; handlers
 * throw FerryErrors, answered in Harbor's shape `{"errors":[{"code","message"}]}` with Harbor's code
 * for the category (BAD_REQUEST, UNAUTHORIZED, FORBIDDEN, NOT_FOUND, CONFLICT, PRECONDITION,
 * METHOD_NOT_ALLOWED) and the status of httpx's one table.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { FerryError, type ErrorCode } from '../core/index.js';
import type { Logger } from '../observe/index.js';
import { Router, parseJson, readBody, sendError, sendJson, type Params } from '../httpx/index.js';
import { hashSecret, verifySecret, type Auth, type Principal } from './auth.js';
import { canSee, createProject, createRobot, permissionsOf, secretOf, type ManagementDeps } from './management.js';
import type { Project, RegistryMetadata, Robot, WebhookPolicy, WebhookTarget, Delivery } from './metadata/metadata.js';
import { WEBHOOK_EVENT_TYPES, type Webhooks } from './webhooks.js';
import type { AuditLog } from './audit.js';
import { checkStorageLimit, governanceRoutes } from './governance-api.js';
import { OciError } from './errors.js';
import { isValidName } from './names.js';

/**
 * Harbor's error codes by category: the `code` of its `{"errors":[{"code","message"}]}` (the status
 * is httpx's). Errors of other categories are answered by the registry's OCI error edge.
 */
const HARBOR_CODE: Partial<Record<ErrorCode, string>> = {
  INVALID_ARGUMENT: 'BAD_REQUEST',
  UNAUTHENTICATED: 'UNAUTHORIZED',
  PERMISSION_DENIED: 'FORBIDDEN',
  NOT_FOUND: 'NOT_FOUND',
  ALREADY_EXISTS: 'CONFLICT',
  FAILED_PRECONDITION: 'PRECONDITION',
  NOT_IMPLEMENTED: 'METHOD_NOT_ALLOWED',
};

const notFound = (what: string): FerryError => new FerryError('NOT_FOUND', `${what} not found`);
const badRequest = (msg: string): FerryError => new FerryError('INVALID_ARGUMENT', msg);
const forbidden = (msg: string): FerryError => new FerryError('PERMISSION_DENIED', msg);

/** A percent-decoded path value; malformed encoding is the client's error (400), not a crash. */
function decodePathValue(v: string): string {
  try {
    return decodeURIComponent(v);
  } catch {
    throw badRequest(`malformed percent-encoding in ${JSON.stringify(v.slice(0, 100))}`);
  }
}

export interface Ctx {
  req: IncomingMessage;
  res: ServerResponse;
  url: URL;
  p: Principal;
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

export class HarborApi {
  readonly #meta: RegistryMetadata;
  readonly #auth: Auth;
  readonly #log: Logger;

  readonly #webhooks: Webhooks;
  readonly #audit: AuditLog;
  readonly #gcKick: () => void;
  readonly #routes: Router<Ctx>;
  readonly #mgmt: ManagementDeps;

  constructor(deps: { meta: RegistryMetadata; auth: Auth; log: Logger; webhooks: Webhooks; audit: AuditLog; gcKick: () => void }) {
    this.#gcKick = deps.gcKick;
    this.#meta = deps.meta;
    this.#auth = deps.auth;
    this.#webhooks = deps.webhooks;
    this.#audit = deps.audit;
    this.#log = deps.log.child({ component: 'harbor-api' });
    this.#mgmt = { meta: deps.meta, audit: deps.audit, log: this.#log };
    this.#routes = this.#table();
  }

  /** Answers a `/api/v2.0/…` request; errors outside Harbor's vocabulary go up to the OCI error edge. */
  async handle(req: IncomingMessage, res: ServerResponse, url: URL, p: Principal): Promise<void> {
    try {
      await this.#routes.dispatch(req.method ?? 'GET', url.pathname.slice('/api/v2.0'.length), { req, res, url, p });
    } catch (err) {
      if (!FerryError.is(err) || err instanceof OciError || HARBOR_CODE[err.code] === undefined) throw err;
      sendError(res, err, {
        code: (e) => HARBOR_CODE[e.code]!,
        body: (e, code) => ({ errors: [{ code, message: e.message }] }),
        ...(err.code === 'UNAUTHENTICATED' ? { headers: { 'www-authenticate': 'Basic realm="harbor"' } } : {}),
      });
    }
  }

  #requireUser(p: Principal): void {
    if (p.kind === 'anonymous') throw new FerryError('UNAUTHENTICATED', 'authentication required');
  }

  #requireAdmin(p: Principal): void {
    this.#requireUser(p);
    if (!(p.kind === 'user' && p.sysadmin)) throw forbidden('system admin required');
  }

  /** The project a (decoded) path value names, by id or name, if `p` may see it; else NOT_FOUND. */
  async #project(p: Principal, nameOrId: string): Promise<Project> {
    const byId = /^\d+$/.test(nameOrId) ? await this.#meta.getProject(Number(nameOrId)) : undefined;
    const project = byId ?? (await this.#meta.getProject(nameOrId));
    if (!project || !canSee(p, project)) throw notFound(`project ${nameOrId}`);
    return project;
  }

  /** A JSON object body of at most 1 MiB (empty: `{}`). */
  async #json(req: IncomingMessage): Promise<Record<string, unknown>> {
    return parseJson<Record<string, unknown>>(await readBody(req, 1024 * 1024), { object: true, empty: {} });
  }

  async #projectJson(pr: Project): Promise<Record<string, unknown>> {
    return {
      project_id: pr.id,
      name: pr.name,
      owner_name: pr.ownerName,
      owner_id: 1,
      creation_time: iso(pr.createdAt),
      update_time: iso(pr.updatedAt),
      repo_count: (await this.#meta.listRepositoryRecords(pr.name)).length,
      metadata: { public: String(pr.public) },
    };
  }

  #robotJson(r: Robot): Record<string, unknown> {
    return {
      id: r.id,
      name: r.name,
      description: r.description,
      level: r.level,
      duration: r.duration,
      disable: r.disabled,
      expires_at: r.expiresAt,
      permissions: r.permissions,
      editable: true,
      creation_time: iso(r.createdAt),
      update_time: iso(r.updatedAt),
    };
  }

  #policyJson(po: WebhookPolicy): Record<string, unknown> {
    return {
      id: po.id,
      name: po.name,
      description: po.description,
      project_id: po.projectId,
      targets: po.targets,
      event_types: po.eventTypes,
      creator: po.creator,
      creation_time: iso(po.createdAt),
      update_time: iso(po.updatedAt),
      enabled: po.enabled,
    };
  }

  #executionJson(d: Delivery): Record<string, unknown> {
    return {
      id: d.id,
      vendor_type: 'WEBHOOK',
      vendor_id: d.policyId,
      status: d.status,
      trigger: 'EVENT',
      status_message: d.lastError,
      start_time: iso(d.createdAt),
      end_time: d.status === 'Success' || d.status === 'Error' ? iso(d.updatedAt) : '',
      extra_attrs: { event_type: d.eventType, payload: d.payload, address: d.target.address },
    };
  }

  /** The management API's routes (paths below `/api/v2.0`; empty segments ignored, as Harbor does). */
  #table(): Router<Ctx> {
    const list = (res: ServerResponse, items: unknown[]): void => sendJson(res, 200, items, { 'x-total-count': String(items.length) });
    const router = new Router<Ctx>({ looseSlashes: true })
      .get('/systeminfo', ({ req, res }) =>
        sendJson(res, 200, {
          harbor_version: 'v2.0.0-ferry',
          auth_mode: 'db_auth',
          registry_url: req.headers.host ?? '',
          project_creation_restriction: 'adminonly',
          has_ca_root: false,
          read_only: false,
        }),
      )
      .get('/users/current', async ({ res, p }) => {
        this.#requireUser(p);
        const u = p.kind === 'user' ? await this.#meta.getUser(p.name) : undefined;
        sendJson(res, 200, {
          user_id: u?.id ?? 0,
          username: p.name,
          sysadmin_flag: p.kind === 'user' && p.sysadmin,
          creation_time: u ? iso(u.createdAt) : '',
        });
      })
      .put('/users/:id(\\d+)/password', (c, a) => this.#changePassword(c, Number(a.id)))
      .get('/projects', async ({ res, url, p }) => {
        const name = url.searchParams.get('name');
        const pub = url.searchParams.get('public');
        let projects = (await this.#meta.listProjects()).filter((pr) => canSee(p, pr));
        if (name) projects = projects.filter((pr) => pr.name.includes(name));
        if (pub !== null) projects = projects.filter((pr) => String(pr.public) === pub);
        list(res, await Promise.all(projects.map((pr) => this.#projectJson(pr))));
      })
      .head('/projects', async ({ res, url }) => {
        const exists = (await this.#meta.getProject(url.searchParams.get('project_name') ?? '')) !== undefined;
        res.writeHead(exists ? 200 : 404, { 'content-length': 0 });
        res.end();
      })
      .post('/projects', (c) => this.#createProject(c))
      .get('/projects/:project', async ({ res, p }, a) => sendJson(res, 200, await this.#projectJson(await this.#project(p, a.project!))))
      .put('/projects/:project', async ({ req, res, p }, a) => {
        const project = await this.#project(p, a.project!);
        this.#requireAdmin(p);
        const body = await this.#json(req);
        const metadata = (body.metadata ?? {}) as Record<string, unknown>;
        if (metadata.public !== undefined) {
          await this.#meta.updateProject(project.id, metadata.public === true || metadata.public === 'true');
        }
        if (body.storage_limit !== undefined && body.storage_limit !== null) {
          const limit = checkStorageLimit(body.storage_limit);
          const [q] = await this.#meta.listQuotas(project.id);
          if (q) await this.#meta.setQuotaLimit(q.id, limit);
        }
        sendJson(res, 200, {});
      })
      .delete('/projects/:project', async ({ res, p }, a) => {
        const project = await this.#project(p, a.project!);
        this.#requireAdmin(p);
        if ((await this.#meta.listRepositoryRecords(project.name)).length > 0) {
          throw new FerryError('FAILED_PRECONDITION', `project ${project.name} still has repositories`);
        }
        await this.#meta.deleteProject(project.id);
        sendJson(res, 200, {});
      })
      .get('/projects/:project/repositories', async ({ res, p }, a) => {
        const project = await this.#project(p, a.project!);
        list(
          res,
          (await this.#meta.listRepositoryRecords(project.name)).map((r) => ({
            id: r.id,
            name: r.name,
            project_id: project.id,
            artifact_count: r.artifactCount,
            pull_count: r.pullCount,
            creation_time: iso(r.createdAt),
            update_time: iso(r.updatedAt),
          })),
        );
      })
      .delete('/projects/:project/repositories/:repo', (c, a) => this.#deleteArtifacts(c, a))
      .get('/projects/:project/repositories/:repo/artifacts', (c, a) => this.#artifacts(c, a))
      .delete('/projects/:project/repositories/:repo/artifacts/:ref', (c, a) => this.#deleteArtifacts(c, a))
      .get('/projects/:project/webhook/events', async ({ res, p }, a) => {
        await this.#webhookProject(p, a);
        const payload_formats = [{ notify_type: 'http', formats: ['Default'] }];
        sendJson(res, 200, { event_type: WEBHOOK_EVENT_TYPES, notify_type: ['http'], payload_formats });
      })
      .get('/projects/:project/webhook/policies', async ({ res, p }, a) => {
        list(
          res,
          (await this.#meta.listPolicies((await this.#webhookProject(p, a)).id)).map((x) => this.#policyJson(x)),
        );
      })
      .post('/projects/:project/webhook/policies', async ({ req, res, p }, a) => {
        const project = await this.#webhookProject(p, a);
        const po = await this.#meta.createPolicy({ projectId: project.id, creator: p.name, ...this.#policyInput(await this.#json(req)) });
        this.#log.info({ project: project.name, policy: po.id }, 'webhook policy created');
        await this.#audit.record({
          projectId: project.id,
          username: p.name,
          resource: po.name,
          resourceType: 'webhook_policy',
          operation: 'create',
        });
        res.writeHead(201, { location: `/api/v2.0/projects/${project.name}/webhook/policies/${po.id}`, 'content-length': 0 });
        res.end();
      })
      .get('/projects/:project/webhook/policies/:policy', async ({ res, p }, a) => {
        sendJson(res, 200, this.#policyJson(await this.#policy(p, a)));
      })
      .put('/projects/:project/webhook/policies/:policy', async ({ req, res, p }, a) => {
        const policy = await this.#policy(p, a);
        await this.#meta.updatePolicy(policy.id, this.#policyInput({ ...this.#policyJson(policy), ...(await this.#json(req)) }));
        sendJson(res, 200, {});
      })
      .delete('/projects/:project/webhook/policies/:policy', async ({ res, p }, a) => {
        const po = await this.#policy(p, a);
        await this.#meta.deletePolicy(po.id);
        await this.#audit.record({
          projectId: po.projectId,
          username: p.name,
          resource: po.name,
          resourceType: 'webhook_policy',
          operation: 'delete',
        });
        sendJson(res, 200, {});
      })
      .get('/projects/:project/webhook/policies/:policy/executions', async ({ res, p }, a) => {
        list(
          res,
          (await this.#meta.listDeliveries((await this.#policy(p, a)).id)).map((d) => this.#executionJson(d)),
        );
      })
      .get('/projects/:project/webhook/policies/:policy/executions/:execution/tasks', async ({ res, p }, a) => {
        const d = await this.#execution(p, a);
        sendJson(res, 200, [
          {
            id: d.id,
            execution_id: d.id,
            status: d.status,
            run_count: d.attempts,
            status_message: d.lastError,
            start_time: iso(d.createdAt),
            end_time: iso(d.updatedAt),
            extra_attrs: { address: d.target.address },
          },
        ]);
      })
      .get('/projects/:project/webhook/policies/:policy/executions/:execution/tasks/:task/log', async ({ res, p }, a) => {
        const d = await this.#execution(p, a);
        const lines = (await this.#meta.listAttempts(d.id)).map(
          (x) =>
            `${iso(x.at)} attempt ${x.attempt} POST ${d.target.address} -> ` +
            `${x.statusCode || 'no response'} in ${x.durationMs} ms${x.error ? `: ${x.error}` : ''}`,
        );
        const text = `${lines.join('\n')}\n`;
        res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(text) });
        res.end(text);
      })
      .get('/robots', async ({ res, p }) => {
        this.#requireAdmin(p);
        list(
          res,
          (await this.#meta.listRobots()).map((r) => this.#robotJson(r)),
        );
      })
      .post('/robots', async ({ req, res, p }) => {
        this.#requireAdmin(p);
        await this.#createRobot(req, res, p.name);
      })
      .get('/robots/:id', async ({ res, p }, a) => sendJson(res, 200, this.#robotJson(await this.#robot(p, a))))
      .delete('/robots/:id', async ({ res, p }, a) => {
        const robot = await this.#robot(p, a);
        await this.#meta.deleteRobot(robot.id);
        await this.#audit.record({ username: p.name, resource: robot.name, resourceType: 'robot', operation: 'delete' });
        this.#auth.invalidate();
        sendJson(res, 200, {});
      })
      .put('/robots/:id', async ({ req, res, p }, a) => {
        const robot = await this.#robot(p, a);
        const body = await this.#json(req);
        await this.#meta.updateRobot(robot.id, {
          ...(typeof body.disable === 'boolean' ? { disabled: body.disable } : {}),
          ...(typeof body.description === 'string' ? { description: body.description } : {}),
          ...(Array.isArray(body.permissions) ? { permissions: permissionsOf(body.permissions) } : {}),
        });
        this.#auth.invalidate();
        sendJson(res, 200, {});
      })
      .patch('/robots/:id', async ({ req, res, p }, a) => {
        // Refresh the secret: a given one (must be strong) or a new random one, returned once.
        const robot = await this.#robot(p, a);
        const secret = secretOf(await this.#json(req));
        await this.#meta.updateRobot(robot.id, { secretHash: await hashSecret(secret) });
        this.#auth.invalidate();
        sendJson(res, 200, { secret });
      });
    return governanceRoutes(router, {
      meta: this.#meta,
      audit: this.#audit,
      requireAdmin: (p) => this.#requireAdmin(p),
      project: (p, nameOrId) => this.#project(p, nameOrId),
      json: (req) => this.#json(req),
      gcKick: () => this.#gcKick(),
      now: () => Date.now(),
    });
  }

  /** Harbor: a user changes their own password with the old one; the admin may reset any. */
  async #changePassword({ req, res, p }: Ctx, id: number): Promise<void> {
    this.#requireUser(p);
    const target = p.kind === 'user' ? await this.#meta.getUser(p.name) : undefined;
    if (!target || (target.id !== id && !target.sysadmin)) throw forbidden('not allowed');
    const body = await this.#json(req);
    const next = body.new_password;
    if (typeof next !== 'string' || next.length < 8 || !/[a-z]/.test(next) || !/[A-Z]/.test(next) || !/[0-9]/.test(next)) {
      throw badRequest('new_password must be at least 8 characters with a lowercase letter, an uppercase letter and a digit');
    }
    if (target.id === id) {
      if (typeof body.old_password !== 'string' || !(await verifySecret(body.old_password, target.passwordHash))) {
        throw forbidden('old_password is wrong');
      }
    }
    const user = await this.#meta.getUserById(id);
    if (!user) throw notFound(`user ${id}`);
    await this.#meta.upsertUser(user.username, await hashSecret(next), user.sysadmin);
    this.#auth.invalidate();
    this.#log.info({ user: user.username }, 'password changed');
    sendJson(res, 200, {});
  }

  async #createProject({ req, res, p }: Ctx): Promise<void> {
    this.#requireAdmin(p);
    const body = await this.#json(req);
    const metadata = (body.metadata ?? {}) as Record<string, unknown>;
    const isPublic = metadata.public === true || metadata.public === 'true' || body.public === true;
    const limit = body.storage_limit === undefined || body.storage_limit === null ? -1 : checkStorageLimit(body.storage_limit);
    const pr = await createProject(this.#mgmt, p.name, { name: body.project_name, public: isPublic, limit });
    res.writeHead(201, { location: `/api/v2.0/projects/${pr.id}`, 'content-length': 0 });
    res.end();
  }

  /** `<project>/<repo>`: Harbor expects nested repository names URL-encoded twice (a%252Fb), so decoded once more. */
  #repoName(project: Project, repo: string): string {
    const name = `${project.name}/${decodePathValue(repo)}`;
    if (!isValidName(name)) throw badRequest('invalid repository name');
    return name;
  }

  async #artifacts({ res, p }: Ctx, a: Params): Promise<void> {
    const project = await this.#project(p, a.project!);
    const repoName = this.#repoName(project, a.repo!);
    const out = [];
    for (const m of await this.#meta.listManifests(repoName)) {
      const tags = await this.#meta.tagsOf(repoName, m.digest);
      out.push({
        digest: m.digest,
        manifest_media_type: m.mediaType,
        media_type: m.artifactType ?? '',
        size: m.size,
        push_time: iso(m.createdAt),
        repository_name: repoName,
        project_id: project.id,
        tags: tags.map((t) => ({ name: t, repository_id: 0, push_time: iso(m.createdAt) })),
        annotations: m.annotations ?? {},
        type: 'IMAGE',
        ...(m.subject ? { subject: m.subject } : {}),
      });
    }
    sendJson(res, 200, out, { 'x-total-count': String(out.length) });
  }

  /** Deleting a repository or an artifact (by digest or tag) removes manifests; gc frees the bytes. */
  async #deleteArtifacts({ res, p }: Ctx, a: Params): Promise<void> {
    const project = await this.#project(p, a.project!);
    this.#requireAdmin(p);
    const repoName = this.#repoName(project, a.repo!);
    let digests: string[];
    if (a.ref === undefined) {
      digests = (await this.#meta.listManifests(repoName)).map((m) => m.digest);
      if (digests.length === 0) throw notFound(`repository ${repoName}`);
    } else {
      const ref = a.ref;
      const digest = ref.includes(':') ? ref : await this.#meta.resolveTag(repoName, ref);
      if (!digest || !(await this.#meta.getManifest(repoName, digest))) throw notFound(`artifact ${repoName}@${ref}`);
      digests = [digest];
    }
    for (const digest of digests) {
      const tags = await this.#meta.tagsOf(repoName, digest);
      const ev = await this.#webhooks.deliveriesFor({
        type: 'DELETE_ARTIFACT',
        repo: repoName,
        digest,
        tag: tags[0] ?? digest,
        operator: p.name,
      });
      const audit = await this.#audit.artifact('delete', repoName, tags[0] ?? digest, p.name);
      await this.#meta.deleteManifest(repoName, digest, { enqueue: ev, audit });
    }
    this.#webhooks.kick();
    this.#log.info({ repo: repoName, artifacts: digests.length }, 'artifacts deleted');
    sendJson(res, 200, {});
  }

  /** The project of a webhook route (visible to `p`), for the system admin only. */
  async #webhookProject(p: Principal, a: Params): Promise<Project> {
    const project = await this.#project(p, a.project!);
    this.#requireAdmin(p);
    return project;
  }

  async #policy(p: Principal, a: Params): Promise<WebhookPolicy> {
    const project = await this.#webhookProject(p, a);
    const policy = /^\d+$/.test(a.policy!) ? await this.#meta.getPolicy(Number(a.policy)) : undefined;
    if (!policy || policy.projectId !== project.id) throw notFound(`webhook policy ${a.policy}`);
    return policy;
  }

  async #execution(p: Principal, a: Params): Promise<Delivery> {
    const policy = await this.#policy(p, a);
    const d = /^\d+$/.test(a.execution!) ? await this.#meta.getDelivery(Number(a.execution)) : undefined;
    if (!d || d.policyId !== policy.id) throw notFound(`execution ${a.execution}`);
    return d;
  }

  async #robot(p: Principal, a: Params): Promise<Robot> {
    this.#requireAdmin(p);
    const robot = /^\d+$/.test(a.id!) ? await this.#meta.getRobot(Number(a.id)) : undefined;
    if (!robot) throw notFound(`robot ${a.id}`);
    return robot;
  }

  async #createRobot(req: IncomingMessage, res: ServerResponse, operator: string): Promise<void> {
    const { robot, secret } = await createRobot(this.#mgmt, operator, await this.#json(req));
    res.setHeader('location', `/api/v2.0/robots/${robot.id}`);
    sendJson(res, 201, { id: robot.id, name: robot.name, secret, creation_time: iso(robot.createdAt), expires_at: robot.expiresAt });
  }

  #policyInput(body: Record<string, unknown>): Pick<WebhookPolicy, 'name' | 'description' | 'enabled' | 'eventTypes' | 'targets'> {
    const name = body.name;
    if (typeof name !== 'string' || name === '') throw badRequest('policy name missing');
    const events = body.event_types;
    if (
      !Array.isArray(events) ||
      events.length === 0 ||
      !events.every((e) => typeof e === 'string' && (WEBHOOK_EVENT_TYPES as readonly string[]).includes(e))
    ) {
      throw badRequest(`event_types must list some of ${WEBHOOK_EVENT_TYPES.join(', ')}`);
    }
    const targets = body.targets;
    if (!Array.isArray(targets) || targets.length === 0) throw badRequest('targets missing');
    const parsed: WebhookTarget[] = targets.map((t, i) => {
      const o = t as Record<string, unknown>;
      if (typeof o.address !== 'string') throw badRequest(`targets[${i}].address missing`);
      let u: URL;
      try {
        u = new URL(o.address);
      } catch {
        throw badRequest(`targets[${i}].address is not a URL`);
      }
      if (u.protocol !== 'http:' && u.protocol !== 'https:') throw badRequest(`targets[${i}].address must be http(s)`);
      if (o.type !== undefined && o.type !== 'http') throw badRequest(`targets[${i}].type ${String(o.type)} is not supported (http only)`);
      if (o.payload_format !== undefined && o.payload_format !== 'Default')
        throw badRequest(`targets[${i}].payload_format must be Default`);
      return {
        type: 'http',
        address: o.address,
        ...(typeof o.auth_header === 'string' && o.auth_header !== '' ? { auth_header: o.auth_header } : {}),
        skip_cert_verify: o.skip_cert_verify === true,
        payload_format: 'Default',
      };
    });
    return {
      name,
      description: typeof body.description === 'string' ? body.description : '',
      enabled: body.enabled !== false,
      eventTypes: events as string[],
      targets: parsed,
    };
  }
}
