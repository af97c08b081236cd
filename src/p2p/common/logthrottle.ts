/**
 * @module p2p/common/logthrottle
 * Rate limit for log lines a stranger can provoke (refused requests): per key (the remote
 * address) at most one line per interval at the loud level, and at most `budget` loud lines per
 * interval in all (so many addresses cannot flood the log either); the rest go to debug.
 */
export class LogThrottle {
  private readonly last = new Map<string, number>();
  private windowStart = 0;
  private spent = 0;

  constructor(
    private readonly intervalMs = 60_000,
    private readonly budget = 20,
    private readonly maxKeys = 1024,
  ) {}

  /** True when a line for `key` may be logged loudly now (and records it). */
  allow(key: string, now = Date.now()): boolean {
    if (now - this.windowStart >= this.intervalMs) {
      this.windowStart = now;
      this.spent = 0;
    }
    if (this.spent >= this.budget) return false;
    const t = this.last.get(key);
    if (t !== undefined && now - t < this.intervalMs) return false;
    if (this.last.size >= this.maxKeys) this.last.clear();
    this.last.set(key, now);
    this.spent++;
    return true;
  }
}
