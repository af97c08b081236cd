/**
 * @module registry/login-limiter
 * Failed-login accounting with exponential backoff, so passwords and robot secrets cannot be
 * guessed at the speed of the network. Two kinds of key, each counted on its own:
 *
 * - account × source (`maxFailures`, strict): one account guessed from one source address. A success
 *   for that account from that source resets it.
 * - source (`maxSourceFailures`, looser): one address guessing many accounts (spraying). Successes
 *   do not reset it (else one valid low-privilege credential would reset the count between guesses).
 *
 * A key that reaches its limit within `window` is locked for `lockout`; every further failure on a
 * key that has been locked (until it has been quiet for a whole `window` after its lockout) locks it
 * again for twice as long, up to `maxLockout`. While a key is locked, attempts on it are refused
 * without checking the password at all (a correct password included: otherwise guessing would go
 * on at full speed, the lockout only hiding which answer was right).
 *
 * There is deliberately no key for an account alone: that would let anyone on the network lock the
 * admin out everywhere by sending wrong passwords. An attacker locks out only the (account, source)
 * pairs and sources they guess from. The price is that guesses spread over many addresses are only
 * slowed per address; the stored secrets (PBKDF2, robot secrets 32 random characters) carry that.
 * IPv6 sources are keyed by their /64, which one host typically owns whole.
 *
 * Memory is bounded: entries are dropped once quiet, and the table has a fixed maximum size.
 */
import { isIPv4, isIPv6 } from 'node:net';

export interface LoginLimits {
  /** Failures of one account from one source within `windowMs` before that pair is locked. */
  maxFailures: number;
  /** Failures from one source (any accounts) within `windowMs` before the source is locked. */
  maxSourceFailures: number;
  windowMs: number;
  /** First lockout; each failure after a lockout doubles it. */
  lockoutMs: number;
  maxLockoutMs: number;
}

interface Entry {
  /** Failures in the current window (before the first lockout). */
  count: number;
  windowStart: number;
  /** Lockouts so far: the next one lasts lockoutMs × 2^level. */
  level: number;
  lockedUntil: number;
  /** 0 = never failed. */
  lastFailure: number;
  /** Password checks under way (they count against the limit until they are decided). */
  inflight: number;
  /** Whether an attempt refused during the current lockout was reported already. */
  reported: boolean;
}

/** Why an attempt is refused without checking its password. */
export interface Lockout {
  /** Milliseconds until the key may be tried again (> 0). */
  retryAfterMs: number;
  /** Which key refused. */
  scope: 'account' | 'source';
  /** 'locked': the key is locked out; 'busy': its remaining attempts are all being checked right now. */
  reason: 'locked' | 'busy';
  /** True for the first attempt refused during this lockout (callers log that one, count the rest). */
  first: boolean;
}

/** An admitted attempt: report its outcome exactly once. */
export interface Attempt {
  admitted: true;
  /**
   * Records the outcome: 'ok' resets the account's key for this source, 'failed' counts against
   * both keys (returning the lockout it started, if any), 'aborted' (the check itself failed)
   * counts nothing.
   */
  finish(outcome: 'ok' | 'failed' | 'aborted'): { lockedForMs: number; scope: 'account' | 'source' } | undefined;
}

const MAX_ENTRIES = 100_000;
/** Usernames are attacker-chosen: only this much of one is used in a key. */
const MAX_USER_KEY = 256;
/** Retry-After for an attempt refused because the key's remaining attempts are all in flight. */
const BUSY_RETRY_MS = 1000;

function accountKey(user: string, source: string): string {
  return `a\0${source}\0${user.slice(0, MAX_USER_KEY)}`;
}

/** The address a key is built from: IPv4 as is, IPv4-mapped IPv6 as IPv4, other IPv6 by /64. */
export function sourceKey(address: string | undefined): string {
  if (!address) return 'unknown';
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(address);
  if (mapped) return mapped[1]!;
  if (isIPv4(address)) return address;
  if (!isIPv6(address)) return address;
  const noZone = address.split('%')[0]!;
  const [head, tail] = noZone.includes('::') ? (noZone.split('::') as [string, string]) : [noZone, undefined];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = tail === undefined ? h : [...h, ...Array<string>(Math.max(0, 8 - h.length - t.length)).fill('0'), ...t];
  return `${groups
    .slice(0, 4)
    .map((g) => (parseInt(g, 16) || 0).toString(16))
    .join(':')}::/64`;
}

/**
 * The failed-login table (see module doc). An attempt is admitted only while the failures so far
 * plus the checks under way stay below the limit, so a burst of concurrent guesses is bounded like
 * a sequential one. `now` is injectable for tests.
 */
export class LoginLimiter {
  readonly #limits: LoginLimits;
  readonly #now: () => number;
  readonly #entries = new Map<string, Entry>();

