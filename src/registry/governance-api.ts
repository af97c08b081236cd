/**
 * @module registry/governance-api
 * Harbor's governance endpoints on top of the metadata store: project quotas (`/quotas`, Harbor's
 * `Quota` JSON with the `storage` resource; the limit is enforced on push by the store) and the
 * audit log (`/audit-logs` and `/projects/{p}/logs`, Harbor's `AuditLog` JSON, its `q` query
 * syntax) and garbage collection (`/system/gc`: run now, schedule, history with logs, stop; runs
 * executed by gc-jobs.ts on whichever replica claims them). Registered into the Harbor API's route
 * table; errors are FerryErrors answered there.
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
  type GcRun,
  type GcSchedule,
  type Project,
  type Quota,
  type RegistryMetadata,
} from './metadata/metadata.js';
import { nextScheduled } from './gc-jobs.js';
import type { AuditLog } from './audit.js';

export interface GovernanceDeps {
  meta: RegistryMetadata;
  audit: AuditLog;
  requireAdmin(p: Principal): void;
  /** The project a path value names, if `p` may see it (else NOT_FOUND). */
  project(p: Principal, nameOrId: string): Promise<Project>;
  json(req: Ctx['req']): Promise<Record<string, unknown>>;
  /** A gc run was requested on this replica: look for work now. */
  gcKick(): void;
  now(): number;
}

/** Harbor's schedule types and their crons (6 fields, UTC). */
const SCHEDULE_CRON: Record<string, string> = { Hourly: '0 0 * * * *', Daily: '0 0 0 * * *', Weekly: '0 0 0 * * 0' };

function gcJson(r: GcRun): Record<string, unknown> {
  return {
    id: r.id,
    job_name: 'GARBAGE_COLLECTION',
    job_kind: r.trigger,
    job_parameters: r.parameters,
    schedule: null,
    job_status: r.status,
    deleted: false,
    creation_time: iso(r.createdAt),
    update_time: iso(r.updatedAt),
  };
}

function scheduleJson(s: GcSchedule | undefined): Record<string, unknown> {
  if (!s) return { schedule: null };
  return {
    schedule: { type: s.type, cron: s.cron, next_scheduled_time: iso(s.nextRun) },
    parameters: JSON.parse(s.parameters) as unknown,
    creation_time: iso(s.createdAt),
    update_time: iso(s.updatedAt),
  };
}

/** The run parameters Harbor accepts: delete_untagged, dry_run (booleans), workers (1-5). */
function gcParameters(v: unknown): string {
  const p = (v ?? {}) as Record<string, unknown>;
  if (typeof p !== 'object' || Array.isArray(p)) throw badRequest('parameters must be an object');
  const out: Record<string, unknown> = {};
  for (const [k, x] of Object.entries(p)) {
    if ((k === 'delete_untagged' || k === 'dry_run') && typeof x === 'boolean') out[k] = x;
    else if (k === 'workers' && Number.isInteger(x) && (x as number) >= 1 && (x as number) <= 5) out[k] = x;
    else throw badRequest(`invalid gc parameter ${JSON.stringify(k.slice(0, 40))}`);
  }
  return JSON.stringify(out);
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
    })
    .get('/system/gc', async ({ res, url, p }) => {
      d.requireAdmin(p);
      const pg = page(url);
      const r = await d.meta.listGcRuns(pg.offset, pg.limit);
      sendJson(res, 200, r.items.map(gcJson), { 'x-total-count': String(r.total) });
    })
    .get('/system/gc/schedule', async ({ res, p }) => {
      d.requireAdmin(p);
      sendJson(res, 200, scheduleJson(await d.meta.getGcSchedule()));
    })
    .post('/system/gc/schedule', (c) => setSchedule(c, 201))
    .put('/system/gc/schedule', (c) => setSchedule(c, 200))
    .get('/system/gc/:id(\\d+)', async ({ res, p }, a) => {
      d.requireAdmin(p);
      sendJson(res, 200, gcJson(await gcRun(a.id!)));
    })
    .get('/system/gc/:id(\\d+)/log', async ({ res, p }, a) => {
      d.requireAdmin(p);
      const log = (await gcRun(a.id!)).log;
      res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8', 'content-length': Buffer.byteLength(log) });
      res.end(log);
    })
    .put('/system/gc/:id(\\d+)', async ({ res, p }, a) => {
      d.requireAdmin(p);
      const run = await gcRun(a.id!);
      if (!(await d.meta.requestGcStop(run.id))) throw new FerryError('FAILED_PRECONDITION', `gc ${run.id} is ${run.status}, not running`);
      await d.audit.record({ username: p.name, resource: `gc ${run.id}`, resourceType: 'gc', operation: 'stop' });
      sendJson(res, 200, {});
    });

  async function gcRun(id: string): Promise<GcRun> {
    const run = await d.meta.getGcRun(Number(id));
    if (!run) throw new FerryError('NOT_FOUND', `gc ${id} not found`);
    return run;
  }

  /** Manual: a run now (201 + Location); Hourly/Daily/Weekly/Custom: the schedule; None: no schedule. */
  async function setSchedule({ req, res, p }: Ctx, status: number): Promise<void> {
    d.requireAdmin(p);
    const body = await d.json(req);
    const sched = (body.schedule ?? {}) as Record<string, unknown>;
    const type = sched.type;
    const parameters = gcParameters(body.parameters);
    if (type === 'Manual') {
      const run = await d.meta.createGcRun('MANUAL', parameters);
      await d.audit.record({ username: p.name, resource: `gc ${run.id}`, resourceType: 'gc', operation: 'create' });
      d.gcKick();
      res.writeHead(201, { location: `/api/v2.0/system/gc/${run.id}`, 'content-length': 0 });
      res.end();
      return;
    }
    if (type === 'None') {
      await d.meta.setGcSchedule(undefined, d.now());
    } else {
      const cron = typeof type === 'string' && type !== 'Custom' ? SCHEDULE_CRON[type] : sched.cron;
      if (typeof cron !== 'string') throw badRequest('schedule.type must be Manual, Hourly, Daily, Weekly, Custom (with cron) or None');
      const nextRun = nextScheduled(cron, d.now());
      await d.meta.setGcSchedule({ type: type as string, cron, parameters, nextRun }, d.now());
    }
    await d.audit.record({ username: p.name, resource: 'gc schedule', resourceType: 'gc', operation: 'update' });
    sendJson(res, status, {});
  }
}
