/**
 * @module builder/tree
 * The in-memory filesystem tree a bootstrap is written from. A directory maps names to inodes;
 * hardlinks are the same `Inode` object referenced from several directory entries (nlink is counted
 * when the bootstrap is written). Regular files carry their chunk references, never their data.
 */
import { FerryError } from '../core/index.js';
import type { CompressorName } from '../format/compress/index.js';
import { splitXattrName } from '../format/erofs/index.js';

export type NodeType = 'file' | 'dir' | 'symlink' | 'char' | 'block' | 'fifo' | 'socket';

/**
 * A data blob as recorded in a RAFS bootstrap's blob table. Chunks point at these objects;
 * blob indexes are assigned when a bootstrap is written, so merging trees needs no renumbering.
 */
export interface BlobDesc {
  blobId: string;
  chunkSize: number;
  chunkCount: number;
  compressor: CompressorName;
  digester: Digester;
  features: number;
  compressedSize: number;
  uncompressedSize: number;
  tocSize: number;
  tocDigest: Buffer;
  ciCompressor: number;
  ciOffset: number;
  ciCompressedSize: number;
  ciUncompressedSize: number;
  /** fields kept verbatim from an input bootstrap (ZRan meta digest/size, cipher) */
  metaDigest?: Buffer;
  metaSize?: number;
}

export type Digester = 'sha256' | 'blake3';

/** One chunk of a file as recorded in the bootstrap (mirrors the reader's ChunkRef). */
export interface ChunkRef {
  blob: BlobDesc;
  /** index of the chunk's entry in its blob's CI table */
  chunkIndex: number;
  compressedOffset: number;
  compressedSize: number;
  uncompressedOffset: number;
  uncompressedSize: number;
  compressed: boolean;
  digest: Buffer;
  /** offset of this chunk within the file */
  fileOffset: number;
}

export interface Inode {
  type: NodeType;
  /** permission bits (0o7777) */
  perm: number;
  uid: number;
  gid: number;
  mtime: number;
  mtimeNsec: number;
  /** file size (regular files), target length (symlinks); 0 otherwise */
  size: number;
  target?: Buffer;
  rdevMajor?: number;
  rdevMinor?: number;
  xattrs: Map<string, Buffer>;
  chunks?: ChunkRef[];
  children?: Map<string, Inode>;
}

export function newDir(attrs?: Partial<Inode>): Inode {
  return {
    type: 'dir',
    perm: 0o755,
    uid: 0,
    gid: 0,
    mtime: 0,
    mtimeNsec: 0,
    size: 0,
    xattrs: new Map(),
    ...attrs,
    children: attrs?.children ?? new Map(),
  };
}

/**
 * Splits a path into components, normalised lexically against the layer root: empty and `.`
 * components go, a leading `/` is the root, `..` removes the component before it. Refuses
 * (INVALID_ARGUMENT) a `..` that would leave the root.
 */
export function splitPath(path: string): string[] {
  const parts: string[] = [];
  for (const s of path.split('/')) {
    if (s === '' || s === '.') continue;
    if (s === '..') {
      if (parts.length === 0) throw new FerryError('INVALID_ARGUMENT', `path escapes the root: ${path}`);
      parts.pop();
      continue;
    }
    parts.push(s);
  }
  return parts;
}

/** The directory holding `parts[..-1]`, creating missing directories with default attributes. */
export function ensureParent(root: Inode, parts: string[]): Inode {
  let dir = root;
  for (let i = 0; i < parts.length - 1; i++) {
    const name = parts[i]!;
    let next = dir.children!.get(name);
    if (next?.type !== 'dir') {
      next = newDir();
      dir.children!.set(name, next);
    }
    dir = next;
  }
  return dir;
}

/** Looks up a path; undefined when missing. */
export function lookupPath(root: Inode, path: string): Inode | undefined {
  let n: Inode | undefined = root;
  for (const part of splitPath(path)) {
    if (n?.type !== 'dir') return undefined;
    n = n.children!.get(part);
  }
  return n;
}

