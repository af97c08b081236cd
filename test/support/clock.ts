/**
 * A fake `Clock` for tests: time moves only when the test says so. Timers fire in due order while
 * `advance()` moves time; between two timers the test's promise continuations and pending I/O
 * callbacks get a turn, so a timer set by a woken task at the new time fires in the same advance.
 */
import type { Clock } from '../../src/core/index.js';

interface Timer {
  at: number;
  seq: number;
  ms: number;
  fn: () => void;
}

/** One event-loop turn (promise continuations, then I/O callbacks). */
const turn = (): Promise<void> => new Promise((r) => setImmediate(r));

export class FakeClock implements Clock {
  #now: number;
  #seq = 0;
  #timers: Timer[] = [];
  #waiters: Array<() => void> = [];
  /** Every timer set (when, for how long, whether by `sleep`), in order: what the code under test waited for. */
  readonly history: Array<{ at: number; ms: number; sleep: boolean }> = [];

  constructor(start = Date.UTC(2030, 0, 1)) {
    this.#now = start;
  }

  now(): number {
    return this.#now;
  }

  setTimer(ms: number, fn: () => void): () => void {
    return this.#add(ms, fn, false);
  }

  sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      this.#add(ms, resolve, true);
    });
  }

  #add(ms: number, fn: () => void, sleep: boolean): () => void {
    const t: Timer = { at: this.#now + Math.max(0, ms), seq: this.#seq++, ms, fn };
    this.#timers.push(t);
    this.history.push({ at: this.#now, ms, sleep });
    for (const w of this.#waiters.splice(0)) w();
    return () => {
      this.#timers = this.#timers.filter((x) => x !== t);
    };
  }

  /** Timers not fired yet. */
  get pending(): number {
    return this.#timers.length;
  }

  /** When the next timer is due, or undefined. */
  nextDue(): number | undefined {
    return this.#first(() => true)?.at;
  }

  /** Moves time forward by `ms`, firing every timer that falls due, in order, at its due time. */
  async advance(ms: number): Promise<void> {
    const end = this.#now + ms;
    await turn();
    for (let fired = 0; ; fired++) {
      if (fired > 100_000) throw new Error('FakeClock.advance: more than 100000 timers fired (a timer loop?)');
      const due = this.#first((t) => t.at <= end);
      if (!due) break;
      this.#timers = this.#timers.filter((t) => t !== due);
      this.#now = Math.max(this.#now, due.at);
      due.fn();
      await turn();
    }
    this.#now = end;
    await turn();
  }

  #first(pred: (t: Timer) => boolean): Timer | undefined {
    let best: Timer | undefined;
    for (const t of this.#timers) if (pred(t) && (!best || t.at < best.at || (t.at === best.at && t.seq < best.seq))) best = t;
    return best;
  }

  /**
   * Resolves once a timer is set from now on (or `until` settles). Bounded: rejects after `realMs`
   * of real time — a guard against a hang, not a measurement.
   */
  async nextTimer(realMs = 10_000, until?: Promise<unknown>): Promise<void> {
    let guard: NodeJS.Timeout | undefined;
    let waiter: (() => void) | undefined;
    try {
      await new Promise<void>((resolve, reject) => {
        guard = setTimeout(() => reject(new Error(`FakeClock: no timer was set within ${realMs} ms`)), realMs);
        waiter = resolve;
        this.#waiters.push(resolve);
        until?.then(
          () => resolve(),
          () => resolve(),
        );
      });
    } finally {
      clearTimeout(guard);
      this.#waiters = this.#waiters.filter((w) => w !== waiter);
    }
  }

  /** Resolves once a timer is pending (at once if one is); bounded like `nextTimer`. */
  async timerSet(realMs = 10_000): Promise<void> {
    if (this.#timers.length === 0) await this.nextTimer(realMs);
  }

  /**
   * Runs until `done` settles: whenever a timer at most `maxStepMs` ahead is pending (a pause, not
   * a deadline of I/O still in flight), time jumps to it. Bounded by `maxTimers` timers fired and
   * `realMs` of real time without a new timer.
   */
  async runUntil<T>(done: Promise<T>, opts: { maxStepMs?: number; maxTimers?: number; realMs?: number } = {}): Promise<T> {
    let settled = false;
    const p = done.finally(() => {
      settled = true;
    });
    p.catch(() => undefined);
    const maxStep = opts.maxStepMs ?? Number.POSITIVE_INFINITY;
    for (let i = 0; ; i++) {
      await turn();
      if (settled) break;
      if (i >= (opts.maxTimers ?? 10_000)) throw new Error('FakeClock.runUntil: too many timers');
      const due = this.#first((t) => t.at - this.#now <= maxStep);
      if (due) await this.advance(due.at - this.#now);
      else await this.nextTimer(opts.realMs, p);
    }
    return p;
  }
}
