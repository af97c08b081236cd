/**
 * @module httpx/client
 * The client side of the door: a small JSON client over node:http (TCP or a unix socket) that turns
 * a non-2xx answer's `{code, message}` envelope back into the FerryError the server threw, and
 * `decodeError` for clients that keep their own transport (p2p's signed requests, NDJSON streams).
 * Imports only node:http and core, so a CLI command that merely relays a request stays cheap to load.
 */
import { request, type IncomingHttpHeaders, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { ERROR_CODES, FerryError, type ErrorCode } from '../core/index.js';

/** The category of an answer that carries no known code (the inverse of httpx/errors' table). */
export function codeOfStatus(status: number): ErrorCode {
  switch (status) {
    case 400:
      return 'INVALID_ARGUMENT';
    case 401:
      return 'UNAUTHENTICATED';
    case 403:
      return 'PERMISSION_DENIED';
    case 404:
      return 'NOT_FOUND';
    case 405:
    case 501:
      return 'NOT_IMPLEMENTED';
    case 409:
      return 'ALREADY_EXISTS';
    case 412:
      return 'FAILED_PRECONDITION';
    case 413:
    case 429:
      return 'RESOURCE_EXHAUSTED';
    case 499:
      return 'CANCELED';
    case 500:
      return 'INTERNAL';
    case 504:
      return 'DEADLINE_EXCEEDED';
    default:
      return status >= 500 ? 'UNAVAILABLE' : 'INVALID_ARGUMENT';
  }
}

export interface DecodeOptions {
  /** Put before the message (e.g. `POST http://…: 400 `). */
  prefix?: string;
  /** The envelope's `code` in a service's own vocabulary → category (default: the ErrorCode itself). */
  category?: (wireCode: string) => ErrorCode | undefined;
  /** The message when the answer has none (default: the body text, else `status N`). */
  fallback?: string;
}

/** The FerryError of a non-2xx answer: its envelope's code and message, or the status's category. */
export function decodeError(status: number, body: Buffer | string, o: DecodeOptions = {}): FerryError {
  const text = body.toString();
  let env: { code?: unknown; message?: unknown } | undefined;
  try {
    const v = JSON.parse(text) as unknown;
    if (typeof v === 'object' && v !== null && !Array.isArray(v)) env = v as typeof env;
  } catch {
    /* not JSON */
  }
  const wire = typeof env?.code === 'string' ? env.code : undefined;
  const known =
    wire === undefined
      ? undefined
      : o.category
        ? o.category(wire)
        : (ERROR_CODES as readonly string[]).includes(wire)
          ? (wire as ErrorCode)
          : undefined;
  const message = typeof env?.message === 'string' ? env.message : (o.fallback ?? (text.trim() ? text.slice(0, 500) : `status ${status}`));
  return new FerryError(known ?? codeOfStatus(status), `${o.prefix ?? ''}${message}`);
}

export interface JsonClientOptions {
  /** Names the service in connection errors ("daemon", "snapshotter API"). */
  what: string;
  /** A unix socket … */
  socketPath?: string;
  /** … or a base URL `http://host:port`. */
  baseUrl?: string;
  /** No answer within this many ms: DEADLINE_EXCEEDED (default 120 s). */
  timeoutMs?: number;
  /** Sent with every request (e.g. authorization). */
  headers?: Record<string, string>;
}

export interface RawAnswer {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

/** JSON over HTTP/1.1 to one server. */
export class JsonClient {
  readonly #o: JsonClientOptions;
  readonly #where: string;

  constructor(o: JsonClientOptions) {
    if (!o.socketPath && !o.baseUrl) throw new FerryError('INVALID_ARGUMENT', `${o.what}: a socket path or a base URL is needed`);
    this.#o = o;
    this.#where = o.socketPath ?? o.baseUrl!;
  }

  /** Sends a request; resolves with the response once its head arrives (the caller reads the body). */
  open(method: string, path: string, body?: unknown, headers: Record<string, string> = {}): Promise<IncomingMessage> {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const h: Record<string, string | number> = { ...this.#o.headers, ...headers };
    if (payload) {
      h['content-type'] = 'application/json';
      h['content-length'] = payload.length;
    }
    const target = this.#o.socketPath ? { protocol: 'http:', socketPath: this.#o.socketPath, path } : urlTarget(this.#o.baseUrl!, path);
    const timeout = this.#o.timeoutMs ?? 120_000;
    return new Promise((resolve, reject) => {
      const send = target.protocol === 'https:' ? httpsRequest : request;
      const req = send({ ...target, method, headers: h }, (res) => {
        req.setTimeout(0);
        resolve(res);
      });
      req.setTimeout(timeout, () => {
        req.destroy(new FerryError('DEADLINE_EXCEEDED', `${this.#o.what} ${method} ${path}: no answer in ${timeout} ms`));
      });
      req.on('error', (err: NodeJS.ErrnoException) =>
        reject(
          FerryError.is(err)
            ? err
            : new FerryError('UNAVAILABLE', `${this.#o.what} at ${this.#where}: ${err.code ?? err.message}`, { cause: err }),
        ),
      );
      req.end(payload);
    });
  }

  /** Sends a request and reads the whole answer (at most 64 MiB). */
  async raw(method: string, path: string, body?: unknown, headers?: Record<string, string>): Promise<RawAnswer> {
    const res = await this.open(method, path, body, headers);
    const parts: Buffer[] = [];
    let n = 0;
    try {
      for await (const c of res) {
        n += (c as Buffer).length;
        if (n > 64 << 20) throw new FerryError('RESOURCE_EXHAUSTED', `${this.#o.what} ${method} ${path}: answer over 64 MiB`);
        parts.push(c as Buffer);
      }
    } catch (err) {
      if (FerryError.is(err)) throw err;
      throw new FerryError('UNAVAILABLE', `${this.#o.what} ${method} ${path}: ${(err as Error).message}`, { cause: err });
    }
    return { status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(parts) };
  }

  /** A JSON call: the decoded answer (undefined when empty), or the server's error as a FerryError. */
  async json<T>(method: string, path: string, body?: unknown): Promise<T> {
    const r = await this.raw(method, path, body);
    if (r.status < 200 || r.status >= 300) {
      throw decodeError(r.status, r.body, { fallback: `${this.#o.what} ${method} ${path}: status ${r.status}` });
    }
    if (r.body.length === 0) return undefined as T;
    try {
      return JSON.parse(r.body.toString('utf8')) as T;
    } catch {
      throw new FerryError('INTERNAL', `${this.#o.what} ${method} ${path}: the answer is not JSON`);
    }
  }
}

function urlTarget(base: string, path: string): { protocol: string; hostname: string; port: string | number; path: string } {
  const u = new URL(base);
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new FerryError('INVALID_ARGUMENT', `${base}: an http(s) URL is needed`);
  const port = u.port || (u.protocol === 'https:' ? 443 : 80);
  return { protocol: u.protocol, hostname: u.hostname.replace(/^\[|\]$/g, ''), port, path: `${u.pathname.replace(/\/+$/, '')}${path}` };
}
