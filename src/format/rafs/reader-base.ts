/**
 * @module format/rafs/reader-base
 * What the RAFS v5 and v6 readers share: the reader's public types (`RafsBootstrap`, `BlobInfo`,
 * `ChunkRef`, …) and `BaseBootstrap`, the version-independent tree logic on top of a reader's
 * inode, directory and chunk primitives — cached directory listings, per-directory child indexes,
 * path lookup and the loop-checked `walk()`.
 */
import { FerryError } from '../../core/index.js';
import { decodeChunk } from '../compress/index.js';
import { S_IFDIR, S_IFMT } from '../erofs/index.js';
import type { Compressor, Digester, RafsChunkInfo } from './v6.js';

/** A data blob referenced by a bootstrap. */
export interface BlobInfo {
  index: number;
  blobId: string;
  compressor: Compressor;
  digester: Digester;
  chunkSize: number;
  chunkCount: number;
  compressedSize: number;
  uncompressedSize: number;
  features: number;
  /** v6: where the CI table lives in the blob (0 when unknown, e.g. v5). */
  ciOffset: number;
  ciCompressedSize: number;
  ciUncompressedSize: number;
  ciCompressor: Compressor;
  blobTocSize: number;
  blobTocDigest: Buffer;
  /** v6: EROFS device slot `blocks` and `mapped_blkaddr` (0 for v5). */
  deviceBlocks: number;
  mappedBlkaddr: number;
}

/** stat(2)-like attributes. */
export interface RafsStat {
  ino: number;
  /** Full st_mode (type + permission bits). */
  mode: number;
  uid: number;
  gid: number;
  size: number;
  mtime: number;
  mtimeNsec: number;
  nlink: number;
  /** Linux "new" dev_t encoding for char/block devices, else 0. */
  rdev: number;
  /** 512-byte blocks. */
  blocks: number;
}

/** One chunk of a file and where its bytes live. */
export interface ChunkRef {
  blobIndex: number;
  blobId: string;
  /** Index of the chunk within its blob (CI index). */
  chunkIndex: number;
  /** Offset of this chunk's first byte in the file. */
  fileOffset: number;
  compressedOffset: number;
  compressedSize: number;
  uncompressedOffset: number;
  uncompressedSize: number;
  compressed: boolean;
  digest: Buffer;
}

/** A chunk table record as a chunk location (`RafsBootstrap.chunkLocations`). */
export type ChunkLocation = Omit<ChunkRef, 'blobId' | 'fileOffset'>;

export interface DirEntry {
  name: string;
  ino: number;
  /** v6: the EROFS dirent file type (EROFS_FT_*). */
  fileType?: number;
}

/** An entry yielded by `walk()`. */
export interface WalkEntry {
  /** Path relative to the root ('' for the root), '/'-separated. */
  path: string;
  ino: number;
  stat: RafsStat;
  /** ino of the parent directory (the root's parent is itself). */
  parent: number;
}

/** Information for `inspect`. */
export interface BootstrapSummary {
  version: 5 | 6;
  flags: number;
  compressor: Compressor;
  digester: Digester;
  chunkSize: number;
  inodeCount: number;
  rootIno: number;
  blockSize: number;
  size: number;
  /** Raw superblock fields (EROFS + extended for v6; v5 superblock for v5). */
  superblock: Record<string, number | string>;
  chunkTableEntries: number;
}

/** Place of a chunk in the blob, for readers that load a blob's CI table themselves. */
export interface CiLocation {
  compressedOffset: number;
  compressedSize: number;
  uncompressedOffset: number;
  uncompressedSize: number;
  compressed: boolean;
}

/** A parsed bootstrap. */
export interface RafsBootstrap {
  readonly version: 5 | 6;
  readonly blobs: readonly BlobInfo[];
  readonly rootIno: number;
  readonly prefetchInodes: readonly number[];
  readonly chunkSize: number;
  readonly compressor: Compressor;
  readonly digester: Digester;
  readonly flags: number;
  summary(): BootstrapSummary;
  lookup(path: string): number | undefined;
  stat(ino: number): RafsStat;
  /** Children of a directory, without `.` and `..`, in on-disk (v6: byte-sorted) order. */
  readdir(ino: number): DirEntry[];
  /** The raw directory entries (v6: including `.` and `..`). */
  dirents(ino: number): DirEntry[];
  /** One child of a directory by name (FUSE lookup), via a per-directory index. */
  lookupChild(dirIno: number, name: string): number | undefined;
  readlink(ino: number): string;
  xattrs(ino: number): Map<string, Buffer>;
  chunks(ino: number): ChunkRef[];
  mapRead(ino: number, offset: number, length: number): ChunkRef[];
  /** Depth-first walk from the root (directories before their children, children sorted by name). */
  walk(): Generator<WalkEntry>;
  /** v5: the inode digest stored on disk (hash of chunk digests / target / child digests); undefined for v6. */
  inodeDigest(ino: number): Buffer | undefined;
  /** v6: the 80-byte chunk info table records (empty for v5, whose chunk records live in inodes). */
  chunkTable(): RafsChunkInfo[];
  /**
   * v6: the chunk table as the daemon needs it, decoded in one tight pass (a mount's critical
   * path: 28 000 records in a few ms): `digest` is a view into the bootstrap, not a copy.
   */
  chunkLocations(): ChunkLocation[];
  /**
   * v6: supply a blob's CI table (and optionally its `blob.digest` array) for chunks the bootstrap's
   * chunk table does not list. Without digests such chunks cannot be verified by `decodeChunk`.
   */
  setCiTable(blobIndex: number, entries: readonly CiLocation[], digests?: readonly Buffer[]): void;
  /**
   * Whether file chunks can be mapped: always for v5 and for v6 with a chunk table; a v6 bootstrap
   * without one needs every blob's CI table first (`setCiTable`, see format/rafs/blob-tables).
   */
  canMapChunks(): boolean;
  /** Decompresses and verifies one chunk of this image: `decodeChunk` of format/compress. */
  decodeChunk(blob: BlobInfo, chunk: ChunkRef, raw: Buffer): Buffer;
}

