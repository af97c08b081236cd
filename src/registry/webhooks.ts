/**
 * @module registry/webhooks
 * Harbor-style webhooks: per-project policies, events in Harbor's "Default" payload format, and
 * delivery from a durable outbox in the metadata database. Outbox rows are written in the same
 * transaction as the manifest change that caused them, so an event is never lost to a crash and
 * never sent for a change that did not commit. Which rows an event makes is decided here: the
 * project's enabled policies that want the event type, one row per target, an untagged push held
 * back for the settle delay, and an index push superseding the pending untagged events of the
 * manifests it lists. A dispatcher claims due rows, POSTs them (3 s timeout), and retries failures
 * with exponential backoff; every attempt is logged.
 */
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { systemClock, type Clock } from '../core/index.js';
import type { Logger, MetricsRegistry } from '../observe/index.js';
import { Counter } from '../observe/index.js';
import type { Delivery, NewDelivery, OutboxChange, RegistryMetadata } from './metadata/metadata.js';
import { projectOf } from './names.js';
import { HARBOR_EVENT_TYPES, type HarborWebhookPayload } from '../accel/protocol.js';

/** Event types offered for policies (Harbor's list, as accel takes them). */
export const WEBHOOK_EVENT_TYPES = HARBOR_EVENT_TYPES;

export interface WebhookOptions {
  enabled: boolean;
  maxRetries: number;
  backoffMs: number;
  timeoutMs: number;
  settleDelayMs: number;
  pollIntervalMs: number;
}

/** The artifact event a manifest change produces. */
export interface ArtifactEvent {
  type: 'PUSH_ARTIFACT' | 'PULL_ARTIFACT' | 'DELETE_ARTIFACT';
  repo: string;
  digest: string;
  /** The tag pushed/pulled/deleted; for by-digest operations Harbor puts the digest here. */
  tag?: string | undefined;
  operator: string;
  /** By-digest push of a manifest: delayed and cancelled if an index referencing it arrives. */
  untagged?: boolean;
  /** An index push: the manifests it lists, whose pending untagged events its own event replaces. */
  children?: string[];
  /** When the change was made (ms): a new repository's creation time in the payload. Default: now. */
  at?: number;
}

/** Deliveries the dispatcher claims per round. */
const CLAIM_BATCH = 32;
/** A delivery claimed longer ago than its timeout plus this is taken to be lost with its process. */
const STALE_CLAIM_MARGIN_MS = 60_000;
/** Why a superseded untagged event was not sent (its status message). */
const SUPERSEDED = 'superseded by index push';

/** Builds outbox rows for events and delivers them. */
export class Webhooks {
  readonly #meta: RegistryMetadata;
  readonly #opts: WebhookOptions;
  readonly #log: Logger;
  readonly #clock: Clock;
  #externalHost: string;
  #timer: (() => void) | undefined;
  #running = false;
  #stopped = false;
  readonly #inflight = new Set<Promise<void>>();
  readonly #deliveries: InstanceType<typeof Counter>;

