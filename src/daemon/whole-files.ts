/**
 * @module daemon/whole-files
 * Which files of an image a read fetches whole when it misses their first chunk (the storage
 * device's `setWholeFiles`, fetch-plan's `withWholeFiles`): shared objects (`*.so`, `*.so.N`) up to
 * one limit — a dlopen faults pages in all over the library — and any other file up to another — a
 * file read from its start is almost always read to its end. Files of one chunk have nothing to add.
 * The same walk gives each chunk its *family* (the storage device's `setFamilies`): the small files
 * (up to the `other` limit) of one directory with one extension share a family — a package's
 * `__pycache__/*.pyc`, the extension modules of `lib-dynload` — and every other file is a family of
 * its own. An amplified miss grows only within its family (fetch-plan's `amplify`), so it does not
 * spill from one module into the next library or from the `.pyc` files into the `.py` sources.
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

/** What the walk found, per blob id. */
export interface FileMarks {
  /** first CI index of each file to fetch whole → the file's CI indexes in order */
  whole: Map<string, Map<number, number[]>>;
  /** CI index → its file's family (small files: one per directory and extension; others: one per file) */
  families: Map<string, Map<number, number>>;
}

/** A file's extension as families use it: `so` for every shared object, '' for none. */
function extension(path: string): string {
  if (SHARED_OBJECT.test(path)) return 'so';
  const base = path.slice(path.lastIndexOf('/') + 1);
  const dot = base.lastIndexOf('.');
  return dot > 0 ? base.slice(dot + 1) : '';
}

function inner<K, V>(m: Map<string, Map<K, V>>, key: string): Map<K, V> {
  let v = m.get(key);
  if (!v) m.set(key, (v = new Map()));
  return v;
}

/**
 * The files to fetch whole (files whose chunks lie in more than one blob are left out) and every
 * chunk's family. Undefined when `stop()` turned true during the walk (the mount is going away).
 */
export async function markFiles(bs: RafsBootstrap, limits: WholeFileLimits, stop: () => boolean): Promise<FileMarks | undefined> {
  const marks: FileMarks = { whole: new Map(), families: new Map() };
  const names = new Map<string, number>();
  let n = 0;
  for (const e of bs.walk()) {
    if (++n % WALK_SLICE === 0) {
      await new Promise((r) => setImmediate(r));
      if (stop()) return undefined;
    }
    const { mode, size } = e.stat;
    if ((mode & S_IFMT) !== S_IFREG || size === 0) continue;
    const chunks = bs.chunks(e.ino);
    if (!chunks.length) continue;
    // small files of a directory with one extension are one family; any other file its own (a fresh id)
    const small = size <= limits.other;
    const name = small ? `${e.path.slice(0, e.path.lastIndexOf('/') + 1)}\0${extension(e.path)}` : undefined;
    let family = name === undefined ? undefined : names.get(name);
    if (family === undefined) {
      family = n;
      if (name !== undefined) names.set(name, family);
    }
    for (const c of chunks) inner(marks.families, c.blobId).set(c.chunkIndex, family);
    if (size > (SHARED_OBJECT.test(e.path) ? limits.so : limits.other)) continue;
    if (chunks.length < 2 || chunks.some((c) => c.blobId !== chunks[0]!.blobId)) continue;
    inner(marks.whole, chunks[0]!.blobId).set(
      chunks[0]!.chunkIndex,
      chunks.map((c) => c.chunkIndex),
    );
  }
  return marks;
}
