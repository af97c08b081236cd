/**
 * @module p2p/common/cluster-auth
 * Cluster authentication between the scheduler and the peers (peer → peer upload API, peer →
 * scheduler RPC, scheduler → peer seed triggers and preheat downloads). Every member holds the
 * same secret; a request carries a signature, never the secret:
 *
 *   Authorization: Ferry-Cluster t=<unix ms>, n=<nonce, 32 hex>, sig=<64 hex>
 *   sig = HMAC-SHA256(secret, "ferry-cluster-v1\n" METHOD "\n" path?query "\n" t "\n" n "\n" hex(sha256(body)))
 *
 * so a sniffer on a shared network learns neither the secret nor a signature it could reuse for
 * another request: the method, the request target (path and query, exactly as sent) and the body
 * are signed. The verifier accepts `t` within ±5 minutes of its own clock, compares in constant
 * time, and refuses a nonce it has already accepted for a state-changing request (anything but
 * GET/HEAD) within the window. A replayed GET within the window returns what the sniffer has
 * already seen on the wire. The host is not signed: a request signed for one member is valid at
 * every member (they share the secret anyway).
 */
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { readFileSync, statSync } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import { FerryError } from '../../core/index.js';
import type { Logger } from '../../observe/index.js';
import { readBody } from '../../httpx/index.js';

export const CLUSTER_AUTH_SCHEME = 'Ferry-Cluster';
/** Accepted clock difference between signer and verifier. */
export const CLUSTER_AUTH_WINDOW_MS = 5 * 60_000;
export const MIN_CLUSTER_SECRET_LENGTH = 16;
/** Where a cluster secret comes from, for error messages. */
export const CLUSTER_SECRET_HINT = 'config cluster.tokenFile or cluster.token, env FERRY_CLUSTER_TOKEN, or --cluster-token-file FILE';

const HEADER = /^Ferry-Cluster\s+t=(\d{1,15}),\s*n=([0-9a-f]{32}),\s*sig=([0-9a-f]{64})$/;
const EMPTY_SHA256 = createHash('sha256').digest('hex');

export interface ParsedClusterAuth {
  t: number;
  n: string;
  sig: string;
}

export type ClusterAuthCheck = { ok: true; parsed: ParsedClusterAuth } | { ok: false; reason: string };

/** The request target to sign: `path?query` of a URL, or the target itself when it is one. */
function targetOf(urlOrTarget: string): string {
  if (urlOrTarget.startsWith('/')) return urlOrTarget;
  const u = new URL(urlOrTarget);
  return `${u.pathname}${u.search}`;
}

export class ClusterAuth {
  private readonly key: Buffer;
  private readonly windowMs: number;
  private readonly now: () => number;
  /** Nonces of accepted state-changing requests → when they leave the window. */
  private readonly seen = new Map<string, number>();
  private inserts = 0;

  constructor(secret: string, opts: { windowMs?: number; now?: () => number } = {}) {
    if (secret.length < MIN_CLUSTER_SECRET_LENGTH) {
      throw new FerryError(
        'INVALID_ARGUMENT',
        `cluster secret too short (${secret.length} characters, at least ${MIN_CLUSTER_SECRET_LENGTH}; e.g. openssl rand -hex 32)`,
      );
    }
    this.key = Buffer.from(secret, 'utf8');
    this.windowMs = opts.windowMs ?? CLUSTER_AUTH_WINDOW_MS;
    this.now = opts.now ?? Date.now;
  }

  private mac(method: string, target: string, t: number, n: string, bodySha: string): Buffer {
    return createHmac('sha256', this.key).update(`ferry-cluster-v1\n${method.toUpperCase()}\n${target}\n${t}\n${n}\n${bodySha}`).digest();
  }

  /** The Authorization header value for a request (`url`: full URL or `path?query`). */
  sign(method: string, url: string, body?: Buffer | string, at: number = this.now()): string {
    const t = Math.floor(at);
    const n = randomBytes(16).toString('hex');
    const bodySha = body === undefined || body.length === 0 ? EMPTY_SHA256 : createHash('sha256').update(body).digest('hex');
    return `${CLUSTER_AUTH_SCHEME} t=${t}, n=${n}, sig=${this.mac(method, targetOf(url), t, n, bodySha).toString('hex')}`;
  }

