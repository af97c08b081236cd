/**
 * @module p2p/peer/scheduler-client
 * The peer's side of the scheduler API. Tasks are sharded over several schedulers by a
 * consistent-hash ring of scheduler URLs keyed by task id (every peer of a task reaches the same
 * scheduler, so scheduler state can stay in memory); an unreachable owner fails over to the next
 * scheduler on the ring. Hosts are announced to every scheduler, periodically.
 */
import { FerryError } from '../../core/index.js';
import { type Logger, silentLogger } from '../../observe/index.js';
import { HashRing } from '../common/index.js';
import { jsonRequest } from '../common/index.js';
import type { ClusterAuth, HostInfo, PeerEvent, PeerReportsResponse, RegisterRequest, ScheduleResponse } from '../common/index.js';

/** Most events in one report request. */
const MAX_REPORT_BATCH = 1000;

/**
 * Reports waiting for the next report request to one scheduler: per peer, its events in order (and
 * its registration, for a peer that went to the origin without registering first).
 */
interface ReportBatch {
  reports: Map<string, { events: PeerEvent[]; register?: RegisterRequest | undefined }>;
  events: number;
  sent: Promise<PeerReportsResponse | undefined>;
}

export class SchedulerClient {
  private readonly ring: HashRing;
  private timer: NodeJS.Timeout | undefined;
  /** Per scheduler: the last report request queued (requests to one scheduler go one after another). */
  private readonly queues = new Map<string, Promise<unknown>>();
  /** Per scheduler: the reports waiting for the next request (not yet sent). */
  private readonly outbox = new Map<string, ReportBatch>();
  /** Per peer: the request carrying its latest events (`leave` waits for it). */
  private readonly lastReport = new Map<string, Promise<unknown>>();
  /** Schedulers without `POST /api/v1/events` (older versions): one request per peer. */
  private readonly perPeerOnly = new Set<string>();

  constructor(
    readonly urls: string[],
    readonly host: HostInfo,
    private readonly opts: { timeoutMs: number; announceInterval: number; log?: Logger | undefined; auth?: ClusterAuth | undefined },
  ) {
    this.ring = new HashRing(urls.map((u) => u.replace(/\/+$/, '')));
  }

  private get log(): Logger {
    return this.opts.log ?? silentLogger();
  }
  private get auth(): ClusterAuth | undefined {
    return this.opts.auth;
  }
  get enabled(): boolean {
    return this.urls.length > 0;
  }

  async announce(url?: string): Promise<void> {
    const targets = url ? [url] : this.ring.walk('');
    await Promise.all(
      targets.map((u) =>
        jsonRequest(`${u}/api/v1/hosts/${encodeURIComponent(this.host.id)}`, {
          method: 'PUT',
          json: this.host,
          timeoutMs: 5000,
          auth: this.auth,
        }).catch((err: unknown) => {
          if (FerryError.hasCode(err, 'UNAUTHENTICATED')) {
            this.log.error(
              { scheduler: u, err: (err as Error).message },
              `the scheduler refused this peer's cluster credentials: give it and every peer the same cluster secret${this.auth ? '' : ' (this peer has none)'}`,
            );
          } else this.log.warn({ scheduler: u, err: (err as Error).message }, 'announce host failed');
        }),
      ),
    );
  }

  start(): void {
    if (!this.enabled) return;
    void this.announce();
    this.timer = setInterval(() => void this.announce(), this.opts.announceInterval);
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    await Promise.all(
      this.ring.walk('').map((u) =>
        jsonRequest(`${u}/api/v1/hosts/${encodeURIComponent(this.host.id)}`, {
          method: 'DELETE',
          timeoutMs: 2000,
          auth: this.auth,
        }).catch(() => undefined),
      ),
    );
  }

  /** Registers with the task's scheduler; returns its URL (later calls for this peer go there). */
  async register(req: RegisterRequest, signal?: AbortSignal): Promise<{ scheduler: string; response: ScheduleResponse }> {
    let lastErr: unknown = new FerryError('UNAVAILABLE', 'no scheduler configured');
    for (const u of this.ring.walk(req.taskId)) {
      for (let attempt = 0; attempt < 2; attempt++) {
        try {
          const response = await jsonRequest<ScheduleResponse>(`${u}/api/v1/peers`, {
            method: 'POST',
            json: req,
            timeoutMs: this.opts.timeoutMs,
            signal,
            auth: this.auth,
          });
          return { scheduler: u, response };
        } catch (err) {
          lastErr = err;
          if (FerryError.hasCode(err, 'NOT_FOUND') && attempt === 0) {
            await this.announce(u);
            continue;
          }
          if (FerryError.hasCode(err, 'FAILED_PRECONDITION') || FerryError.hasCode(err, 'INVALID_ARGUMENT')) throw err;
          break;
        }
      }
      this.log.warn({ scheduler: u, err: (lastErr as Error).message }, 'scheduler unreachable, trying the next one');
    }
    throw lastErr;
  }

  reschedule(scheduler: string, peerId: string, blocked: string[], signal?: AbortSignal): Promise<ScheduleResponse> {
    return jsonRequest<ScheduleResponse>(`${scheduler}/api/v1/peers/${encodeURIComponent(peerId)}/reschedule`, {
      method: 'POST',
      json: { candidateParentIds: blocked },
      timeoutMs: this.opts.timeoutMs,
      signal,
      auth: this.auth,
    });
  }

