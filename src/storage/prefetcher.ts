/**
 * @module storage/prefetcher
 * The storage device's prefetch queue: chunk lists (per blob) fetched in the background, one merged
 * request at a time (`merging_size`), throttled to a bandwidth, behind on-demand reads — a background
 * prefetch waits while any read is in progress; an urgent one (a prefetch trace: the container is
 * about to read these) goes ahead of queued background ones and does not wait. The device supplies
 * the fetching (`fetch`), what is cached or in flight (`skip`) and whether reads are in progress.
 */
import type { Clock } from '../core/index.js';
import type { Logger } from '../observe/index.js';
import { nextPrefetchBatch, type ChunkPlace } from './fetch-plan.js';

/** How a prefetch is run: `urgent` ones do not yield to on-demand reads; `record` ones enter the access trace. */
export interface PrefetchOptions {
  urgent?: boolean;
  record?: boolean;
}

/** How often a background prefetch looks again whether the on-demand reads it waits for are done. */
const ON_DEMAND_POLL_MS = 5;

export interface PrefetcherOptions<B, C extends ChunkPlace> {
  /** bytes per merged request (nydusd `merging_size`) */
  mergeBytes: number;
  /** bytes per second, 0 = unlimited */
  bandwidth: number;
  log: Logger;
  /** time for the throttle and the waits behind on-demand reads */
  clock: Clock;
  /** true while on-demand reads are in progress (background prefetch waits for them) */
  reading(): boolean;
  /** true for a chunk of `blob` that is cached or being fetched already */
  skip(blob: B, chunkIndex: number): boolean;
  /** fetches one batch of chunks of `blob` into the cache */
  fetch(blob: B, batch: C[], opts: PrefetchOptions): Promise<void>;
  /** the blob's id, for log lines */
  idOf(blob: B): string;
}

interface Job<B, C> {
  blob: B;
  chunks: readonly C[];
  opts: PrefetchOptions;
}

export class Prefetcher<B, C extends ChunkPlace> {
  private readonly queue: Array<Job<B, C>> = [];
  private running: Promise<void> | null = null;
  private closed = false;

  constructor(private readonly o: PrefetcherOptions<B, C>) {}

  /** Queues chunk lists (each sorted by compressed offset) of blobs. */
  add(jobs: Array<{ blob: B; chunks: readonly C[] }>, opts: PrefetchOptions): void {
    const items = jobs.map((j) => ({ ...j, opts }));
    if (opts.urgent) {
      const at = this.queue.findIndex((q) => !q.opts.urgent);
      this.queue.splice(at < 0 ? this.queue.length : at, 0, ...items);
    } else {
      this.queue.push(...items);
    }
    if (!this.running && !this.closed)
      this.running = this.run().finally(() => {
        this.running = null;
      });
  }

  /** Resolves when the queue is drained. */
  async idle(): Promise<void> {
    while (this.running) await this.running;
  }

  /** Stops after the request in progress; resolves when it is done. */
  async close(): Promise<void> {
    this.closed = true;
    await this.idle().catch(() => undefined);
  }

  private async run(): Promise<void> {
    const { mergeBytes, bandwidth, clock } = this.o;
    while (!this.closed && this.queue.length) {
      const { blob, chunks, opts } = this.queue.shift()!;
      const skip = (chunkIndex: number): boolean => this.o.skip(blob, chunkIndex);
      let i = 0;
      while (!this.closed && i < chunks.length) {
        // On-demand reads first: wait while any is in progress.
        while (!opts.urgent && this.o.reading() && !this.closed) await clock.sleep(ON_DEMAND_POLL_MS);
        const { batch, bytes, next } = nextPrefetchBatch(chunks, i, mergeBytes, skip);
        i = next;
        if (!batch.length) continue;
        const t0 = clock.now();
        try {
          await this.o.fetch(blob, batch, opts);
        } catch (err) {
          this.o.log.warn({ blob: this.o.idOf(blob), err: (err as Error).message }, 'prefetch failed, stopping this blob');
          break;
        }
        if (bandwidth > 0) {
          const want = (bytes / bandwidth) * 1000;
          const spent = clock.now() - t0;
          if (want > spent) await clock.sleep(want - spent);
        }
      }
    }
  }
}
