/**
 * @module remote/auth
 * Registry authentication helpers: `WWW-Authenticate` challenge parsing, Docker's
 * `~/.docker/config.json` credentials, and the token cache.
 */
import { readFileSync } from 'node:fs';
import { defaultDockerConfigPath } from '../core/index.js';
import { matchAuths } from './credentials.js';

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

/**
 * Reads credentials for `host` from Docker's config file (`$DOCKER_CONFIG/config.json`, default
 * `~/.docker/config.json`): `auths.<host>.auth` (base64 `user:password`) or `username`/`password`.
 * Keys may carry a scheme and path (`https://index.docker.io/v1/`). Missing or unreadable file →
 * undefined. Only `auths`: the whole chain (credential helpers, pull secrets…) is `credentialChain`
 * in credentials.ts.
 */
export function dockerConfigCredentials(host: string, configPath?: string): Credentials | undefined {
  const path = configPath ?? defaultDockerConfigPath();
  let cfg: { auths?: unknown };
  try {
    cfg = JSON.parse(readFileSync(path, 'utf8')) as { auths?: unknown };
  } catch {
    return undefined;
  }
  const auths = typeof cfg.auths === 'object' && cfg.auths !== null ? (cfg.auths as Parameters<typeof matchAuths>[0]) : {};
  return matchAuths(auths, host);
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

/** A bearer token with its expiry and the moment it is refreshed (ms since epoch). */
export interface CachedToken {
  token: string;
  expiresAt: number;
  refreshAt: number;
}

/**
 * Token cache keyed by host + scope. A token is used until shortly before it expires: 10 s before,
 * or a quarter of its lifetime for short-lived tokens (a registry handing out 5 s tokens gets them
 * refreshed after ~3.75 s, not used expired). `expires_in` absent means 60 s (the token spec).
 */
export class TokenCache {
  private readonly tokens = new Map<string, CachedToken>();

  get(host: string, scope: string, now = Date.now()): string | undefined {
    const t = this.tokens.get(`${host} ${scope}`);
    if (!t) return undefined;
    if (t.refreshAt <= now) {
      this.tokens.delete(`${host} ${scope}`);
      return undefined;
    }
    return t.token;
  }

  set(host: string, scope: string, token: string, expiresInS: number, now = Date.now()): void {
    const lifetime = Math.max(1, Number.isFinite(expiresInS) ? expiresInS : 60) * 1000;
    const margin = Math.min(10_000, lifetime / 4);
    this.tokens.set(`${host} ${scope}`, { token, expiresAt: now + lifetime, refreshAt: now + lifetime - margin });
  }

  invalidate(host: string, scope: string): void {
    this.tokens.delete(`${host} ${scope}`);
  }
}
