/**
 * @module httpx/body
 * Bounded request bodies. A declared Content-Length over the limit is refused (413) before a byte
 * is read; a body that grows past it while streaming is refused as soon as it does. Callers that
 * must check credentials first (cluster signatures, webhook headers) do so before calling these;
 * callers that sign the body (p2p cluster auth) read the bytes with `readBody` and parse them with
 * `parseJson` after verifying.
 */
import type { IncomingMessage } from 'node:http';
import type { ZodType } from 'zod';
import { FerryError } from '../core/index.js';
import { PayloadTooLarge } from './errors.js';

/** Reads a request body of at most `limit` bytes (PayloadTooLarge beyond). */
export async function readBody(req: IncomingMessage, limit: number): Promise<Buffer> {
  const declared = req.headers['content-length'];
  if (declared !== undefined && Number(declared) > limit) throw new PayloadTooLarge(limit, Number(declared));
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of req) {
    const chunk = c as Buffer;
    size += chunk.length;
    if (size > limit) throw new PayloadTooLarge(limit);
    chunks.push(chunk);
  }
  return Buffer.concat(chunks, size);
}

export interface JsonOptions<T> {
  /** What the body is, for messages (default "request body"). */
  what?: string;
  /** Checked after parsing; its issues, all of them, make the INVALID_ARGUMENT message. */
  schema?: ZodType<T>;
  /** Only a JSON object is accepted (not an array, a string, null). */
  object?: boolean;
  /** The value of an empty body (default: an empty body is not JSON). */
  empty?: T;
}

type Issue = { path: ReadonlyArray<PropertyKey>; message: string; code?: string; keys?: string[] };

/** `path: message; …` of a schema's issues (unknown keys named). */
export function issueList(issues: ReadonlyArray<Issue>): string {
  return issues
    .map((i) => {
      const path = i.path.map(String).join('.');
      if (i.code === 'unrecognized_keys' && i.keys) {
        return `unknown key${i.keys.length > 1 ? 's' : ''} ${i.keys.map((k) => (path ? `${path}.${k}` : k)).join(', ')}`;
      }
      return `${path || '(root)'}: ${i.message}`;
    })
    .join('; ');
}

/** Parses a JSON body: not JSON, not an object (`object`) or not of `schema` → INVALID_ARGUMENT (400). */
export function parseJson<T = unknown>(buf: Buffer, o: JsonOptions<T> = {}): T {
  const what = o.what ?? 'request body';
  if (buf.length === 0 && o.empty !== undefined) return o.empty;
  let v: unknown;
  try {
    v = JSON.parse(buf.toString('utf8'));
  } catch (err) {
    throw new FerryError('INVALID_ARGUMENT', `${what} is not JSON: ${(err as Error).message}`);
  }
  if (o.object && (typeof v !== 'object' || v === null || Array.isArray(v))) {
    throw new FerryError('INVALID_ARGUMENT', `${what} must be a JSON object`);
  }
  if (!o.schema) return v as T;
  const r = o.schema.safeParse(v);
  if (!r.success) throw new FerryError('INVALID_ARGUMENT', `${what}: ${issueList(r.error.issues)}`);
  return r.data;
}

/** `readBody` + `parseJson`. */
export async function readJson<T = unknown>(req: IncomingMessage, limit: number, o: JsonOptions<T> = {}): Promise<T> {
  return parseJson(await readBody(req, limit), o);
}
