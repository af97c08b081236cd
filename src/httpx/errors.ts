/**
 * @module httpx/errors
 * The one ErrorCode → HTTP status table of Ferry's HTTP APIs and the one error envelope,
 * `{"code": "<ErrorCode>", "message": "…"}`. A server throws `FerryError`s; its door turns them into
 * a status and an envelope here (a service with its own wire vocabulary — acceld's `ERR_…` codes,
 * Harbor's — passes a `code` function; the OCI distribution API keeps its own table in registry/).
 *
 * DATA_LOSS is 500: the server found data corrupt (its own store, or bytes it fetched and verified).
 * No client of ours treats 502 apart from 500; a door that wants to say "my upstream failed, retry"
 * throws UNAVAILABLE (503) with the DATA_LOSS as its cause.
 *
 * Two refusals belong to HTTP itself rather than to a service: a body over its limit (413) and a
 * method the path does not take (405). They are FerryErrors with the nearest category
 * (RESOURCE_EXHAUSTED, NOT_IMPLEMENTED) whose status is HTTP's.
 */
import type { ServerResponse } from 'node:http';
import { FerryError, asFerryError, type ErrorCode } from '../core/index.js';

/** ErrorCode → HTTP status, for every Ferry HTTP API (google.rpc's mapping). */
export const HTTP_STATUS: Readonly<Record<ErrorCode, number>> = {
  INVALID_ARGUMENT: 400,
  UNAUTHENTICATED: 401,
  PERMISSION_DENIED: 403,
  NOT_FOUND: 404,
  ALREADY_EXISTS: 409,
  ABORTED: 409,
  FAILED_PRECONDITION: 412,
  RESOURCE_EXHAUSTED: 429,
  CANCELED: 499,
  INTERNAL: 500,
  DATA_LOSS: 500,
  NOT_IMPLEMENTED: 501,
  UNAVAILABLE: 503,
  DEADLINE_EXCEEDED: 504,
};

/** A request body over its limit: 413, category RESOURCE_EXHAUSTED. */
export class PayloadTooLarge extends FerryError {
  readonly limit: number;
  constructor(limit: number, declared?: number) {
    super(
      'RESOURCE_EXHAUSTED',
      declared === undefined
        ? `request body over ${limit} bytes: the body sent exceeds the limit`
        : `request body over ${limit} bytes: Content-Length ${declared} exceeds the limit`,
    );
    this.name = 'PayloadTooLarge';
    this.limit = limit;
  }
}

/** A method the path does not take: 405 with `Allow`, category NOT_IMPLEMENTED. */
export class MethodNotAllowed extends FerryError {
  readonly allow: readonly string[];
  constructor(method: string, path: string, allow: readonly string[]) {
    super('NOT_IMPLEMENTED', `${method} is not allowed on ${path.slice(0, 200)} (allowed: ${allow.join(', ')})`);
    this.name = 'MethodNotAllowed';
    this.allow = allow;
  }
}

/** The HTTP status of an error (see the table; 413 and 405 for HTTP's own refusals). */
export function statusOf(err: FerryError): number {
  if (err instanceof PayloadTooLarge) return 413;
  if (err instanceof MethodNotAllowed) return 405;
  return HTTP_STATUS[err.code];
}

/** The error envelope on the wire. */
export interface ErrorEnvelope {
  code: string;
  message: string;
}

type Headers = Record<string, string | number>;

/** Sends `body` as JSON (`undefined` sends no body: 204, 304). */
export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Headers = {}): void {
  if (body === undefined) {
    res.writeHead(status, headers).end();
    return;
  }
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

export interface SendErrorOptions {
  /** Extra headers (e.g. `WWW-Authenticate`). */
  headers?: Headers;
  /** The envelope's `code` in the service's wire vocabulary (default: the ErrorCode). */
  code?: (e: FerryError) => string;
  /** The envelope body itself, for a service whose error shape is not `{code, message}` (Harbor). */
  body?: (e: FerryError, code: string) => unknown;
}

/**
 * Answers anything thrown with its status and envelope, and returns it as a FerryError (for the
 * log). A response already under way is cut off instead; a request whose body was not read to the
 * end closes its connection (an unread body must not be taken for the next request).
 */
export function sendError(res: ServerResponse, err: unknown, opts: SendErrorOptions = {}): { error: FerryError; status: number } {
  const error = asFerryError(err);
  const status = statusOf(error);
  if (res.headersSent || res.destroyed) {
    res.destroy();
    return { error, status };
  }
  const headers: Headers = { ...opts.headers };
  if (error instanceof MethodNotAllowed) headers.allow = error.allow.join(', ');
  if (!res.req.complete) headers.connection = 'close';
  const code = opts.code ? opts.code(error) : error.code;
  sendJson(res, status, opts.body ? opts.body(error, code) : ({ code, message: error.message } satisfies ErrorEnvelope), headers);
  return { error, status };
}
