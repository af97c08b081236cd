/**
 * @module daemon/fill
 * Background fill: after an image is mounted (and its start-up set fetched), the chunks nobody read
 * yet are fetched in the background, so that by a deadline after the mount the image is wholly in
 * the node cache and a registry outage costs its containers nothing.
 *
 * - **Idle priority**: a batch is sent only after QUIET_MS without reads, through the device's
 *   background prefetch, which also waits while any on-demand read is in progress; reads never
 *   queue behind the fill.
 * - **Bandwidth**: a `TokenBucket` at the idle rate (`fill_rate`). Before each batch the rate is
 *   raised to what the bytes still missing need to be fetched by the deadline (`fillRate`), so a
 *   large image still finishes in time and a small one costs no more than the idle rate.
 * - **Progress** is counted in compressed bytes (what crosses the network): filled / total, the
 *   rate, an ETA. A batch that brings nothing (registry down) is retried after a backoff.
 */
import { TokenBucket, type Clock } from '../core/index.js';
import type { Logger } from '../observe/index.js';
import type { DeviceChunk } from '../storage/index.js';
import type { FillStatus } from './protocol.js';

/** What the fill needs of a storage device (StorageDevice implements it). */
export interface FillDevice {
  cacheView(): Array<{ blobId: string; chunks: readonly DeviceChunk[]; cached(chunkIndex: number): boolean }>;
  /** background (non-urgent) prefetch: waits while on-demand reads are in progress */
  prefetch(sel: Array<{ blobId: string; chunks: DeviceChunk[] }>): void;
  prefetchIdle(): Promise<void>;
  /** when a reader last used the device (clock ms) */
  lastReadAt(): number;
}

export interface FillOptions {
  device: FillDevice;
  clock: Clock;
  /** the image must be filled this long after `start()`, ms (> 0) */
  deadlineMs: number;
  /** idle rate, bytes/s (0 = unlimited) */
  rate: number;
  /** compressed bytes per batch (default 1 MiB) */
  batchBytes?: number;
  log: Logger;
}

const DEFAULT_BATCH = 1024 * 1024;
/** Backoff after a batch that fetched nothing (the backend failing): doubling from … up to … ms. */
const RETRY_MIN_MS = 1000;
const RETRY_MAX_MS = 30_000;
/**
 * The fill sends a batch only after this long without reads: reads come in bursts with small
 * gaps, and a batch decoded in such a gap takes CPU the next read needs (measured: bench/daemon/fill.ts).
 */
const QUIET_MS = 200;
/** Longest the fill waits for a quiet moment before it sends a batch anyway (QUIET_MS waits). */
const MAX_QUIET_WAITS = 1500;
/** Budget taken from the bucket at a time (a close waits at most this much of the rate). */
const TAKE_STEP = 64 * 1024;

/**
 * The rate (bytes/s) to fill at now: the idle rate, or more when the bytes still missing could not
 * be fetched by the deadline at it; 0 (unlimited) once the deadline has passed or with no idle rate.
 */
export function fillRate(o: { remainingBytes: number; now: number; deadline: number; idleRate: number }): number {
  if (o.idleRate <= 0) return 0;
  const left = o.deadline - o.now;
  if (left <= 0) return 0;
  return Math.max(o.idleRate, Math.ceil(o.remainingBytes / (left / 1000)));
}

interface Missing {
  blobId: string;
  chunks: DeviceChunk[];
  bytes: number;
}

export class BackgroundFill {
  private readonly o: FillOptions;
  private readonly batchBytes: number;
  private readonly bucket: TokenBucket;
  private state: FillStatus['state'] = 'waiting';
  private startedAt = 0;
  private doneAt: number | undefined;
  private totalBytes = 0;
  private chunkCount = 0;
  private closed = false;
  private running: Promise<void> | undefined;
  /** ends a backoff sleep early (close) */
  private wake: (() => void) | undefined;

  constructor(o: FillOptions) {
    this.o = o;
    this.batchBytes = o.batchBytes ?? DEFAULT_BATCH;
    this.bucket = new TokenBucket(o.rate, this.batchBytes, o.clock);
    for (const b of o.device.cacheView()) {
      for (const c of b.chunks) this.totalBytes += c.compressedSize;
      this.chunkCount += b.chunks.length;
    }
  }

  /** Starts filling once the device's queued prefetches (the start-up set) are done. */
  start(): void {
    if (this.running) return;
    this.startedAt = this.o.clock.now();
    this.running = this.run().catch((err: unknown) => {
      this.state = 'stopped';
      this.o.log.warn({ err: (err as Error).message }, 'background fill stopped');
    });
  }

