/**
 * @module p2p/common/logthrottle
 * Rate limit for log lines a stranger can provoke (refused requests): per key at most one line
 * per interval at the loud level; the rest go to debug.
 */
export class LogThrottle {
  private readonly last = new Map<string, number>();

  constructor(private readonly intervalMs = 60_000, private readonly maxKeys = 1024) {}

  /** True when a line for `key` may be logged loudly now (and records it). */
  allow(key: string, now = Date.now()): boolean {
    const t = this.last.get(key);
    if (t !== undefined && now - t < this.intervalMs) return false;
    if (this.last.size >= this.maxKeys) this.last.clear();
    this.last.set(key, now);
    return true;
  }
}
