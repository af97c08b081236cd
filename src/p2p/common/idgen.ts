/**
 * @module p2p/common/idgen
 * Identity and piece arithmetic as Dragonfly v2 defines them: host/peer ids, STANDARD task ids
 * (filtered URL ‖ tag ‖ application ‖ [piece length] ‖ "STANDARD", or the blob digest in
 * blob-digest mode, or sha256 of caller-supplied content), piece length from content length,
 * piece ranges and `crc32:<decimal>` piece digests (IEEE polynomial, zlib).
 * Range tasks (a Range request as its own task, as Dragonfly v1 keyed them) hash the normalized
 * range after the URL; their piece length comes from the range length.
 */
import { createHash, randomUUID } from 'node:crypto';
import { crc32 } from 'node:zlib';
import { FerryError } from '../../core/index.js';

/** Query parameters removed from a URL before hashing it (signatures that change per request, containerd's `ns`). */
export const DEFAULT_FILTERED_QUERY_PARAMS: readonly string[] = [
  'X-Amz-Algorithm',
  'X-Amz-Credential',
  'X-Amz-Date',
  'X-Amz-Expires',
  'X-Amz-SignedHeaders',
  'X-Amz-Signature',
  'X-Amz-Security-Token',
  'X-Amz-User-Agent',
  'X-Goog-Algorithm',
  'X-Goog-Credential',
  'X-Goog-Date',
  'X-Goog-Expires',
  'X-Goog-SignedHeaders',
  'X-Goog-Signature',
  'OSSAccessKeyId',
  'Expires',
  'Signature',
  'SecurityToken',
  'AccessKeyId',
  'X-Obs-Date',
  'X-Obs-Security-Token',
  'q-sign-algorithm',
  'q-ak',
  'q-sign-time',
  'q-key-time',
  'q-header-list',
  'q-url-param-list',
  'q-signature',
  'x-cos-security-token',
  'ns',
];

export interface TaskIdInput {
  url: string;
  tag?: string | undefined;
  application?: string | undefined;
  /** Only when the caller fixed the piece length (then it is part of the id). */
  pieceLength?: number | undefined;
  /** Query keys to drop; default DEFAULT_FILTERED_QUERY_PARAMS. */
  filteredQueryParams?: readonly string[] | undefined;
  /** Use the blob digest of `/v2/<name>/blobs/<digest>` URLs as the task id. */
  blobDigest?: boolean | undefined;
  /** Overrides everything: task id = sha256(content). */
  contentForTaskId?: string | undefined;
  /**
   * A range task: the normalized byte range `start-end` (inclusive, see `formatTaskRange`) of the
   * origin object. Absent = the whole object, whose id stays exactly Dragonfly's.
   */
  range?: string | undefined;
}

/** Normalized range of a range task: `start-end`, inclusive, decimal, no leading zeros. */
export function formatTaskRange(r: RangeSpec): string {
  return `${r.start}-${r.end}`;
}

/** Parses a range-task range (`start-end`); throws INVALID_ARGUMENT for anything not normalized. */
export function parseTaskRange(s: string): RangeSpec {
  const m = /^(0|[1-9]\d*)-(0|[1-9]\d*)$/.exec(s);
  const start = Number(m?.[1]);
  const end = Number(m?.[2]);
  if (!m || !Number.isSafeInteger(start) || !Number.isSafeInteger(end) || start > end) {
    throw new FerryError('INVALID_ARGUMENT', `invalid task range ${JSON.stringify(s)} (want start-end)`);
  }
  return { start, end };
}

/** The URL with filtered query keys removed, re-serialised the way a WHATWG URL parser does. */
export function filterUrl(raw: string, filters: readonly string[] = DEFAULT_FILTERED_QUERY_PARAMS): string {
  let u: URL;
  try {
    u = new URL(raw);
  } catch (err) {
    throw new FerryError('INVALID_ARGUMENT', `invalid URL ${JSON.stringify(raw)}`, { cause: err });
  }
  const drop = new Set(filters);
  const kept = new URLSearchParams();
  for (const [k, v] of u.searchParams) if (!drop.has(k)) kept.append(k, v);
  const q = kept.toString();
  u.search = q ? `?${q}` : '';
  let s = u.toString();
  if (u.pathname === '/' && !q && !u.hash && s.endsWith('/')) s = s.slice(0, -1);
  return s;
}

const BLOB_URL = /^(.*):\/\/(.*)\/v2\/(.*)\/blobs\/([^?]+)(\?.*)?$/;

/** `sha256:<hex>` of a registry blob URL, or undefined. */
export function blobDigestOfUrl(url: string): string | undefined {
  const m = BLOB_URL.exec(url);
  const d = m?.[4];
  if (!d) return undefined;
  return /^(sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128})$/.test(d) ? d : undefined;
}

/**
 * Dragonfly v2 STANDARD task id; with `range`, the id of that range's task. The range enters the
 * hash as `bytes=<start>-<end>` right after the URL (Dragonfly v1's position); the `bytes=` prefix
 * keeps URL and range apart (`…/a1` + `0-50` vs `…/a` + `10-50`). In blob-digest and content mode
 * the range is hashed after the digest / content, so those ids stay range-specific too.
 */
