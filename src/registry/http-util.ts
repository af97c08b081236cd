/**
 * @module registry/http-util
 * What the OCI distribution API needs beyond the httpx kit (bodies and JSON answers come from
 * there): range parsing, repeated query parameters and the spec's error answers.
 */
import type { ServerResponse } from 'node:http';
import { type OciError, errorBody, toOciError } from './errors.js';

/** Parses a single `Range: bytes=a-b | a- | -n` against `size`; undefined = serve all; 'invalid' = 416. */
export function parseRange(header: string | undefined, size: number): { start: number; end: number } | undefined | 'invalid' {
  if (!header) return undefined;
  const m = /^bytes=(\d*)-(\d*)$/.exec(header.trim());
  if (!m) return header.trim().startsWith('bytes=') && header.includes(',') ? undefined : 'invalid';
  const [, a, b] = m;
  if (a === '' && b === '') return 'invalid';
  let start: number;
  let end: number;
  if (a === '') {
    const n = Number(b);
    if (n === 0) return 'invalid';
    start = Math.max(0, size - n);
    end = size - 1;
  } else {
    start = Number(a);
    end = b === '' ? size - 1 : Math.min(Number(b), size - 1);
    if (b !== '' && Number(b) < start) return 'invalid';
  }
  if (start >= size || size === 0) return 'invalid';
  return { start, end };
}

/** Sends the spec's error JSON for anything thrown. */
export function sendError(res: ServerResponse, err: unknown, headers: Record<string, string> = {}): OciError {
  const e = toOciError(err);
  if (res.headersSent) {
    res.destroy();
    return e;
  }
  const body = errorBody(e);
  res.writeHead(e.status, { 'content-type': 'application/json; charset=utf-8', 'content-length': Buffer.byteLength(body), ...headers });
  res.end(body);
  return e;
}

/** Query parameters, all values (the spec repeats some, e.g. `tag`, `scope`). */
export function queryOf(url: URL): Map<string, string[]> {
  const m = new Map<string, string[]>();
  for (const [k, v] of url.searchParams) {
    const list = m.get(k);
    if (list) list.push(v);
    else m.set(k, [v]);
  }
  return m;
}
