/**
 * @module oci/prefetch-trace
 * Prefetch traces: the chunks a container read while it started, in the order it first needed them,
 * recorded by the daemon on one node (`StorageDevice.trace`) and stored next to the image as an OCI
 * referrer of its Nydus manifest (artifact type `PREFETCH_TRACE_ARTIFACT_TYPE`, one layer holding
 * this JSON). A node that mounts the image later prefetches exactly those chunks at mount time, all
 * at once, instead of fetching them one page fault at a time — the chunk-level counterpart of the
 * file lists nydus-snapshotter's optimizer records for `nydus-image --prefetch-policy fs`.
 *
 * JSON: `{ "schemaVersion": 1, "bootstrap": "sha256:…", "blobs": ["<blob id>", …],
 *          "chunks": [[blobIndex, chunkIndex], …] }` — `blobIndex` indexes `blobs` (not the bootstrap's
 * blob table), `bootstrap` is the digest of the bootstrap layer the chunk indexes belong to.
 *
 * This module is the codec of the trace and of its artifact manifest; pure, like the rest of `oci/`.
 */
import { FerryError } from '../core/index.js';
import { MediaType } from './media-types.js';
import type { Descriptor, ImageManifest } from './types.js';

/** artifactType of the referrer manifest and media type of its one layer. */
export const PREFETCH_TRACE_ARTIFACT_TYPE = 'application/vnd.ferry.prefetch-trace.v1+json';
/** Largest trace accepted (blobs / chunk entries / encoded bytes). */
export const PREFETCH_TRACE_LIMITS = { blobs: 1024, chunks: 65_536, bytes: 4 << 20 } as const;
/** Annotation of the artifact manifest: when the trace was pushed (the newest one wins). */
export const PREFETCH_TRACE_CREATED = 'org.opencontainers.image.created';

/** The largest chunk index (a u32 in the RAFS chunk records). */
const MAX_CHUNK_INDEX = 0xffff_ffff;
const BLOB_ID = /^[0-9a-f]{64}$/;
const SHA256_DIGEST = /^sha256:[0-9a-f]{64}$/;
const KEYS = new Set(['schemaVersion', 'bootstrap', 'blobs', 'chunks']);

export interface PrefetchTrace {
  schemaVersion: 1;
  /** digest of the image's bootstrap layer (the chunk indexes are those of its blobs) */
  bootstrap?: string;
  blobs: string[];
  chunks: Array<[number, number]>;
}

function bad(path: string, message: string): never {
  throw new FerryError('INVALID_ARGUMENT', `prefetch trace: ${path || '(root)'}: ${message}`);
}

function isIndex(v: unknown, max: number): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= max;
}

/** A validated trace from parsed JSON; INVALID_ARGUMENT naming the first problem otherwise. */
export function parsePrefetchTrace(u: unknown): PrefetchTrace {
  if (typeof u !== 'object' || u === null || Array.isArray(u)) bad('', 'must be an object');
  const o = u as Record<string, unknown>;
  for (const k of Object.keys(o)) if (!KEYS.has(k)) bad('', `unrecognized key ${JSON.stringify(k)}`);
  if (o.schemaVersion !== 1) bad('schemaVersion', 'must be 1');
  if (o.bootstrap !== undefined && (typeof o.bootstrap !== 'string' || !SHA256_DIGEST.test(o.bootstrap))) {
    bad('bootstrap', 'a sha256 digest');
  }
  if (!Array.isArray(o.blobs)) bad('blobs', 'must be an array');
  if (o.blobs.length > PREFETCH_TRACE_LIMITS.blobs) bad('blobs', `more than ${PREFETCH_TRACE_LIMITS.blobs} entries`);
  o.blobs.forEach((b: unknown, i: number) => {
    if (typeof b !== 'string' || !BLOB_ID.test(b)) bad(`blobs.${i}`, 'a 64-hex blob id');
  });
  if (!Array.isArray(o.chunks)) bad('chunks', 'must be an array');
  if (o.chunks.length > PREFETCH_TRACE_LIMITS.chunks) bad('chunks', `more than ${PREFETCH_TRACE_LIMITS.chunks} entries`);
  o.chunks.forEach((c: unknown, i: number) => {
    if (!Array.isArray(c) || c.length !== 2) bad(`chunks.${i}`, 'a [blobIndex, chunkIndex] pair');
    if (!isIndex(c[0], Number.MAX_SAFE_INTEGER)) bad(`chunks.${i}.0`, 'a non-negative integer');
    if (!isIndex(c[1], MAX_CHUNK_INDEX)) bad(`chunks.${i}.1`, `an integer from 0 to ${MAX_CHUNK_INDEX}`);
  });
  const t = o as unknown as PrefetchTrace;
  for (const [b] of t.chunks) {
    if (b >= t.blobs.length) throw new FerryError('INVALID_ARGUMENT', `prefetch trace: chunk entry names blob ${b} of ${t.blobs.length}`);
  }
  return t;
}