/** Options for `openBootstrap`. */
export interface OpenBootstrapOptions {
  /** Upper bound on entries `walk()` yields (default: derived from the bootstrap size). */
  maxEntries?: number;
}

/** A DATA_LOSS error naming what of the bootstrap is wrong. */
export function corrupt(msg: string): FerryError {
  return new FerryError('DATA_LOSS', `rafs bootstrap: ${msg}`);
}

export function isPow2(n: number): boolean {
  return Number.isInteger(n) && n > 0 && (n & (n - 1)) === 0;
}

function splitPath(path: string): string[] | undefined {
  const parts: string[] = [];
  for (const p of path.split('/')) {
    if (p === '' || p === '.') continue;
    if (p === '..') return undefined;
    parts.push(p);
  }
  return parts;
}

export abstract class BaseBootstrap implements RafsBootstrap {
  abstract readonly version: 5 | 6;
  abstract readonly blobs: readonly BlobInfo[];
  abstract readonly rootIno: number;
  abstract readonly prefetchInodes: readonly number[];
  abstract readonly chunkSize: number;
  abstract readonly compressor: Compressor;
  abstract readonly digester: Digester;
  abstract readonly flags: number;
  protected readonly dirCache = new Map<number, DirEntry[]>();
  private readonly childIndex = new Map<number, Map<string, number>>();
  protected readonly maxEntries: number;

  constructor(
    protected readonly buf: Buffer,
    opts: OpenBootstrapOptions,
  ) {
    // every entry needs at least a 12-byte dirent (v6) or a 4-byte table slot (v5)
    this.maxEntries = opts.maxEntries ?? Math.max(16, Math.ceil(buf.length / 4));
  }

  abstract summary(): BootstrapSummary;
  abstract stat(ino: number): RafsStat;
  protected abstract listDir(ino: number): DirEntry[];
  abstract readlink(ino: number): string;
  abstract xattrs(ino: number): Map<string, Buffer>;
  abstract chunks(ino: number): ChunkRef[];
  abstract mapRead(ino: number, offset: number, length: number): ChunkRef[];

  chunkTable(): RafsChunkInfo[] {
    return [];
  }

  chunkLocations(): ChunkLocation[] {
    return [];
  }

  inodeDigest(_ino: number): Buffer | undefined {
    return undefined;
  }

  setCiTable(_blobIndex: number, _entries: readonly CiLocation[], _digests?: readonly Buffer[]): void {
    /* v5 chunk records are complete */
  }

  canMapChunks(): boolean {
    return true;
  }

  dirents(ino: number): DirEntry[] {
    let d = this.dirCache.get(ino);
    if (!d) {
      d = this.listDir(ino);
      this.dirCache.set(ino, d);
    }
    return d;
  }

  readdir(ino: number): DirEntry[] {
    return this.dirents(ino).filter((k) => k.name !== '.' && k.name !== '..');
  }

  lookupChild(dirIno: number, name: string): number | undefined {
    let idx = this.childIndex.get(dirIno);
    if (!idx) {
      if ((this.stat(dirIno).mode & S_IFMT) !== S_IFDIR) return undefined;
      idx = new Map(this.readdir(dirIno).map((d) => [d.name, d.ino]));
      if (this.childIndex.size > 100_000) this.childIndex.clear();
      this.childIndex.set(dirIno, idx);
    }
    return idx.get(name);
  }

  lookup(path: string): number | undefined {
    const parts = splitPath(path);
    if (!parts) return undefined;
    let cur = this.rootIno;
    for (const name of parts) {
      const next = this.lookupChild(cur, name);
      if (next === undefined) return undefined;
      cur = next;
    }
    return cur;
  }

  *walk(): Generator<WalkEntry> {
    const seenDirs = new Set<number>();
    let count = 0;
    const rootStat = this.stat(this.rootIno);
    if ((rootStat.mode & S_IFMT) !== S_IFDIR) throw corrupt('root inode is not a directory');
    const stack: WalkEntry[] = [{ path: '', ino: this.rootIno, stat: rootStat, parent: this.rootIno }];
    while (stack.length > 0) {
      const e = stack.pop()!;
      if (++count > this.maxEntries) throw corrupt(`more than ${this.maxEntries} entries: directory loop or absurd counts`);
      yield e;
      if ((e.stat.mode & S_IFMT) !== S_IFDIR) continue;
      if (seenDirs.has(e.ino)) throw corrupt(`directory loop at ${e.path || '/'} (inode ${e.ino} reached twice)`);
      seenDirs.add(e.ino);
      const kids = this.readdir(e.ino);
      for (let i = kids.length - 1; i >= 0; i--) {
        const k = kids[i]!;
        if (k.name.includes('/') || k.name === '') throw corrupt(`invalid name ${JSON.stringify(k.name)} in ${e.path || '/'}`);
        stack.push({ path: e.path ? `${e.path}/${k.name}` : k.name, ino: k.ino, stat: this.stat(k.ino), parent: e.ino });
      }
    }
  }

  decodeChunk(blob: BlobInfo, chunk: ChunkRef, raw: Buffer): Buffer {
    return decodeChunk(blob, chunk, raw);
  }
}
