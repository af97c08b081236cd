/**
 * @module daemon/trace
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
 */
import { z } from 'zod';
import { FerryError } from '../core/index.js';

/** artifactType of the referrer manifest and media type of its one layer. */
export const PREFETCH_TRACE_ARTIFACT_TYPE = 'application/vnd.ferry.prefetch-trace.v1+json';
/** Largest trace accepted (blobs / chunk entries / encoded bytes). */
export const PREFETCH_TRACE_LIMITS = { blobs: 1024, chunks: 65_536, bytes: 4 << 20 } as const;

export interface PrefetchTrace {
  schemaVersion: 1;
  /** digest of the image's bootstrap layer (the chunk indexes are those of its blobs) */
  bootstrap?: string;
  blobs: string[];
  chunks: Array<[number, number]>;
}

const schema = z.object({
  schemaVersion: z.literal(1),
  bootstrap: z.string().regex(/^sha256:[0-9a-f]{64}$/, 'a sha256 digest').optional(),
  blobs: z.array(z.string().regex(/^[0-9a-f]{64}$/, 'a 64-hex blob id')).max(PREFETCH_TRACE_LIMITS.blobs),
  chunks: z.array(z.tuple([z.number().int().nonnegative(), z.number().int().nonnegative().max(0xffffffff)])).max(PREFETCH_TRACE_LIMITS.chunks),
}).strict();

/** A validated trace from parsed JSON; INVALID_ARGUMENT naming the first problem otherwise. */
export function parsePrefetchTrace(u: unknown): PrefetchTrace {
  const r = schema.safeParse(u);
  if (!r.success) {
    const i = r.error.issues[0]!;
    throw new FerryError('INVALID_ARGUMENT', `prefetch trace: ${i.path.join('.') || '(root)'}: ${i.message}`);
  }
  const t = r.data as PrefetchTrace;
  for (const [b] of t.chunks) {
    if (b >= t.blobs.length) throw new FerryError('INVALID_ARGUMENT', `prefetch trace: chunk entry names blob ${b} of ${t.blobs.length}`);
  }
  return t;
}

/** A trace from its JSON bytes (size-checked), see parsePrefetchTrace. */
export function decodePrefetchTrace(buf: Buffer): PrefetchTrace {
  if (buf.length > PREFETCH_TRACE_LIMITS.bytes) throw new FerryError('INVALID_ARGUMENT', `prefetch trace: ${buf.length} bytes, over ${PREFETCH_TRACE_LIMITS.bytes}`);
  let u: unknown;
  try { u = JSON.parse(buf.toString('utf8')); } catch (err) {
    throw new FerryError('INVALID_ARGUMENT', `prefetch trace: not JSON: ${(err as Error).message}`);
  }
  return parsePrefetchTrace(u);
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
    if (b === undefined) { b = blobs.length; blobs.push(a.blobId); at.set(a.blobId, b); }
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
