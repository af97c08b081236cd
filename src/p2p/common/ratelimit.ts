/**
 * @module p2p/common/ratelimit
 * Token bucket for byte rates (upload, download, back-to-source). `take(n)` waits until n bytes
 * of budget exist; a rate of 0 or Infinity means unlimited.
 */
import { systemClock, type Clock } from '../../core/index.js';

export class TokenBucket {
  private tokens: number;
  private last: number;
  private queue: Promise<void> = Promise.resolve();

  /** `rate` bytes per second; `burst` bytes (default: rate / 10, at least 256 KiB); `clock` for tests. */
  constructor(
    readonly rate: number,
    private readonly burst = Math.max(256 * 1024, rate / 10),
    private readonly clock: Clock = systemClock,
  ) {
    this.tokens = this.burst;
    this.last = clock.now();
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
      const now = this.clock.now();
      this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) / 1000) * this.rate);
      this.last = now;
      if (this.tokens >= Math.min(n, this.burst)) {
        this.tokens -= n; // may go negative for n > burst: the debt delays the next caller
        return;
      }
      const need = Math.min(n, this.burst) - this.tokens;
      await this.clock.sleep(Math.max(1, Math.ceil((need / this.rate) * 1000)));
    }
  }
}