/** A trace from its JSON bytes (size-checked), see parsePrefetchTrace. */
export function decodePrefetchTrace(buf: Buffer): PrefetchTrace {
  if (buf.length > PREFETCH_TRACE_LIMITS.bytes) {
    throw new FerryError('INVALID_ARGUMENT', `prefetch trace: ${buf.length} bytes, over ${PREFETCH_TRACE_LIMITS.bytes}`);
  }
  let u: unknown;
  try {
    u = JSON.parse(buf.toString('utf8'));
  } catch (err) {
    throw new FerryError('INVALID_ARGUMENT', `prefetch trace: not JSON: ${(err as Error).message}`);
  }
  return parsePrefetchTrace(u);
}

/** The JSON bytes of a trace (the artifact's one layer). */
export function encodePrefetchTrace(t: PrefetchTrace): Buffer {
  return Buffer.from(JSON.stringify(t));
}

/** The trace of an access list (blob id + CI index, in order); duplicates keep their first place. */
export function traceOf(accesses: Iterable<{ blobId: string; chunkIndex: number }>, bootstrap?: string): PrefetchTrace {
  const blobs: string[] = [];
  const at = new Map<string, number>();
  const seen = new Set<string>();
  const chunks: Array<[number, number]> = [];
  for (const a of accesses) {
    const key = `${a.blobId}:${a.chunkIndex}`;
    if (seen.has(key)) continue;
    seen.add(key);
    let b = at.get(a.blobId);
    if (b === undefined) {
      b = blobs.length;
      blobs.push(a.blobId);
      at.set(a.blobId, b);
    }
    chunks.push([b, a.chunkIndex]);
  }
  return { schemaVersion: 1, ...(bootstrap ? { bootstrap } : {}), blobs, chunks };
}

/** The trace's chunk indexes per blob id, in trace order. */
export function traceByBlob(t: PrefetchTrace): Map<string, number[]> {
  const out = new Map<string, number[]>();
  for (const [b, c] of t.chunks) {
    const id = t.blobs[b]!;
    let l = out.get(id);
    if (!l) out.set(id, (l = []));
    l.push(c);
  }
  return out;
}

/**
 * The artifact manifest of a pushed trace: artifactType `PREFETCH_TRACE_ARTIFACT_TYPE`, the empty
 * config, `layer` (the encoded trace), `subject` the Nydus manifest, and the time it was created.
 */
export function prefetchTraceManifest(o: { config: Descriptor; layer: Descriptor; subject: Descriptor; created: Date }): ImageManifest {
  return {
    schemaVersion: 2,
    mediaType: MediaType.OCI_MANIFEST,
    artifactType: PREFETCH_TRACE_ARTIFACT_TYPE,
    config: o.config,
    layers: [o.layer],
    subject: { mediaType: o.subject.mediaType, digest: o.subject.digest, size: o.subject.size },
    annotations: { [PREFETCH_TRACE_CREATED]: o.created.toISOString() },
  };
}

/** The trace layer of an artifact manifest (INVALID_ARGUMENT when it has none or an oversized one). */
export function prefetchTraceLayer(man: ImageManifest, what: string): Descriptor {
  const layer = man.layers.find((l) => l.mediaType === PREFETCH_TRACE_ARTIFACT_TYPE);
  if (!layer) throw new FerryError('INVALID_ARGUMENT', `prefetch trace ${what}: no ${PREFETCH_TRACE_ARTIFACT_TYPE} layer`);
  if (layer.size > PREFETCH_TRACE_LIMITS.bytes) {
    throw new FerryError('INVALID_ARGUMENT', `prefetch trace ${what}: layer of ${layer.size} bytes`);
  }
  return layer;
}

/** The newest of a list of trace referrers (by their `created` annotation). */
export function newestPrefetchTrace(list: readonly Descriptor[]): Descriptor | undefined {
  const created = (d: Descriptor): string => d.annotations?.[PREFETCH_TRACE_CREATED] ?? '';
  return [...list].sort((a, b) => created(a).localeCompare(created(b))).at(-1);
}