  /** Resolves when the fill has finished (done, or stopped by `close`). */
  async finished(): Promise<void> {
    await this.running;
  }

  async close(): Promise<void> {
    this.closed = true;
    this.wake?.();
    await this.running;
  }

  /** Bytes (compressed) still missing, and the first batch of them in blob order. */
  private scan(): { remaining: number; next: Missing | undefined } {
    let remaining = 0;
    let next: Missing | undefined;
    for (const b of this.o.device.cacheView()) {
      for (const c of b.chunks) {
        if (b.cached(c.chunkIndex)) continue;
        remaining += c.compressedSize;
        if (!next) next = { blobId: b.blobId, chunks: [], bytes: 0 };
        if (next.blobId === b.blobId && next.bytes < this.batchBytes) {
          next.chunks.push(c);
          next.bytes += c.compressedSize;
        }
      }
    }
    return { remaining, next };
  }

  status(): FillStatus {
    const now = this.o.clock.now();
    const deadline = this.startedAt + this.o.deadlineMs;
    const remaining = this.state === 'done' ? 0 : this.scan().remaining;
    const filled = this.totalBytes - remaining;
    const rate = fillRate({ remainingBytes: remaining, now, deadline, idleRate: this.o.rate });
    const elapsed = ((this.doneAt ?? now) - this.startedAt) / 1000;
    const measured = elapsed > 0 ? filled / elapsed : 0;
    const speed = rate > 0 ? rate : measured;
    const s: FillStatus = {
      state: this.state,
      filledBytes: filled,
      totalBytes: this.totalBytes,
      percent: this.totalBytes > 0 ? Math.floor((filled / this.totalBytes) * 1000) / 10 : 100,
      rateBytesPerSecond: rate,
      deadline: new Date(deadline).toISOString(),
    };
    if (remaining === 0) s.etaSeconds = 0;
    else if (speed > 0) s.etaSeconds = Math.ceil(remaining / speed);
    return s;
  }

  private async sleep(ms: number): Promise<void> {
    await new Promise<void>((resolve) => {
      const cancel = this.o.clock.setTimer(ms, resolve, { unref: true });
      this.wake = () => {
        cancel();
        resolve();
      };
      if (this.closed) this.wake();
    });
    this.wake = undefined;
  }

  /** Waits until no reader has used the device for QUIET_MS (bounded: then it goes ahead). */
  private async quiet(): Promise<void> {
    for (let i = 0; i < MAX_QUIET_WAITS && !this.closed; i++) {
      const idle = this.o.clock.now() - this.o.device.lastReadAt();
      if (idle >= QUIET_MS) return;
      await this.sleep(QUIET_MS - idle);
    }
  }

  /** Waits for a batch's budget in small steps, so that `close` is not held up by a slow rate. */
  private async budget(bytes: number): Promise<void> {
    for (let left = bytes; left > 0 && !this.closed; left -= TAKE_STEP) await this.bucket.take(Math.min(left, TAKE_STEP));
  }

  private async run(): Promise<void> {
    const { device, clock, log } = this.o;
    await device.prefetchIdle();
    this.state = 'filling';
    const deadline = this.startedAt + this.o.deadlineMs;
    log.info({ totalBytes: this.totalBytes, deadline: new Date(deadline).toISOString(), rate: this.o.rate }, 'background fill started');
    let backoff = RETRY_MIN_MS;
    // each pass fetches a batch or backs off; bounded by the chunk count several times over
    const maxPasses = 4 * this.chunkCount + 10_000;
    for (let pass = 0; pass < maxPasses && !this.closed; pass++) {
      const { remaining, next } = this.scan();
      if (!next) {
        this.state = 'done';
        this.doneAt = clock.now();
        log.info({ totalBytes: this.totalBytes, ms: this.doneAt - this.startedAt }, 'background fill done');
        return;
      }
      this.bucket.setRate(fillRate({ remainingBytes: remaining, now: clock.now(), deadline, idleRate: this.o.rate }));
      await this.budget(next.bytes);
      await this.quiet();
      if (this.closed) break;
      device.prefetch([{ blobId: next.blobId, chunks: next.chunks }]);
      await device.prefetchIdle();
      if (this.scan().remaining < remaining) {
        backoff = RETRY_MIN_MS;
        if (this.state === 'retrying') this.state = 'filling';
        continue;
      }
      this.state = 'retrying';
      log.debug({ blob: next.blobId, backoffMs: backoff }, 'background fill made no progress, retrying later');
      await this.sleep(backoff);
      backoff = Math.min(RETRY_MAX_MS, backoff * 2);
    }
    this.state = 'stopped';
  }
}
