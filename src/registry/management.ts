/**
 * @module registry/management
 * The management operations both doors share — Harbor's API (harbor-api.ts) and the web console
 * (console-backend.ts): who may see a project, creating a project, creating a robot account (its
 * secret returned once, stored hashed) and the validation of their inputs.
 */
import { FerryError } from '../core/index.js';
import type { Logger } from '../observe/index.js';
import { generateSecret, hashSecret, isStrongSecret, type Principal } from './auth.js';
import type { AuditLog } from './audit.js';
import type { Project, RegistryMetadata, Robot, RobotPermission } from './metadata/metadata.js';

const badRequest = (msg: string): FerryError => new FerryError('INVALID_ARGUMENT', msg);

/** Project name grammar (Harbor: lowercase, digits, ._-, 1..255, starting with a letter or digit). */
const PROJECT_NAME = /^[a-z0-9]+(?:[._-][a-z0-9]+)*$/;

export interface ManagementDeps {
  meta: RegistryMetadata;
  audit: AuditLog;
  log: Logger;
}

/** Whether `p` may see `project` at all (public, the system admin, or a robot covering it). */
export function canSee(p: Principal, project: Project): boolean {
  if (project.public) return true;
  if (p.kind === 'user' && p.sysadmin) return true;
  if (p.kind === 'robot')
    return p.robot.permissions.some((x) => x.kind === 'project' && (x.namespace === '*' || x.namespace === project.name));
  return false;
}

/** Creates a project (name checked, unique) with its audit line; `limit` -1 is no quota. */
export async function createProject(
  d: ManagementDeps,
  operator: string,
  input: { name: unknown; public: boolean; limit: number },
): Promise<Project> {
  const name = input.name;
  if (typeof name !== 'string' || name.length > 255 || !PROJECT_NAME.test(name)) throw badRequest('invalid project_name');
  if (await d.meta.getProject(name)) throw new FerryError('ALREADY_EXISTS', `project ${name} already exists`);
  const pr = await d.meta.createProject(name, input.public, operator, input.limit);
  await d.audit.record({ projectId: pr.id, username: operator, resource: name, resourceType: 'project', operation: 'create' });
  d.log.info({ project: name, public: input.public }, 'project created');
  return pr;
}

/** A given robot secret (must be strong) or a new random one. */
export function secretOf(body: Record<string, unknown>): string {
  if (typeof body.secret !== 'string' || body.secret === '') return generateSecret();
  if (!isStrongSecret(body.secret)) {
    throw badRequest('secret must be 8-128 characters with a lowercase letter, an uppercase letter and a digit');
  }
  return body.secret;
}

/** Validated robot permissions from Harbor's JSON shape. */
export function permissionsOf(raw: unknown[]): RobotPermission[] {
  return raw.map((x, i) => {
    const o = x as Record<string, unknown>;
    if (o.kind !== 'project' && o.kind !== 'system') throw badRequest(`permissions[${i}].kind must be project or system`);
    if (typeof o.namespace !== 'string' || o.namespace === '') throw badRequest(`permissions[${i}].namespace missing`);
    if (!Array.isArray(o.access)) throw badRequest(`permissions[${i}].access must be an array`);
    const access = o.access.map((a, j) => {
      const ao = a as Record<string, unknown>;
      if (typeof ao.resource !== 'string' || typeof ao.action !== 'string')
        throw badRequest(`permissions[${i}].access[${j}] needs resource and action`);
      return { resource: ao.resource, action: ao.action, ...(typeof ao.effect === 'string' ? { effect: ao.effect } : {}) };
    });
    return { kind: o.kind, namespace: o.namespace, access };
  });
}

/** `robot$<project>+<name>` (project level) or `robot$<name>` (system level), checked. */
async function robotFullName(
  meta: RegistryMetadata,
  name: string,
  level: 'system' | 'project',
  permissions: RobotPermission[],
): Promise<string> {
  if (level === 'system') return `robot$${name}`;
  const ns = permissions.find((x) => x.kind === 'project')?.namespace;
  if (!ns || ns === '*') throw badRequest('a project robot needs one project permission naming its project');
  if (!(await meta.getProject(ns))) throw new FerryError('NOT_FOUND', `project ${ns} not found`);
  if (permissions.some((x) => x.kind === 'project' && x.namespace !== ns))
    throw badRequest('a project robot may only cover its own project');
  return `robot$${ns}+${name}`;
}

/** Creates a robot account from Harbor's JSON body; the secret is in the answer only (stored hashed). */
export async function createRobot(
  d: ManagementDeps,
  operator: string,
  body: Record<string, unknown>,
): Promise<{ robot: Robot; secret: string }> {
  const name = body.name;
  if (typeof name !== 'string' || !/^[a-z0-9]+(?:[._-][a-z0-9]+)*$/.test(name) || name.length > 255) {
    throw badRequest('robot name must be lowercase letters, digits and ._- ');
  }
  const level = body.level === 'system' ? 'system' : 'project';
  const permissions = permissionsOf(Array.isArray(body.permissions) ? body.permissions : []);
  const fullName = await robotFullName(d.meta, name, level, permissions);
  if (await d.meta.getRobot(fullName)) throw new FerryError('ALREADY_EXISTS', `robot ${fullName} already exists`);
  const secret = secretOf(body);
  const duration = typeof body.duration === 'number' && Number.isInteger(body.duration) ? body.duration : -1;
  const expiresAt = duration === -1 ? -1 : Math.floor(Date.now() / 1000) + duration * 86_400;
  const robot = await d.meta.createRobot({
    name: fullName,
    description: typeof body.description === 'string' ? body.description : '',
    level,
    secretHash: await hashSecret(secret),
    permissions,
    disabled: body.disable === true,
    expiresAt,
    duration,
  });
  d.log.info({ robot: fullName }, 'robot account created');
  await d.audit.record({ username: operator, resource: fullName, resourceType: 'robot', operation: 'create' });
  return { robot, secret };
}
