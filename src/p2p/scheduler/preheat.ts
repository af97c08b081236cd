/**
 * @module p2p/scheduler/preheat
 * The manager job API subset Harbor's Dragonfly preheat provider calls: `POST /oapi/v1/jobs`
 * (type preheat, args.type image|file), `GET /oapi/v1/jobs/:id`, `GET /oapi/v1/jobs`. An image job
 * resolves the manifest (index → platform) with the registry client, expands it to blob URLs
 * `<registry>/v2/<repo>/blobs/<digest>` (config + layers), computes each task id with the peers'
 * rules and has seed peers (or all peers, per scope) download them. Job answers never carry the
 * secrets a job was given (`view`): header values, the password, URL passwords and signature
 * query values are redacted; they are used for the downloads only.
 */
import { randomUUID } from 'node:crypto';
import { z } from 'zod';
import { FerryError, parseDuration } from '../../core/index.js';
import { type Logger, type MetricsRegistry, Counter, silentLogger } from '../../observe/index.js';
import { RegistryClient, withDigest, type ImageReference } from '../../remote/index.js';
import { HashRing, REDACTED, redactHeaders, redactUrl } from '../common/index.js';
import { jsonRequest } from '../common/index.js';
import { taskId } from '../common/index.js';
import type { ClusterAuth, DownloadTaskRequest, DownloadTaskResponse } from '../common/index.js';
import type { Host } from './state.js';

/** The platform of an index a preheat job takes when it names none (Harbor's Dragonfly provider's default). */
const DEFAULT_PREHEAT_PLATFORM = 'linux/amd64';

/**
 * Harbor's provider marshals a Go struct: unset strings arrive as `""`, unset numbers as `0`, an
 * unset slice as `null`. Those mean "not given" here.
 */
const unsetAsUndefined = (v: unknown): unknown => (v === '' || v === null || v === 0 ? undefined : v);

/**
 * Preheat scopes. Harbor ≤ 2.12 sends `single_peer` (Dragonfly's earlier name of a single seed
 * peer) and newer Harbor sends `""` when the policy names no scope: both are one seed peer.
 */
const scopeSchema = z
  .enum(['single_seed_peer', 'all_seed_peers', 'all_peers', 'single_peer', ''])
  .default('single_seed_peer')
  .transform((s) => (s === 'single_peer' || s === '' ? 'single_seed_peer' : s));

/**
 * A job timeout: a Go `time.Duration` in JSON is a number of nanoseconds (Dragonfly's manager and
 * Harbor's provider), a string is a duration such as `30m`; 0 or absent means the default.
 */
const timeoutSchema = z.preprocess(
  unsetAsUndefined,
  z
    .union([z.number().int().positive(), z.string().min(1)])
    .transform((t, ctx) => {
      if (typeof t === 'number') return Math.max(1, Math.round(t / 1e6));
      try {
        return parseDuration(t);
      } catch (err) {
        ctx.addIssue({ code: 'custom', message: (err as Error).message });
        return z.NEVER;
      }
    })
    .optional(),
);

export const createJobSchema = z
  .object({
    type: z.literal('preheat'),
    args: z
      .object({
        type: z.enum(['image', 'file']).default('image'),
        url: z.string().optional(),
        urls: z.array(z.string()).optional(),
        piece_length: z
          .number()
          .int()
          .min(4 * 1024 * 1024)
          .max(64 * 1024 * 1024)
          .optional(),
        tag: z.preprocess(unsetAsUndefined, z.string().optional()),
        application: z.preprocess(unsetAsUndefined, z.string().optional()),
        filtered_query_params: z.preprocess(unsetAsUndefined, z.string().optional()),
        headers: z.preprocess(unsetAsUndefined, z.record(z.string(), z.string()).optional()),
        username: z.string().optional(),
        password: z.string().optional(),
        platform: z.string().optional(),
        scope: scopeSchema,
        ips: z.array(z.string()).optional(),
        count: z.number().int().min(1).optional(),
        percentage: z.number().int().min(1).max(100).optional(),
        concurrent_task_count: z.number().int().min(1).max(100).default(8),
        concurrent_peer_count: z.number().int().min(1).max(1000).optional(),
        /** Milliseconds once parsed. */
        timeout: timeoutSchema,
        enable_task_id_based_blob_digest: z.boolean().optional(),
      })
      .passthrough(),
    /** `null` (Harbor, when the policy names no cluster) or absent: every cluster — this scheduler's one. */
    scheduler_cluster_ids: z.array(z.number().int().min(0)).nullable().optional(),
  })
  .passthrough();

export type CreateJob = z.infer<typeof createJobSchema>;

interface TaskOutcome {
  url: string;
  hostname: string;
  ip: string;
  description?: string;
}

export interface Job {
  id: number;
  task_id: string;
  type: 'preheat';
  state: 'PENDING' | 'SUCCESS' | 'FAILURE';
  args: CreateJob['args'];
  scheduler_cluster_ids: number[];
  created_at: string;
  updated_at: string;
  result: {
    job_states: {
      state: string;
      error: string;
      results: { scheduler_cluster_id: number; success_tasks: TaskOutcome[]; failure_tasks: TaskOutcome[] }[];
    }[];
  };
}

