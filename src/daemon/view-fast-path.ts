/**
 * @module daemon/view-fast-path
 * The FUSE fast path of EROFS mode's blob-view files, run inside each FUSE reader thread: a READ of
 * a view file whose chunks are all in the cache is answered right there with a positioned read of
 * the cache data file (the view and the data file share offsets), readiness checked in the cache's
 * shared bitmap. Anything else returns null and goes to the main thread, which fetches. With the
 * kernel asking for single pages (a small EROFS read-ahead keeps a lazy start from fetching chunks
 * it never touches), most view reads land in a chunk fetched a moment before: this saves each of
 * them the hop to the main thread and back. A read touching a read-ahead trigger chunk (the
 * device's shared trigger bitmap) goes to the main thread too, cached or not: that read is where a
 * sequential stream's next read-ahead window is started. Bytes read while the cache's eviction
 * generation changed (the node cache GC emptied it) are not trusted: the main thread reads again.
 */
import { openSync, readSync } from 'node:fs';
import { Op } from '../fuse/protocol.js'; // not index.js: see docs/architecture.md (worker threads)
import { chunkReady } from '../storage/protocol.js';
import type { BlobViewMap } from '../storage/index.js';

export interface ViewFastPathData {
  blobs: BlobViewMap[];
}

/** First chunk (by position) ending after `off`. */
function firstEndingAfter(ends: Float64Array, off: number): number {
  let lo = 0;
  let hi = ends.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (ends[mid]! <= off) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

export function init(d: ViewFastPathData): (opcode: number, nodeid: number, body: Buffer) => { parts: Buffer[]; hits?: number } | null {
  // BlobViewFs numbers the blob files 2, 3, … in the device's blob order.
  const views = d.blobs.map((b) => ({
    ...b,
    fd: openSync(b.dataPath, 'r'),
    bits: new Uint8Array(b.bitmap),
    triggers: new Uint8Array(b.triggers),
    gen: new Int32Array(b.generation),
  }));
  return (opcode, nodeid, body) => {
    if (opcode !== Op.READ) return null;
    const v = views[nodeid - 2];
    if (!v) return null;
    const offset = Number(body.readBigUInt64LE(8));
    const end = Math.min(v.size, offset + body.readUInt32LE(16));
    if (end <= offset) return { parts: [] };
    let hits = 0;
    const gen = Atomics.load(v.gen, 0);
    for (let i = firstEndingAfter(v.ends, offset); i < v.starts.length && v.starts[i]! < end; i++) {
      if (!chunkReady(v.bits, v.index[i]!) || chunkReady(v.triggers, v.index[i]!)) return null;
      hits++;
    }
    const out = Buffer.allocUnsafe(end - offset);
    let n = 0;
    while (n < out.length) {
      const k = readSync(v.fd, out, n, out.length - n, offset + n);
      if (k === 0) {
        out.fill(0, n);
        break;
      }
      n += k;
    }
    // the cache was emptied meanwhile: what was read may be holes, the main thread reads it again
    if (Atomics.load(v.gen, 0) !== gen) return null;
    return { parts: [out], hits };
  };
}
