/**
 * @module daemon/fast-path
 * The FUSE fast path of FUSE mode, run inside each FUSE reader thread: LOOKUP, GETATTR and READs
 * whose chunks are all in the cache are answered right there — from the bootstrap (parsed once
 * per thread) and the cache data files (positioned reads), checking readiness in the cache's
 * shared bitmap. Anything else (a missing chunk, an error) returns null and goes to the main
 * thread, which fetches. Saves the thread hop that dominates small-file reads.
 */
import { openSync, readFileSync, readSync } from 'node:fs';
import { S_IFMT, S_IFREG } from '../core/index.js'; // constants only: light enough for the FUSE threads
import { FileReadPlan, HOLE, PLAN_STRIDE, openBootstrap, planFileRead, type CiLocation } from '../format/rafs/index.js';
import { Op, entryOut, attrOut, FUSE_ROOT_ID, type FuseAttr } from '../fuse/protocol.js'; // not index.js: see docs/architecture.md (worker threads)
import { chunkReady } from '../storage/protocol.js';
import { fuseAttrOf } from './fuse-attr.js';

export interface FastPathData {
  bootstrapPath: string;
  timeout: number;
  /** per blob: cache data file, ready bitmap, read-ahead triggers (a read touching one goes to the main thread) */
  caches: Array<{
    blobId: string;
    dataPath: string;
    bitmap: SharedArrayBuffer;
    triggers?: SharedArrayBuffer;
    generation?: SharedArrayBuffer;
  }>;
  /** CI tables of a bootstrap without a chunk table, see ciTableForThreads */
  ci?: Array<{ blobIndex: number; table: Float64Array }>;
}

export function init(d: FastPathData): (opcode: number, nodeid: number, body: Buffer) => { parts: Buffer[]; hits?: number } | null {
  const bs = openBootstrap(readFileSync(d.bootstrapPath));
  // no digests: this thread only reads chunks the main thread fetched and verified
  for (const t of d.ci ?? []) bs.setCiTable(t.blobIndex, ciFromTable(t.table));
  const caches = new Map(
    d.caches.map((c) => [
      c.blobId,
      { fd: openSync(c.dataPath, 'r'), bits: new Uint8Array(c.bitmap), triggers: c.triggers ? new Uint8Array(c.triggers) : undefined },
    ]),
  );
  // the caches' eviction generations: bytes read while one of them changed may be a dropped chunk's hole
  const gens = d.caches.flatMap((c) => (c.generation ? [new Int32Array(c.generation)] : []));
  const generation = (): number => gens.reduce((a, g) => a + Atomics.load(g, 0), 0);
  const plan = new FileReadPlan(); // every READ of this thread is planned into it
  const ino = (nodeid: number): number => (nodeid === FUSE_ROOT_ID ? bs.rootIno : nodeid);
  const node = (i: number): number => (i === bs.rootIno ? FUSE_ROOT_ID : i);
  const attr = (i: number): FuseAttr => fuseAttrOf(bs.stat(i));
  return (opcode, nodeid, body) => {
    switch (opcode) {
      case Op.LOOKUP: {
        const end = body.indexOf(0);
        const child = bs.lookupChild(ino(nodeid), body.toString('utf8', 0, end < 0 ? body.length : end));
        if (child === undefined) return { parts: [entryOut(0, null, d.timeout, d.timeout)] };
        return { parts: [entryOut(node(child), attr(child), d.timeout, d.timeout)] };
      }
      case Op.GETATTR:
        return { parts: [attrOut(attr(ino(nodeid)), d.timeout)] };
      case Op.READ: {
        const i = ino(nodeid);
        const st = bs.stat(i);
        if ((st.mode & S_IFMT) !== S_IFREG) return null;
        const offset = Number(body.readBigUInt64LE(8));
        const size = body.readUInt32LE(16);
        if (Math.min(st.size, offset + size) <= offset) return { parts: [] };
        const refs = bs.mapRead(i, offset, size);
        const gen = generation();
        // all chunks ready?
        for (const r of refs) {
          const c = caches.get(r.blobId);
          if (!c || !chunkReady(c.bits, r.chunkIndex) || (c.triggers && chunkReady(c.triggers, r.chunkIndex))) return null;
        }
        planFileRead(refs, st.size, offset, size, plan);
        const seg = plan.segments;
        const out = Buffer.allocUnsafe(plan.length);
        let at = 0;
        for (let p = 0; p < plan.count * PLAN_STRIDE; p += PLAN_STRIDE) {
          const len = seg[p + 2]!;
          if (seg[p] === HOLE) {
            out.fill(0, at, at + len);
          } else {
            const r = refs[seg[p]!]!;
            const fd = caches.get(r.blobId)!.fd;
            const from = r.uncompressedOffset + seg[p + 1]!;
            let n = 0;
            while (n < len) {
              const k = readSync(fd, out, at + n, len - n, from + n);
              if (k === 0) return null;
              n += k;
            }
          }
          at += len;
        }
        // an eviction meanwhile: the main thread reads it again (refetching what was dropped)
        if (generation() !== gen) return null;
        return { parts: [out], hits: refs.length };
      }
      default:
        return null;
    }
  };
}

/** A CI table in the form FUSE fast-path threads receive it (5 numbers per entry, one copy per thread). */
export function ciTableForThreads(entries: readonly CiLocation[]): Float64Array {
  const table = new Float64Array(entries.length * 5);
  entries.forEach((e, i) => {
    table.set([e.compressedOffset, e.compressedSize, e.uncompressedOffset, e.uncompressedSize, e.compressed ? 1 : 0], i * 5);
  });
  return table;
}

/** The CI table back from `ciTableForThreads`. */
function ciFromTable(table: Float64Array): CiLocation[] {
  const out: CiLocation[] = new Array(table.length / 5);
  for (let i = 0; i < out.length; i++) {
    const p = i * 5;
    out[i] = {
      compressedOffset: table[p]!,
      compressedSize: table[p + 1]!,
      uncompressedOffset: table[p + 2]!,
      uncompressedSize: table[p + 3]!,
      compressed: table[p + 4] === 1,
    };
  }
  return out;
}
