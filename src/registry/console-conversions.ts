/**
 * @module registry/console-conversions
 * The console's conversion tasks: the registry asks the accel service (server-side, with the
 * Authorization header of `console.accel` — the browser never sees it) and shows each viewer only
 * the tasks of repositories it may pull; a failed task may be queued again by whoever may push its
 * repository. An unreachable accel service is reported on the page, not as a failed page.
 */
import { FerryError, systemClock, type Clock } from '../core/index.js';
import type { ConversionState, ConversionView, ConversionsView } from '../console/index.js';
import { AccelClient } from '../accel/client.js';
import type { TaskView } from '../accel/protocol.js';
import { parseReference } from '../remote/index.js';
import type { RegistryConfig } from '../config/registry.js';
import { linkHeader } from './console-links.js';
import type { AuditLog } from './audit.js';
import type { Action, Auth, Principal } from './auth.js';

export interface ConversionsDeps {
  auth: Auth;
  audit: AuditLog;
  /** The accel service's client (with its Authorization header); undefined when console.accel is unset. */
  accel: AccelClient | undefined;
  clock?: Clock;
}

/** The accel client of `console.accel` (its Authorization header read now), undefined when unset. */
export function consoleAccel(config: RegistryConfig, env: NodeJS.ProcessEnv = process.env): AccelClient | undefined {
  const link = config.console.accel;
  if (!link) return undefined;
  const authHeader = linkHeader('console.accel', link, env);
  return new AccelClient(link.url, { timeoutMs: link.timeout, ...(authHeader ? { authHeader } : {}) });
}

function stateOf(t: TaskView): ConversionState {
  if (t.status === 'COMPLETED') return 'completed';
  if (t.status === 'FAILED') return 'failed';
  return t.running ? 'running' : 'queued';
}

/** ms since epoch of an RFC 3339 time, undefined for Go's zero time (not finished) or garbage. */
function timeOf(s: string): number | undefined {
  const ms = Date.parse(s);
  return Number.isFinite(ms) && ms > 0 ? ms : undefined;
}

/** The repository a task's source names, undefined when it names none. */
function repositoryOf(source: string): string | undefined {
  try {
    return parseReference(source).repository;
  } catch {
    return undefined;
  }
}

export function conversionView(t: TaskView, rights: ReadonlySet<Action>, now: number): ConversionView {
  const state = stateOf(t);
  const createdAt = timeOf(t.created) ?? now;
  const finishedAt = state === 'completed' || state === 'failed' ? timeOf(t.finished) : undefined;
  return {
    id: t.id,
    source: t.source,
    target: t.target,
    state,
    reason: t.reason,
    attempts: t.attempts,
    createdAt,
    ...(finishedAt !== undefined ? { finishedAt } : {}),
    durationMs: Math.max(0, (finishedAt ?? now) - createdAt),
    sourceSize: t.source_size,
    targetSize: t.target_size,
    canRetry: state === 'failed' && rights.has('push'),
  };
}

export class ConsoleConversions {
  readonly #d: ConversionsDeps;
  readonly #clock: Clock;

  constructor(d: ConversionsDeps) {
    this.#d = d;
    this.#clock = d.clock ?? systemClock;
  }

  /** The tasks `p` may see, each with what `p` may do with it. */
  async #visible(p: Principal, accel: AccelClient): Promise<ConversionView[]> {
    const tasks = await accel.listTasks();
    const rights = new Map<string, Set<Action>>();
    const now = this.#clock.now();
    const out: ConversionView[] = [];
    for (const t of tasks) {
      const repo = repositoryOf(t.source);
      if (repo === undefined) continue;
      let r = rights.get(repo);
      if (!r) rights.set(repo, (r = await this.#d.auth.allowed(p, repo)));
      if (r.has('pull')) out.push(conversionView(t, r, now));
    }
    return out;
  }

  async list(p: Principal): Promise<ConversionsView> {
    const accel = this.#d.accel;
    if (!accel) return { configured: false, tasks: [] };
    try {
      return { configured: true, tasks: await this.#visible(p, accel) };
    } catch (err) {
      if (!FerryError.is(err)) throw err;
      return { configured: true, tasks: [], error: `the accel service did not answer the task list: ${err.message}` };
    }
  }

  async retry(p: Principal, id: string): Promise<void> {
    const accel = this.#d.accel;
    if (!accel) throw new FerryError('FAILED_PRECONDITION', 'no accel service is configured (console.accel)');
    const task = (await this.#visible(p, accel)).find((t) => t.id === id);
    if (!task) throw new FerryError('NOT_FOUND', `conversion task ${id.slice(0, 100)} not found`);
    if (task.state !== 'failed') throw new FerryError('FAILED_PRECONDITION', `conversion task ${id} has not failed (it is ${task.state})`);
    if (!task.canRetry) throw new FerryError('PERMISSION_DENIED', `retrying ${task.source} needs push access to its repository`);
    await accel.retryTask(id);
    await this.#d.audit.record({ username: p.name, resource: task.source, resourceType: 'conversion', operation: 'retry' });
  }
}
