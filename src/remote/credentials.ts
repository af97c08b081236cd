/**
 * @module remote/credentials
 * The one credential source chain every part of Ferry asks for registry credentials (`ferry pull`,
 * the snapshotter, the daemon, the peer's clients): an ordered list of sources, each asked for a
 * (registry host, repository); the first that has credentials wins, and credentials the registry
 * refused are skipped until they change (so a chain falls through to its next source, and finally
 * to anonymous). Sources:
 *
 * - explicit (`--user`, `--password-stdin`): `staticCredentials`;
 * - supplied with a request (the snapshotter's pull API, CRI `PullImageRequest.auth`), kept in
 *   memory per (host, repository): `SuppliedCredentials`;
 * - Kubernetes image pull secrets: `.dockerconfigjson` files (or directories of them, as a secret
 *   volume mounts them), re-read when they change: `PullSecretSource`;
 * - Docker's `config.json` (`auths`, `credHelpers`, `credsStore`; helpers run per the
 *   docker-credential-helpers protocol): `DockerConfigSource`.
 *
 * Credentials are never logged: sources and the chain log a source name and a host, nothing else.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { FerryError, defaultDockerConfigPath, systemClock, type Clock } from '../core/index.js';
import { silentLogger, type Logger } from '../observe/index.js';
import type { Credentials } from './auth.js';
import { DOCKER_HUB } from './reference.js';

/** One place credentials may come from. */
export interface CredentialSource {
  /** For logs and `ferry … --explain`-style messages: `explicit`, `cri`, `pull-secret:/path`, `helper:pass`… */
  readonly name: string;
  /** Credentials for `repository` on `host` (`host[:port]`, Docker Hub as `docker.io`), or undefined. */
  get(host: string, repository?: string): Promise<Credentials | undefined>;
}

/** What a registry client asks: credentials, and where to report the ones the registry refused. */
export interface CredentialProvider {
  get(host: string, repository?: string): Promise<Credentials | undefined>;
  /** The registry refused these (401 from its token endpoint, or to Basic): skip them while they stay the same. */
  rejected?(host: string, repository: string | undefined, creds: Credentials): void;
}

export interface FoundCredentials {
  credentials: Credentials;
  /** The source's name. */
  source: string;
}

/** A stable, non-reversible key for a credential (never log the credential itself). */
export function credentialKey(c: Credentials | undefined): string {
  if (!c) return 'anonymous';
  return createHash('sha256').update(`${c.username}\0${c.password}`).digest('hex').slice(0, 32);
}

