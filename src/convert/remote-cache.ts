/**
 * @module convert/remote-cache
 * acceld's `cache_tag` remote cache, Ferry's form: an OCI artifact manifest at `repo:<cache_tag>`
 * whose layers are per-layer bootstraps, each annotated with the cache key, the source layer digest
 * and the Nydus blob it describes. Any converter that can pull the repository can reuse conversions
 * (stateless accel replicas share it). The record list is bounded (`cache_size`, most recent first)
 * and discarded when its `containerd.io/snapshot/nydus-cache-version` differs from the configured one.
 */
import { createHash } from 'node:crypto';
import { MediaType, NydusAnnotation, parseImageManifest, type Descriptor, type ImageManifest } from '../oci/index.js';
import { silentLogger, type Logger } from '../observe/index.js';
import { withTag, type ImageReference, type RegistryClient } from '../remote/index.js';
import type { CachedLayer, LayerCache } from './cache.js';

export const CACHE_ARTIFACT_TYPE = 'application/vnd.ferry.nydus.cache.v1+json';
export const CACHE_BOOTSTRAP_MEDIA_TYPE = 'application/vnd.ferry.rafs.layer-bootstrap.v1';
/** Annotations of the cache image and its records (the Nydus keys are defined once, in oci/media-types). */
export const CacheAnnotation = {
  VERSION: NydusAnnotation.CACHE_VERSION,
  KEY: 'io.ferry.nydus-cache.key',
  SOURCE: NydusAnnotation.SOURCE_DIGEST,
  BLOB_DIGEST: NydusAnnotation.BLOB_DIGEST,
  BLOB_SIZE: NydusAnnotation.BLOB_SIZE,
  BLOB_ID: 'io.ferry.nydus-cache.blob-id',
  UNCOMPRESSED: 'io.ferry.nydus-cache.uncompressed-size',
  CHUNKS: 'io.ferry.nydus-cache.chunk-count',
  /** repository the blob was pushed to (same registry) */
  REPOSITORY: 'io.ferry.nydus-cache.repository',
} as const;

const EMPTY = Buffer.from('{}');
/** Records kept by default (acceld's provider.cache_size default). */
const DEFAULT_MAX_RECORDS = 200;
/** Largest per-layer bootstrap a cache record may point at. */
const MAX_RECORD_BYTES = 256 << 20;

export interface RemoteLayerCacheOptions {
  client: RegistryClient;
  /** The repository (registry + repository) holding the cache; the tag is `tag`. */
  repo: ImageReference;
  tag: string;
  /** Records kept (acceld's provider.cache_size; default 200). */
  maxRecords?: number;
  version?: string;
  log?: Logger;
}

export class RemoteLayerCache implements LayerCache {
  private records: Descriptor[] | undefined;
  private dirty = false;
  private readonly log: Logger;

  constructor(private readonly o: RemoteLayerCacheOptions) {
    this.log = o.log ?? silentLogger();
  }

  private get ref(): ImageReference {
    return withTag(this.o.repo, this.o.tag);
  }

  private loading: Promise<Descriptor[]> | undefined;

  /** Reads the cache image once; concurrent callers share the one read. */
  private load(): Promise<Descriptor[]> {
    this.loading ??= this.read();
    return this.loading;
  }

  private async read(): Promise<Descriptor[]> {
    this.records = [];
    try {
      const m = await this.o.client.getManifest(this.ref);
      const man = parseImageManifest(m.body, m.mediaType, `conversion cache ${this.o.tag}`);
      const version = man.annotations?.[CacheAnnotation.VERSION] ?? '';
      if (man.artifactType !== CACHE_ARTIFACT_TYPE) {
        this.log.warn({ ref: this.o.tag }, 'cache tag holds something else; not using it');
      } else if (version !== (this.o.version ?? '')) {
        this.log.info({ have: version, want: this.o.version ?? '' }, 'conversion cache version differs; starting a new one');
      } else {
        this.records = man.layers.filter((l) => l.annotations?.[CacheAnnotation.KEY]);
      }
    } catch (err) {
      if (!(err as { code?: string }).code || (err as { code?: string }).code !== 'NOT_FOUND') {
        this.log.warn({ err: (err as Error).message }, 'could not read the conversion cache');
      }
    }
    return this.records;
  }