/** Inserts `node` at `path`. An existing directory keeps its children when `node` is a directory. */
export function insertPath(root: Inode, path: string, node: Inode): void {
  const parts = splitPath(path);
  if (parts.length === 0) {
    if (node.type !== 'dir') throw new FerryError('INVALID_ARGUMENT', 'the root of a layer must be a directory');
    Object.assign(root, { ...node, children: root.children });
    return;
  }
  const parent = ensureParent(root, parts);
  const name = parts[parts.length - 1]!;
  const old = parent.children!.get(name);
  if (old && old.type === 'dir' && node.type === 'dir') {
    Object.assign(old, { ...node, children: old.children });
    return;
  }
  parent.children!.set(name, node);
}

export const WHITEOUT_PREFIX = '.wh.';
export const OPAQUE_WHITEOUT = '.wh..wh..opq';

/**
 * Applies an upper layer tree onto a lower one with OCI semantics (what `nydus-image merge` does):
 * `.wh.NAME` removes NAME from the lower tree, `.wh..wh..opq` hides every lower child of its
 * directory, a non-directory replaces whatever was below, a directory over a directory merges.
 * Whiteout entries are consumed. The lower tree is modified in place and returned.
 */
export function applyLayer(lower: Inode, upper: Inode): Inode {
  mergeDir(lower, upper);
  // directory attributes of the root come from the upper layer
  Object.assign(lower, { ...upper, children: lower.children });
  return lower;
}

function mergeDir(lower: Inode, upper: Inode): void {
  const lc = lower.children!;
  const uc = upper.children!;
  if (uc.has(OPAQUE_WHITEOUT)) lc.clear();
  for (const name of uc.keys()) {
    if (name.startsWith(WHITEOUT_PREFIX) && name !== OPAQUE_WHITEOUT) lc.delete(name.slice(WHITEOUT_PREFIX.length));
  }
  for (const [name, node] of uc) {
    if (name.startsWith(WHITEOUT_PREFIX)) continue;
    const old = lc.get(name);
    if (node.type === 'dir' && old && old.type === 'dir') {
      mergeDir(old, node);
      Object.assign(old, { ...node, children: old.children });
    } else {
      lc.set(name, node.type === 'dir' ? stripWhiteouts(node) : node);
    }
  }
}

/** A directory copied into a place with no lower counterpart: whiteouts inside it have nothing to hide. */
function stripWhiteouts(dir: Inode): Inode {
  for (const [name, child] of dir.children!) {
    if (name.startsWith(WHITEOUT_PREFIX)) dir.children!.delete(name);
    else if (child.type === 'dir') stripWhiteouts(child);
  }
  return dir;
}

/** Depth-first walk (directories before their children, children in byte order of names). */
export function* walkTree(root: Inode, prefix = ''): Generator<{ path: string; node: Inode }> {
  yield { path: prefix || '/', node: root };
  const names = [...root.children!.keys()].sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
  for (const name of names) {
    const child = root.children!.get(name)!;
    const path = `${prefix}/${name}`;
    if (child.type === 'dir') yield* walkTree(child, path);
    else yield { path, node: child };
  }
}

/**
 * Keeps the xattrs EROFS can store (user., trusted., security., POSIX ACLs); drops the rest (e.g.
 * pseudo attributes like `system.sockprotoname` that GNU tar records) and returns how many it dropped.
 */
export function storableXattrs(x: Map<string, Buffer>): { xattrs: Map<string, Buffer>; dropped: string[] } {
  const dropped: string[] = [];
  for (const name of x.keys()) {
    // nydusd knows user., trusted., security. and the two POSIX ACL names (not EROFS's lustre.)
    if (name.startsWith('lustre.')) {
      dropped.push(name);
      continue;
    }
    try {
      splitXattrName(name);
    } catch {
      dropped.push(name);
    }
  }
  for (const d of dropped) x.delete(d);
  return { xattrs: x, dropped };
}
