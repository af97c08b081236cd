/**
 * @module registry/console-p2p
 * The console's P2P page: the registry asks the scheduler (server-side, with console.scheduler's
 * Authorization header — a preheat token) for its overview and its preheat jobs. Task URLs name
 * repositories of every project, so the page is for system admins. A scheduler that does not answer
 * is reported on the page.
 */
import { FerryError } from '../core/index.js';
import type { P2pView, PreheatJobView } from '../console/index.js';
import { JsonClient } from '../httpx/index.js';
import { OVERVIEW_PATH, type SchedulerOverview } from '../p2p/common/index.js';
import { linkHeader, type ServiceLink } from './console-links.js';

/** The parts of a preheat job (the scheduler's `/oapi/v1/jobs` answer) the page shows. */
interface JobWire {
  id: number;
  state: string;
  args: { url?: string; urls?: string[] };
  created_at: string;
  updated_at: string;
  result: { job_states: Array<{ error: string; results: Array<{ success_tasks: unknown[]; failure_tasks: unknown[] }> }> };
}

function jobView(j: JobWire): PreheatJobView {
  const results = j.result.job_states.flatMap((s) => s.results);
  return {
    id: j.id,
    state: j.state,
    url: j.args.url ?? (j.args.urls ?? []).join(' '),
    createdAt: j.created_at,
    updatedAt: j.updated_at,
    successTasks: results.reduce((n, r) => n + r.success_tasks.length, 0),
    failureTasks: results.reduce((n, r) => n + r.failure_tasks.length, 0),
    error: j.result.job_states
      .map((s) => s.error)
      .filter(Boolean)
      .join('; '),
  };
}

export class ConsoleP2p {
  readonly #client: JsonClient | undefined;

  /** `link`: console.scheduler (undefined: no scheduler linked). */
  constructor(link: ServiceLink | undefined, env: NodeJS.ProcessEnv = process.env) {
    if (!link) return;
    const header = linkHeader('console.scheduler', link, env);
    this.#client = new JsonClient({
      what: 'P2P scheduler',
      baseUrl: link.url.replace(/\/+$/, ''),
      timeoutMs: link.timeout,
      ...(header ? { headers: { authorization: header } } : {}),
    });
  }

  async view(): Promise<P2pView> {
    const empty: P2pView = { configured: false, hosts: [], tasks: [], traffic: { fromPeers: 0, fromSource: 0 }, jobs: [] };
    const c = this.#client;
    if (!c) return empty;
    try {
      const [o, jobs] = await Promise.all([c.json<SchedulerOverview>('GET', OVERVIEW_PATH), c.json<JobWire[]>('GET', '/oapi/v1/jobs')]);
      return {
        configured: true,
        hosts: o.hosts.map((h) => ({ hostname: h.hostname, ip: h.ip, seed: h.type === 'super', peers: h.peers })),
        tasks: o.tasks,
        traffic: o.traffic,
        jobs: jobs.map(jobView).sort((a, b) => b.id - a.id),
      };
    } catch (err) {
      if (!FerryError.is(err)) throw err;
      return { ...empty, configured: true, error: `the P2P scheduler did not answer: ${err.message}` };
    }
  }
}