  /**
   * Cheap checks before the body is read: the header is present, well-formed and inside the
   * time window (so strangers cannot make the server read large bodies).
   */
  precheck(header: string | undefined): ClusterAuthCheck {
    if (!header) return { ok: false, reason: 'no cluster credentials (Authorization: Ferry-Cluster …)' };
    const m = HEADER.exec(header.trim());
    if (!m) return { ok: false, reason: 'malformed Ferry-Cluster authorization' };
    const t = Number(m[1]);
    if (Math.abs(this.now() - t) > this.windowMs) {
      return {
        ok: false,
        reason: `cluster signature outside the ±${Math.round(this.windowMs / 1000)} s window (clocks out of sync, or a replay)`,
      };
    }
    return { ok: true, parsed: { t, n: m[2]!, sig: m[3]! } };
  }

  /** Full check of a request: `target` is the request target as received (`req.url`). */
  verify(method: string, target: string, header: string | undefined, body: Buffer = Buffer.alloc(0)): ClusterAuthCheck {
    const pre = this.precheck(header);
    if (!pre.ok) return pre;
    const { t, n, sig } = pre.parsed;
    const want = this.mac(method, target, t, n, body.length === 0 ? EMPTY_SHA256 : createHash('sha256').update(body).digest('hex'));
    const got = Buffer.from(sig, 'hex');
    if (got.length !== want.length || !timingSafeEqual(got, want))
      return { ok: false, reason: 'bad cluster signature (different cluster secret?)' };
    const m = method.toUpperCase();
    if (m !== 'GET' && m !== 'HEAD') {
      if (this.seen.has(n)) return { ok: false, reason: 'replayed cluster signature' };
      this.remember(n, t);
    }
    return pre;
  }

  private remember(n: string, t: number): void {
    this.seen.set(n, t + this.windowMs);
    if (++this.inserts % 1024 !== 0) return;
    const now = this.now();
    for (const [k, until] of this.seen) if (until < now - this.windowMs) this.seen.delete(k);
  }
}

/** Loopback listen addresses (the only ones a member may use without a cluster secret). */
export function isLoopbackHost(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '').toLowerCase();
  return (
    h === 'localhost' || h === '::1' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h) || /^::ffff:127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h)
  );
}

/**
 * The cluster secret of a scheduler or peer config (`cluster.token` or `cluster.tokenFile`), or
 * undefined when none is configured. A token file readable by group or others is used with a
 * warning (container secret mounts are often 0644; the file should be 0600).
 */
export function loadClusterSecret(c: { token?: string | undefined; tokenFile?: string | undefined }, log?: Logger): string | undefined {
  if (c.token !== undefined && c.tokenFile !== undefined)
    throw new FerryError('INVALID_ARGUMENT', 'cluster.token and cluster.tokenFile are exclusive');
  let secret = c.token;
  if (c.tokenFile !== undefined) {
    try {
      secret = readFileSync(c.tokenFile, 'utf8').trim();
      const mode = statSync(c.tokenFile).mode & 0o777;
      if (mode & 0o077)
        log?.warn(
          { file: c.tokenFile, mode: mode.toString(8) },
          `cluster token file is readable by group/others: chmod 600 ${c.tokenFile}`,
        );
    } catch (err) {
      throw new FerryError('INVALID_ARGUMENT', `cluster token file ${c.tokenFile}: ${(err as Error).message}`, { cause: err });
    }
  }
  if (secret === undefined) return undefined;
  if (secret.length < MIN_CLUSTER_SECRET_LENGTH) {
    throw new FerryError(
      'INVALID_ARGUMENT',
      `cluster secret${c.tokenFile ? ` in ${c.tokenFile}` : ''} too short (${secret.length} characters, at least ${MIN_CLUSTER_SECRET_LENGTH}; e.g. openssl rand -hex 32)`,
    );
  }
  return secret;
}

/**
 * Server side: checks a request's cluster signature (when `auth` is set) and reads its body, at
 * most `limit` bytes (httpx `readBody`). Throws UNAUTHENTICATED (401) before reading anything when
 * the header is missing, malformed or stale, PayloadTooLarge (413) when the body is larger than
 * `limit` (declared: before reading it), UNAUTHENTICATED when the signature over the body is wrong.
 */
export async function readAuthenticated(req: IncomingMessage, auth: ClusterAuth | undefined, limit: number): Promise<Buffer> {
  const header = req.headers.authorization;
  if (auth) {
    const pre = auth.precheck(header);
    if (!pre.ok) throw new FerryError('UNAUTHENTICATED', pre.reason);
  }
  const body = await readBody(req, limit);
  if (auth) {
    const r = auth.verify(req.method ?? 'GET', req.url ?? '/', header, body);
    if (!r.ok) throw new FerryError('UNAUTHENTICATED', r.reason);
  }
  return body;
}
