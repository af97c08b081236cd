/**
 * @module core/token-bucket
 * Token bucket for byte rates (P2P upload, download, back-to-source; the daemon's background fill).
 * `take(n)` waits until n bytes of budget exist; a rate of 0 or Infinity means unlimited.
 * `setRate` changes the rate from the next refill on (the fill raises it to meet its deadline).
 */
import { systemClock, type Clock } from './clock.js';

export class TokenBucket {
  private tokens: number;
  private last: number;
  private queue: Promise<void> = Promise.resolve();

  /** `rate` bytes per second; `burst` bytes (default: rate / 10, at least 256 KiB); `clock` for tests. */
  constructor(
    private r: number,
    private readonly burst = Math.max(256 * 1024, r / 10),
    private readonly clock: Clock = systemClock,
  ) {
    this.tokens = this.burst;
    this.last = clock.now();
  }

  get rate(): number {
    return this.r;
  }

  /** A new rate (bytes/s) from now on: the budget accrued so far at the old rate is kept. */
  setRate(rate: number): void {
    this.refill();
    this.r = rate;
  }

  private refill(): void {
    const now = this.clock.now();
    if (!this.unlimited) this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) / 1000) * this.r);
    this.last = now;
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
      if (this.unlimited) return;
      this.refill();
      if (this.tokens >= Math.min(n, this.burst)) {
        this.tokens -= n; // may go negative for n > burst: the debt delays the next caller
        return;
      }
      const need = Math.min(n, this.burst) - this.tokens;
      await this.clock.sleep(Math.max(1, Math.ceil((need / this.rate) * 1000)));
    }
  }
}