/** Normalises a registry name the way Docker's config keys are matched (`https://index.docker.io/v1/` → `docker.io`). */
export function normaliseRegistryHost(key: string): string {
  let k = key.trim().replace(/^https?:\/\//, '');
  k = k.replace(/\/.*$/, '');
  if (k === 'index.docker.io' || k === 'registry-1.docker.io') k = DOCKER_HUB;
  return k.toLowerCase();
}

export interface ChainOptions {
  log?: Logger;
  clock?: Clock;
  /** How long refused credentials are skipped even if unchanged (the robot may be re-enabled). Default 30 s. */
  rejectTtlMs?: number;
}

/** The ordered chain. Anonymous is what remains when no source answers. */
export class CredentialChain implements CredentialProvider {
  readonly sources: readonly CredentialSource[];
  private readonly log: Logger;
  private readonly clock: Clock;
  private readonly rejectTtlMs: number;
  /** `host|repo|credentialKey` → until (ms) */
  private readonly refused = new Map<string, number>();

  constructor(sources: CredentialSource[], o: ChainOptions = {}) {
    this.sources = sources;
    this.log = (o.log ?? silentLogger()).child({ component: 'credentials' });
    this.clock = o.clock ?? systemClock;
    this.rejectTtlMs = o.rejectTtlMs ?? 30_000;
  }

  /** Names of the sources, in order (for docs and start-up logs). */
  describe(): string[] {
    return [...this.sources.map((s) => s.name), 'anonymous'];
  }

  private refusedKey(host: string, repository: string | undefined, c: Credentials): string {
    return `${normaliseRegistryHost(host)}|${repository ?? ''}|${credentialKey(c)}`;
  }

  private isRefused(host: string, repository: string | undefined, c: Credentials): boolean {
    const k = this.refusedKey(host, repository, c);
    const until = this.refused.get(k);
    if (until === undefined) return false;
    if (until <= this.clock.now()) {
      this.refused.delete(k);
      return false;
    }
    return true;
  }

  /** The first credentials a source has for (host, repository) that the registry has not refused, with the source's name. */
  async find(host: string, repository?: string): Promise<FoundCredentials | undefined> {
    for (const s of this.sources) {
      let c: Credentials | undefined;
      try {
        c = await s.get(host, repository);
      } catch (err) {
        // one broken source (a helper that crashed, an unreadable secret) must not hide the others
        this.log.warn({ source: s.name, host, err: (err as Error).message }, 'credential source failed; trying the next');
        continue;
      }
      if (!c) continue;
      if (this.isRefused(host, repository, c)) continue;
      return { credentials: c, source: s.name };
    }
    return undefined;
  }

  async get(host: string, repository?: string): Promise<Credentials | undefined> {
    return (await this.find(host, repository))?.credentials;
  }

  rejected(host: string, repository: string | undefined, c: Credentials): void {
    if (this.refused.size > 10_000) this.refused.clear();
    this.refused.set(this.refusedKey(host, repository, c), this.clock.now() + this.rejectTtlMs);
    this.log.warn({ host, repository }, 'registry refused credentials; trying the next source of the chain');
  }
}

/** Fixed credentials: for one host (`host` given) or any host. */
export function staticCredentials(creds: Credentials, host?: string, name = 'explicit'): CredentialSource {
  const want = host === undefined ? undefined : normaliseRegistryHost(host);
  return {
    name,
    get: async (h) => (want === undefined || normaliseRegistryHost(h) === want ? creds : undefined),
  };
}

/** Parses `user:password` (`--user`); INVALID_ARGUMENT without a colon. */
export function parseUserPassword(s: string, what = '--user'): Credentials {
  const i = s.indexOf(':');
  if (i <= 0) throw new FerryError('INVALID_ARGUMENT', `${what} must be USER:PASSWORD`);
  return { username: s.slice(0, i), password: s.slice(i + 1) };
}

// ---------------------------------------------------------------- supplied (pull API, CRI)

interface SuppliedEntry {
  credentials: Credentials;
  source: string;
}

/**
 * Credentials handed over with a request (a pull through the snapshotter's API, a CRI
 * `PullImage`), kept in memory only, per (host, repository) — the image's mounts and token
 * refreshes use them. The newest hand-over wins; at most `max` entries (least recently set dropped).
 */
export class SuppliedCredentials implements CredentialSource {
  readonly name: string;
  private readonly entries = new Map<string, SuppliedEntry>();
  private readonly listeners = new Set<(host: string, repository: string) => void>();

  constructor(
    name = 'supplied',
    private readonly max = 4096,
  ) {
    this.name = name;
  }

  private key(host: string, repository: string): string {
    return `${normaliseRegistryHost(host)}/${repository}`;
  }

  /** Records `creds` for (host, repository); true when they differ from what was held (listeners are told). */
  set(host: string, repository: string, creds: Credentials, source = this.name): boolean {
    const k = this.key(host, repository);
    const prev = this.entries.get(k);
    this.entries.delete(k);
    this.entries.set(k, { credentials: creds, source });
    while (this.entries.size > this.max) this.entries.delete(this.entries.keys().next().value as string);
    const changed = credentialKey(prev?.credentials) !== credentialKey(creds);
    if (changed) for (const l of this.listeners) l(host, repository);
    return changed;
  }

  /** Called with (host, repository) whenever its credentials change. */
  onChange(l: (host: string, repository: string) => void): () => void {
    this.listeners.add(l);
    return () => this.listeners.delete(l);
  }

  async get(host: string, repository?: string): Promise<Credentials | undefined> {
    if (repository === undefined) return undefined;
    return this.entries.get(this.key(host, repository))?.credentials;
  }

  /** Which source supplied the credentials of (host, repository) (`cri`, `pull-api`), if any. */
  sourceOf(host: string, repository: string): string | undefined {
    return this.entries.get(this.key(host, repository))?.source;
  }

  get size(): number {
    return this.entries.size;
  }
}

// ---------------------------------------------------------------- docker config.json / pull secrets

/** One `auths` entry of a Docker config or pull secret. */
interface AuthEntry {
  auth?: string;
  username?: string;
  password?: string;
  identitytoken?: string;
}

/** A parsed `auths` key: host (may start with `*.`), optional path prefix. */
interface AuthsKey {
  host: string;
  path: string;
  entry: AuthEntry;
}

function credentialsOfEntry(e: AuthEntry): Credentials | undefined {
  if (typeof e.auth === 'string' && e.auth) {
    const decoded = Buffer.from(e.auth, 'base64').toString('utf8');
    const c = decoded.indexOf(':');
    if (c > 0) return { username: decoded.slice(0, c), password: decoded.slice(c + 1) };
  }
  if (typeof e.username === 'string' && typeof e.password === 'string' && e.username) return { username: e.username, password: e.password };
  return undefined;
}

function parseAuthsKey(key: string, entry: AuthEntry): AuthsKey {
  let k = key.trim().replace(/^https?:\/\//, '');
  const slash = k.indexOf('/');
  let path = slash >= 0 ? k.slice(slash + 1) : '';
  k = slash >= 0 ? k.slice(0, slash) : k;
  if (k === 'index.docker.io' || k === 'registry-1.docker.io') {
    k = DOCKER_HUB;
    if (path === 'v1' || path === 'v1/' || path === 'v2' || path === 'v2/') path = '';
  }
  return { host: k.toLowerCase(), path: path.replace(/\/+$/, ''), entry };
}

function hostMatches(pattern: string, host: string): boolean {
  if (pattern === host) return true;
  if (!pattern.includes('*')) return false;
  // kubelet's rule: `*` matches one DNS label; the port must match exactly
  const [ph, pp] = pattern.split(/:(?=\d+$)/) as [string, string | undefined];
  const [hh, hp] = host.split(/:(?=\d+$)/) as [string, string | undefined];
  if ((pp ?? '') !== (hp ?? '')) return false;
  const a = ph.split('.');
  const b = hh.split('.');
  if (a.length !== b.length) return false;
  return a.every((label, i) => label === '*' || label === b[i]);
}

/**
 * The best `auths` entry for (host, repository): exact host before wildcard, the longest matching
 * path prefix first (kubelet's keyring does the same), entries without usable credentials skipped.
 */
export function matchAuths(auths: Record<string, AuthEntry>, host: string, repository?: string): Credentials | undefined {
  const want = normaliseRegistryHost(host);
  const keys = Object.entries(auths)
    .filter(([, e]) => typeof e === 'object' && e !== null)
    .map(([k, e]) => parseAuthsKey(k, e));
  const candidates = keys.filter((k) => {
    if (!hostMatches(k.host, want)) return false;
    if (!k.path) return true;
    return repository !== undefined && (repository === k.path || repository.startsWith(`${k.path}/`));
  });
  candidates.sort((a, b) => {
    const wild = Number(a.host.includes('*')) - Number(b.host.includes('*'));
    return wild !== 0 ? wild : b.path.length - a.path.length;
  });
  for (const c of candidates) {
    const creds = credentialsOfEntry(c.entry);
    if (creds) return creds;
  }
  return undefined;
}

interface CachedFile<T> {
  mtimeMs: number;
  size: number;
  value: T;
}

/** A JSON file parsed again only when its mtime or size changed; undefined when absent. */
class WatchedJson<T> {
  private cache: CachedFile<T | undefined> | undefined;
  constructor(
    readonly path: string,
    private readonly parse: (v: unknown) => T,
  ) {}

  read(): T | undefined {
    let st: { mtimeMs: number; size: number };
    try {
      st = statSync(this.path);
    } catch {
      this.cache = undefined;
      return undefined;
    }
    if (this.cache && this.cache.mtimeMs === st.mtimeMs && this.cache.size === st.size) return this.cache.value;
    let value: T | undefined;
    try {
      value = this.parse(JSON.parse(readFileSync(this.path, 'utf8')));
    } catch (err) {
      throw new FerryError('INVALID_ARGUMENT', `${this.path}: ${(err as Error).message}`);
    }
    this.cache = { mtimeMs: st.mtimeMs, size: st.size, value };
    return value;
  }
}

interface DockerConfigFile {
  auths?: Record<string, AuthEntry>;
  credHelpers?: Record<string, string>;
  credsStore?: string;
}

function asRecord(v: unknown): Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : {};
}

/** `{auths: {...}}` (`.dockerconfigjson`, config.json) or the legacy bare map (`.dockercfg`). */
function authsOf(v: unknown): Record<string, AuthEntry> {
  const o = asRecord(v);
  if ('auths' in o) return asRecord(o.auths) as Record<string, AuthEntry>;
  // legacy .dockercfg: the top level is the auths map (every value an object with auth/username)
  const vals = Object.values(o);
  if (vals.length > 0 && vals.every((x) => typeof x === 'object' && x !== null && ('auth' in x || 'username' in x)))
    return o as Record<string, AuthEntry>;
  return {};
}

/** Runs a credential helper (`docker-credential-<name> get`). Injectable for tests. */
export type HelperRunner = (helper: string, serverUrl: string) => Promise<Credentials | undefined>;

const HELPER_NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]*$/;
const HELPER_TIMEOUT_MS = 10_000;

