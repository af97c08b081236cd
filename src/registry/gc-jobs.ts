/**
 * @module registry/gc-jobs
 * Harbor's GC API on top of the online gc (gc.ts): runs requested through `/system/gc/schedule`
 * (Manual) or due by the schedule's cron are rows in the metadata store; every replica polls, one
 * takes a due schedule (moving its next time in the same transaction) and one claims a Pending run
 * — only one run is Running at a time across replicas. The run's log lines and a heartbeat go to
 * its row; a run whose replica stopped heartbeating is marked Error by the next claim. A stop
 * request is seen at the next heartbeat and stops the run between blobs.
 */
import { randomUUID } from 'node:crypto';
import { systemClock, type Clock } from '../core/index.js';
import type { Logger } from '../observe/index.js';
import type { BlobStore } from '../content/index.js';
import { collectGarbage } from './gc.js';
import { nextCronTime, parseCron } from './cron.js';
import type { GcRun, RegistryMetadata } from './metadata/metadata.js';

export interface GcJobOptions {
  /** How often replicas look for due schedules and Pending runs. */
  pollIntervalMs: number;
  /** Blobs younger than this are kept (gc.minAge). */
  minAgeMs: number;
  uploadMaxAgeMs: number;
  /** A Running run not updated for this long is taken as lost. */
  staleAfterMs: number;
}

/** Harbor's `job_parameters`. */
export interface GcParameters {
  delete_untagged?: boolean;
  dry_run?: boolean;
  workers?: number;
}

/** The next time of a schedule (Harbor types Hourly/Daily/Weekly or Custom cron), ms. */
export function nextScheduled(cron: string, after: number): number {
  return nextCronTime(parseCron(cron), after);
}

/** Polls for due schedules and Pending runs and executes them (see module doc). */
export class GcJobs {
  readonly #meta: RegistryMetadata;
  readonly #store: BlobStore;
  readonly #log: Logger;
  readonly #clock: Clock;
  readonly #o: GcJobOptions;
  readonly #owner = randomUUID();
  #timer: (() => void) | undefined;
  #running: Promise<void> | undefined;
  #stopped = false;

  constructor(deps: { meta: RegistryMetadata; store: BlobStore; log: Logger; clock?: Clock | undefined }, opts: GcJobOptions) {
    this.#meta = deps.meta;
    this.#store = deps.store;
    this.#log = deps.log.child({ component: 'gc-jobs' });
    this.#clock = deps.clock ?? systemClock;
    this.#o = opts;
  }

  start(): void {
    this.#stopped = false;
    this.#schedule(0);
  }

  /** Stops polling and waits for a run of this replica to end (it is not interrupted). */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#timer?.();
    this.#timer = undefined;
    await this.#running;
  }

  /** Looks for work now (after a Manual request on this replica). */
  kick(): void {
    if (this.#stopped || this.#running) return;
    this.#timer?.();
    this.#schedule(0);
  }

  #schedule(ms: number): void {
    if (this.#stopped) return;
    this.#timer = this.#clock.setTimer(
      ms,
      () => {
        this.#timer = undefined;
        this.#running = this.tick()
          .then(() => undefined)
          .catch((err: unknown) => this.#log.error({ err }, 'gc job poll failed'))
          .finally(() => {
            this.#running = undefined;
            this.#schedule(this.#o.pollIntervalMs);
          });
      },
      { unref: true },
    );
  }

  /** One poll: take a due schedule, claim a Pending run and execute it. */
  async tick(): Promise<GcRun | undefined> {
    const now = this.#clock.now();
    const sched = await this.#meta.getGcSchedule();
    if (sched && sched.nextRun <= now) {
      const taken = await this.#meta.takeScheduledGc(now, nextScheduled(sched.cron, now));
      if (taken) this.#log.info({ run: taken.id }, 'scheduled gc due');
    }
    const run = await this.#meta.claimGcRun(this.#owner, now, now - this.#o.staleAfterMs);
    if (!run) return undefined;
    await this.#execute(run);
    return this.#meta.getGcRun(run.id);
  }

  async #execute(run: GcRun): Promise<void> {
    const params = JSON.parse(run.parameters || '{}') as GcParameters;
    let stop = false;
    let lines: string[] = [];
    const flush = async (): Promise<void> => {
      const log = lines.join('');
      lines = [];
      await this.#meta.updateGcRun(run.id, { log }, this.#clock.now());
      stop = (await this.#meta.getGcRun(run.id))?.stopRequested === true;
    };
    let since = 0;
    try {
      const result = await collectGarbage(this.#meta, this.#store, {
        dryRun: params.dry_run === true,
        deleteUntagged: params.delete_untagged === true,
        minAgeMs: this.#o.minAgeMs,
        uploadMaxAgeMs: this.#o.uploadMaxAgeMs,
        now: this.#clock.now(),
        log: this.#log,
        onLine: (line) => {
          lines.push(`${new Date(this.#clock.now()).toISOString()} [INFO] ${line}\n`);
          // heartbeat and stop check every 20 lines (the last one is flushed below)
          if (++since % 20 === 0) void flush().catch(() => undefined);
        },
        shouldStop: () => stop,
      });
      await flush();
      await this.#meta.updateGcRun(run.id, { status: result.stopped ? 'Stopped' : 'Success' }, this.#clock.now());
    } catch (err) {
      lines.push(`${new Date(this.#clock.now()).toISOString()} [ERROR] ${(err as Error).message}\n`);
      await flush().catch(() => undefined);
      await this.#meta.updateGcRun(run.id, { status: 'Error' }, this.#clock.now());
      this.#log.error({ err, run: run.id }, 'gc run failed');
    }
  }
}
