/**
 * @module registry/governance-api
 * Harbor's governance endpoints on top of the metadata store: project quotas (`/quotas`, Harbor's
 * `Quota` JSON with the `storage` resource; the limit is enforced on push by the store) and the
 * audit log (`/audit-logs` and `/projects/{p}/logs`, Harbor's `AuditLog` JSON, its `q` query
 * syntax). Registered into the Harbor API's route table; errors are FerryErrors answered there.
 */
import type { ServerResponse } from 'node:http';
import { FerryError } from '../core/index.js';
import { sendJson, type Router } from '../httpx/index.js';
import type { Principal } from './auth.js';
import type { Ctx } from './harbor-api.js';
import {
  MAX_STORAGE_LIMIT,
  type AuditEntry,
  type AuditQuery,
  type Project,
  type Quota,
  type RegistryMetadata,
} from './metadata/metadata.js';
import type { AuditLog } from './audit.js';

export interface GovernanceDeps {
  meta: RegistryMetadata;
  audit: AuditLog;
  requireAdmin(p: Principal): void;
  /** The project a path value names, if `p` may see it (else NOT_FOUND). */
  project(p: Principal, nameOrId: string): Promise<Project>;
  json(req: Ctx['req']): Promise<Record<string, unknown>>;
}

const badRequest = (msg: string): FerryError => new FerryError('INVALID_ARGUMENT', msg);
const iso = (ms: number): string => new Date(ms).toISOString();

/** A storage limit in bytes: -1 (unlimited) or 1 … 1024 TiB, as Harbor validates it. */
export function checkStorageLimit(v: unknown): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v === 0 || v < -1 || v > MAX_STORAGE_LIMIT) {
    throw badRequest(`storage limit must be -1 or an integer from 1 to ${MAX_STORAGE_LIMIT}`);
  }
  return v;
}

function quotaJson(q: Quota): Record<string, unknown> {
  return {
    id: q.id,
    ref: { id: q.projectId, name: q.project, owner_name: q.owner },
    creation_time: iso(q.createdAt),
    update_time: iso(q.updatedAt),
    hard: { storage: q.hard },
    used: { storage: q.used },
  };
}

function auditJson(e: AuditEntry): Record<string, unknown> {
  return {
    id: e.id,
    username: e.username,
    resource: e.resource,
    resource_type: e.resourceType,
    operation: e.operation,
    op_time: iso(e.at),
  };
}

/** Page and page_size (Harbor: 1-based, size ≤ 100, default 10). */
function page(url: URL): { offset: number; limit: number; page: number; size: number } {
  const num = (k: string, def: number): number => {
    const v = url.searchParams.get(k);
    if (v === null || v === '') return def;
    if (!/^\d+$/.test(v)) throw badRequest(`${k} must be a positive integer`);
    return Number(v);
  };
  const p = Math.max(1, num('page', 1));
  const size = Math.min(100, Math.max(1, num('page_size', 10)));
  return { offset: (p - 1) * size, limit: size, page: p, size };
}

/** A Harbor time in `q` (`2024-01-02 03:04:05` or ISO), as ms. */
function qTime(v: string): number {
  const t = Date.parse(/^\d{4}-\d\d-\d\d \d/.test(v) ? `${v.replace(' ', 'T')}Z` : v);
  if (Number.isNaN(t)) throw badRequest(`invalid time ${JSON.stringify(v.slice(0, 40))} in q`);
  return t;
}

/**
 * Harbor's `q`: comma-separated `key=value` (exact), `key=~value` (fuzzy), `key={a b}` (any of),
 * `op_time=[from~to]`. Keys: operation, resource_type, username, resource, op_time.
 */
