/**
 * @module storage/prefetcher
 * The storage device's prefetch queue: chunk lists (per blob, in the order they will be needed)
 * fetched in the background as a few large requests (`planPrefetch`: merged up to `merging_size`
 * over small gaps, the earliest needed first), up to `concurrency` of them in flight, throttled to a
 * bandwidth (then one at a time), behind on-demand reads — a background prefetch waits while any
 * read is in progress; an urgent one (a prefetch trace, the start-up set: the container is about
 * to read these) goes ahead of queued background ones and does not wait. The device supplies the
 * fetching (`fetch`), the blob's layout (what is cached or in flight) and whether reads are in
 * progress.
 */
import type { Clock } from '../core/index.js';
import type { Logger } from '../observe/index.js';
import { planFetch, planPrefetch, type BlobLayout, type ChunkPlace } from './fetch-plan.js';

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
  /** largest gap read over to merge two requests */
  mergeGap: number;
  /** requests in flight at once (1 when a bandwidth is set) */
  concurrency: number;
  /** bytes per second, 0 = unlimited */
  bandwidth: number;
  log: Logger;
  /** time for the throttle and the waits behind on-demand reads */
  clock: Clock;
  /** true while on-demand reads are in progress (background prefetch waits for them) */
  reading(): boolean;
  /** the blob's chunks, and which are cached or being fetched already */
  layout(blob: B): BlobLayout<C>;
  /** fetches one request's chunks of `blob` into the cache */
  fetch(blob: B, batch: C[], opts: PrefetchOptions): Promise<void>;
  /** the blob's id, for log lines */
  idOf(blob: B): string;
}

interface Job<B, C> {
  blob: B;
  chunks: readonly C[];
  opts: PrefetchOptions;
  /** planned requests not yet started (planned when the job starts) */
  todo?: C[][];
  failed?: boolean;
}

export class Prefetcher<B, C extends ChunkPlace> {
  private readonly queue: Array<Job<B, C>> = [];
  private running: Promise<void> | null = null;
  private closed = false;

  constructor(private readonly o: PrefetcherOptions<B, C>) {}

  /** Queues chunk lists of blobs, each in the order its chunks will be needed. */
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

  /** Stops after the requests in progress; resolves when they are done. */
  async close(): Promise<void> {
    this.closed = true;
    await this.idle().catch(() => undefined);
  }

  /** The next request to start: from the first job with planned requests left (jobs are planned when reached). */
  private next(): { job: Job<B, C>; batch: C[] } | undefined {
    while (this.queue.length) {
      const job = this.queue[0]!;
      const layout = this.o.layout(job.blob);
      const policy = { maxBytes: this.o.mergeBytes, maxGap: this.o.mergeGap };
      job.todo ??= planPrefetch(
        job.chunks.filter((c) => !layout.skip(c.chunkIndex)),
        policy,
        layout,
      );
      while (!job.failed && job.todo.length) {
        // what became cached or in flight since planning is left out (and the rest re-merged)
        const left = job.todo.shift()!.filter((c) => !layout.skip(c.chunkIndex));
        if (!left.length) continue;
        const [first, ...rest] = planFetch(left, policy, layout);
        job.todo.unshift(...rest);
        return { job, batch: first! };
      }
      this.queue.shift();
    }
    return undefined;
  }

  private async run(): Promise<void> {
    const { bandwidth, clock } = this.o;
    const limit = bandwidth > 0 ? 1 : Math.max(1, this.o.concurrency);
    const inflight = new Set<Promise<void>>();
    while (!this.closed) {
      const head = this.queue[0];
      if (!head) {
        // jobs added while the last requests finish are taken up here
        if (!inflight.size) break;
        await Promise.race(inflight);
        continue;
      }
      // On-demand reads first: a background prefetch waits while any is in progress.
      if (!head.opts.urgent && this.o.reading()) {
        await clock.sleep(ON_DEMAND_POLL_MS);
        continue;
      }
      const n = this.next();
      if (!n) continue;
      const { job, batch } = n;
      const bytes = batch[batch.length - 1]!.compressedOffset + batch[batch.length - 1]!.compressedSize - batch[0]!.compressedOffset;
      const t0 = clock.now();
      const p: Promise<void> = this.o
        .fetch(job.blob, batch, job.opts)
        .catch((err: unknown) => {
          if (!job.failed)
            this.o.log.warn({ blob: this.o.idOf(job.blob), err: (err as Error).message }, 'prefetch failed, stopping this blob');
          job.failed = true;
        })
        .finally(() => inflight.delete(p));
      inflight.add(p);
      if (bandwidth > 0) {
        await p;
        const want = (bytes / bandwidth) * 1000;
        const spent = clock.now() - t0;
        if (want > spent) await clock.sleep(want - spent);
      } else if (inflight.size >= limit) {
        await Promise.race(inflight);
      }
    }
    await Promise.all(inflight);
  }
}
