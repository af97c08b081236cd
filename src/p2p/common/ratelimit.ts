/**
 * @module p2p/common/ratelimit
 * Token bucket for byte rates (upload, download, back-to-source). `take(n)` waits until n bytes
 * of budget exist; a rate of 0 or Infinity means unlimited.
 */
import { setTimeout as sleep } from 'node:timers/promises';

export class TokenBucket {
  private tokens: number;
  private last = Date.now();
  private queue: Promise<void> = Promise.resolve();

  /** `rate` bytes per second; `burst` bytes (default: rate / 10, at least 256 KiB). */
  constructor(readonly rate: number, private readonly burst = Math.max(256 * 1024, rate / 10)) {
    this.tokens = this.burst;
  }

  get unlimited(): boolean {
    return !(this.rate > 0) || !Number.isFinite(this.rate);
  }

  take(n: number): Promise<void> {
    if (this.unlimited || n <= 0) return Promise.resolve();
    const p = this.queue.then(() => this.takeNow(n));
    this.queue = p.catch(() => undefined);
    return p;
  }

  private async takeNow(n: number): Promise<void> {
    for (;;) {
      const now = Date.now();
      this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) / 1000) * this.rate);
      this.last = now;
      if (this.tokens >= Math.min(n, this.burst)) {
        this.tokens -= n; // may go negative for n > burst: the debt delays the next caller
        return;
      }
      const need = Math.min(n, this.burst) - this.tokens;
      await sleep(Math.max(1, Math.ceil((need / this.rate) * 1000)));
    }
  }
}
