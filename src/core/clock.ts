/**
 * @module core/clock
 * Time as a dependency. Code whose behaviour depends on elapsed time (deadlines, throttling,
 * backoff, time windows) takes a `Clock` through its options, defaulting to `systemClock`; tests
 * pass a fake one and move time themselves instead of waiting on the wall clock.
 */

export interface Clock {
  /** Milliseconds since the epoch (the `Date.now()` scale). */
  now(): number;
  /**
   * Calls `fn` once `ms` have passed; returns a function that cancels it. `unref`: the timer does
   * not keep the process alive (system clock).
   */
  setTimer(ms: number, fn: () => void, opts?: { unref?: boolean }): () => void;
  /** Resolves once `ms` have passed. */
  sleep(ms: number): Promise<void>;
}

/** The real clock: `Date.now()` and Node's timers. */
export const systemClock: Clock = {
  now: () => Date.now(),
  setTimer(ms, fn, opts) {
    const t = setTimeout(fn, ms);
    if (opts?.unref) t.unref();
    return () => clearTimeout(t);
  },
  sleep: (ms) =>
    new Promise<void>((resolve) => {
      setTimeout(resolve, ms);
    }),
};
