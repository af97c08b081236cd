/**
 * @module httpx/router
 * A route table: method + path pattern → handler. Patterns are literal segments and parameters —
 * `:name` (one segment), `:name(regex)` (one segment matching the whole regex), `:name+` (one or more
 * segments, joined by `/`). Parameters arrive percent-decoded; malformed encoding is the client's
 * error (400). A path no route matches is NOT_FOUND (404); a path some route matches with another
 * method is MethodNotAllowed (405, with `Allow`). There is no implicit HEAD.
 */
import type { IncomingMessage } from 'node:http';
import { FerryError } from '../core/index.js';
import { MethodNotAllowed } from './errors.js';

/**
 * The request target as a URL; INVALID_ARGUMENT (400) for one that is not a path (`GET //`,
 * `GET http://[`), which the URL parser refuses.
 */
export function requestUrl(req: IncomingMessage): URL {
  try {
    return new URL(req.url ?? '/', 'http://request.invalid');
  } catch {
    throw new FerryError('INVALID_ARGUMENT', 'invalid request target');
  }
}

export type Params = Readonly<Record<string, string>>;
export type Handler<C> = (ctx: C, params: Params) => unknown;

interface Segment {
  literal?: string;
  name?: string;
  re?: RegExp;
  rest?: boolean;
}
interface Route<C> {
  method: string;
  pattern: string;
  segments: Segment[];
  handler: Handler<C>;
}

export interface RouterOptions {
  /** Ignore empty segments (`//`, a trailing `/`) as Harbor and acceld do (default: the path is exact). */
  looseSlashes?: boolean;
  /** The error for a path no route matches (default NOT_FOUND `no route METHOD PATH`). */
  notFound?: (method: string, path: string) => Error;
}

function compile(pattern: string): Segment[] {
  return pattern
    .split('/')
    .slice(1)
    .map((s) => {
      const m = /^:(\w+)(?:\((.+)\))?(\+)?$/.exec(s);
      if (!m) return { literal: s };
      return { name: m[1]!, ...(m[2] ? { re: new RegExp(`^(?:${m[2]})$`) } : {}), ...(m[3] ? { rest: true } : {}) };
    });
}

function decode(v: string): string {
  try {
    return decodeURIComponent(v);
  } catch {
    throw new FerryError('INVALID_ARGUMENT', `path segment ${JSON.stringify(v.slice(0, 100))} is not valid percent-encoding`);
  }
}

/** Raw (undecoded) parameters when `path` matches `segments`, else undefined. */
function matchSegments(segments: Segment[], parts: string[]): Record<string, string> | undefined {
  const out: Record<string, string> = {};
  let i = 0;
  for (let k = 0; k < segments.length; k++) {
    const s = segments[k]!;
    if (s.rest) {
      const left = segments.length - k - 1;
      const take = parts.length - i - left;
      if (take < 1) return undefined;
      out[s.name!] = parts.slice(i, i + take).join('/');
      i += take;
    } else {
      const p = parts[i++];
      if (p === undefined) return undefined;
      if (s.literal !== undefined) {
        if (p !== s.literal) return undefined;
      } else {
        if (p === '') return undefined;
        out[s.name!] = p;
      }
    }
    if (s.re && !s.re.test(out[s.name!]!)) return undefined;
  }
  return i === parts.length ? out : undefined;
}

export class Router<C> {
  readonly #routes: Route<C>[] = [];
  readonly #o: RouterOptions;

  constructor(o: RouterOptions = {}) {
    this.#o = o;
  }

  /** Adds a route (`pattern` starts with `/`). */
  on(method: string, pattern: string, handler: Handler<C>): this {
    if (!pattern.startsWith('/')) throw new FerryError('INVALID_ARGUMENT', `route pattern ${pattern} must start with /`);
    this.#routes.push({ method: method.toUpperCase(), pattern, segments: compile(pattern), handler });
    return this;
  }

  get(pattern: string, h: Handler<C>): this {
    return this.on('GET', pattern, h);
  }
  head(pattern: string, h: Handler<C>): this {
    return this.on('HEAD', pattern, h);
  }
  post(pattern: string, h: Handler<C>): this {
    return this.on('POST', pattern, h);
  }
  put(pattern: string, h: Handler<C>): this {
    return this.on('PUT', pattern, h);
  }
  patch(pattern: string, h: Handler<C>): this {
    return this.on('PATCH', pattern, h);
  }
  delete(pattern: string, h: Handler<C>): this {
    return this.on('DELETE', pattern, h);
  }

  /** The handler and decoded parameters of a request; throws NOT_FOUND / MethodNotAllowed / INVALID_ARGUMENT. */
  match(method: string, path: string): { handler: Handler<C>; params: Params; pattern: string } {
    const parts = this.#o.looseSlashes ? path.split('/').filter(Boolean) : path.split('/').slice(1);
    const allow: string[] = [];
    for (const r of this.#routes) {
      const raw = matchSegments(r.segments, parts);
      if (!raw) continue;
      if (r.method !== method) {
        if (!allow.includes(r.method)) allow.push(r.method);
        continue;
      }
      const params: Record<string, string> = {};
      for (const [k, v] of Object.entries(raw)) params[k] = decode(v);
      return { handler: r.handler, params, pattern: r.pattern };
    }
    if (allow.length) throw new MethodNotAllowed(method, path, allow);
    throw this.#o.notFound?.(method, path) ?? new FerryError('NOT_FOUND', `no route ${method} ${path.slice(0, 200)}`);
  }

  /** Finds the route of `method path` and runs its handler with `ctx`. */
  async dispatch(method: string, path: string, ctx: C): Promise<void> {
    const { handler, params } = this.match(method, path);
    await handler(ctx, params);
  }
}
