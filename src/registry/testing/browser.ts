/**
 * @module registry/testing/browser
 * A browser-ish HTTP client for the web console's tests: a cookie jar, no redirects followed, the
 * CSRF token of the page it read, urlencoded form posts, the login form.
 */
import { join } from 'node:path';
import { hashSecret } from '../auth.js';
import { SqliteMetadata } from '../metadata/sqlite.js';
import type { TestRegistry } from './client.js';
/** A browser-ish client: a cookie jar, no redirects followed. */
export class Browser {
  readonly jar = new Map<string, string>();
  constructor(readonly base: string) {}

  async req(path: string, init: RequestInit = {}): Promise<Response> {
    const headers = new Headers(init.headers);
    if (this.jar.size) headers.set('cookie', [...this.jar].map(([k, v]) => `${k}=${v}`).join('; '));
    const r = await fetch(`${this.base}${path}`, { ...init, headers, redirect: 'manual' });
    for (const c of r.headers.getSetCookie()) {
      const [pair] = c.split(';');
      const eq = pair!.indexOf('=');
      const v = pair!.slice(eq + 1);
      if (v === '') this.jar.delete(pair!.slice(0, eq));
      else this.jar.set(pair!.slice(0, eq), v);
    }
    return r;
  }

  async page(path: string): Promise<{ status: number; text: string; csrf: string }> {
    const r = await this.req(path);
    const text = await r.text();
    return { status: r.status, text, csrf: /name="_csrf" value="([^"]*)"/.exec(text)?.[1] ?? '' };
  }

  post(path: string, form: Record<string, string | string[]>, headers: Record<string, string> = {}): Promise<Response> {
    const body = new URLSearchParams();
    for (const [k, v] of Object.entries(form)) for (const x of Array.isArray(v) ? v : [v]) body.append(k, x);
    return this.req(path, { method: 'POST', body, headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers } });
  }

  async login(user: string, password: string): Promise<Response> {
    const { csrf } = await this.page('/login');
    return this.post('/login', { _csrf: csrf, username: user, password });
  }
}

/** A plain (non-admin) user, written to the registry's SQLite file (Harbor's API here has no user creation). */
export async function createUser(reg: TestRegistry, name: string, password: string): Promise<void> {
  const meta = new SqliteMetadata(join(reg.dataDir, 'registry.db'));
  try {
    await meta.upsertUser(name, await hashSecret(password), false);
  } finally {
    await meta.close();
  }
}
