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

/**
 * The index key of a digest: the digester's initial and the digest's first 12 bytes (16 base64
 * characters, a third of the full hex — the index is one entry per cached chunk). A prefix shared by
 * two digests only costs a lookup: `find` compares the full digest of the bytes it copies.
 */
function key(digester: DigesterName, digest: Buffer): string {
  return `${digester[0]}${digest.toString('base64', 0, 12)}`;
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

/**
 * A blob the index knows: open in this process (its cache) or only on disk (a snapshot of its ready
 * bits); its chunks in typed arrays (the index is one entry per cached chunk: kept small).
 */
interface BlobEntry {
  dir: string;
  blobId: string;
  source: IndexedCache;
  slot: number;
  ci: Uint32Array;
  offset: Float64Array;
  size: Uint32Array;
}

/** A place is `slot * SLOT + position` (a blob's slot, a chunk's position in its arrays). */
const SLOT = 2 ** 24;

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
  /** digest key → one place, or several (the same chunk in several blobs) */
  private readonly places = new Map<string, number | number[]>();
  /** blobs indexed, by `dir/blobId`, and by slot (undefined once forgotten) */
  private readonly blobs = new Map<string, BlobEntry>();
  private readonly slots: Array<BlobEntry | undefined> = [];
  /** places of forgotten blobs still in `places` (dropped when they outnumber the live ones) */
  private stale = 0;
  private live = 0;

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
      if (known.ci.length > 0 || !chunks.some((c) => c.digest.length === 32)) return;
      this.forget(dir, cache.blobId); // indexed before its digests were known
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
    this.insert(dir, cache.blobId, cache, digester, chunks);
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
    this.slots[e.slot] = undefined;
    this.stale += e.ci.length;
    this.live -= e.ci.length;
    if (this.stale > this.live) this.compact();
  }

  /** Drops the places of forgotten blobs. */
  private compact(): void {
    for (const [k, v] of this.places) {
      const rest = (typeof v === 'number' ? [v] : v).filter((p) => this.slots[Math.floor(p / SLOT)] !== undefined);
      if (rest.length === 0) this.places.delete(k);
      else this.places.set(k, rest.length === 1 ? rest[0]! : rest);
    }
    this.stale = 0;
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
      if (!this.blobs.has(join(dir, m[1]!))) this.insert(dir, m[1]!, source, f.digester, f.chunks);
    }
  }

  /** Blobs indexed. */
  get size(): number {
    return this.blobs.size;
  }

  /** Whether a blob other than `blobId` has a chunk with this digest and size marked ready. */
  has(digester: DigesterName, digest: Buffer, size: number, blobId: string): boolean {
    if (digest.length !== 32) return false;
    const v = this.places.get(key(digester, digest));
    if (v === undefined) return false;
    return typeof v === 'number' ? this.usable(v, size, blobId) !== undefined : v.some((p) => this.usable(p, size, blobId) !== undefined);
  }

  /**
   * The decoded bytes of a chunk with this digest and size from another blob's cache, checked
   * against the digest; undefined when no place holds them (not ready, emptied, deleted, corrupt).
   */
  async find(digester: DigesterName, digest: Buffer, size: number, blobId: string): Promise<Buffer | undefined> {
    if (size > MAX_CHUNK || digest.length !== 32) return undefined;
    const v = this.places.get(key(digester, digest));
    for (const p of v === undefined ? [] : typeof v === 'number' ? [v] : [...v]) {
      const at = this.usable(p, size, blobId);
      if (!at) continue;
      const bytes = await at.source.read(at.offset, size).catch(() => undefined);
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

  private insert(dir: string, blobId: string, source: IndexedCache, digester: DigesterName, chunks: readonly IndexedChunk[]): void {
    const usable = chunks.filter((c) => c.digest.length === 32).slice(0, SLOT);
    const e: BlobEntry = {
      dir,
      blobId,
      source,
      slot: this.slots.length,
      ci: Uint32Array.from(usable, (c) => c.chunkIndex),
      offset: Float64Array.from(usable, (c) => c.uncompressedOffset),
      size: Uint32Array.from(usable, (c) => c.uncompressedSize),
    };
    this.slots.push(e);
    this.blobs.set(join(dir, blobId), e);
    this.live += usable.length;
    usable.forEach((c, i) => {
      const k = key(digester, c.digest);
      const p = e.slot * SLOT + i;
      const v = this.places.get(k);
      if (v === undefined) this.places.set(k, p);
      else if (typeof v === 'number') {
        if (Math.floor(v / SLOT) !== e.slot) this.places.set(k, [v, p]);
      } else if (!v.some((q) => Math.floor(q / SLOT) === e.slot)) v.push(p);
    });
  }

  /** The blob and offset of a place when it may serve a chunk of this size to another blob (ready there). */
  private usable(p: number, size: number, blobId: string): { source: IndexedCache; offset: number } | undefined {
    const e = this.slots[Math.floor(p / SLOT)];
    const i = p % SLOT;
    if (!e || e.blobId === blobId || e.size[i] !== size || !e.source.isReady(e.ci[i]!)) return undefined;
    return { source: e.source, offset: e.offset[i]! };
  }
}