  async get(key: string): Promise<CachedLayer | undefined> {
    await this.load();
    const recs = this.records ?? [];
    const d = recs.find((r) => r.annotations?.[CacheAnnotation.KEY] === key);
    if (!d) return undefined;
    const a = d.annotations!;
    let bootstrap: Buffer;
    try {
      bootstrap = await this.o.client.getBlobBuffer(this.o.repo.registry, this.o.repo.repository, d.digest, MAX_RECORD_BYTES);
    } catch (err) {
      this.log.warn({ err: (err as Error).message, key }, 'conversion cache record unreadable; rebuilding the layer');
      return undefined;
    }
    // move to the front (most recently used)
    this.records = [d, ...(this.records ?? recs).filter((r) => r !== d)];
    this.dirty = true;
    return {
      key,
      sourceDigest: a[CacheAnnotation.SOURCE] ?? '',
      blobDigest: a[CacheAnnotation.BLOB_DIGEST] ?? '',
      blobId: a[CacheAnnotation.BLOB_ID] ?? '',
      blobSize: Number(a[CacheAnnotation.BLOB_SIZE] ?? 0),
      uncompressedSize: Number(a[CacheAnnotation.UNCOMPRESSED] ?? 0),
      chunkCount: Number(a[CacheAnnotation.CHUNKS] ?? 0),
      bootstrap,
      registry: this.o.repo.registry,
      repository: a[CacheAnnotation.REPOSITORY] ?? this.o.repo.repository,
    };
  }

  async put(e: CachedLayer): Promise<void> {
    // Only conversions whose blob lives in this registry can be served (mounted) from it.
    if (e.registry !== this.o.repo.registry) return;
    await this.load();
    const recs = this.records ?? [];
    if (recs.some((r) => r.annotations?.[CacheAnnotation.KEY] === e.key)) return;
    const d = await this.o.client.pushBuffer(this.o.repo.registry, this.o.repo.repository, e.bootstrap, CACHE_BOOTSTRAP_MEDIA_TYPE);
    d.annotations = {
      [CacheAnnotation.KEY]: e.key,
      [CacheAnnotation.SOURCE]: e.sourceDigest,
      [CacheAnnotation.BLOB_DIGEST]: e.blobDigest,
      [CacheAnnotation.BLOB_ID]: e.blobId,
      [CacheAnnotation.BLOB_SIZE]: String(e.blobSize),
      [CacheAnnotation.UNCOMPRESSED]: String(e.uncompressedSize),
      [CacheAnnotation.CHUNKS]: String(e.chunkCount),
      [CacheAnnotation.REPOSITORY]: e.repository,
    };
    // re-read: other layers of the same conversion may have been recorded while we pushed
    const now = this.records ?? recs;
    if (!now.some((r) => r.annotations?.[CacheAnnotation.KEY] === e.key)) this.records = [d, ...now];
    this.dirty = true;
  }

  /** Pushes the record list (bounded) as `repo:<tag>`. */
  async flush(): Promise<void> {
    if (!this.dirty || !this.records) return;
    const max = this.o.maxRecords ?? DEFAULT_MAX_RECORDS;
    if (max <= 0) return;
    const config = await this.o.client.pushBuffer(this.o.repo.registry, this.o.repo.repository, EMPTY, MediaType.OCI_EMPTY);
    const man: ImageManifest = {
      schemaVersion: 2,
      mediaType: MediaType.OCI_MANIFEST,
      artifactType: CACHE_ARTIFACT_TYPE,
      config,
      layers: this.records.slice(0, max),
      annotations: { [CacheAnnotation.VERSION]: this.o.version ?? '' },
    };
    const body = Buffer.from(JSON.stringify(man));
    await this.o.client.putManifest(this.ref, body, MediaType.OCI_MANIFEST);
    this.dirty = false;
    this.log.debug(
      { records: man.layers.length, digest: `sha256:${createHash('sha256').update(body).digest('hex')}` },
      'conversion cache updated',
    );
  }

  close(): void {}
}