/**
 * The docker-credential-helpers protocol: `docker-credential-<name> get` with the server URL on
 * stdin; answers `{"ServerURL", "Username", "Secret"}` on stdout, or exits non-zero with
 * "credentials not found" on stdout. `Username: "<token>"` is an identity token (OAuth refresh
 * token), which Ferry does not use: such an answer counts as none.
 */
export const runCredentialHelper: HelperRunner = (helper, serverUrl) =>
  new Promise((resolve, reject) => {
    if (!HELPER_NAME.test(helper)) {
      reject(new FerryError('INVALID_ARGUMENT', `invalid credential helper name ${JSON.stringify(helper)}`));
      return;
    }
    const child = execFile(
      `docker-credential-${helper}`,
      ['get'],
      { timeout: HELPER_TIMEOUT_MS, maxBuffer: 1024 * 1024, encoding: 'utf8' },
      (err, stdout) => {
        if (err) {
          const out = String(stdout ?? '');
          if (/credentials not found/i.test(out)) {
            resolve(undefined);
            return;
          }
          const e = err as NodeJS.ErrnoException & { killed?: boolean };
          // never the helper's output: it may hold a secret
          const why = e.code === 'ENOENT' ? 'not found on PATH' : e.killed ? `no answer in ${HELPER_TIMEOUT_MS} ms` : `exit ${e.code}`;
          reject(new FerryError('UNAVAILABLE', `credential helper docker-credential-${helper}: ${why}`));
          return;
        }
        let j: Record<string, unknown>;
        try {
          j = asRecord(JSON.parse(String(stdout)));
        } catch {
          reject(new FerryError('INVALID_ARGUMENT', `credential helper docker-credential-${helper}: answer is not JSON`));
          return;
        }
        const username = typeof j.Username === 'string' ? j.Username : '';
        const secret = typeof j.Secret === 'string' ? j.Secret : '';
        if (!username || !secret || username === '<token>') {
          resolve(undefined);
          return;
        }
        resolve({ username, password: secret });
      },
    );
    child.stdin?.on('error', () => undefined);
    child.stdin?.end(serverUrl);
  });

