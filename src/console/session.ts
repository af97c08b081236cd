/**
 * @module console/session
 * Console logins: server-side sessions (random 256-bit ids, an idle and an absolute lifetime on an
 * injected clock, a bounded number kept — the oldest dropped first), each with its own CSRF token;
 * cookie parsing and the HttpOnly, SameSite=Strict session cookie.
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { type Clock, systemClock } from '../core/index.js';

export interface Session {
  id: string;
  user: string;
  /** The token every state-changing form of this session must carry. */
  csrf: string;
  createdAt: number;
  seenAt: number;
}

export interface SessionOptions {
  clock?: Clock | undefined;
  /** A session unused this long ends (default 30 min). */
  idleMs?: number | undefined;
  /** A session ends this long after login whatever its use (default 12 h). */
  maxAgeMs?: number | undefined;
  /** At most this many sessions are kept; a new login past it drops the oldest (default 10 000). */
  max?: number;
}

/** A random url-safe token of 32 bytes. */
export function newToken(): string {
  return randomBytes(32).toString('base64url');
}

/** Compares two tokens in constant time (lengths may differ). */
export function sameToken(a: string | undefined, b: string | undefined): boolean {
  if (!a || !b) return false;
  const ha = createHash('sha256').update(a).digest();
  const hb = createHash('sha256').update(b).digest();
  return timingSafeEqual(ha, hb);
}

export class SessionStore {
  readonly #clock: Clock;
  readonly #idleMs: number;
  readonly #maxAgeMs: number;
  readonly #max: number;
  /** In insertion (login) order: the first is the oldest. */
  readonly #byId = new Map<string, Session>();

  constructor(o: SessionOptions = {}) {
    this.#clock = o.clock ?? systemClock;
    this.#idleMs = o.idleMs ?? 30 * 60_000;
    this.#maxAgeMs = o.maxAgeMs ?? 12 * 3_600_000;
    this.#max = o.max ?? 10_000;
  }

  get size(): number {
    return this.#byId.size;
  }

  /** The longest a session may live, for the cookie's Max-Age. */
  get maxAgeMs(): number {
    return this.#maxAgeMs;
  }

  create(user: string): Session {
    const now = this.#clock.now();
    while (this.#byId.size >= this.#max) this.#byId.delete(this.#byId.keys().next().value!);
    const s: Session = { id: newToken(), user, csrf: newToken(), createdAt: now, seenAt: now };
    this.#byId.set(s.id, s);
    return s;
  }

  /** The live session with this id (its idle time restarts), else undefined (an expired one is dropped). */
  get(id: string | undefined): Session | undefined {
    if (!id) return undefined;
    const s = this.#byId.get(id);
    if (!s) return undefined;
    const now = this.#clock.now();
    if (now - s.seenAt >= this.#idleMs || now - s.createdAt >= this.#maxAgeMs) {
      this.#byId.delete(id);
      return undefined;
    }
    s.seenAt = now;
    return s;
  }

  delete(id: string): void {
    this.#byId.delete(id);
  }

  /** Ends every session of `user` (password changed, user removed). */
  deleteUser(user: string): void {
    for (const [id, s] of this.#byId) if (s.user === user) this.#byId.delete(id);
  }
}

/** The cookies of a request header (first value of a name wins; malformed pairs ignored). */
export function parseCookies(header: string | undefined): Map<string, string> {
  const out = new Map<string, string>();
  for (const part of (header ?? '').split(';')) {
    const eq = part.indexOf('=');
    const name = eq < 0 ? '' : part.slice(0, eq).trim();
    if (name !== '' && !out.has(name)) out.set(name, part.slice(eq + 1).trim());
  }
  return out;
}

/** A `Set-Cookie` value: HttpOnly, SameSite=Strict, Path=/, Secure over TLS; `maxAgeS` 0 deletes it. */
export function cookie(name: string, value: string, o: { maxAgeS: number; secure: boolean }): string {
  return `${name}=${value}; Path=/; HttpOnly; SameSite=Strict; Max-Age=${o.maxAgeS}${o.secure ? '; Secure' : ''}`;
}