export function taskId(input: TaskIdInput): string {
  const range = input.range === undefined ? undefined : `bytes=${formatTaskRange(parseTaskRange(input.range))}`;
  if (input.contentForTaskId !== undefined) {
    const h = createHash('sha256').update(input.contentForTaskId);
    if (range) h.update(range);
    return h.digest('hex');
  }
  if (input.blobDigest) {
    const d = blobDigestOfUrl(input.url);
    if (d && !range) return d.slice(d.indexOf(':') + 1);
    if (d)
      return createHash('sha256')
        .update(d.slice(d.indexOf(':') + 1))
        .update(range!)
        .digest('hex');
  }
  const h = createHash('sha256');
  h.update(filterUrl(input.url, input.filteredQueryParams ?? DEFAULT_FILTERED_QUERY_PARAMS));
  if (range) h.update(range);
  if (input.tag) h.update(input.tag);
  if (input.application) h.update(input.application);
  if (input.pieceLength !== undefined) h.update(String(input.pieceLength));
  h.update('STANDARD');
  return h.digest('hex');
}

/** Id of the whole-object task of (url, options): what every range task of the same object shares. */
export function objectTaskId(input: TaskIdInput): string {
  return taskId({ ...input, range: undefined });
}

/**
 * Whether a task holding `outer` (a range, or undefined = the whole object) holds every byte of
 * `inner`. The caller knows `inner` lies inside the object.
 */
export function rangeContains(outer: RangeSpec | undefined, inner: RangeSpec): boolean {
  return outer === undefined || (outer.start <= inner.start && inner.end <= outer.end);
}

export function hostId(ip: string, hostname: string, seed = false): string {
  return `${ip}-${hostname}${seed ? '-seed' : ''}`;
}

export function peerId(ip: string, hostname: string, seed = false): string {
  return `${ip}-${hostname}-${randomUUID()}${seed ? '-seed' : ''}`;
}

export const MIN_PIECE_LENGTH = 4 * 1024 * 1024;
export const MAX_PIECE_LENGTH = 64 * 1024 * 1024;
export const MAX_PIECE_COUNT = 500;

/** clamp(nextPow2(floor(len / 500)), 4 MiB, 64 MiB). */
export function pieceLengthFor(contentLength: number): number {
  if (!Number.isSafeInteger(contentLength) || contentLength < 0) {
    throw new FerryError('INVALID_ARGUMENT', `invalid content length ${contentLength}`);
  }
  const base = Math.floor(contentLength / MAX_PIECE_COUNT);
  let p = 1;
  while (p < base) p *= 2;
  return Math.min(MAX_PIECE_LENGTH, Math.max(MIN_PIECE_LENGTH, p));
}

/**
 * Piece length of a range task of `rangeLength` bytes: a range up to MIN_PIECE_LENGTH is one piece
 * of exactly its length (so the scheduler's load estimate, concurrency × piece length, is not that
 * of a 4 MiB piece for a 16 KiB read); longer ranges follow pieceLengthFor.
 */
export function pieceLengthForRange(rangeLength: number): number {
  if (!Number.isSafeInteger(rangeLength) || rangeLength <= 0)
    throw new FerryError('INVALID_ARGUMENT', `invalid range length ${rangeLength}`);
  return rangeLength <= MIN_PIECE_LENGTH ? rangeLength : pieceLengthFor(rangeLength);
}

export function pieceCount(contentLength: number, pieceLength: number): number {
  return Math.ceil(contentLength / pieceLength);
}

/** Byte range [offset, offset+length) of piece `n`. */
export function pieceRange(n: number, contentLength: number, pieceLength: number): { offset: number; length: number } {
  const offset = n * pieceLength;
  if (n < 0 || offset >= contentLength) throw new FerryError('INVALID_ARGUMENT', `piece ${n} out of range`);
  return { offset, length: Math.min(pieceLength, contentLength - offset) };
}

/** Piece numbers overlapping bytes [start, endInclusive]. */
export function piecesForRange(start: number, endInclusive: number, pieceLength: number): number[] {
  const out: number[] = [];
  for (let n = Math.floor(start / pieceLength); n <= Math.floor(endInclusive / pieceLength); n++) out.push(n);
  return out;
}

/** `crc32:<decimal u32>` of the bytes (IEEE polynomial). */
export function pieceDigest(buf: Uint8Array): string {
  return `crc32:${crc32(buf) >>> 0}`;
}

export type RangeSpec = { start: number; end: number /* inclusive */ };

/**
 * Parses a single-range `Range: bytes=…` header against a content length. Returns undefined when
 * absent; throws RANGE (INVALID_ARGUMENT) when unsatisfiable or multi-range.
 */
export function parseRangeHeader(h: string | undefined, contentLength: number): RangeSpec | undefined {
  if (!h) return undefined;
  const m = /^bytes=(\d*)-(\d*)$/.exec(h.trim());
  if (!m || (m[1] === '' && m[2] === '')) throw new FerryError('INVALID_ARGUMENT', `unsupported range ${h}`);
  let start: number;
  let end: number;
  if (m[1] === '') {
    const suffix = Number(m[2]);
    start = Math.max(0, contentLength - suffix);
    end = contentLength - 1;
  } else {
    start = Number(m[1]);
    end = m[2] === '' ? contentLength - 1 : Math.min(Number(m[2]), contentLength - 1);
  }
  if (start > end || start >= contentLength) throw new FerryError('INVALID_ARGUMENT', `unsatisfiable range ${h}`);
  return { start, end };
}