export interface DockerConfigSourceOptions {
  /** The config file; default `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`. */
  path?: string;
  runHelper?: HelperRunner;
  clock?: Clock;
  /** How long a helper's answer is reused. Default 30 s (helpers may be slow; rotated secrets show up after it). */
  helperCacheMs?: number;
}

/**
 * Docker's `config.json`: `credHelpers[host]` first, then `credsStore` for every host, then the
 * `auths` entry (`auth` = base64 user:password, or `username`/`password`). A helper that finds
 * nothing falls through to `auths`.
 */
export class DockerConfigSource implements CredentialSource {
  readonly name: string;
  private readonly file: WatchedJson<DockerConfigFile>;
  private readonly runHelper: HelperRunner;
  private readonly clock: Clock;
  private readonly helperCacheMs: number;
  private readonly helperCache = new Map<string, { at: number; value: Promise<Credentials | undefined> }>();

  constructor(o: DockerConfigSourceOptions = {}) {
    const path = o.path ?? defaultDockerConfigPath();
    this.name = `docker-config:${path}`;
    this.file = new WatchedJson(path, (v) => {
      const r = asRecord(v);
      const out: DockerConfigFile = { auths: authsOf(r) };
      const helpers = asRecord(r.credHelpers);
      out.credHelpers = Object.fromEntries(Object.entries(helpers).filter(([, x]) => typeof x === 'string')) as Record<string, string>;
      if (typeof r.credsStore === 'string' && r.credsStore) out.credsStore = r.credsStore;
      return out;
    });
    this.runHelper = o.runHelper ?? runCredentialHelper;
    this.clock = o.clock ?? systemClock;
    this.helperCacheMs = o.helperCacheMs ?? 30_000;
  }

