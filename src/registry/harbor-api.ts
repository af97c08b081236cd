/**
 * @module registry/harbor-api
 * The subset of Harbor's management API (`/api/v2.0/…`) an acceleration setup scripts against:
 * projects (public/private), the current user, repositories and artifacts (read), robot accounts
 * (secret shown once, stored hashed) and webhook policies with their delivery log. JSON shapes and
 * field names follow Harbor v2; errors are Harbor's `{"errors":[{"code","message"}]}`.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from '../observe/index.js';
import { readBody, sendJson } from './http-util.js';
import { generateSecret, hashSecret, isStrongSecret, verifySecret, type Auth, type Principal } from './auth.js';
import type { Project, RegistryMetadata, Robot, RobotPermission, WebhookPolicy, WebhookTarget, Delivery } from './metadata/metadata.js';
import { WEBHOOK_EVENT_TYPES, type Webhooks } from './webhooks.js';
import { isValidName } from './names.js';

/** A Harbor API error (its own code vocabulary, not the OCI one). */
export class HarborError extends Error {
  readonly status: number;
  readonly code: string;
  constructor(status: number, code: string, message: string) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

const notFound = (what: string): HarborError => new HarborError(404, 'NOT_FOUND', `${what} not found`);
const badRequest = (msg: string): HarborError => new HarborError(400, 'BAD_REQUEST', msg);

/** A percent-decoded path segment; malformed encoding is the client's error (400), not a crash. */
function decodePathValue(v: string): string {
  try {
    return decodeURIComponent(v);
  } catch {
    throw badRequest(`malformed percent-encoding in ${JSON.stringify(v.slice(0, 100))}`);
  }
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

/** Project name grammar (Harbor: lowercase, digits, ._-, 1..255, starting with a letter or digit). */
const PROJECT_NAME = /^[a-z0-9]+(?:[._-][a-z0-9]+)*$/;

export class HarborApi {
  readonly #meta: RegistryMetadata;
  readonly #auth: Auth;
  readonly #log: Logger;

  readonly #webhooks: Webhooks;

  constructor(deps: { meta: RegistryMetadata; auth: Auth; log: Logger; webhooks: Webhooks }) {
    this.#meta = deps.meta;
    this.#auth = deps.auth;
    this.#webhooks = deps.webhooks;
    this.#log = deps.log.child({ component: 'harbor-api' });
  }

  async handle(req: IncomingMessage, res: ServerResponse, url: URL, p: Principal): Promise<void> {
    try {
      await this.#route(req, res, url, p);
    } catch (err) {
      if (!(err instanceof HarborError)) throw err;
      const headers: Record<string, string> = {};
      if (err.status === 401) headers['www-authenticate'] = 'Basic realm="harbor"';
      sendJson(res, err.status, { errors: [{ code: err.code, message: err.message }] }, headers);
    }
  }

  #requireUser(p: Principal): void {
    if (p.kind === 'anonymous') throw new HarborError(401, 'UNAUTHORIZED', 'authentication required');
  }

  #requireAdmin(p: Principal): void {
    this.#requireUser(p);
    if (!(p.kind === 'user' && p.sysadmin)) throw new HarborError(403, 'FORBIDDEN', 'system admin required');
  }

