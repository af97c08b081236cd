/**
 * @module storage/cache-gc
 * The node cache's quota policy and its view of the disk. A cache directory holds, per blob,
 * `<id>.blob.data` and `<id>.chunk_map` (cache.ts); the unit of eviction is a blob. `planEviction`
 * (pure) picks what to drop when the bytes on disk exceed the quota: blobs no mounted image uses
 * first (oldest first), then blobs of mounted images, least recently used first, until the total is
 * at or under the low watermark (a share of the quota, so that the next few fetches do not start
 * another round at once). A blob of a mounted image is not removed but emptied in place: its ready
 * bits are cleared (persisted) before its bytes are dropped, and its chunks are fetched again when
 * read (StorageDevice.holdEviction / releaseEviction).
 */
import { readdir, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { silentLogger, type Logger } from '../observe/index.js';
import { ChunkIndex } from './chunk-index.js';

/** Evict down to this share of the quota. */
export const GC_LOW_WATERMARK = 0.9;

export interface CachedBlob {
  blobId: string;
  dir: string;
  /** bytes the blob's files occupy on disk (allocated blocks, not apparent size) */
  bytes: number;
  /** last use, clock ms: the device's last read when mounted, else the files' last write */
  lastUsed: number;
  /** used by a mounted image */
  mounted: boolean;
}

export interface EvictionPlan {
  /** blobs no mount uses: delete their files */
  remove: CachedBlob[];
  /** blobs of mounted images: clear and empty in place */
  empty: CachedBlob[];
  /** bytes on disk before, and expected after */
  before: number;
  after: number;
}

/**
 * What to evict so that the cache fits `quota` bytes (0 = no quota: only blobs of no mounted image
 * are collected when `collectUnused` is true). Deterministic: ties by blob id.
 */
export function planEviction(
  blobs: CachedBlob[],
  quota: number,
  opts: { collectUnused?: boolean; lowWatermark?: number } = {},
): EvictionPlan {
  const before = blobs.reduce((a, b) => a + b.bytes, 0);
  const target = quota > 0 ? Math.floor(quota * (opts.lowWatermark ?? GC_LOW_WATERMARK)) : Number.POSITIVE_INFINITY;
  const order = (a: CachedBlob, b: CachedBlob): number => a.lastUsed - b.lastUsed || (a.blobId < b.blobId ? -1 : 1);
  const unused = blobs.filter((b) => !b.mounted).sort(order);
  const used = blobs.filter((b) => b.mounted && b.bytes > 0).sort(order);
  const remove: CachedBlob[] = [];
  const empty: CachedBlob[] = [];
  let total = before;
  const overQuota = quota > 0 && before > quota;
  for (const b of unused) {
    if (!opts.collectUnused && !(overQuota && total > target)) break;
    remove.push(b);
    total -= b.bytes;
  }
  if (overQuota) {
    for (const b of used) {
      if (total <= target) break;
      empty.push(b);
      total -= b.bytes;
    }
  }
  return { remove, empty, before, after: total };
}

/** Cache files of one blob. */
export function blobFiles(dir: string, blobId: string): { data: string; map: string; digests: string } {
  return { data: join(dir, `${blobId}.blob.data`), map: join(dir, `${blobId}.chunk_map`), digests: join(dir, `${blobId}.chunk_digests`) };
}

/** The blobs cached in `dir` with their bytes on disk and last write (missing dir: none). */
export async function scanCacheDir(dir: string): Promise<Array<{ blobId: string; bytes: number; mtimeMs: number }>> {
  const names = await readdir(dir).catch(() => [] as string[]);
  const out: Array<{ blobId: string; bytes: number; mtimeMs: number }> = [];
  for (const n of names) {
    const m = /^([0-9a-f]{64})\.blob\.data$/.exec(n);
    if (!m) continue;
    const f = blobFiles(dir, m[1]!);
    const d = await stat(f.data).catch(() => null);
    if (!d) continue;
    const map = await stat(f.map).catch(() => null);
    const digests = await stat(f.digests).catch(() => null);
    out.push({
      blobId: m[1]!,
      bytes: d.blocks * 512 + (map ? map.blocks * 512 : 0) + (digests ? digests.blocks * 512 : 0),
      mtimeMs: Math.max(d.mtimeMs, map?.mtimeMs ?? 0),
    });
  }
  return out;
}

/** Deletes a blob's cache files (map first: a data file without a map is never trusted). */
export async function removeBlobFiles(dir: string, blobId: string): Promise<void> {
  const f = blobFiles(dir, blobId);
  await rm(f.map, { force: true });
  await rm(f.digests, { force: true });
  await rm(f.data, { force: true });
}

/** What a GC round did. */
export interface GcReport {
  quota: number;
  /** bytes on disk before and after */
  before: number;
  after: number;
  /** blobs of no mounted image deleted, blobs of mounted images emptied in place */
  removedBlobs: number;
  emptiedBlobs: number;
  evictedBytes: number;
  /** blobs of mounted images passed over because a fetch of them was in flight */
  busyBlobs: number;
}

/** What the node cache needs of a mounted image's device (StorageDevice). */
export interface CacheUser {
  cacheUse(): Array<{ blobId: string; dir: string; lastUsed: number; refetchedBytes: number }>;
  holdForEviction(blobId: string, until: Promise<void>): boolean;
  emptyCache(blobId: string): Promise<void>;
}

export interface NodeCacheOptions {
  /** bytes (0 = no quota) */
  quota: number;
  /** the cache directories to account for (the default one and those of the mounts) */
  dirs: () => Iterable<string>;
  /** the devices of the mounted images */
  users: () => Iterable<CacheUser>;
  log?: Logger;
}

/**
 * The node's lazy chunk cache as a whole: bytes on disk across its directories, a quota, and GC
 * rounds (one at a time) that delete what no mount uses and empty, least recently used first, what
 * mounts use. Counters are for the metrics.
 */
export class NodeCache {
  evictedBytes = 0;
  removedBlobs = 0;
  emptiedBlobs = 0;
  /** refetched bytes of devices closed since (theirs are added at each round) */
  private refetchedClosed = 0;
  private readonly refetchedSeen = new Map<CacheUser, number>();
  private running: Promise<GcReport> | undefined;
  private readonly log: Logger;
  /** the cached chunks by digest, across blobs and images (storage/chunk-index): devices share it */
  readonly chunks = new ChunkIndex();
  constructor(private readonly o: NodeCacheOptions) {
    this.log = (o.log ?? silentLogger()).child({ component: 'node-cache' });
  }

  get quota(): number {
    return this.o.quota;
  }

  /** Bytes fetched again after their chunks were evicted (all mounts, also closed ones). */
  refetchedBytes(): number {
    let n = this.refetchedClosed;
    const live = new Set(this.o.users());
    for (const [u, seen] of this.refetchedSeen) {
      if (!live.has(u)) {
        this.refetchedClosed += seen;
        n += seen;
        this.refetchedSeen.delete(u);
      }
    }
    for (const u of live) {
      const r = u.cacheUse().reduce((a, b) => a + b.refetchedBytes, 0);
      this.refetchedSeen.set(u, r);
      n += r;
    }
    return n;
  }

  /** Bytes copied from another blob's cache (same chunk digest) instead of fetched, since start. */
  sharedBytes(): number {
    return this.chunks.stats.sharedBytes;
  }

  /** Every cached blob with its bytes on disk, last use and whether a mount uses it. */
  async blobs(): Promise<CachedBlob[]> {
    const use = new Map<string, number>();
    for (const u of this.o.users())
      for (const b of u.cacheUse()) {
        const k = join(b.dir, b.blobId);
        use.set(k, Math.max(use.get(k) ?? 0, b.lastUsed));
      }
    const out: CachedBlob[] = [];
    for (const dir of new Set(this.o.dirs())) {
      for (const f of await scanCacheDir(dir)) {
        const lastUsed = use.get(join(dir, f.blobId));
        out.push({ blobId: f.blobId, dir, bytes: f.bytes, lastUsed: lastUsed ?? f.mtimeMs, mounted: lastUsed !== undefined });
      }
    }
    return out;
  }

  async usedBytes(): Promise<number> {
    return (await this.blobs()).reduce((a, b) => a + b.bytes, 0);
  }

  /** One GC round now (a round in progress is joined): `collectUnused` also deletes every unused blob under quota. */
  gc(opts: { collectUnused?: boolean } = {}): Promise<GcReport> {
    if (!this.running) {
      this.running = this.round(opts.collectUnused === true).finally(() => {
        this.running = undefined;
      });
    }
    return this.running;
  }

  private async round(collectUnused: boolean): Promise<GcReport> {
    const plan = planEviction(await this.blobs(), this.o.quota, { collectUnused });
    const r: GcReport = {
      quota: this.o.quota,
      before: plan.before,
      after: plan.before,
      removedBlobs: 0,
      emptiedBlobs: 0,
      evictedBytes: 0,
      busyBlobs: 0,
    };
    for (const b of plan.remove) {
      this.chunks.forget(b.dir, b.blobId);
      await removeBlobFiles(b.dir, b.blobId);
      r.removedBlobs++;
      r.evictedBytes += b.bytes;
    }
    for (const b of plan.empty) {
      if (await this.empty(b)) {
        r.emptiedBlobs++;
        r.evictedBytes += b.bytes;
      } else r.busyBlobs++;
    }
    r.after = await this.usedBytes();
    this.evictedBytes += r.evictedBytes;
    this.removedBlobs += r.removedBlobs;
    this.emptiedBlobs += r.emptiedBlobs;
    if (r.removedBlobs || r.emptiedBlobs) this.log.info({ ...r }, 'node cache collected');
    return r;
  }

  /** Empties a mounted blob in every device holding it, all of them held first; false when one is busy. */
  private async empty(b: CachedBlob): Promise<boolean> {
    let release!: () => void;
    const gate = new Promise<void>((res) => {
      release = res;
    });
    const holders = [...this.o.users()].filter((u) => u.cacheUse().some((x) => x.blobId === b.blobId && x.dir === b.dir));
    try {
      for (const u of holders) if (!u.holdForEviction(b.blobId, gate)) return false;
      for (const u of holders) await u.emptyCache(b.blobId);
      return true;
    } finally {
      release();
    }
  }
}
