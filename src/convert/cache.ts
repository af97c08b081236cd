/**
 * @module convert/cache
 * The layer conversion cache (acceld's `cache_tag` idea, kept locally): a source layer already
 * converted with the same build options is not converted again. Entries live in a SQLite file and
 * hold the per-layer bootstrap plus where the Nydus blob was pushed; a hit is used only when the
 * blob is present in (or can be mounted into) the target repository, otherwise the layer is rebuilt.
 * Bounded: the least recently used entries beyond `maxEntries` are dropped.
 */
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { createHash } from 'node:crypto';
import Database from 'better-sqlite3';

export interface LayerBuildOptions {
  fsVersion: 5 | 6;
  compressor: string;
  /** chunk compression level (undefined: the codec's default) */
  compressLevel?: number;
  chunkSize: number;
  digester: string;
  /** digest of the chunk dictionary bootstrap, if any */
  chunkDict?: string;
  prefetchPatterns?: string[];
}

export interface CachedLayer {
  key: string;
  sourceDigest: string;
  /** `sha256:<blobId>`, or '' for a layer without file data (no blob) */
  blobDigest: string;
  blobId: string;
  blobSize: number;
  uncompressedSize: number;
  chunkCount: number;
  /** Per-layer bootstrap. */
  bootstrap: Buffer;
  registry: string;
  repository: string;
}

/** Cache key: the source layer digest plus every option that changes the build output. */
export function layerCacheKey(sourceDigest: string, o: LayerBuildOptions): string {
  const canon = JSON.stringify({
    v: 1,
    src: sourceDigest,
    fs: o.fsVersion,
    c: o.compressor,
    cs: o.chunkSize,
    d: o.digester,
    ...(o.compressLevel !== undefined ? { cl: o.compressLevel } : {}),
    dict: o.chunkDict ?? null,
    pf: o.prefetchPatterns ?? null,
  });
  return `sha256:${createHash('sha256').update(canon).digest('hex')}`;
}

export interface LayerCache {
  get(key: string): CachedLayer | undefined | Promise<CachedLayer | undefined>;
  put(entry: CachedLayer): void | Promise<void>;
  /** Called once after the target is pushed (a remote cache pushes its record then). */
  flush?(): Promise<void>;
  close(): void;
}

/** Looks in each cache in turn; a hit in a later one is copied into the earlier ones; puts go to all. */
export class TieredLayerCache implements LayerCache {
  constructor(private readonly tiers: LayerCache[]) {}

  async get(key: string): Promise<CachedLayer | undefined> {
    for (let i = 0; i < this.tiers.length; i++) {
      const hit = await this.tiers[i]!.get(key);
      if (hit) {
        for (let j = 0; j < i; j++) await this.tiers[j]!.put(hit);
        return hit;
      }
    }
    return undefined;
  }

  async put(entry: CachedLayer): Promise<void> {
    for (const t of this.tiers) await t.put(entry);
  }

  async flush(): Promise<void> {
    for (const t of this.tiers) await t.flush?.();
  }

  close(): void {
    for (const t of this.tiers) t.close();
  }
}

export class SqliteLayerCache implements LayerCache {
  private readonly db: Database.Database;

  constructor(
    readonly path: string,
    private readonly maxEntries = 2000,
  ) {
    mkdirSync(dirname(path), { recursive: true });
    this.db = new Database(path);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('busy_timeout = 5000');
    this.db.exec(`CREATE TABLE IF NOT EXISTS layer_cache (
      key TEXT PRIMARY KEY, source_digest TEXT NOT NULL, blob_digest TEXT NOT NULL, blob_id TEXT NOT NULL,
      blob_size INTEGER NOT NULL, uncompressed_size INTEGER NOT NULL, chunk_count INTEGER NOT NULL,
      bootstrap BLOB NOT NULL, registry TEXT NOT NULL, repository TEXT NOT NULL, used_at INTEGER NOT NULL)`);
  }

  get(key: string): CachedLayer | undefined {
    const r = this.db.prepare('SELECT * FROM layer_cache WHERE key = ?').get(key) as Record<string, unknown> | undefined;
    if (!r) return undefined;
    this.db.prepare('UPDATE layer_cache SET used_at = ? WHERE key = ?').run(Date.now(), key);
    return {
      key,
      sourceDigest: r.source_digest as string,
      blobDigest: r.blob_digest as string,
      blobId: r.blob_id as string,
      blobSize: r.blob_size as number,
      uncompressedSize: r.uncompressed_size as number,
      chunkCount: r.chunk_count as number,
      bootstrap: r.bootstrap as Buffer,
      registry: r.registry as string,
      repository: r.repository as string,
    };
  }

  put(e: CachedLayer): void {
    this.db
      .prepare(`INSERT OR REPLACE INTO layer_cache VALUES (?,?,?,?,?,?,?,?,?,?,?)`)
      .run(
        e.key,
        e.sourceDigest,
        e.blobDigest,
        e.blobId,
        e.blobSize,
        e.uncompressedSize,
        e.chunkCount,
        e.bootstrap,
        e.registry,
        e.repository,
        Date.now(),
      );
    this.db
      .prepare(`DELETE FROM layer_cache WHERE key IN (SELECT key FROM layer_cache ORDER BY used_at DESC LIMIT -1 OFFSET ?)`)
      .run(this.maxEntries);
  }

  close(): void {
    this.db.close();
  }
}
