/**
 * @module daemon/whole-files
 * Which files of an image a read fetches whole when it misses their first chunk (the storage
 * device's `setWholeFiles`, fetch-plan's `withWholeFiles`): shared objects (`*.so`, `*.so.N`) up to
 * one limit — a dlopen faults pages in all over the library — and any other file up to another — a
 * file read from its start is almost always read to its end. Files of one chunk have nothing to add.
 * Walking a tree of tens of thousands of inodes takes a few hundred ms on a small machine, so the
 * walk yields to the event loop every WALK_SLICE entries.
 */
import { S_IFMT, S_IFREG } from '../core/index.js';
import type { RafsBootstrap } from '../format/rafs/index.js';

/** Tree entries walked between two turns of the event loop. */
const WALK_SLICE = 256;
/** A shared object's name: `*.so`, `*.so.N[.M…]`. */
const SHARED_OBJECT = /\.so(\.\d+)*$/;

/** Size limits in bytes (0 = none of that kind). */
export interface WholeFileLimits {
  so: number;
  other: number;
}

/**
 * Per blob id: first CI index of each file to fetch whole → the file's CI indexes in order. Files
 * whose chunks lie in more than one blob are left out. Undefined when `stop()` turned true during
 * the walk (the mount is going away).
 */
export async function wholeFiles(
  bs: RafsBootstrap,
  limits: WholeFileLimits,
  stop: () => boolean,
): Promise<Map<string, Map<number, number[]>> | undefined> {
  const per = new Map<string, Map<number, number[]>>();
  const most = Math.max(limits.so, limits.other);
  if (most <= 0) return per;
  let n = 0;
  for (const e of bs.walk()) {
    if (++n % WALK_SLICE === 0) {
      await new Promise((r) => setImmediate(r));
      if (stop()) return undefined;
    }
    const { mode, size } = e.stat;
    if ((mode & S_IFMT) !== S_IFREG || size === 0 || size > most) continue;
    if (size > (SHARED_OBJECT.test(e.path) ? limits.so : limits.other)) continue;
    const chunks = bs.chunks(e.ino);
    if (chunks.length < 2 || chunks.some((c) => c.blobId !== chunks[0]!.blobId)) continue;
    let m = per.get(chunks[0]!.blobId);
    if (!m) per.set(chunks[0]!.blobId, (m = new Map()));
    m.set(
      chunks[0]!.chunkIndex,
      chunks.map((c) => c.chunkIndex),
    );
  }
  return per;
}