  constructor(limits: LoginLimits, now: () => number = Date.now) {
    this.#limits = limits;
    this.#now = now;
  }

  /** The lockout refusing `user` from `source` now, if either key is locked (no attempt is begun). */
  locked(user: string, source: string): Lockout | undefined {
    if (this.#entries.size === 0) return undefined;
    const now = this.#now();
    for (const [key, scope] of [
      [accountKey(user, source), 'account'],
      [`s\0${source}`, 'source'],
    ] as const) {
      const e = this.#entries.get(key);
      if (e && e.lockedUntil > now) return this.#lockedRefusal(e, scope, now);
    }
    return undefined;
  }

  /** Admits an attempt for `user` from `source` (source as made by `sourceKey`), or refuses it. */
  begin(user: string, source: string): Attempt | { admitted: false; lockout: Lockout } {
    const now = this.#now();
    this.#sweep(now);
    const acct = this.#entry(accountKey(user, source), now);
    const src = this.#entry(`s\0${source}`, now);
    const refusal =
      this.#refuse(acct, this.#limits.maxFailures, 'account', now) ?? this.#refuse(src, this.#limits.maxSourceFailures, 'source', now);
    if (refusal) return { admitted: false, lockout: refusal };
    acct.inflight++;
    src.inflight++;
    let done = false;
    return {
      admitted: true,
      finish: (outcome) => {
        if (done) return undefined;
        done = true;
        acct.inflight--;
        src.inflight--;
        if (outcome === 'aborted') return undefined;
        if (outcome === 'ok') {
          acct.count = 0;
          acct.level = 0;
          acct.lockedUntil = 0;
          acct.lastFailure = 0;
          return undefined;
        }
        const t = this.#now();
        const a = this.#fail(acct, this.#limits.maxFailures, t);
        const s = this.#fail(src, this.#limits.maxSourceFailures, t);
        if (a !== undefined) return { lockedForMs: a, scope: 'account' };
        if (s !== undefined) return { lockedForMs: s, scope: 'source' };
        return undefined;
      },
    };
  }

  /** Keys currently tracked. */
  get size(): number {
    return this.#entries.size;
  }

  #entry(key: string, now: number): Entry {
    let e = this.#entries.get(key);
    if (e) {
      this.#entries.delete(key); // re-inserted: Map order is the order of last activity
      if (this.#quiet(e, now)) e = undefined;
    }
    if (!e) {
      e = { count: 0, windowStart: now, level: 0, lockedUntil: 0, lastFailure: 0, inflight: 0, reported: false };
    }
    this.#entries.set(key, e);
    return e;
  }

  #refuse(e: Entry, max: number, scope: 'account' | 'source', now: number): Lockout | undefined {
    if (e.lockedUntil > now) return this.#lockedRefusal(e, scope, now);
    if (e.level === 0 && now - e.windowStart > this.#limits.windowMs) {
      e.count = 0;
      e.windowStart = now;
    }
    // After a lockout, one attempt at a time (its failure locks again, for longer).
    const budget = e.level > 0 ? 1 : max - e.count;
    if (e.inflight >= budget) return { retryAfterMs: BUSY_RETRY_MS, scope, reason: 'busy', first: false };
    return undefined;
  }

  #lockedRefusal(e: Entry, scope: 'account' | 'source', now: number): Lockout {
    const first = !e.reported;
    e.reported = true;
    return { retryAfterMs: e.lockedUntil - now, scope, reason: 'locked', first };
  }

  /** Counts a failure on a key; returns the lockout it started (ms), if any. */
  #fail(e: Entry, max: number, now: number): number | undefined {
    const { windowMs, lockoutMs, maxLockoutMs } = this.#limits;
    e.lastFailure = now;
    if (e.lockedUntil > now) return undefined; // locked meanwhile by a concurrent failure
    if (e.level === 0) {
      if (now - e.windowStart > windowMs) {
        e.count = 0;
        e.windowStart = now;
      }
      e.count++;
      if (e.count < max) return undefined;
    }
    const ms = Math.min(maxLockoutMs, lockoutMs * 2 ** Math.min(e.level, 40));
    e.level++;
    e.count = 0;
    e.lockedUntil = now + ms;
    e.reported = false;
    return ms;
  }

  /** Nothing left to remember: no check under way, unlocked, and no failure for a whole window. */
  #quiet(e: Entry, now: number): boolean {
    return e.inflight === 0 && e.lockedUntil <= now && now - Math.max(e.lastFailure, e.lockedUntil) > this.#limits.windowMs;
  }

  /** Drops quiet entries from the oldest end, and the oldest idle ones beyond the size limit (room for an attempt's two keys). */
  #sweep(now: number): void {
    for (const [key, e] of this.#entries) {
      if (this.#entries.size <= MAX_ENTRIES - 2 && !this.#quiet(e, now)) break;
      if (e.inflight === 0) this.#entries.delete(key);
    }
  }
}
