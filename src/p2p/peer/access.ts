/**
 * @module p2p/peer/access
 * Who may have the bytes of a task this peer holds. A registry blob of a private repository is
 * served (piece lists, pieces, download commands) only to a requester that has shown it may pull
 * that repository: the requester forwards its own registry `Authorization` (header
 * `x-ferry-origin-authorization` on piece requests), and this peer asks the registry — a HEAD of
 * the task's URL with that credential. Public objects (the anonymous HEAD succeeds) are served to
 * every member. Decisions are cached per (credential hash, repository) for `ttlMs` on the injected
 * clock; allowances and refusals (401/403) are cached, other answers and network errors are not
 * (and refuse: the check fails closed). The credential itself is never stored, only its SHA-256.
 */
import { createHash } from 'node:crypto';
import { type Clock, FerryError, systemClock } from '../../core/index.js';
import { type Logger, silentLogger } from '../../observe/index.js';
import { redactUrl } from '../common/index.js';
import { type OriginOptions, statOrigin } from './source.js';

/** Cached decisions at most (oldest dropped first). */
const MAX_DECISIONS = 10_000;

interface Decision {
  ok: boolean;
  status: number;
  until: number;
}

export interface AccessCheckOptions {
  origin: OriginOptions;
  /** How long a decision holds. */
  ttlMs: number;
  clock?: Clock;
  log?: Logger;
}

/**
 * What a decision is about: the repository of a registry URL (`<origin>/v2/<name>` of
 * `/v2/<name>/blobs/…` or `/manifests/…`), else the URL without its query.
 */
export function accessScopeOf(url: string): string {
  const u = new URL(url);
  const m = /^(\/v2\/.+)\/(?:blobs|manifests)\/[^/]+$/.exec(u.pathname);
  return `${u.origin}${m ? m[1] : u.pathname}`;
}

/** The `Authorization` of a plain header record, whatever its case (Harbor's preheat sends `Authorization`). */
export function authorizationOf(h: Record<string, string> | undefined): string | undefined {
  for (const [k, v] of Object.entries(h ?? {})) if (k.toLowerCase() === 'authorization') return v;
  return undefined;
}

export class AccessCheck {
  private readonly decisions = new Map<string, Decision>();
  private readonly pending = new Map<string, Promise<Decision>>();
  private readonly clock: Clock;
  private readonly log: Logger;
  /** HEADs sent to origins (decisions not answered from the cache). */
  asked = 0;

  constructor(private readonly o: AccessCheckOptions) {
    this.clock = o.clock ?? systemClock;
    this.log = o.log ?? silentLogger();
  }

  /**
   * Resolves when the holder of `authorization` (undefined: nobody in particular) may have the
   * object at `url`; otherwise throws PERMISSION_DENIED (refused, or no credential for a private
   * object) or UNAVAILABLE (the origin could not be asked).
   */
  async check(url: string, authorization: string | undefined, signal?: AbortSignal): Promise<void> {
    const scope = accessScopeOf(url);
    if ((await this.decide(scope, url, undefined, signal)).ok) return;
    if (!authorization) {
      throw new FerryError('PERMISSION_DENIED', `${redactUrl(scope)} is not public: the requester must present its registry credential`);
    }
    const d = await this.decide(scope, url, authorization, signal);
    if (!d.ok)
      throw new FerryError('PERMISSION_DENIED', `the registry refused the requester's credential for ${redactUrl(scope)} (${d.status})`);
  }

  private decide(scope: string, url: string, authorization: string | undefined, signal?: AbortSignal): Promise<Decision> {
    const who = authorization === undefined ? 'anonymous' : createHash('sha256').update(authorization).digest('hex');
    const key = `${who} ${scope}`;
    const now = this.clock.now();
    const cached = this.decisions.get(key);
    if (cached && cached.until > now) return Promise.resolve(cached);
    let p = this.pending.get(key);
    if (!p) {
      p = this.ask(url, authorization, signal)
        .then((d) => {
          if (d.ok || d.status === 401 || d.status === 403) this.remember(key, d);
          return d;
        })
        .finally(() => this.pending.delete(key));
      this.pending.set(key, p);
    }
    return p;
  }

  private async ask(url: string, authorization: string | undefined, signal?: AbortSignal): Promise<Decision> {
    this.asked++;
    let stat: Awaited<ReturnType<typeof statOrigin>>;
    try {
      stat = await statOrigin(url, authorization ? { authorization } : {}, this.o.origin, signal);
    } catch (err) {
      throw new FerryError('UNAVAILABLE', `access check: the origin of ${redactUrl(url)} could not be asked: ${(err as Error).message}`, {
        cause: err,
      });
    }
    const d = { ok: stat.ok, status: stat.ok ? 200 : stat.status, until: this.clock.now() + this.o.ttlMs };
    this.log.debug({ url: redactUrl(url), credential: authorization !== undefined, status: d.status }, 'access decision');
    return d;
  }

  private remember(key: string, d: Decision): void {
    this.decisions.delete(key);
    this.decisions.set(key, d);
    while (this.decisions.size > MAX_DECISIONS) this.decisions.delete(this.decisions.keys().next().value as string);
  }
}
