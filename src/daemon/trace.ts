/**
 * @module daemon/trace
 * Building prefetch traces from what a mount read, and reading them back per blob. The trace's
 * wire form, its limits and its codec are in protocol.ts.
 */
import type { PrefetchTrace } from './protocol.js';

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