export function parseAuditQ(q: string | null): Omit<AuditQuery, 'offset' | 'limit' | 'projectId'> {
  const out: Omit<AuditQuery, 'offset' | 'limit' | 'projectId'> = {};
  if (!q) return out;
  for (const part of q.split(/,(?![^[{]*[\]}])/)) {
    const i = part.indexOf('=');
    if (i <= 0) throw badRequest(`invalid q term ${JSON.stringify(part.slice(0, 80))}`);
    const key = part.slice(0, i).trim();
    let v = decodeURIComponent(part.slice(i + 1).trim());
    const fuzzy = v.startsWith('~');
    if (fuzzy) v = v.slice(1);
    const anyOf = /^\{(.*)\}$/.exec(v)?.[1]?.split(/\s+/).filter(Boolean);
    switch (key) {
      case 'operation':
        out.operation = anyOf ?? [v];
        break;
      case 'resource_type':
        out.resourceType = anyOf ?? [v];
        break;
      case 'username':
        out.username = v;
        break;
      case 'resource':
        out.resource = v;
        break;
      case 'op_time': {
        const m = /^\[(.*)~(.*)\]$/.exec(v);
        if (!m) throw badRequest('op_time must be [from~to]');
        if (m[1]!.trim()) out.from = qTime(m[1]!.trim());
        if (m[2]!.trim()) out.to = qTime(m[2]!.trim());
        break;
      }
      default:
        throw badRequest(`unsupported q key ${JSON.stringify(key.slice(0, 40))}`);
    }
  }
  return out;
}

/** Registers the quota and audit-log routes. */
export function governanceRoutes(router: Router<Ctx>, d: GovernanceDeps): Router<Ctx> {
  const listAudit = async (res: ServerResponse, url: URL, projectId?: number): Promise<void> => {
    const pg = page(url);
    const r = await d.meta.listAudit({
      ...parseAuditQ(url.searchParams.get('q')),
      ...(projectId !== undefined ? { projectId } : {}),
      ...pg,
    });
    sendJson(res, 200, r.items.map(auditJson), { 'x-total-count': String(r.total) });
  };
  return router
    .get('/quotas', async ({ res, url, p }) => {
      d.requireAdmin(p);
      const ref = url.searchParams.get('reference');
      const refId = url.searchParams.get('reference_id');
      if (ref !== null && ref !== 'project') throw badRequest('reference must be project');
      if (refId !== null && !/^\d+$/.test(refId)) throw badRequest('reference_id must be a project id');
      const all = await d.meta.listQuotas(refId !== null ? Number(refId) : undefined);
      const pg = page(url);
      sendJson(res, 200, all.slice(pg.offset, pg.offset + pg.limit).map(quotaJson), { 'x-total-count': String(all.length) });
    })
    .get('/quotas/:id(\\d+)', async ({ res, p }, a) => {
      d.requireAdmin(p);
      const q = await d.meta.getQuota(Number(a.id));
      if (!q) throw new FerryError('NOT_FOUND', `quota ${a.id} not found`);
      sendJson(res, 200, quotaJson(q));
    })
    .put('/quotas/:id(\\d+)', async ({ req, res, p }, a) => {
      d.requireAdmin(p);
      const hard = (await d.json(req)).hard as Record<string, unknown> | undefined;
      if (!hard || typeof hard !== 'object' || Object.keys(hard).some((k) => k !== 'storage'))
        throw badRequest('hard must be {"storage": bytes}');
      const limit = checkStorageLimit(hard.storage);
      const q = await d.meta.getQuota(Number(a.id));
      if (!q || !(await d.meta.setQuotaLimit(q.id, limit))) throw new FerryError('NOT_FOUND', `quota ${a.id} not found`);
      await d.audit.record({ projectId: q.projectId, username: p.name, resource: q.project, resourceType: 'quota', operation: 'update' });
      sendJson(res, 200, {});
    })
    .get('/audit-logs', async ({ res, url, p }) => {
      d.requireAdmin(p);
      await listAudit(res, url);
    })
    .get('/projects/:project/logs', async ({ res, url, p }, a) => {
      const project = await d.project(p, a.project!);
      d.requireAdmin(p);
      await listAudit(res, url, project.id);
    });
}