  /**
   * Queues reports for a peer (sent in order, errors logged, never thrown). The reports of every
   * peer of this host reported while the previous request to that scheduler is in flight (or in
   * the same tick) go out together in one request (`POST /api/v1/events`): a lazy loader's small
   * range tasks, each ending with one report, share requests instead of costing one each.
   * Resolves when the request carrying them is answered.
   */
  report(scheduler: string, peerId: string, events: PeerEvent[]): Promise<void> {
    return this.enqueue(scheduler, peerId, events).then(() => undefined);
  }

  /**
   * Registers a peer that went to the origin without registering (its host reads the object alone,
   * p2p/peer/speculate) together with its events, in the next report request to the task's
   * scheduler. Resolves whether its host is still the only one reading the object (false when the
   * scheduler is unreachable or too old to take registrations with reports).
   */
  async registerDone(req: RegisterRequest, events: PeerEvent[]): Promise<boolean> {
    const u = this.ring.get(req.taskId);
    if (!u) return false;
    const r = await this.enqueue(u, req.peerId, events, req);
    return r?.alone?.includes(req.peerId) ?? false;
  }

  private enqueue(
    scheduler: string,
    peerId: string,
    events: PeerEvent[],
    register?: RegisterRequest,
  ): Promise<PeerReportsResponse | undefined> {
    const open = this.outbox.get(scheduler);
    if (open && open.events + events.length <= MAX_REPORT_BATCH) {
      const mine = open.reports.get(peerId);
      if (mine) mine.events.push(...events);
      else open.reports.set(peerId, { events: [...events], register });
      open.events += events.length;
      this.lastReport.set(peerId, open.sent);
      return open.sent;
    }
    const batch: ReportBatch = {
      reports: new Map([[peerId, { events: [...events], register }]]),
      events: events.length,
      sent: Promise.resolve(undefined),
    };
    this.outbox.set(scheduler, batch);
    const prev = this.queues.get(scheduler) ?? Promise.resolve();
    const next = prev
      .then(() => {
        if (this.outbox.get(scheduler) === batch) this.outbox.delete(scheduler); // later reports start the next batch
        return this.send(scheduler, batch.reports);
      })
      .then(
        (r) => r,
        (err: unknown) => {
          this.log.debug({ scheduler, peers: batch.reports.size, err: (err as Error).message }, 'report to scheduler failed');
          return undefined;
        },
      );
    batch.sent = next;
    this.queues.set(scheduler, next);
    this.lastReport.set(peerId, next);
    void next.then(() => {
      if (this.queues.get(scheduler) === next) this.queues.delete(scheduler);
      for (const id of batch.reports.keys()) if (this.lastReport.get(id) === next) this.lastReport.delete(id);
    });
    return next;
  }

  /** One report request; to a scheduler without the batch call, one request per peer. */
  private async send(scheduler: string, reports: ReportBatch['reports']): Promise<PeerReportsResponse | undefined> {
    if (!this.perPeerOnly.has(scheduler)) {
      try {
        const r = await jsonRequest<PeerReportsResponse>(`${scheduler}/api/v1/events`, {
          method: 'POST',
          json: { reports: [...reports].map(([peerId, { events, register }]) => ({ peerId, events, ...(register ? { register } : {}) })) },
          timeoutMs: 10_000,
          auth: this.auth,
        });
        if (r?.unknown?.length) this.log.debug({ scheduler, peers: r.unknown }, 'reports for peers the scheduler does not know');
        return r;
      } catch (err) {
        if (!FerryError.hasCode(err, 'NOT_FOUND')) throw err;
        this.perPeerOnly.add(scheduler);
      }
    }
    // (a scheduler without the batch call never answers objectAlone: no peer here registers late)
    for (const [peerId, { events }] of reports) {
      await jsonRequest(`${scheduler}/api/v1/peers/${encodeURIComponent(peerId)}/events`, {
        method: 'POST',
        json: { events },
        timeoutMs: 10_000,
        auth: this.auth,
      }).catch((err: unknown) => this.log.debug({ peerId, err: (err as Error).message }, 'report to scheduler failed'));
    }
    return undefined;
  }

  async leave(scheduler: string, peerId: string): Promise<void> {
    await this.lastReport.get(peerId);
    await jsonRequest(`${scheduler}/api/v1/peers/${encodeURIComponent(peerId)}`, {
      method: 'DELETE',
      timeoutMs: 5000,
      auth: this.auth,
    }).catch(() => undefined);
  }

  /** Tells the task's scheduler this host no longer holds the task (eviction). */
  async evicted(taskId: string): Promise<void> {
    const u = this.ring.get(taskId);
    if (!u) return;
    await jsonRequest(`${u}/api/v1/tasks/${taskId}/hosts/${encodeURIComponent(this.host.id)}`, {
      method: 'DELETE',
      timeoutMs: 5000,
      auth: this.auth,
    }).catch((err: unknown) => this.log.debug({ taskId, err: (err as Error).message }, 'eviction report failed'));
  }
}