  #canSee(p: Principal, project: Project): boolean {
    if (project.public) return true;
    if (p.kind === 'user' && p.sysadmin) return true;
    if (p.kind === 'robot') return p.robot.permissions.some((x) => x.kind === 'project' && (x.namespace === '*' || x.namespace === project.name));
    return false;
  }

  async #project(p: Principal, nameOrId: string): Promise<Project> {
    const byId = /^\d+$/.test(nameOrId) ? await this.#meta.getProject(Number(nameOrId)) : undefined;
    const project = byId ?? await this.#meta.getProject(decodePathValue(nameOrId));
    if (!project || !this.#canSee(p, project)) throw notFound(`project ${nameOrId}`);
    return project;
  }

  async #json(req: IncomingMessage): Promise<Record<string, unknown>> {
    const body = await readBody(req, 1024 * 1024);
    if (body.length === 0) return {};
    try {
      const v = JSON.parse(body.toString('utf8')) as unknown;
      if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error('not an object');
      return v as Record<string, unknown>;
    } catch (err) {
      throw badRequest(`invalid JSON body: ${(err as Error).message}`);
    }
  }

  async #projectJson(pr: Project): Promise<Record<string, unknown>> {
    return {
      project_id: pr.id, name: pr.name, owner_name: pr.ownerName, owner_id: 1,
      creation_time: iso(pr.createdAt), update_time: iso(pr.updatedAt),
      repo_count: (await this.#meta.listRepositoryRecords(pr.name)).length,
      metadata: { public: String(pr.public) },
    };
  }

  #robotJson(r: Robot): Record<string, unknown> {
    return {
      id: r.id, name: r.name, description: r.description, level: r.level, duration: r.duration,
      disable: r.disabled, expires_at: r.expiresAt, permissions: r.permissions, editable: true,
      creation_time: iso(r.createdAt), update_time: iso(r.updatedAt),
    };
  }

  #policyJson(po: WebhookPolicy): Record<string, unknown> {
    return {
      id: po.id, name: po.name, description: po.description, project_id: po.projectId, targets: po.targets,
      event_types: po.eventTypes, creator: po.creator, creation_time: iso(po.createdAt), update_time: iso(po.updatedAt),
      enabled: po.enabled,
    };
  }

  #executionJson(d: Delivery): Record<string, unknown> {
    return {
      id: d.id, vendor_type: 'WEBHOOK', vendor_id: d.policyId, status: d.status, trigger: 'EVENT',
      status_message: d.lastError, start_time: iso(d.createdAt), end_time: d.status === 'Success' || d.status === 'Error' ? iso(d.updatedAt) : '',
      extra_attrs: { event_type: d.eventType, payload: d.payload, address: d.target.address },
    };
  }

  async #route(req: IncomingMessage, res: ServerResponse, url: URL, p: Principal): Promise<void> {
    const method = req.method ?? 'GET';
    const path = url.pathname.slice('/api/v2.0'.length);
    const seg = path.split('/').filter(Boolean);
    const [s0, s1, s2, s3, s4, s5, s6, s7, s8] = seg;

    if (s0 === 'systeminfo' && seg.length === 1 && method === 'GET') {
      sendJson(res, 200, { harbor_version: 'v2.0.0-ferry', auth_mode: 'db_auth', registry_url: req.headers.host ?? '', project_creation_restriction: 'adminonly', has_ca_root: false, read_only: false });
      return;
    }
    if (s0 === 'users' && s1 === 'current' && seg.length === 2 && method === 'GET') {
      this.#requireUser(p);
      const u = p.kind === 'user' ? await this.#meta.getUser(p.name) : undefined;
      sendJson(res, 200, { user_id: u?.id ?? 0, username: p.name, sysadmin_flag: p.kind === 'user' && p.sysadmin, creation_time: u ? iso(u.createdAt) : '' });
      return;
    }

    if (s0 === 'users' && s1 !== undefined && /^\d+$/.test(s1) && s2 === 'password' && seg.length === 3 && method === 'PUT') {
      // Harbor: a user changes their own password with the old one; the admin may reset any.
      this.#requireUser(p);
      const target = p.kind === 'user' ? await this.#meta.getUser(p.name) : undefined;
      if (!target || (target.id !== Number(s1) && !target.sysadmin)) throw new HarborError(403, 'FORBIDDEN', 'not allowed');
      const body = await this.#json(req);
      const next = body.new_password;
      if (typeof next !== 'string' || next.length < 8 || !/[a-z]/.test(next) || !/[A-Z]/.test(next) || !/[0-9]/.test(next)) {
        throw badRequest('new_password must be at least 8 characters with a lowercase letter, an uppercase letter and a digit');
      }
      if (target.id === Number(s1)) {
        if (typeof body.old_password !== 'string' || !(await verifySecret(body.old_password, target.passwordHash))) {
          throw new HarborError(403, 'FORBIDDEN', 'old_password is wrong');
        }
      }
      const user = await this.#meta.getUserById(Number(s1));
      if (!user) throw notFound(`user ${s1}`);
      await this.#meta.upsertUser(user.username, await hashSecret(next), user.sysadmin);
      this.#auth.invalidate();
      this.#log.info({ user: user.username }, 'password changed');
      sendJson(res, 200, {});
      return;
    }

    if (s0 === 'projects') {
      if (seg.length === 1) {
        if (method === 'GET') {
          const name = url.searchParams.get('name');
          const pub = url.searchParams.get('public');
          let list = (await this.#meta.listProjects()).filter((pr) => this.#canSee(p, pr));
          if (name) list = list.filter((pr) => pr.name.includes(name));
          if (pub !== null) list = list.filter((pr) => String(pr.public) === pub);
          sendJson(res, 200, await Promise.all(list.map((pr) => this.#projectJson(pr))), { 'x-total-count': String(list.length) });
          return;
        }
        if (method === 'HEAD') {
          const name = url.searchParams.get('project_name') ?? '';
          const exists = (await this.#meta.getProject(name)) !== undefined;
          res.writeHead(exists ? 200 : 404, { 'content-length': 0 });
          res.end();
          return;
        }
        if (method === 'POST') {
          this.#requireAdmin(p);
          const body = await this.#json(req);
          const name = body.project_name;
          if (typeof name !== 'string' || name.length > 255 || !PROJECT_NAME.test(name)) throw badRequest('invalid project_name');
          if (await this.#meta.getProject(name)) throw new HarborError(409, 'CONFLICT', `project ${name} already exists`);
          const metadata = (body.metadata ?? {}) as Record<string, unknown>;
          const isPublic = metadata.public === true || metadata.public === 'true' || body.public === true;
          const pr = await this.#meta.createProject(name, isPublic, p.name);
          this.#log.info({ project: name, public: isPublic }, 'project created');
          res.writeHead(201, { location: `/api/v2.0/projects/${pr.id}`, 'content-length': 0 });
          res.end();
          return;
        }
      }
      if (s1 === undefined) throw badRequest('project missing');
      const project = await this.#project(p, s1);
      if (seg.length === 2) {
        if (method === 'GET') { sendJson(res, 200, await this.#projectJson(project)); return; }
        if (method === 'PUT') {
          this.#requireAdmin(p);
          const body = await this.#json(req);
          const metadata = (body.metadata ?? {}) as Record<string, unknown>;
          if (metadata.public !== undefined) await this.#meta.updateProject(project.id, metadata.public === true || metadata.public === 'true');
          sendJson(res, 200, {});
          return;
        }
        if (method === 'DELETE') {
          this.#requireAdmin(p);
          if ((await this.#meta.listRepositoryRecords(project.name)).length > 0) throw new HarborError(412, 'PRECONDITION', `project ${project.name} still has repositories`);
          await this.#meta.deleteProject(project.id);
          sendJson(res, 200, {});
          return;
        }
      }
      if (s2 === 'repositories' && s3 !== undefined && method === 'DELETE' && (seg.length === 4 || (s4 === 'artifacts' && s5 !== undefined && seg.length === 6))) {
        // Deleting a repository or an artifact (by digest or tag) removes manifests; gc frees the bytes.
        this.#requireAdmin(p);
        const repoName = `${project.name}/${decodePathValue(decodePathValue(s3))}`;
        if (!isValidName(repoName)) throw badRequest('invalid repository name');
        let digests: string[];
        if (seg.length === 4) {
          digests = (await this.#meta.listManifests(repoName)).map((m) => m.digest);
          if (digests.length === 0) throw notFound(`repository ${repoName}`);
        } else {
          const ref = decodePathValue(s5!);
          const digest = ref.includes(':') ? ref : await this.#meta.resolveTag(repoName, ref);
          if (!digest || !(await this.#meta.getManifest(repoName, digest))) throw notFound(`artifact ${repoName}@${ref}`);
          digests = [digest];
        }
        for (const digest of digests) {
          const tags = await this.#meta.tagsOf(repoName, digest);
          const ev = await this.#webhooks.deliveriesFor({ type: 'DELETE_ARTIFACT', repo: repoName, digest, tag: tags[0] ?? digest, operator: p.name });
          await this.#meta.deleteManifest(repoName, digest, ev);
        }
        this.#webhooks.kick();
        this.#log.info({ repo: repoName, artifacts: digests.length }, 'artifacts deleted');
        sendJson(res, 200, {});
        return;
      }
      if (s2 === 'repositories' && method === 'GET') {
        if (seg.length === 3) {
          const repos = await this.#meta.listRepositoryRecords(project.name);
          sendJson(res, 200, repos.map((r) => ({
            id: r.id, name: r.name, project_id: project.id, artifact_count: r.artifactCount, pull_count: r.pullCount,
            creation_time: iso(r.createdAt), update_time: iso(r.updatedAt),
          })), { 'x-total-count': String(repos.length) });
          return;
        }
        if (s3 !== undefined && s4 === 'artifacts' && seg.length === 5) {
          // Harbor expects nested repository names URL-encoded twice (a%252Fb).
          const repoName = `${project.name}/${decodePathValue(decodePathValue(s3))}`;
          if (!isValidName(repoName)) throw badRequest('invalid repository name');
          const list = await this.#meta.listManifests(repoName);
          const out = [];
          for (const m of list) {
            const tags = await this.#meta.tagsOf(repoName, m.digest);
            out.push({
              digest: m.digest, manifest_media_type: m.mediaType, media_type: m.artifactType ?? '', size: m.size,
              push_time: iso(m.createdAt), repository_name: repoName, project_id: project.id,
              tags: tags.map((t) => ({ name: t, repository_id: 0, push_time: iso(m.createdAt) })),
              annotations: m.annotations ?? {}, type: 'IMAGE',
              ...(m.subject ? { subject: m.subject } : {}),
            });
          }
          sendJson(res, 200, out, { 'x-total-count': String(out.length) });
          return;
        }
      }
      if (s2 === 'webhook') {
        this.#requireAdmin(p);
        if (s3 === 'events' && seg.length === 4 && method === 'GET') {
          sendJson(res, 200, { event_type: WEBHOOK_EVENT_TYPES, notify_type: ['http'], payload_formats: [{ notify_type: 'http', formats: ['Default'] }] });
          return;
        }
        if (s3 === 'policies') {
          if (seg.length === 4) {
            if (method === 'GET') {
              const list = await this.#meta.listPolicies(project.id);
              sendJson(res, 200, list.map((x) => this.#policyJson(x)), { 'x-total-count': String(list.length) });
              return;
            }
            if (method === 'POST') {
              const po = await this.#meta.createPolicy({ projectId: project.id, creator: p.name, ...this.#policyInput(await this.#json(req)) });
              this.#log.info({ project: project.name, policy: po.id }, 'webhook policy created');
              res.writeHead(201, { location: `/api/v2.0/projects/${project.name}/webhook/policies/${po.id}`, 'content-length': 0 });
              res.end();
              return;
            }
          }
          const policy = s4 !== undefined && /^\d+$/.test(s4) ? await this.#meta.getPolicy(Number(s4)) : undefined;
          if (!policy || policy.projectId !== project.id) throw notFound(`webhook policy ${s4 ?? ''}`);
          if (seg.length === 5) {
            if (method === 'GET') { sendJson(res, 200, this.#policyJson(policy)); return; }
            if (method === 'PUT') {
              const cur = this.#policyJson(policy);
              await this.#meta.updatePolicy(policy.id, this.#policyInput({ ...cur, ...(await this.#json(req)) }));
              sendJson(res, 200, {});
              return;
            }
            if (method === 'DELETE') { await this.#meta.deletePolicy(policy.id); sendJson(res, 200, {}); return; }
          }
          if (s5 === 'executions' && method === 'GET') {
            const list = await this.#meta.listDeliveries(policy.id);
            if (seg.length === 6) {
              sendJson(res, 200, list.map((d) => this.#executionJson(d)), { 'x-total-count': String(list.length) });
              return;
            }
            const d = s6 !== undefined && /^\d+$/.test(s6) ? await this.#meta.getDelivery(Number(s6)) : undefined;
            if (!d || d.policyId !== policy.id) throw notFound(`execution ${s6 ?? ''}`);
            if (s7 === 'tasks' && seg.length === 8) {
              sendJson(res, 200, [{
                id: d.id, execution_id: d.id, status: d.status, run_count: d.attempts, status_message: d.lastError,
                start_time: iso(d.createdAt), end_time: iso(d.updatedAt), extra_attrs: { address: d.target.address },
              }]);
              return;
            }
            if (s7 === 'tasks' && s8 !== undefined && seg[9] === 'log' && seg.length === 10) {
              const lines = (await this.#meta.listAttempts(d.id)).map((a) =>
                `${iso(a.at)} attempt ${a.attempt} POST ${d.target.address} -> ${a.statusCode || 'no response'} in ${a.durationMs} ms${a.error ? `: ${a.error}` : ''}`);
              const text = `${lines.join('\n')}\n`;
              res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(text) });
              res.end(text);
              return;
            }
          }
        }
      }
      throw notFound(`endpoint ${path}`);
    }

    if (s0 === 'robots') {
      this.#requireAdmin(p);
      if (seg.length === 1 && method === 'GET') {
        const list = await this.#meta.listRobots();
        sendJson(res, 200, list.map((r) => this.#robotJson(r)), { 'x-total-count': String(list.length) });
        return;
      }
      if (seg.length === 1 && method === 'POST') {
        await this.#createRobot(req, res);
        return;
      }
      const robot = s1 !== undefined && /^\d+$/.test(s1) ? await this.#meta.getRobot(Number(s1)) : undefined;
      if (!robot) throw notFound(`robot ${s1 ?? ''}`);
      if (seg.length === 2) {
        if (method === 'GET') { sendJson(res, 200, this.#robotJson(robot)); return; }
        if (method === 'DELETE') {
          await this.#meta.deleteRobot(robot.id);
          this.#auth.invalidate();
          sendJson(res, 200, {});
          return;
        }
        if (method === 'PUT') {
          const body = await this.#json(req);
          await this.#meta.updateRobot(robot.id, {
            ...(typeof body.disable === 'boolean' ? { disabled: body.disable } : {}),
            ...(typeof body.description === 'string' ? { description: body.description } : {}),
            ...(Array.isArray(body.permissions) ? { permissions: this.#permissions(body.permissions) } : {}),
          });
          this.#auth.invalidate();
          sendJson(res, 200, {});
          return;
        }
        if (method === 'PATCH') {
          // Refresh the secret: a given one (must be strong) or a new random one, returned once.
          const body = await this.#json(req);
          let secret: string;
          if (typeof body.secret === 'string' && body.secret !== '') {
            if (!isStrongSecret(body.secret)) throw badRequest('secret must be 8-128 characters with a lowercase letter, an uppercase letter and a digit');
            secret = body.secret;
          } else {
            secret = generateSecret();
          }
          await this.#meta.updateRobot(robot.id, { secretHash: await hashSecret(secret) });
          this.#auth.invalidate();
          sendJson(res, 200, { secret });
          return;
        }
      }
      throw notFound(`endpoint ${path}`);
    }
    throw notFound(`endpoint ${path}`);
  }

  #permissions(raw: unknown[]): RobotPermission[] {
    return raw.map((x, i) => {
      const o = x as Record<string, unknown>;
      if (o.kind !== 'project' && o.kind !== 'system') throw badRequest(`permissions[${i}].kind must be project or system`);
      if (typeof o.namespace !== 'string' || o.namespace === '') throw badRequest(`permissions[${i}].namespace missing`);
      if (!Array.isArray(o.access)) throw badRequest(`permissions[${i}].access must be an array`);
      const access = o.access.map((a, j) => {
        const ao = a as Record<string, unknown>;
        if (typeof ao.resource !== 'string' || typeof ao.action !== 'string') throw badRequest(`permissions[${i}].access[${j}] needs resource and action`);
        return { resource: ao.resource, action: ao.action, ...(typeof ao.effect === 'string' ? { effect: ao.effect } : {}) };
      });
      return { kind: o.kind, namespace: o.namespace, access };
    });
  }

  async #createRobot(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const body = await this.#json(req);
    const name = body.name;
    if (typeof name !== 'string' || !/^[a-z0-9]+(?:[._-][a-z0-9]+)*$/.test(name) || name.length > 255) {
      throw badRequest('robot name must be lowercase letters, digits and ._- ');
    }
    const level = body.level === 'system' ? 'system' : 'project';
    const permissions = this.#permissions(Array.isArray(body.permissions) ? body.permissions : []);
    let fullName: string;
    if (level === 'project') {
      const ns = permissions.find((x) => x.kind === 'project')?.namespace;
      if (!ns || ns === '*') throw badRequest('a project robot needs one project permission naming its project');
      if (!(await this.#meta.getProject(ns))) throw notFound(`project ${ns}`);
      if (permissions.some((x) => x.kind === 'project' && x.namespace !== ns)) throw badRequest('a project robot may only cover its own project');
      fullName = `robot$${ns}+${name}`;
    } else {
      fullName = `robot$${name}`;
    }
    if (await this.#meta.getRobot(fullName)) throw new HarborError(409, 'CONFLICT', `robot ${fullName} already exists`);
    let secret: string;
    if (typeof body.secret === 'string' && body.secret !== '') {
      if (!isStrongSecret(body.secret)) throw badRequest('secret must be 8-128 characters with a lowercase letter, an uppercase letter and a digit');
      secret = body.secret;
    } else {
      secret = generateSecret();
    }
    const duration = typeof body.duration === 'number' && Number.isInteger(body.duration) ? body.duration : -1;
    const expiresAt = duration === -1 ? -1 : Math.floor(Date.now() / 1000) + duration * 86_400;
    const robot = await this.#meta.createRobot({
      name: fullName, description: typeof body.description === 'string' ? body.description : '', level,
      secretHash: await hashSecret(secret), permissions, disabled: body.disable === true, expiresAt, duration,
    });
    this.#log.info({ robot: fullName }, 'robot account created');
    res.setHeader('location', `/api/v2.0/robots/${robot.id}`);
    sendJson(res, 201, { id: robot.id, name: robot.name, secret, creation_time: iso(robot.createdAt), expires_at: robot.expiresAt });
  }

  #policyInput(body: Record<string, unknown>): Pick<WebhookPolicy, 'name' | 'description' | 'enabled' | 'eventTypes' | 'targets'> {
    const name = body.name;
    if (typeof name !== 'string' || name === '') throw badRequest('policy name missing');
    const events = body.event_types;
    if (!Array.isArray(events) || events.length === 0 || !events.every((e) => typeof e === 'string' && (WEBHOOK_EVENT_TYPES as readonly string[]).includes(e))) {
      throw badRequest(`event_types must list some of ${WEBHOOK_EVENT_TYPES.join(', ')}`);
    }
    const targets = body.targets;
    if (!Array.isArray(targets) || targets.length === 0) throw badRequest('targets missing');
    const parsed: WebhookTarget[] = targets.map((t, i) => {
      const o = t as Record<string, unknown>;
      if (typeof o.address !== 'string') throw badRequest(`targets[${i}].address missing`);
      let u: URL;
      try { u = new URL(o.address); } catch { throw badRequest(`targets[${i}].address is not a URL`); }
      if (u.protocol !== 'http:' && u.protocol !== 'https:') throw badRequest(`targets[${i}].address must be http(s)`);
      if (o.type !== undefined && o.type !== 'http') throw badRequest(`targets[${i}].type ${String(o.type)} is not supported (http only)`);
      if (o.payload_format !== undefined && o.payload_format !== 'Default') throw badRequest(`targets[${i}].payload_format must be Default`);
      return {
        type: 'http', address: o.address,
        ...(typeof o.auth_header === 'string' && o.auth_header !== '' ? { auth_header: o.auth_header } : {}),
        skip_cert_verify: o.skip_cert_verify === true, payload_format: 'Default',
      };
    });
    return {
      name, description: typeof body.description === 'string' ? body.description : '',
      enabled: body.enabled !== false, eventTypes: events as string[], targets: parsed,
    };
  }
}