  private helper(name: string, serverUrl: string): Promise<Credentials | undefined> {
    const k = `${name}\0${serverUrl}`;
    const hit = this.helperCache.get(k);
    if (hit && this.clock.now() - hit.at < this.helperCacheMs) return hit.value;
    const value = this.runHelper(name, serverUrl);
    this.helperCache.set(k, { at: this.clock.now(), value });
    value.catch(() => this.helperCache.delete(k));
    return value;
  }

  async get(host: string, repository?: string): Promise<Credentials | undefined> {
    const cfg = this.file.read();
    if (!cfg) return undefined;
    const want = normaliseRegistryHost(host);
    const helperKey = Object.keys(cfg.credHelpers ?? {}).find((k) => normaliseRegistryHost(k) === want);
    // the server URL as docker stores it: Docker Hub under its v1 URL, other registries by host
    const serverUrl = want === DOCKER_HUB ? 'https://index.docker.io/v1/' : (helperKey ?? want);
    if (helperKey) {
      const c = await this.helper(cfg.credHelpers![helperKey]!, serverUrl);
      if (c) return c;
    } else if (cfg.credsStore) {
      const c = await this.helper(cfg.credsStore, serverUrl);
      if (c) return c;
    }
    return matchAuths(cfg.auths ?? {}, want, repository);
  }
}

/**
 * Kubernetes image pull secrets as the operator mounts them: a `.dockerconfigjson` (or legacy
 * `.dockercfg`) file, or a directory of such files (a secret volume: every regular file not
 * starting with `..` is read, symlinks followed). Files are re-read when they change, so a
 * rotated secret is used from the next token refresh on.
 */
export class PullSecretSource implements CredentialSource {
  readonly name: string;
  private readonly files = new Map<string, WatchedJson<Record<string, AuthEntry>>>();

  constructor(readonly path: string) {
    this.name = `pull-secret:${path}`;
  }

  private paths(): string[] {
    let st: ReturnType<typeof statSync>;
    try {
      st = statSync(this.path);
    } catch {
      return [];
    }
    if (!st.isDirectory()) return [this.path];
    return readdirSync(this.path)
      .filter((n) => !n.startsWith('..'))
      .sort()
      .map((n) => join(this.path, n))
      .filter((p) => {
        try {
          return statSync(p).isFile();
        } catch {
          return false;
        }
      });
  }

  async get(host: string, repository?: string): Promise<Credentials | undefined> {
    for (const p of this.paths()) {
      let w = this.files.get(p);
      if (!w) {
        w = new WatchedJson(p, authsOf);
        this.files.set(p, w);
      }
      const c = matchAuths(w.read() ?? {}, host, repository);
      if (c) return c;
    }
    return undefined;
  }
}

export interface ChainConfig {
  /** `--user` / `--password-stdin`: for `host` only when given. */
  explicit?: { credentials: Credentials; host?: string };
  /** In-memory credentials supplied with requests (pull API, CRI), consulted right after the explicit ones. */
  supplied?: SuppliedCredentials[];
  /** Kubernetes pull secrets (files or directories). */
  pullSecrets?: string[];
  /** Docker config file; `false` for none; default `$DOCKER_CONFIG/config.json` / `~/.docker/config.json`. */
  dockerConfig?: string | false;
  runHelper?: HelperRunner;
  log?: Logger;
  clock?: Clock;
}

/**
 * The chain in Ferry's one order: explicit → supplied (pull API, CRI) → pull secrets → Docker
 * config (credHelpers, credsStore, auths) → anonymous.
 */
export function credentialChain(c: ChainConfig = {}): CredentialChain {
  const sources: CredentialSource[] = [];
  if (c.explicit) sources.push(staticCredentials(c.explicit.credentials, c.explicit.host));
  for (const s of c.supplied ?? []) sources.push(s);
  for (const p of c.pullSecrets ?? []) sources.push(new PullSecretSource(p));
  if (c.dockerConfig !== false)
    sources.push(
      new DockerConfigSource({
        ...(c.dockerConfig ? { path: c.dockerConfig } : {}),
        ...(c.runHelper ? { runHelper: c.runHelper } : {}),
        ...(c.clock ? { clock: c.clock } : {}),
      }),
    );
  return new CredentialChain(sources, { ...(c.log ? { log: c.log } : {}), ...(c.clock ? { clock: c.clock } : {}) });
}