  constructor(
    deps: { meta: RegistryMetadata; log: Logger; metrics: MetricsRegistry; clock?: Clock | undefined },
    opts: WebhookOptions & { externalHost: string },
  ) {
    this.#meta = deps.meta;
    this.#clock = deps.clock ?? systemClock;
    this.#log = deps.log.child({ component: 'webhooks' });
    this.#opts = opts;
    this.#externalHost = opts.externalHost;
    this.#deliveries = new Counter({
      name: 'ferry_registry_webhook_deliveries_total',
      help: 'Webhook delivery attempts by result',
      labelNames: ['result'],
      registers: [deps.metrics],
    });
  }

  /** Host[:port] put into resource_url (Harbor: external_url without scheme). */
  setExternalHost(host: string): void {
    this.#externalHost = host;
  }

  /** Harbor "Default" payload of an artifact event. */
  async payload(ev: ArtifactEvent, now = this.#clock.now()): Promise<string> {
    const slash = ev.repo.indexOf('/');
    const namespace = projectOf(ev.repo);
    const project = await this.#meta.getProject(namespace);
    const repoRec = await this.#meta.getRepository(ev.repo);
    const tag = ev.tag ?? ev.digest;
    const ref = tag.includes(':') ? `@${tag}` : `:${tag}`;
    const repository: HarborWebhookPayload['event_data']['repository'] = {
      name: slash < 0 ? ev.repo : ev.repo.slice(slash + 1),
      namespace,
      repo_full_name: ev.repo,
      repo_type: project?.public ? 'public' : 'private',
    };
    // a push that creates the repository: it is created with the change, at `ev.at`
    const created = repoRec?.createdAt ?? (ev.type === 'PUSH_ARTIFACT' ? (ev.at ?? now) : undefined);
    if (created !== undefined) repository.date_created = Math.floor(created / 1000);
    const payload: HarborWebhookPayload = {
      type: ev.type,
      occur_at: Math.floor(now / 1000),
      operator: ev.operator,
      event_data: {
        resources: [{ digest: ev.digest, tag, resource_url: `${this.#externalHost}/${ev.repo}${ref}` }],
        repository,
      },
    };
    return JSON.stringify(payload);
  }

  /** Outbox rows for `ev`: one per target of each enabled policy of the project that wants the type. */
  async deliveriesFor(ev: ArtifactEvent): Promise<NewDelivery[]> {
    if (!this.#opts.enabled) return [];
    const project = await this.#meta.getProject(projectOf(ev.repo));
    if (!project) return [];
    const policies = (await this.#meta.listPolicies(project.id)).filter((p) => p.enabled && p.eventTypes.includes(ev.type));
    if (!policies.length) return [];
    const now = this.#clock.now();
    const payload = await this.payload(ev, now);
    const out: NewDelivery[] = [];
    for (const p of policies) {
      for (const t of p.targets) {
        out.push({
          policyId: p.id,
          eventType: ev.type,
          target: t,
          payload,
          repo: ev.repo,
          digest: ev.digest,
          notBefore: ev.untagged ? now + this.#opts.settleDelayMs : now,
          untagged: ev.untagged === true,
        });
      }
    }
    return out;
  }

  /**
   * The outbox change `ev` makes, to be committed with the manifest change: its deliveries, and for
   * an index push the pending untagged events of its manifests stopped (the index's event replaces them).
   */
  async outboxFor(ev: ArtifactEvent): Promise<OutboxChange> {
    const out: OutboxChange = { enqueue: await this.deliveriesFor(ev) };
    if (ev.children?.length) out.supersede = { repo: ev.repo, digests: ev.children, reason: SUPERSEDED };
    return out;
  }

  /** Starts the dispatcher (also picks up deliveries left by a previous run). */
  start(): void {
    this.#stopped = false;
    this.#schedule(0);
  }

  /** Asks the dispatcher to look at the outbox now. */
  kick(): void {
    if (!this.#stopped) this.#schedule(0);
  }

  #schedule(ms: number): void {
    this.#timer?.();
    this.#timer = this.#clock.setTimer(ms, () => void this.#tick(), { unref: true });
  }

  async #tick(): Promise<void> {
    this.#timer = undefined;
    if (this.#stopped) return;
    if (this.#running) {
      this.#schedule(this.#opts.pollIntervalMs);
      return;
    }
    this.#running = true;
    try {
      const now = this.#clock.now();
      const due = await this.#meta.claimDue(now, CLAIM_BATCH, now - (this.#opts.timeoutMs + STALE_CLAIM_MARGIN_MS));
      await Promise.all(
        due.map((d) => {
          const p = this.#deliver(d).finally(() => this.#inflight.delete(p));
          this.#inflight.add(p);
          return p;
        }),
      );
    } catch (err) {
      this.#log.error({ err }, 'webhook dispatcher failed');
    } finally {
      this.#running = false;
    }
    if (this.#stopped) return;
    const next = await this.#meta.nextDue().catch((err: unknown) => {
      this.#log.error({ err }, 'webhook outbox unreadable');
      return undefined;
    });
    const wait =
      next === undefined ? this.#opts.pollIntervalMs : Math.max(0, Math.min(next - this.#clock.now(), this.#opts.pollIntervalMs));
    this.#schedule(wait);
  }

  async #deliver(d: Delivery): Promise<void> {
    const attempt = d.attempts + 1;
    const started = this.#clock.now();
    let statusCode = 0;
    let error = '';
    try {
      statusCode = await this.#post(d);
      if (statusCode < 200 || statusCode > 299) error = `target answered ${statusCode}`;
    } catch (err) {
      error = (err as Error).message;
    }
    const durationMs = this.#clock.now() - started;
    const ok = error === '';
    const retry = !ok && attempt <= this.#opts.maxRetries;
    const next = ok
      ? { status: 'Success' as const, nextAt: 0, error: '' }
      : retry
        ? { status: 'Pending' as const, nextAt: this.#clock.now() + this.#opts.backoffMs * 2 ** (attempt - 1), error }
        : { status: 'Error' as const, nextAt: 0, error };
    await this.#meta.recordAttempt(d.id, { attempt, at: started, statusCode, error, durationMs }, next);
    this.#deliveries.inc({ result: ok ? 'success' : retry ? 'retry' : 'failed' });
    this.#log.info(
      { delivery: d.id, event: d.eventType, address: d.target.address, attempt, statusCode, error: error || undefined },
      ok ? 'webhook delivered' : 'webhook failed',
    );
  }

  #post(d: Delivery): Promise<number> {
    return new Promise((resolve, reject) => {
      let url: URL;
      try {
        url = new URL(d.target.address);
      } catch {
        reject(new Error(`invalid address ${d.target.address}`));
        return;
      }
      const body = Buffer.from(d.payload);
      const headers: Record<string, string | number> = { 'content-type': 'application/json', 'content-length': body.length };
      if (d.target.auth_header) headers.authorization = d.target.auth_header;
      const opts = { method: 'POST', headers, timeout: this.#opts.timeoutMs };
      const req =
        url.protocol === 'https:'
          ? httpsRequest(url, { ...opts, rejectUnauthorized: !d.target.skip_cert_verify })
          : url.protocol === 'http:'
            ? httpRequest(url, opts)
            : undefined;
      if (!req) {
        reject(new Error(`unsupported scheme ${url.protocol}`));
        return;
      }
      const timer = setTimeout(() => req.destroy(new Error(`timeout after ${this.#opts.timeoutMs} ms`)), this.#opts.timeoutMs);
      req.on('response', (res) => {
        res.resume();
        res.on('end', () => {
          clearTimeout(timer);
          resolve(res.statusCode ?? 0);
        });
        res.on('error', (e) => {
          clearTimeout(timer);
          reject(e);
        });
      });
      req.on('timeout', () => req.destroy(new Error(`timeout after ${this.#opts.timeoutMs} ms`)));
      req.on('error', (e) => {
        clearTimeout(timer);
        reject(e);
      });
      req.end(body);
    });
  }

  /** Stops the dispatcher and waits for deliveries in flight (they stay claimed and retry after a restart). */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#timer?.();
    this.#timer = undefined;
    await Promise.allSettled([...this.#inflight]);
  }
}
