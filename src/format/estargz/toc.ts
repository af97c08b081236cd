/**
 * @module format/estargz/toc
 * eStargz's table of contents (stargz-snapshotter's `estargz` package, TOC version 1): the JSON
 * document stored as the tar entry `stargz.index.json` in the last gzip member before the footer,
 * one entry per tar member (plus `chunk` entries for the 2nd and later chunks of a big file), and
 * the names and annotation keys that go with it. Facts from upstream's format description; the
 * JSON field names and their omit-when-zero rule are theirs.
 */
import { FerryError } from '../../core/index.js';

/** Name of the TOC's tar entry. */
export const TOC_TAR_NAME = 'stargz.index.json';
/** Entry marking the end of the prioritized files (prefetched by the snapshotter). */
export const PREFETCH_LANDMARK = '.prefetch.landmark';
/** Entry at the start of a layer without prioritized files: nothing is prefetched. */
export const NO_PREFETCH_LANDMARK = '.no.prefetch.landmark';
/** The one byte both landmark files hold. */
export const LANDMARK_CONTENTS = 0x0f;
/** Default largest payload of one gzip member (upstream's 4 MiB). */
export const DEFAULT_ESTARGZ_CHUNK_SIZE = 4 << 20;

/** Layer annotations of an eStargz layer (upstream's keys). */
export const EstargzAnnotation = {
  /** sha256 of the TOC JSON: how the snapshotter verifies the TOC it reads from the blob. */
  TOC_DIGEST: 'containerd.io/snapshot/stargz/toc.digest',
  /** size of the uncompressed layer tar (for containers/storage's lazy pulls). */
  UNCOMPRESSED_SIZE: 'io.containers.estargz.uncompressed-size',
} as const;

export type TocEntryType = 'dir' | 'reg' | 'symlink' | 'hardlink' | 'char' | 'block' | 'fifo' | 'chunk';
const TYPES: ReadonlySet<string> = new Set(['dir', 'reg', 'symlink', 'hardlink', 'char', 'block', 'fifo', 'chunk']);

/** One TOC entry; optional fields are left out of the JSON when zero/empty, as upstream does. */
export interface TocEntry {
  name: string;
  type: TocEntryType;
  size?: number;
  /** RFC 3339, UTC, whole seconds; absent for a zero mtime */
  modtime?: string;
  linkName?: string;
  /** tar header mode (permission bits with setuid/setgid/sticky) */
  mode?: number;
  uid?: number;
  gid?: number;
  /** only on the first entry of a uid/gid run with that name (upstream's rule) */
  userName?: string;
  groupName?: string;
  /** start of the gzip member holding this file's (or chunk's) payload */
  offset?: number;
  devMajor?: number;
  devMinor?: number;
  /** base64 values (Go's []byte in JSON) */
  xattrs?: Record<string, string>;
  /** sha256 of the whole file (on `reg` entries) */
  digest?: string;
  chunkOffset?: number;
  /** bytes of this chunk; absent on the last chunk (to the end of the file) */
  chunkSize?: number;
  chunkDigest?: string;
}

export interface Toc {
  version: 1;
  entries: TocEntry[];
}

/** Modification time as upstream writes it: UTC RFC 3339 rounded to the second; undefined for 0. */
export function tocModtime(seconds: number): string | undefined {
  const s = Math.round(seconds);
  if (s === 0) return undefined;
  return new Date(s * 1000).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** TOC JSON bytes as written into the layer (tab-indented, like upstream). */
export function encodeToc(toc: Toc): Buffer {
  return Buffer.from(JSON.stringify(toc, null, '\t'));
}

function bad(where: string, msg: string): never {
  throw new FerryError('DATA_LOSS', `eStargz TOC: ${where}: ${msg}`);
}

const NUMERIC = ['size', 'mode', 'uid', 'gid', 'offset', 'devMajor', 'devMinor', 'chunkOffset', 'chunkSize'] as const;
const STRINGS = ['modtime', 'linkName', 'userName', 'groupName', 'digest', 'chunkDigest'] as const;

/** Parses and checks a TOC JSON document (DATA_LOSS naming the first problem). */
export function parseToc(buf: Buffer): Toc {
  let u: unknown;
  try {
    u = JSON.parse(buf.toString('utf8'));
  } catch (err) {
    bad('(root)', `not JSON: ${(err as Error).message}`);
  }
  if (typeof u !== 'object' || u === null) bad('(root)', 'not an object');
  const o = u as { version?: unknown; entries?: unknown };
  if (o.version !== 1) bad('version', `unsupported ${JSON.stringify(o.version)}`);
  if (!Array.isArray(o.entries)) bad('entries', 'not an array');
  const entries = o.entries.map((e: unknown, i: number): TocEntry => {
    const w = `entries[${i}]`;
    if (typeof e !== 'object' || e === null) bad(w, 'not an object');
    const r = e as Record<string, unknown>;
    if (typeof r.name !== 'string') bad(w, 'name is not a string');
    if (typeof r.type !== 'string' || !TYPES.has(r.type)) bad(w, `type ${JSON.stringify(r.type)}`);
    for (const k of NUMERIC)
      if (r[k] !== undefined && !(Number.isSafeInteger(r[k]) && (r[k] as number) >= 0)) bad(w, `${k} is not a count`);
    for (const k of STRINGS) if (r[k] !== undefined && typeof r[k] !== 'string') bad(w, `${k} is not a string`);
    return r as unknown as TocEntry;
  });
  return { version: 1, entries };
}
