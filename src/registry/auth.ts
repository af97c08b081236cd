/**
 * @module registry/auth
 * Who is asking and what they may do. Credentials arrive as HTTP Basic (admin/users, robot
 * accounts `robot$<project>+<name>`) or as Bearer JWTs issued by our token endpoint (the Docker
 * token flow Harbor uses). Passwords and robot secrets are stored only as salted PBKDF2-SHA256
 * hashes; successful verifications are cached briefly so a pull of many blobs costs one hash, and
 * identical credentials arriving together from one address are checked once. Failed logins are
 * limited per (account, source address) and per source address with exponential backoff
 * (login-limiter.ts) and each writes one `warn` audit line (user, source, reason, path — never the
 * password).
 */
import { createHash, pbkdf2, randomBytes, randomInt, timingSafeEqual, randomUUID } from 'node:crypto';
import { existsSync, linkSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs';
import { promisify } from 'node:util';
import {
  SignJWT,
  jwtVerify,
  importJWK,
  exportJWK,
  generateKeyPair,
  type JWK,
  type CryptoKey as JoseKey,
  calculateJwkThumbprint,
} from 'jose';
import { FerryError } from '../core/index.js';
import { Counter, silentLogger, type Logger, type MetricsRegistry } from '../observe/index.js';
import { LoginLimiter, sourceKey, type LoginLimits, type Lockout } from './login-limiter.js';
import type { RegistryMetadata, Robot } from './metadata/metadata.js';
import { isValidName, projectOf } from './names.js';

const pbkdf2Async = promisify(pbkdf2);
const PBKDF2_ITERATIONS = 20_000;

/** `pbkdf2-sha256$<iterations>$<salt b64>$<hash b64>` of a password or secret. */
export async function hashSecret(secret: string): Promise<string> {
  const salt = randomBytes(16);
  const hash = await pbkdf2Async(secret, salt, PBKDF2_ITERATIONS, 32, 'sha256');
  return `pbkdf2-sha256$${PBKDF2_ITERATIONS}$${salt.toString('base64')}$${hash.toString('base64')}`;
}

/** Checks a secret against a stored hash in constant time. */
export async function verifySecret(secret: string, stored: string): Promise<boolean> {
  const [scheme, iter, salt, hash] = stored.split('$');
  if (scheme !== 'pbkdf2-sha256' || !iter || !salt || !hash) return false;
  const want = Buffer.from(hash, 'base64');
  const got = await pbkdf2Async(secret, Buffer.from(salt, 'base64'), Number(iter), want.length, 'sha256');
  return got.length === want.length && timingSafeEqual(got, want);
}

const ALNUM = 'abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789';

/** 32 random `[a-zA-Z0-9]` characters with at least one lower, upper and digit (Harbor's rule). */
export function generateSecret(length = 32): string {
  for (;;) {
    let s = '';
    for (let i = 0; i < length; i++) s += ALNUM[randomInt(ALNUM.length)];
    if (/[a-z]/.test(s) && /[A-Z]/.test(s) && /[0-9]/.test(s)) return s;
  }
}

/** Harbor's rule for user-supplied robot secrets. */
export function isStrongSecret(s: string): boolean {
  return s.length >= 8 && s.length <= 128 && /[a-z]/.test(s) && /[A-Z]/.test(s) && /[0-9]/.test(s);
}

export type Action = 'pull' | 'push' | 'delete';

export type Principal =
  | { kind: 'anonymous'; name: '' }
  | { kind: 'user'; name: string; sysadmin: boolean }
  | { kind: 'robot'; name: string; robot: Robot }
  | { kind: 'token'; name: string; access: TokenAccess[]; via: 'bearer' };

export interface TokenAccess {
  type: string;
  name: string;
  actions: string[];
}

/** A requested scope `type:name:actions`; the name may itself contain ':' (host:port). */
export function parseScope(s: string): TokenAccess | undefined {
  const first = s.indexOf(':');
  const last = s.lastIndexOf(':');
  if (first <= 0 || last <= first) return undefined;
  const type = s.slice(0, first).replace(/\(.*\)$/, '');
  return {
    type,
    name: s.slice(first + 1, last),
    actions: s
      .slice(last + 1)
      .split(',')
      .filter(Boolean),
  };
}

export interface AuthOptions {
  /** The token signing key file (JWK, 0600), created when missing; replicas share one. */
  keyPath: string;
  service: string;
  issuer: string;
  tokenExpirationMs: number;
  /** Failed-login limits (config `auth`); defaults: 5 per account and source, 50 per source, 10 min window, 10 s doubling to 15 min. */
  limits?: LoginLimits;
}

export interface AuthDeps {
  log?: Logger;
  metrics?: MetricsRegistry;
  /** Clock for the login limiter (tests). */
  now?: () => number;
}

/** Where a login attempt comes from, for the limiter and the audit line. */
export interface LoginContext {
  /** The peer address (`socket.remoteAddress`). */
  source: string | undefined;
  path: string;
  method: string;
}

export const DEFAULT_LOGIN_LIMITS: LoginLimits = {
  maxFailures: 5,
  maxSourceFailures: 50,
  windowMs: 10 * 60_000,
  lockoutMs: 10_000,
  maxLockoutMs: 15 * 60_000,
};

/** A login refused without checking the password: too many failures for its account or source. */
export class LoginLockedError extends FerryError {
  /** Whole seconds to wait (the Retry-After header). */
  readonly retryAfterSeconds: number;
  constructor(message: string, retryAfterMs: number) {
    super('RESOURCE_EXHAUSTED', message);
    this.name = 'LoginLockedError';
    this.retryAfterSeconds = Math.max(1, Math.ceil(retryAfterMs / 1000));
  }
}

/** Longest username written to the audit log (it is attacker-chosen). */
const MAX_LOGGED_USER = 128;
/** A hash to check unknown users' passwords against, so they cost the same time as known ones. */
let dummyHash: Promise<string> | undefined;

/** Authentication, authorisation and token issuance. */
export class Auth {
  readonly #meta: RegistryMetadata;
  readonly #opts: AuthOptions;
  #privateKey!: JoseKey;
  #publicKey!: JoseKey;
  #kid = '';
  /** sha256(Authorization header) → principal, for a short time. */
  readonly #basicCache = new Map<string, { principal: Principal; until: number }>();
  readonly #tokenCache = new Map<string, { principal: Principal; until: number }>();
  /** `<source>\0<sha256(header)>` → the check under way for it. */
  readonly #checking = new Map<string, Promise<Principal>>();
  readonly #limiter: LoginLimiter;
  readonly #log: Logger;
  readonly #failures: InstanceType<typeof Counter> | undefined;
  readonly #refusals: InstanceType<typeof Counter> | undefined;

  constructor(meta: RegistryMetadata, opts: AuthOptions, deps: AuthDeps = {}) {
    this.#meta = meta;
    this.#opts = opts;
    this.#limiter = new LoginLimiter(opts.limits ?? DEFAULT_LOGIN_LIMITS, deps.now);
    this.#log = (deps.log ?? silentLogger()).child({ component: 'auth' });
    if (deps.metrics) {
      this.#failures = new Counter({
        name: 'ferry_registry_login_failures_total',
        help: 'Failed password/secret checks by reason',
        labelNames: ['reason'],
        registers: [deps.metrics],
      });
      this.#refusals = new Counter({
        name: 'ferry_registry_login_refused_total',
        help: 'Logins refused unchecked (429) by limiter key',
        labelNames: ['scope'],
        registers: [deps.metrics],
      });
    }
  }

  /**
   * Loads or creates the token signing key (mode 0600). Creation links a complete temp file to the
   * name, which fails when it exists: of replicas starting together on one shared file, the first
   * one's key wins and every replica reads that one.
   */
  async init(): Promise<void> {
    const path = this.#opts.keyPath;
    if (!existsSync(path)) {
      const { privateKey } = await generateKeyPair('ES256', { extractable: true });
      const tmp = `${path}.${process.pid}.${Date.now()}.tmp`;
      writeFileSync(tmp, JSON.stringify(await exportJWK(privateKey)), { mode: 0o600 });
      try {
        linkSync(tmp, path);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      } finally {
        unlinkSync(tmp);
      }
    }
    const jwk = JSON.parse(readFileSync(path, 'utf8')) as JWK;
    this.#privateKey = (await importJWK(jwk, 'ES256')) as JoseKey;
    const { d: _d, ...pub } = jwk;
    this.#publicKey = (await importJWK(pub, 'ES256')) as JoseKey;
    this.#kid = (await calculateJwkThumbprint(pub)).slice(0, 32);
  }

  /** Forgets cached verifications (after a robot or password change). */
  invalidate(): void {
    this.#basicCache.clear();
    this.#tokenCache.clear();
  }

  /**
   * The principal behind an Authorization header; anonymous when there is none.
   * Throws UNAUTHENTICATED for wrong, expired or disabled credentials, and LoginLockedError
   * (RESOURCE_EXHAUSTED) for Basic credentials whose account or source is locked out — then the
   * password is not checked, a correct one included.
   */
  async authenticate(header: string | undefined, ctx: LoginContext = { source: undefined, path: '', method: '' }): Promise<Principal> {
    if (!header) return { kind: 'anonymous', name: '' };
    const now = Date.now();
    const sp = header.indexOf(' ');
    const scheme = header.slice(0, sp < 0 ? undefined : sp).toLowerCase();
    const value = sp < 0 ? '' : header.slice(sp + 1).trim();
    if (scheme === 'basic') {
      const decoded = Buffer.from(value, 'base64').toString('utf8');
      const colon = decoded.indexOf(':');
      const user = colon < 0 ? '' : decoded.slice(0, colon);
      const source = sourceKey(ctx.source);
      // Even a credential verified a moment ago is refused while its key is locked: else guesses
      // during a lockout would still tell the right password (cached) from wrong ones.
      const locked = this.#limiter.locked(user, source);
      if (locked) this.#refuse(user, ctx, locked);
      const key = createHash('sha256').update(header).digest('hex');
      const hit = this.#basicCache.get(key);
      if (hit && hit.until > now) return hit.principal;
      const checkKey = `${source}\0${key}`;
      let check = this.#checking.get(checkKey);
      if (!check) {
        check = this.#checkLimited(user, colon < 0 ? undefined : decoded.slice(colon + 1), source, ctx).finally(() =>
          this.#checking.delete(checkKey),
        );
        this.#checking.set(checkKey, check);
      }
      const principal = await check;
      if (this.#basicCache.size > 10_000) this.#basicCache.clear();
      this.#basicCache.set(key, { principal, until: now + 30_000 });
      return principal;
    }
    if (scheme === 'bearer') {
      const hit = this.#tokenCache.get(value);
      if (hit && hit.until > now) return hit.principal;
      let payload: Record<string, unknown>;
      try {
        ({ payload } = await jwtVerify(value, this.#publicKey, { issuer: this.#opts.issuer, audience: this.#opts.service }));
      } catch (err) {
        throw new FerryError('UNAUTHENTICATED', `invalid token: ${(err as Error).message}`);
      }
      const principal: Principal = {
        kind: 'token',
        name: typeof payload.sub === 'string' ? payload.sub : '',
        via: 'bearer',
        access: Array.isArray(payload.access) ? (payload.access as TokenAccess[]) : [],
      };
      if (this.#tokenCache.size > 10_000) this.#tokenCache.clear();
      this.#tokenCache.set(value, { principal, until: Math.min(now + 60_000, Number(payload.exp) * 1000) });
      return principal;
    }
    throw new FerryError('UNAUTHENTICATED', `unsupported authorization scheme ${JSON.stringify(scheme)}`);
  }

  /** One limited check of Basic credentials (`password` undefined: malformed), with its audit line. */
  async #checkLimited(user: string, password: string | undefined, source: string, ctx: LoginContext): Promise<Principal> {
    const attempt = this.#limiter.begin(user, source);
    if (!attempt.admitted) this.#refuse(user, ctx, attempt.lockout);
    let out: Principal | { reason: string };
    try {
      out = password === undefined ? { reason: 'malformed credentials' } : await this.#check(user, password);
    } catch (err) {
      attempt.finish('aborted');
      throw err;
    }
    if (!('reason' in out)) {
      attempt.finish('ok');
      return out;
    }
    const locked = attempt.finish('failed');
    this.#failures?.inc({ reason: out.reason });
    this.#log.warn(
      {
        user: user.slice(0, MAX_LOGGED_USER),
        source: ctx.source,
        reason: out.reason,
        method: ctx.method,
        path: ctx.path.slice(0, 256),
        ...(locked ? { lockedForMs: locked.lockedForMs, lockScope: locked.scope } : {}),
      },
      'login failed',
    );
    throw new FerryError('UNAUTHENTICATED', out.reason === 'malformed credentials' ? 'malformed basic credentials' : 'invalid credentials');
  }

  /** Refuses an attempt the limiter turned away: one audit line per lockout, 429 to the client. */
  #refuse(user: string, ctx: LoginContext, l: Lockout): never {
    this.#refusals?.inc({ scope: l.scope });
    const fields = {
      user: user.slice(0, MAX_LOGGED_USER),
      source: ctx.source,
      reason: l.reason === 'locked' ? 'locked out' : 'too many attempts in flight',
      scope: l.scope,
      retryAfterMs: l.retryAfterMs,
      method: ctx.method,
      path: ctx.path.slice(0, 256),
    };
    if (l.first) this.#log.warn(fields, 'login refused');
    else this.#log.debug(fields, 'login refused');
    const who = l.scope === 'account' ? `${user.slice(0, MAX_LOGGED_USER)} from this address` : 'this address';
    throw new LoginLockedError(
      `too many failed logins for ${who}; retry in ${Math.max(1, Math.ceil(l.retryAfterMs / 1000))} s`,
      l.retryAfterMs,
    );
  }

  /** A principal, or why the credentials are refused. Unknown users cost one hash like known ones. */
  async #check(username: string, password: string): Promise<Principal | { reason: string }> {
    if (username.startsWith('robot$')) {
      const robot = await this.#meta.getRobot(username);
      if (!robot) {
        await verifySecret(password, await (dummyHash ??= hashSecret(randomUUID())));
        return { reason: 'unknown robot' };
      }
      if (!(await verifySecret(password, robot.secretHash))) return { reason: 'wrong secret' };
      if (robot.disabled) return { reason: 'robot disabled' };
      if (robot.expiresAt !== -1 && robot.expiresAt * 1000 < Date.now()) return { reason: 'robot expired' };
      return { kind: 'robot', name: username, robot };
    }
    const user = await this.#meta.getUser(username);
    if (!user) {
      await verifySecret(password, await (dummyHash ??= hashSecret(randomUUID())));
      return { reason: 'unknown user' };
    }
    if (!(await verifySecret(password, user.passwordHash))) return { reason: 'wrong password' };
    return { kind: 'user', name: username, sysadmin: user.sysadmin };
  }

  /** Checks a username (user or robot) and password (not limited, not logged: callers that face the network use `authenticate`). */
  async verifyPassword(username: string, password: string): Promise<Principal> {
    const out = await this.#check(username, password);
    if ('reason' in out)
      throw new FerryError(
        'UNAUTHENTICATED',
        out.reason === 'robot disabled' || out.reason === 'robot expired' ? `robot ${username}: ${out.reason}` : 'invalid credentials',
      );
    return out;
  }

  /** Actions `p` may perform on repository `repo` (tokens: what the token grants). */
  async allowed(p: Principal, repo: string): Promise<Set<Action>> {
    const out = new Set<Action>();
    if (p.kind === 'token') {
      for (const a of p.access) {
        if (a.type !== 'repository' || a.name !== repo) continue;
        for (const act of a.actions) {
          if (act === '*') {
            out.add('pull');
            out.add('push');
            out.add('delete');
          } else if (act === 'pull' || act === 'push' || act === 'delete') out.add(act);
        }
      }
      return out;
    }
    if (p.kind === 'user' && p.sysadmin) return new Set<Action>(['pull', 'push', 'delete']);
    const projectName = projectOf(repo);
    const project = await this.#meta.getProject(projectName);
    if (project?.public) out.add('pull');
    if (p.kind === 'robot') {
      for (const perm of p.robot.permissions) {
        if (perm.kind !== 'project' || (perm.namespace !== '*' && perm.namespace !== projectName)) continue;
        for (const a of perm.access) {
          if (a.effect === 'deny') continue;
          if (a.resource === 'repository' && (a.action === 'pull' || a.action === 'push')) out.add(a.action);
          if ((a.resource === 'artifact' || a.resource === 'tag') && a.action === 'delete') out.add('delete');
          if (a.resource === 'repository' && a.action === '*') {
            out.add('pull');
            out.add('push');
            out.add('delete');
          }
        }
      }
    }
    return out;
  }

  /** Whether `p` may list the catalog (registry:catalog:*). */
  mayListCatalog(p: Principal): boolean {
    if (p.kind === 'token') return p.access.some((a) => a.type === 'registry' && a.name === 'catalog');
    return p.kind === 'user' && p.sysadmin;
  }

  /** Issues a token for the granted subset of `scopes` (never an error to grant less). */
  async issueToken(
    p: Principal,
    scopes: TokenAccess[],
  ): Promise<{ token: string; access_token: string; expires_in: number; issued_at: string }> {
    const access: TokenAccess[] = [];
    for (const s of scopes) {
      if (s.type === 'repository') {
        if (!isValidName(s.name)) {
          // No route takes such a name; granting on it would only invite confusion downstream.
          access.push({ type: 'repository', name: s.name.slice(0, 300), actions: [] });
          continue;
        }
        const allowed = await this.allowed(p, s.name);
        const wanted = s.actions.includes('*') ? ['pull', 'push', 'delete'] : s.actions;
        const granted = wanted.filter((a) => allowed.has(a as Action));
        access.push({ type: 'repository', name: s.name, actions: [...new Set(granted)] });
      } else if (s.type === 'registry' && s.name === 'catalog') {
        access.push({ type: 'registry', name: 'catalog', actions: this.mayListCatalog(p) ? ['*'] : [] });
      }
    }
    const now = Math.floor(Date.now() / 1000);
    // Harbor issues 30-minute tokens; shorter lifetimes (tests of token refresh) are honoured down to 1 s
    const expiresIn = Math.max(1, Math.floor(this.#opts.tokenExpirationMs / 1000));
    const token = await new SignJWT({ access })
      .setProtectedHeader({ alg: 'ES256', typ: 'JWT', kid: this.#kid })
      .setIssuer(this.#opts.issuer)
      .setSubject(p.name)
      .setAudience(this.#opts.service)
      .setIssuedAt(now)
      .setNotBefore(now - 5)
      .setExpirationTime(now + expiresIn)
      .setJti(randomUUID())
      .sign(this.#privateKey);
    return { token, access_token: token, expires_in: expiresIn, issued_at: new Date(now * 1000).toISOString() };
  }
}
