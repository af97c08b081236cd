/**
 * @module p2p/peer/stat-cache
 * The origin's answer to a proxy request's access/size check (a HEAD with the client's own
 * headers), remembered for content-addressed blobs. A lazy loader reading through the peer sends
 * one Range request per coalesced read, and each used to cost a HEAD to the registry before its
 * range GET: twice the round trips of a direct read. A registry blob URL names its bytes by digest
 * (`/v2/<name>/blobs/sha256:<hex>`), so its size cannot change; only the access decision ages. An
 * allowance is kept per (credential hash, URL) for `ttlMs` on the injected clock — the same window
 * the upload side's access decisions hold — and refusals, errors and other URLs are never cached
 * (asked every time). Concurrent checks of one key share one HEAD. The credential itself is never
 * stored, only its SHA-256.
 */
import { createHash } from 'node:crypto';
import { type Clock, systemClock } from '../../core/index.js';
import { authorizationOf } from './access.js';
import { type OriginOptions, type StatResult, statOrigin } from './source.js';

type OkStat = Extract<StatResult, { ok: true }>;

/** Remembered allowances at most (oldest dropped first). */
const MAX_ENTRIES = 10_000;

const BLOB_URL = /\/v2\/.+\/blobs\/sha256:[0-9a-f]{64}$/;

export interface StatCacheOptions {
  origin: OriginOptions;
  /** How long an allowance holds; 0 = nothing is cached. */
  ttlMs: number;
  clock?: Clock;
  /** The HEAD itself (tests count it); default statOrigin. */
  stat?: typeof statOrigin;
}

export class OriginStatCache {
  private readonly ok = new Map<string, { stat: OkStat; until: number }>();
  private readonly pending = new Map<string, Promise<StatResult>>();
  private readonly clock: Clock;
  private readonly stat: typeof statOrigin;

  constructor(private readonly o: StatCacheOptions) {
    this.clock = o.clock ?? systemClock;
    this.stat = o.stat ?? statOrigin;
  }

  /** The origin's answer for (url, headers): remembered when allowed for a digest-addressed blob. */
  async get(url: string, headers: Record<string, string>, signal?: AbortSignal): Promise<StatResult> {
    const key = this.keyOf(url, headers);
    if (key === undefined) return this.stat(url, headers, this.o.origin, signal);
    const hit = this.ok.get(key);
    if (hit && hit.until > this.clock.now()) return hit.stat;
    let p = this.pending.get(key);
    if (!p) {
      // shared by every waiter, so not tied to the first one's signal (the origin timeout bounds it)
      p = this.stat(url, headers, this.o.origin)
        .then((s) => {
          if (s.ok) this.remember(key, s);
          return s;
        })
        .finally(() => this.pending.delete(key));
      this.pending.set(key, p);
    }
    return p;
  }

  private keyOf(url: string, headers: Record<string, string>): string | undefined {
    if (this.o.ttlMs <= 0) return undefined;
    let path: string;
    try {
      path = new URL(url).pathname;
    } catch {
      return undefined;
    }
    if (!BLOB_URL.test(path)) return undefined;
    const a = authorizationOf(headers);
    return `${a === undefined ? 'anonymous' : createHash('sha256').update(a).digest('hex')} ${url}`;
  }

  private remember(key: string, stat: OkStat): void {
    this.ok.delete(key);
    this.ok.set(key, { stat, until: this.clock.now() + this.o.ttlMs });
    while (this.ok.size > MAX_ENTRIES) this.ok.delete(this.ok.keys().next().value as string);
  }
}
