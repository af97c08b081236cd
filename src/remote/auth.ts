/**
 * @module remote/auth
 * Registry authentication helpers: `WWW-Authenticate` challenge parsing, Docker's
 * `~/.docker/config.json` credentials, and the token cache.
 */
import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { DOCKER_HUB } from './reference.js';

export interface Credentials {
  username: string;
  password: string;
}

export interface Challenge {
  scheme: 'basic' | 'bearer';
  params: Record<string, string>;
}

/**
 * Parses a `WWW-Authenticate` header value into its challenges. Handles quoted values with commas and
 * escaped quotes (`scope="repository:a:pull,push"`).
 */
export function parseChallenges(header: string | null | undefined): Challenge[] {
  const out: Challenge[] = [];
  if (!header) return out;
  let i = 0;
  const n = header.length;
  let current: Challenge | undefined;
  while (i < n) {
    while (i < n && (header[i] === ' ' || header[i] === ',')) i++;
    const start = i;
    while (i < n && /[A-Za-z0-9!#$%&'*+.^_`|~-]/.test(header[i]!)) i++;
    const token = header.slice(start, i);
    if (!token) {
      i++;
      continue;
    }
    let j = i;
    while (j < n && header[j] === ' ') j++;
    if (header[j] === '=') {
      // auth-param of the current challenge
      j++;
      while (j < n && header[j] === ' ') j++;
      let value = '';
      if (header[j] === '"') {
        j++;
        while (j < n && header[j] !== '"') {
          if (header[j] === '\\' && j + 1 < n) j++;
          value += header[j];
          j++;
        }
        j++;
      } else {
        const vs = j;
        while (j < n && header[j] !== ',' && header[j] !== ' ') j++;
        value = header.slice(vs, j);
      }
      i = j;
      if (current) current.params[token.toLowerCase()] = value;
    } else {
      const scheme = token.toLowerCase();
      current = { scheme: scheme === 'bearer' ? 'bearer' : 'basic', params: {} };
      if (scheme === 'basic' || scheme === 'bearer') out.push(current);
      else current = { scheme: 'basic', params: {} }; // unknown scheme: swallow its params
      i = j;
    }
  }
  return out;
}

interface DockerConfigFile {
  auths?: Record<string, { auth?: string; username?: string; password?: string; identitytoken?: string }>;
}

function normaliseConfigKey(key: string): string {
  let k = key.replace(/^https?:\/\//, '');
  k = k.replace(/\/.*$/, '');
  if (k === 'index.docker.io' || k === 'registry-1.docker.io') k = DOCKER_HUB;
  return k;
}

/**
 * Reads credentials for `host` from Docker's config file (`$DOCKER_CONFIG/config.json`, default
 * `~/.docker/config.json`): `auths.<host>.auth` (base64 `user:password`) or `username`/`password`.
 * Keys may carry a scheme and path (`https://index.docker.io/v1/`). Missing or unreadable file → undefined.
 */
export function dockerConfigCredentials(host: string, configPath?: string): Credentials | undefined {
  const path = configPath ?? join(process.env.DOCKER_CONFIG ?? join(homedir(), '.docker'), 'config.json');
  let cfg: DockerConfigFile;
  try {
    cfg = JSON.parse(readFileSync(path, 'utf8')) as DockerConfigFile;
  } catch {
    return undefined;
  }
  const want = normaliseConfigKey(host);
  for (const [key, entry] of Object.entries(cfg.auths ?? {})) {
    if (normaliseConfigKey(key) !== want || !entry) continue;
    if (entry.auth) {
      const decoded = Buffer.from(entry.auth, 'base64').toString('utf8');
      const c = decoded.indexOf(':');
      if (c > 0) return { username: decoded.slice(0, c), password: decoded.slice(c + 1) };
    }
    if (entry.username !== undefined && entry.password !== undefined) {
      return { username: entry.username, password: entry.password };
    }
  }
  return undefined;
}

/** Parses a base64 `user:password` string (acceld's `auth` field, the daemon's backend auth). */
export function decodeBasicAuth(b64: string): Credentials | undefined {
  const decoded = Buffer.from(b64, 'base64').toString('utf8');
  const c = decoded.indexOf(':');
  if (c <= 0) return undefined;
  return { username: decoded.slice(0, c), password: decoded.slice(c + 1) };
}

export function basicHeader(c: Credentials): string {
  return `Basic ${Buffer.from(`${c.username}:${c.password}`).toString('base64')}`;
}

/** A bearer token with its expiry (ms since epoch). */
export interface CachedToken {
  token: string;
  expiresAt: number;
}

/** Token cache keyed by host + scope; entries expire 10 s before the server says. */
export class TokenCache {
  private readonly tokens = new Map<string, CachedToken>();

  get(host: string, scope: string, now = Date.now()): string | undefined {
    const t = this.tokens.get(`${host} ${scope}`);
    if (!t) return undefined;
    if (t.expiresAt - 10_000 <= now) {
      this.tokens.delete(`${host} ${scope}`);
      return undefined;
    }
    return t.token;
  }

  set(host: string, scope: string, token: string, expiresInS: number, now = Date.now()): void {
    this.tokens.set(`${host} ${scope}`, { token, expiresAt: now + Math.max(expiresInS, 60) * 1000 });
  }

  invalidate(host: string, scope: string): void {
    this.tokens.delete(`${host} ${scope}`);
  }
}
