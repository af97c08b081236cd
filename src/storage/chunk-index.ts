/**
 * @module storage/chunk-index
 * The node cache addressed by chunk digest, across images and blobs. Each blob's cache (cache.ts)
 * keeps beside its data a digest file, `<id>.chunk_digests`: which digest each of its chunks has
 * and where it sits in the uncompressed view (written once, when the blob's cache is first opened).
 * The index maps `digester:digest` to every place a chunk with that digest may be cached — in the
 * blobs the devices of this process have open (their ready bits in memory), and in the blobs other
 * processes or earlier runs left in the cache directories (their ready bits read from their
 * `.chunk_map` at lookup). A device about to fetch a chunk first asks here: bytes found are checked
 * against the chunk's digest before they are used, so a source emptied, deleted or rewritten by a
 * GC round meanwhile costs a fetch, never a wrong byte.
 *
 * Digest file: 16-byte header (magic `FCDX`, version 1, digester 0 = sha256 / 1 = blake3, entry
 * count) then 48 bytes per chunk the image references: CI index u32, uncompressed size u32,
 * uncompressed offset u64, digest (32 bytes), all little-endian.
 */
import { open, readFile, readdir, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { chunkDigest, type DigesterName } from '../format/compress/index.js';
import { chunkReady } from './protocol.js';

const MAGIC = 0x58444346; // 'FCDX'
const HEADER = 16;
const ENTRY = 48;
/** The chunk_map header before the ready bits (cache.ts). */
const MAP_HEADER = 4096;
/** Chunks longer than this are never copied between blobs (a corrupt digest file cannot make us allocate more). */
const MAX_CHUNK = 64 * 1024 * 1024;

/** What the index needs of one chunk. */
export interface IndexedChunk {
  chunkIndex: number;
  uncompressedOffset: number;
  uncompressedSize: number;
  digest: Buffer;
}

/** A blob's cache as the index sees it: its data file and whether a chunk is ready. */
export interface IndexedCache {
  readonly blobId: string;
  readonly dataPath: string;
  isReady(chunkIndex: number): boolean;
  read(offset: number, length: number): Promise<Buffer>;
}

/** Path of a blob's digest file. */
export function digestFilePath(dir: string, blobId: string): string {
  return join(dir, `${blobId}.chunk_digests`);
}

function key(digester: DigesterName, digest: Buffer): string {
  return `${digester}:${digest.toString('hex')}`;
}

/** Encodes a blob's digest file. */
export function encodeDigestFile(digester: DigesterName, chunks: readonly IndexedChunk[]): Buffer {
  const usable = chunks.filter((c) => c.digest.length === 32);
  const out = Buffer.alloc(HEADER + ENTRY * usable.length);
  out.writeUInt32LE(MAGIC, 0);
  out.writeUInt32LE(1, 4);
  out.writeUInt32LE(digester === 'sha256' ? 0 : 1, 8);
  out.writeUInt32LE(usable.length, 12);
  usable.forEach((c, i) => {
    const at = HEADER + i * ENTRY;
    out.writeUInt32LE(c.chunkIndex, at);
    out.writeUInt32LE(c.uncompressedSize, at + 4);
    out.writeBigUInt64LE(BigInt(c.uncompressedOffset), at + 8);
    c.digest.copy(out, at + 16);
  });
  return out;
}

/** Decodes a digest file; undefined when it is not one (a torn or foreign file is ignored, never trusted). */
export function decodeDigestFile(buf: Buffer): { digester: DigesterName; chunks: IndexedChunk[] } | undefined {
  if (buf.length < HEADER || buf.readUInt32LE(0) !== MAGIC || buf.readUInt32LE(4) !== 1) return undefined;
  const d = buf.readUInt32LE(8);
  const n = buf.readUInt32LE(12);
  if (d > 1 || buf.length !== HEADER + n * ENTRY) return undefined;
  const chunks: IndexedChunk[] = [];
  for (let i = 0; i < n; i++) {
    const at = HEADER + i * ENTRY;
    chunks.push({
      chunkIndex: buf.readUInt32LE(at),
      uncompressedSize: buf.readUInt32LE(at + 4),
      uncompressedOffset: Number(buf.readBigUInt64LE(at + 8)),
      digest: Buffer.from(buf.subarray(at + 16, at + 48)),
    });
  }
  return { digester: d === 0 ? 'sha256' : 'blake3', chunks };
}

/** Counters for the metrics. */
export interface ChunkIndexStats {
  /** chunks (and their bytes) copied from another blob's cache instead of fetched */
  sharedChunks: number;
  sharedBytes: number;
  /** candidates whose bytes did not match their digest (emptied or rewritten meanwhile) */
  staleSources: number;
}

/** A blob the index knows: open in this process (its cache) or only on disk (a snapshot of its ready bits). */
interface BlobEntry {
  dir: string;
  blobId: string;
  source: IndexedCache;
}

interface Place {
  blob: BlobEntry;
  chunkIndex: number;
  offset: number;
  size: number;
}

/** A blob's cache files as left on disk: its ready bits as they were when read, its data read by path. */
class FileSource implements IndexedCache {
  constructor(
    readonly blobId: string,
    readonly dataPath: string,
    private readonly bits: Uint8Array,
  ) {}
  isReady(i: number): boolean {
    return i >> 3 < this.bits.length && chunkReady(this.bits, i);
  }
  async read(offset: number, length: number): Promise<Buffer> {
    const f = await open(this.dataPath, 'r');
    try {
      const buf = Buffer.alloc(length);
      const { bytesRead } = await f.read(buf, 0, length, offset);
      return buf.subarray(0, bytesRead);
    } finally {
      await f.close();
    }
  }
}

async function readyBits(dir: string, blobId: string): Promise<Uint8Array> {
  const map = await readFile(join(dir, `${blobId}.chunk_map`)).catch(() => Buffer.alloc(0));
  return map.length > MAP_HEADER ? Uint8Array.from(map.subarray(MAP_HEADER)) : new Uint8Array(0);
}

/**
 * The node's chunks by digest. One per process (the daemon's node cache), shared by its devices.
 * Bounded by what the cache directories hold: one entry per cached blob's chunk.
 */
export class ChunkIndex {
  readonly stats: ChunkIndexStats = { sharedChunks: 0, sharedBytes: 0, staleSources: 0 };
  private readonly places = new Map<string, Place[]>();
  /** blobs indexed, by `dir/blobId` */
  private readonly blobs = new Map<string, BlobEntry>();

  /**
   * A device opened a blob's cache: its digest file is written when missing, its chunks indexed,
   * and the open cache answers for them. Best effort: a digest file that cannot be written only
   * means that a later run does not share this blob's chunks.
   */
  async add(dir: string, cache: IndexedCache, digester: DigesterName, chunks: readonly IndexedChunk[]): Promise<void> {
    const id = join(dir, cache.blobId);
    const known = this.blobs.get(id);
    if (known) {
      known.source = cache;
      return;
    }
    const path = digestFilePath(dir, cache.blobId);
    const file = decodeDigestFile(await readFile(path).catch(() => Buffer.alloc(0)));
    if (!file || file.digester !== digester || file.chunks.length !== chunks.filter((c) => c.digest.length === 32).length) {
      const tmp = `${path}.${process.pid}.tmp`;
      try {
        await writeFile(tmp, encodeDigestFile(digester, chunks));
        await rename(tmp, path);
      } catch {
        await rm(tmp, { force: true }).catch(() => undefined);
      }
    }
    this.insert({ dir, blobId: cache.blobId, source: cache }, digester, chunks);
  }

  /** A device closed a blob's cache: its chunks stay indexed, read from its files from now on. */
  release(dir: string, cache: IndexedCache, bits: Uint8Array): void {
    const e = this.blobs.get(join(dir, cache.blobId));
    if (e && e.source === cache) e.source = new FileSource(cache.blobId, cache.dataPath, Uint8Array.from(bits));
  }

  /** A blob's files were deleted (GC): its chunks leave the index. */
  forget(dir: string, blobId: string): void {
    const e = this.blobs.get(join(dir, blobId));
    if (!e) return;
    this.blobs.delete(join(dir, blobId));
    for (const [k, list] of this.places) {
      const rest = list.filter((p) => p.blob !== e);
      if (rest.length) this.places.set(k, rest);
      else this.places.delete(k);
    }
  }

  /**
   * Indexes the digest files in `dir` not indexed yet (what earlier runs and other processes left;
   * each device opening a cache there calls this: a directory listing, and only new files read).
   */
  async scan(dir: string): Promise<void> {
    const names = await readdir(dir).catch(() => [] as string[]);
    for (const n of names) {
      const m = /^([0-9a-f]{64})\.chunk_digests$/.exec(n);
      if (!m || this.blobs.has(join(dir, m[1]!))) continue;
      const f = decodeDigestFile(await readFile(join(dir, n)).catch(() => Buffer.alloc(0)));
      if (!f) continue;
      const source = new FileSource(m[1]!, join(dir, `${m[1]!}.blob.data`), await readyBits(dir, m[1]!));
      if (!this.blobs.has(join(dir, m[1]!))) this.insert({ dir, blobId: m[1]!, source }, f.digester, f.chunks);
    }
  }

  /** Blobs indexed. */
  get size(): number {
    return this.blobs.size;
  }

  /** Whether a blob other than `blobId` has a chunk with this digest and size marked ready. */
  has(digester: DigesterName, digest: Buffer, size: number, blobId: string): boolean {
    if (digest.length !== 32) return false;
    const list = this.places.get(key(digester, digest));
    return list?.some((p) => usable(p, size, blobId)) === true;
  }

  /**
   * The decoded bytes of a chunk with this digest and size from another blob's cache, checked
   * against the digest; undefined when no place holds them (not ready, emptied, deleted, corrupt).
   */
  async find(digester: DigesterName, digest: Buffer, size: number, blobId: string): Promise<Buffer | undefined> {
    if (size > MAX_CHUNK || digest.length !== 32) return undefined;
    for (const p of this.places.get(key(digester, digest)) ?? []) {
      if (!usable(p, size, blobId)) continue;
      const bytes = await p.blob.source.read(p.offset, p.size).catch(() => undefined);
      if (!bytes || bytes.length !== size || !chunkDigest(digester, bytes).equals(digest)) {
        this.stats.staleSources++;
        continue;
      }
      this.stats.sharedChunks++;
      this.stats.sharedBytes += bytes.length;
      return bytes;
    }
    return undefined;
  }

  private insert(e: BlobEntry, digester: DigesterName, chunks: readonly IndexedChunk[]): void {
    this.blobs.set(join(e.dir, e.blobId), e);
    for (const c of chunks) {
      if (c.digest.length !== 32) continue;
      const k = key(digester, c.digest);
      const list = this.places.get(k);
      const p = { blob: e, chunkIndex: c.chunkIndex, offset: c.uncompressedOffset, size: c.uncompressedSize };
      if (!list) this.places.set(k, [p]);
      else if (!list.some((q) => q.blob === e)) list.push(p);
    }
  }
}

function usable(p: Place, size: number, blobId: string): boolean {
  return p.blob.blobId !== blobId && p.size === size && p.blob.source.isReady(p.chunkIndex);
}