/** URLs inside a message, redacted. */
function redactText(s: string): string {
  return s.replace(/https?:\/\/[^\s"']+/g, (m) => redactUrl(m));
}

export class PreheatJobs {
  private readonly jobs = new Map<number, Job>();
  private nextId = 1;
  private readonly created: InstanceType<typeof Counter>;
  private readonly aborter = new AbortController();

  constructor(
    private readonly deps: {
      hosts: (type?: 'normal' | 'super') => Host[];
      blobDigestDefault: boolean;
      timeoutMs: number;
      insecureSkipVerify: boolean;
      /** Cluster credentials for the download commands sent to peers. */
      auth?: ClusterAuth | undefined;
    },
    registry: MetricsRegistry,
    private readonly log: Logger = silentLogger(),
  ) {
    this.created = new Counter({
      name: 'ferry_scheduler_create_job_total',
      help: 'preheat jobs',
      labelNames: ['state'],
      registers: [registry],
    });
  }

  close(): void {
    this.aborter.abort();
  }

  create(body: unknown): Job {
    const r = createJobSchema.safeParse(body);
    if (!r.success) throw new FerryError('INVALID_ARGUMENT', `job: ${z.prettifyError(r.error)}`);
    const a = r.data.args;
    if (a.type === 'image' && !a.url)
      throw new FerryError('INVALID_ARGUMENT', 'job: args.url (manifest URL) is required for image preheat');
    if (a.type === 'file' && !a.url && !a.urls?.length)
      throw new FerryError('INVALID_ARGUMENT', 'job: args.url or args.urls is required for file preheat');
    for (const u of [a.url, ...(a.urls ?? [])]) {
      if (u === undefined) continue;
      let p: URL;
      try {
        p = new URL(u);
      } catch {
        throw new FerryError('INVALID_ARGUMENT', `job: invalid URL ${JSON.stringify(u)}`);
      }
      if (p.protocol !== 'http:' && p.protocol !== 'https:')
        throw new FerryError('INVALID_ARGUMENT', `job: unsupported URL scheme ${p.protocol}`);
    }
    const now = new Date().toISOString();
    const job: Job = {
      id: this.nextId++,
      task_id: `group_${randomUUID()}`,
      type: 'preheat',
      state: 'PENDING',
      args: a,
      scheduler_cluster_ids: r.data.scheduler_cluster_ids?.length ? r.data.scheduler_cluster_ids : [1],
      created_at: now,
      updated_at: now,
      result: { job_states: [] },
    };
    this.jobs.set(job.id, job);
    this.created.inc({ state: 'created' });
    this.run(job).catch((err: unknown) => this.finish(job, [], [], (err as Error).message));
    return job;
  }

  /** The job as answered over the API and logged: its secrets redacted. */
  view(job: Job): Job {
    const a = job.args;
    const outcome = (t: TaskOutcome): TaskOutcome => ({
      ...t,
      url: redactUrl(t.url),
      ...(t.description !== undefined ? { description: redactText(t.description) } : {}),
    });
    return {
      ...job,
      args: {
        ...a,
        ...(a.headers !== undefined ? { headers: redactHeaders(a.headers) } : {}),
        ...(a.password !== undefined ? { password: REDACTED } : {}),
        ...(a.url !== undefined ? { url: redactUrl(a.url) } : {}),
        ...(a.urls !== undefined ? { urls: a.urls.map(redactUrl) } : {}),
      },
      result: {
        job_states: job.result.job_states.map((s) => ({
          ...s,
          error: redactText(s.error),
          results: s.results.map((r) => ({
            ...r,
            success_tasks: r.success_tasks.map(outcome),
            failure_tasks: r.failure_tasks.map(outcome),
          })),
        })),
      },
    };
  }

  get(id: number): Job {
    const j = this.jobs.get(id);
    if (!j) throw new FerryError('NOT_FOUND', `job ${id} not found`);
    return j;
  }

  list(filter: { type?: string; state?: string }): Job[] {
    return [...this.jobs.values()].filter((j) => (!filter.type || j.type === filter.type) && (!filter.state || j.state === filter.state));
  }

  private finish(job: Job, ok: TaskOutcome[], failed: TaskOutcome[], error = ''): void {
    job.state = !error && failed.length === 0 ? 'SUCCESS' : 'FAILURE';
    job.updated_at = new Date().toISOString();
    job.result = {
      job_states: [
        {
          state: job.state,
          error,
          results: [{ scheduler_cluster_id: job.scheduler_cluster_ids[0] ?? 1, success_tasks: ok, failure_tasks: failed }],
        },
      ],
    };
    this.created.inc({ state: job.state });
    this.log.info(
      { jobId: job.id, state: job.state, ok: ok.length, failed: failed.length, error: redactText(error) || undefined },
      'preheat job finished',
    );
  }

  /** Manifest URL → blob URLs (config + layers), and the headers that authorise fetching them. */
  async resolveImage(a: CreateJob['args']): Promise<{ urls: string[]; headers: Record<string, string> }> {
    const u = new URL(a.url!);
    const m = /^\/v2\/(.+)\/manifests\/([^/]+)$/.exec(u.pathname);
    if (!m) throw new FerryError('INVALID_ARGUMENT', `not a manifest URL: ${a.url}`);
    const repository = m[1]!;
    const reference = decodeURIComponent(m[2]!);
    const registry = u.host;
    const headers: Record<string, string> = {};
    for (const [k, v] of Object.entries(a.headers ?? {})) headers[k.toLowerCase()] = v;
    const client = new RegistryClient({
      insecure: (h) => h === registry && u.protocol === 'http:',
      credentials: () => (a.username ? { username: a.username, password: a.password ?? '' } : undefined),
      log: this.log,
      retries: 2,
    });
    const ref: ImageReference = reference.includes(':')
      ? withDigest({ registry, repository }, reference)
      : { registry, repository, tag: reference };
    const { manifest: im } = await client.resolveImage(ref, {
      platform: a.platform ?? DEFAULT_PREHEAT_PLATFORM,
      headers,
      signal: this.aborter.signal,
    });
    const base = `${u.protocol}//${u.host}/v2/${repository}/blobs/`;
    const urls = [im.config.digest, ...im.layers.map((l) => l.digest)].map((d) => base + d);
    // Headers the seeds send to the registry: the caller's, else a token the client obtained.
    if (!headers.authorization) Object.assign(headers, await client.authorize(registry, repository).catch(() => ({})));
    return { urls, headers };
  }

  private targets(a: CreateJob['args'], tid: string): Host[] {
    if (a.scope === 'all_peers') {
      let hosts = this.deps.hosts();
      if (a.ips?.length) hosts = hosts.filter((h) => a.ips!.includes(h.info.ip));
      else if (a.count) hosts = hosts.slice(0, a.count);
      else if (a.percentage) hosts = hosts.slice(0, Math.max(1, Math.ceil((hosts.length * a.percentage) / 100)));
      return hosts;
    }
    const seeds = this.deps.hosts('super');
    if (a.scope === 'all_seed_peers') return a.ips?.length ? seeds.filter((h) => a.ips!.includes(h.info.ip)) : seeds;
    const id = new HashRing(seeds.map((s) => s.info.id)).get(tid);
    return seeds.filter((s) => s.info.id === id);
  }

  private async run(job: Job): Promise<void> {
    const a = job.args;
    let urls: string[];
    let headers: Record<string, string>;
    if (a.type === 'image') ({ urls, headers } = await this.resolveImage(a));
    else {
      urls = a.urls?.length ? a.urls : [a.url!];
      headers = a.headers ?? {};
    }
    const filtered = a.filtered_query_params ? a.filtered_query_params.split('&').filter(Boolean) : undefined;
    const blobDigest = a.enable_task_id_based_blob_digest ?? this.deps.blobDigestDefault;
    const ok: TaskOutcome[] = [];
    const failed: TaskOutcome[] = [];
    const work: { url: string; host: Host; tid: string }[] = [];
    for (const url of urls) {
      const tid = taskId({
        url,
        tag: a.tag,
        application: a.application,
        pieceLength: a.piece_length,
        filteredQueryParams: filtered,
        blobDigest,
      });
      const hosts = this.targets(a, tid);
      if (hosts.length === 0) {
        failed.push({ url, hostname: '', ip: '', description: 'no seed peer / peer announced' });
        continue;
      }
      for (const host of hosts) work.push({ url, host, tid });
    }
    this.log.info({ jobId: job.id, blobs: urls.length, downloads: work.length, scope: a.scope }, 'preheat job running');
    const timeoutMs = a.timeout ?? this.deps.timeoutMs;
    let next = 0;
    const worker = async (): Promise<void> => {
      while (next < work.length) {
        const w = work[next++]!;
        const body: DownloadTaskRequest = {
          url: w.url,
          headers,
          tag: a.tag,
          application: a.application,
          pieceLength: a.piece_length,
          filteredQueryParams: filtered,
          blobDigest,
          wait: true,
        };
        const out: TaskOutcome = { url: w.url, hostname: w.host.info.hostname, ip: w.host.info.ip };
        try {
          const r = await jsonRequest<DownloadTaskResponse>(`${w.host.info.uploadUrl}/api/v1/tasks`, {
            method: 'POST',
            json: body,
            timeoutMs,
            signal: this.aborter.signal,
            auth: this.deps.auth,
          });
          if (r.state === 'succeeded') ok.push(out);
          else failed.push({ ...out, description: r.description ?? r.state });
        } catch (err) {
          failed.push({ ...out, description: (err as Error).message });
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(a.concurrent_task_count, Math.max(1, work.length)) }, worker));
    this.finish(job, ok, failed, failed.length ? `${failed.length} of ${work.length} downloads failed` : '');
  }
}
