/**
 * @module convert/convert
 * (Over 600 lines: the conversion pipeline (layers, manifests, indexes, referrers) shares one context and its caches.)
 * OCI/Docker image → Nydus image, registry to registry (the role of nydusify convert and acceld's
 * nydus driver). Per source layer: stream the blob, undo its compression (counting bytes and checking
 * the config's diff_id), feed the tar to the RAFS builder (work files in a temp dir, removed after),
 * push the Nydus blob. Then merge the per-layer bootstraps, push the bootstrap layer (gzip tar with
 * `image/image.boot`), a config whose rootfs.diff_ids match the new layers, and the manifest with
 * upstream's media types and annotations. Indexes are converted per platform into one target index;
 * `mergePlatform` keeps the source manifests beside the Nydus ones. Push order is blobs → child
 * manifests by digest → the tag last, so a failure never leaves a half-pushed target tagged.
 */
import type { KeyObject } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { pipeline } from 'node:stream/promises';
import { mkdtemp, rm, stat, copyFile, mkdir, rename, open } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_CONVERT_CHUNK_SIZE, DEFAULT_CONVERT_ZSTD_LEVEL } from '../config/accel.js';
import { FerryError, DigestMismatchError, sha256Digest } from '../core/index.js';
import {
  MediaType,
  NydusAnnotation,
  HarborAnnotation,
  NYDUS_MANIFEST_ARTIFACT_TYPE,
  NYDUS_CONFIG_MEDIA_TYPE,
  ANY_PLATFORM,
  isNydusEntry,
  isEncryptedLayerMediaType,
  parseImageConfig,
  parseImageManifest,
  parseManifestDocument,
  type Descriptor,
  type ImageConfig,
  type ImageIndex,
  type ImageManifest,
  type Platform,
} from '../oci/index.js';
import { silentLogger, type Logger } from '../observe/index.js';
import {
  RegistryClient,
  parseReference,
  formatReference,
  withDigest,
  parsePlatform,
  platformMatches,
  formatPlatform,
  pushReferrer,
  type ImageReference,
} from '../remote/index.js';
import { buildLayer, mergeBootstraps } from '../builder/index.js';
import {
  openBootstrap,
  decodeBlobMetaHeader,
  blobMetaCacheFile,
  loadBlobTables,
  packBootstrapLayer,
  unpackBootstrapLayerFiles,
  BLOB_META_HEADER_SIZE,
  MAX_BOOTSTRAP_BYTES,
  type AsyncBlobReader,
  type BlobTables,
} from '../format/rafs/index.js';
import { getCodec } from '../format/compress/index.js';
import { decompressed, collect, Meter } from './streams.js';
import { copyBlobBetween } from './copy-blob.js';
import { carrySupplyChain, type CarriedArtifacts } from './supply-chain.js';
import { attestConversion, type Attested } from './attestation.js';
import { layerCacheKey, type LayerCache, type LayerBuildOptions } from './cache.js';

export { NYDUS_MANIFEST_ARTIFACT_TYPE, NYDUS_CONFIG_MEDIA_TYPE };
/** The annotations a conversion writes on the Nydus manifest (keys defined once, in oci/media-types). */
export const ConvertAnnotation = {
  SOURCE_DIGEST: NydusAnnotation.SOURCE_DIGEST,
  SOURCE_REFERENCE: NydusAnnotation.SOURCE_REFERENCE,
  BUILDER_VERSION: NydusAnnotation.BUILDER_VERSION,
  HARBOR_DRIVER_NAME: HarborAnnotation.ACCELERATION_DRIVER,
  HARBOR_SOURCE_DIGEST: HarborAnnotation.ACCELERATION_SOURCE_DIGEST,
} as const;
/** Largest image config read from a registry. */
export const MAX_CONFIG_BYTES = 16 << 20;
export const BUILDER_VERSION = 'ferry 0.1.0';

export type Compressor = 'none' | 'lz4_block' | 'gzip' | 'zstd';

export interface ProgressEvent {
  /** source layer digest (or 'bootstrap'/'manifest') */
  id: string;
  platform?: string;
  phase: 'start' | 'bytes' | 'cached' | 'push' | 'done';
  /** bytes of the source blob read so far, and its size */
  bytes?: number;
  total?: number;
}

export interface ConvertOptions {
  source: string | ImageReference;
  target: string | ImageReference;
  /** Client for the source registry (default: a new RegistryClient). */
  sourceClient?: RegistryClient;
  /** Client for the target registry (default: the source client). */
  targetClient?: RegistryClient;
  fsVersion?: 5 | 6;
  compressor?: Compressor;
  /** chunk compression level; default DEFAULT_CONVERT_ZSTD_LEVEL for zstd, the codec's otherwise */
  compressLevel?: number;
  chunkSize?: number;
  digester?: 'sha256' | 'blake3';
  /** A Nydus image whose bootstrap is the chunk dictionary (an error when it cannot be used). */
  chunkDictRef?: string;
  /**
   * Nydus images used together as the chunk dictionary when `chunkDictRef` is not given (the
   * accel's automatic per-project dictionary): one that cannot be read, or whose chunk size or
   * digester differs from this conversion's, is left out with a warning.
   */
  chunkDictRefs?: readonly string[];
  /**
   * Keep the v6 chunk table in the image's bootstrap (for upstream `nydus-image check/merge`).
   * Default false: the table is left out whenever every blob carries its own CI table, digest array
   * and ToC, so chunks a container never reads cost no bootstrap bytes either.
   */
  chunkTable?: boolean;
  prefetchPatterns?: string[];
  /** `os/arch[/variant]` to convert; empty/undefined = every platform of an index. */
  platforms?: string[];
  mergePlatform?: boolean;
  withReferrer?: boolean;
  /** Sign a conversion attestation of each Nydus manifest with this key and push it as its referrer (convert/attestation.ts). */
  signKey?: KeyObject;
  /** Store blobs in a local directory instead of the registry (the manifest then has only the bootstrap). */
  backend?: { type: 'localfs'; dir: string };
  cache?: LayerCache;
  /** Parent of the temporary work directory. */
  workDir?: string;
  /** Extra manifest annotations. */
  annotations?: Record<string, string>;
  /** acceld v0.1.1 `harbor_annotation`. */
  harborAnnotation?: boolean;
  /** Source layers converted in parallel (default 2). */
  layerConcurrency?: number;
  log?: Logger;
  signal?: AbortSignal;
  onProgress?: (ev: ProgressEvent) => void;
}

export interface ConvertedLayer {
  sourceDigest: string;
  blobDigest: string;
  blobSize: number;
  /** bytes of the uncompressed source tar */
  tarBytes: number;
  cached: boolean;
}

export interface ConvertResult {
  source: string;
  sourceDigest: string;
  target: string;
  targetDigest: string;
  mediaType: string;
  /** compressed source bytes (layers + configs + manifests of the selected platforms) */
  sourceSize: number;
  /** bytes of the target (layers + configs + manifests) */
  targetSize: number;
  /** uncompressed source tar bytes fed to the builder (cache hits excluded) */
  uncompressedBytes: number;
  layers: ConvertedLayer[];
  manifests: Array<{ platform?: string; digest: string; sourceDigest: string }>;
  /** the source's signatures/attestations/SBOMs carried to the target */
  carried: CarriedArtifacts;
  /** conversion attestations pushed (with `signKey`) */
  attestations: Attested[];
  durationMs: number;
}

interface Ctx {
  src: ImageReference;
  dst: ImageReference;
  sc: RegistryClient;
  tc: RegistryClient;
  build: LayerBuildOptions;
  opts: ConvertOptions;
  log: Logger;
  work: string;
  chunkDict?: Buffer[];
  chunkDictTables?: Map<string, BlobTables>;
  /** the chunk dictionary images' blobs: by digest, the image holding each and its descriptor */
  dict?: { layers: Map<string, { ref: ImageReference; desc: Descriptor }> };
  stats: { sourceSize: number; targetSize: number; uncompressed: number; layers: ConvertedLayer[] };
}

export function throwIfAborted(signal?: AbortSignal): void {
  if (signal?.aborted) throw new FerryError('CANCELED', 'conversion canceled');
}

/** Runs `fn` over items with at most `n` in flight, keeping order of results. */
export async function mapLimit<T, R>(items: T[], n: number, fn: (t: T, i: number) => Promise<R>): Promise<R[]> {
  const out = new Array<R>(items.length);
  let next = 0;
  let failed: unknown;
  const workers = Array.from({ length: Math.max(1, Math.min(n, items.length)) }, async () => {
    while (next < items.length && failed === undefined) {
      const i = next++;
      try {
        out[i] = await fn(items[i]!, i);
      } catch (err) {
        failed ??= err;
      }
    }
  });
  await Promise.all(workers);
  if (failed !== undefined) throw failed;
  return out;
}

export function isNydusManifest(m: ImageManifest): boolean {
  const last = m.layers[m.layers.length - 1];
  return last?.annotations?.[NydusAnnotation.BOOTSTRAP] === 'true';
}

/**
 * Refuses an image with ocicrypt-encrypted layers before a byte of them is fetched: the converter
 * would need the private key and would store the plain content in the Nydus blobs (readable by
 * anyone who can pull them). Permanent: no retry can change it.
 */
export function refuseEncryptedLayers(man: ImageManifest, where: string): void {
  const i = man.layers.findIndex((l) => isEncryptedLayerMediaType(l.mediaType));
  if (i < 0) return;
  const l = man.layers[i]!;
  throw new FerryError(
    'FAILED_PRECONDITION',
    `${where}: layer ${i} (${l.digest}) is encrypted (${l.mediaType}, ocicrypt); encrypted images are not converted — ` +
      'their Nydus form would hold the decrypted content. Push the image unencrypted to convert it',
  );
}

/** The bootstrap of a Nydus image (its last layer, `image/image.boot`) and the blob meta files beside it. */
export async function fetchNydusBootstrap(
  client: RegistryClient,
  ref: ImageReference,
  platform?: string,
): Promise<{ bootstrap: Buffer; blobMeta: Map<string, Buffer>; manifest: ImageManifest; digest: string }> {
  const { manifest: man, fetched: m } = await client.resolveImage(ref, { prefer: 'nydus', platform: platform ?? ANY_PLATFORM });
  if (!isNydusManifest(man))
    throw new FerryError(
      'INVALID_ARGUMENT',
      `${formatReference(ref)} is not a Nydus image (last layer lacks ${NydusAnnotation.BOOTSTRAP})`,
    );
  const last = man.layers[man.layers.length - 1]!;
  const layer = await client.getBlobBuffer(ref.registry, ref.repository, last.digest, MAX_BOOTSTRAP_BYTES);
  const files = await unpackBootstrapLayerFiles(layer);
  return { ...files, manifest: man, digest: m.digest };
}

/**
 * The blob tables (CI table + verified chunk digests, by blob id) of a bootstrap written without a
 * chunk table, read from the image's repository with one ranged request per blob; undefined when
 * the bootstrap has its chunk table.
 */
export async function nydusBlobTables(
  client: RegistryClient,
  ref: ImageReference,
  bootstrap: Buffer,
  blobMeta?: ReadonlyMap<string, Buffer>,
): Promise<Map<string, BlobTables> | undefined> {
  const bs = openBootstrap(bootstrap);
  if (bs.canMapChunks()) return undefined;
  const read: AsyncBlobReader = async (b, off, len) =>
    collect(await client.getBlob(ref.registry, ref.repository, `sha256:${b.blobId}`, { range: [off, off + len - 1] }));
  const out = new Map<string, BlobTables>();
  for (const b of bs.blobs) out.set(b.blobId, await loadBlobTables(b, read, blobMeta?.get(b.blobId)));
  return out;
}

async function copyBlob(ctx: Ctx, d: Descriptor, fromRepo: string, fromRegistry = ctx.src.registry): Promise<void> {
  await copyBlobBetween(ctx.sc, ctx.tc, { registry: fromRegistry, repository: fromRepo }, ctx.dst, d);
}

/**
 * Blobs the merged bootstrap references that no converted layer produced: chunk-dictionary blobs.
 * They become extra layers (after the converted ones, as upstream orders them) and are copied into
 * the target repository (or the localfs backend).
 */
async function dictBlobLayers(ctx: Ctx, merged: Buffer, produced: Set<string>): Promise<Descriptor[]> {
  const extra = openBootstrap(merged).blobs.filter((b) => !produced.has(`sha256:${b.blobId}`));
  const out: Descriptor[] = [];
  for (const b of extra) {
    const digest = `sha256:${b.blobId}`;
    const found = ctx.dict?.layers.get(digest);
    if (!found)
      throw new FerryError(
        'FAILED_PRECONDITION',
        `bootstrap references blob ${b.blobId} that is neither a converted layer nor in the chunk dictionary image`,
      );
    if (ctx.opts.backend) {
      await mkdir(ctx.opts.backend.dir, { recursive: true });
      const path = join(ctx.opts.backend.dir, b.blobId);
      if (
        !(await stat(path).then(
          () => true,
          () => false,
        ))
      ) {
        await pipeline(await ctx.sc.getBlob(found.ref.registry, found.ref.repository, digest), createWriteStream(`${path}.part`));
        await rename(`${path}.part`, path);
      }
    } else {
      await copyBlob(ctx, found.desc, found.ref.repository, found.ref.registry);
    }
    out.push({ mediaType: MediaType.NYDUS_BLOB, digest, size: found.desc.size, annotations: { [NydusAnnotation.BLOB]: 'true' } });
  }
  return out;
}

/**
 * `image/<blob id>.blob.meta` for each blob of the merged bootstrap, as current upstream converters
 * ship them in the bootstrap layer (nydusd's cache form: the uncompressed CI table padded to 4 KiB,
 * then the 4096-byte blob meta header), so nodes need not fetch CI tables from each blob. Read with
 * one range request per blob (or from the localfs backend); optional: a blob whose meta cannot be
 * read is logged and skipped.
 */
async function blobMetaFiles(ctx: Ctx, merged: Buffer): Promise<Array<{ name: string; data: Buffer }>> {
  const out: Array<{ name: string; data: Buffer }> = [];
  for (const b of openBootstrap(merged).blobs) {
    if (b.ciCompressedSize === 0 || b.ciUncompressedSize === 0) continue;
    const len = b.ciCompressedSize + BLOB_META_HEADER_SIZE;
    try {
      let raw: Buffer;
      if (ctx.opts.backend) {
        const fh = await open(join(ctx.opts.backend.dir, b.blobId), 'r');
        try {
          raw = Buffer.alloc(len);
          const { bytesRead } = await fh.read(raw, 0, len, b.ciOffset);
          if (bytesRead !== len) throw new FerryError('DATA_LOSS', 'short read');
        } finally {
          await fh.close();
        }
      } else {
        const inDict = ctx.dict?.layers.get(`sha256:${b.blobId}`);
        const repo = inDict && !(await ctx.tc.headBlob(ctx.dst.registry, ctx.dst.repository, `sha256:${b.blobId}`)) ? inDict.ref : ctx.dst;
        raw = await collect(
          await ctx.tc.getBlob(repo.registry, repo.repository, `sha256:${b.blobId}`, { range: [b.ciOffset, b.ciOffset + len - 1] }),
        );
        if (raw.length !== len) throw new FerryError('DATA_LOSS', `got ${raw.length} of ${len} bytes`);
      }
      const header = raw.subarray(b.ciCompressedSize);
      const h = decodeBlobMetaHeader(header);
      if (h.ciOffset !== b.ciOffset || h.ciCompressedSize !== b.ciCompressedSize)
        throw new FerryError('DATA_LOSS', 'blob meta header does not match the blob table');
      const stored = raw.subarray(0, b.ciCompressedSize);
      const ci = b.ciCompressor === 'none' ? stored : getCodec(b.ciCompressor).decompress(stored, b.ciUncompressedSize);
      out.push({ name: `${b.blobId}.blob.meta`, data: blobMetaCacheFile(ci, header) });
    } catch (err) {
      ctx.log.warn({ blob: b.blobId, err: (err as Error).message }, 'blob meta not shipped in the bootstrap layer');
    }
  }
  return out;
}

/** Converts one source layer (or takes it from the cache); returns the per-layer bootstrap and the blob layer. */
async function convertLayer(
  ctx: Ctx,
  layer: Descriptor,
  diffId: string | undefined,
  platform: string | undefined,
): Promise<{ bootstrap: Buffer; desc?: Descriptor; converted: ConvertedLayer }> {
  const { src, dst, sc, tc, opts, log } = ctx;
  const key = layerCacheKey(layer.digest, ctx.build);
  const progress = (ev: Omit<ProgressEvent, 'id'>): void => {
    opts.onProgress?.({ id: layer.digest, ...(platform ? { platform } : {}), ...ev });
  };
  const blobDesc = (digest: string, size: number): Descriptor => ({
    mediaType: MediaType.NYDUS_BLOB,
    digest,
    size,
    annotations: { [NydusAnnotation.BLOB]: 'true' },
  });
  const hit = await opts.cache?.get(key);
  if (hit) {
    let present = hit.blobDigest === '';
    if (!present && opts.backend) {
      present = await stat(join(opts.backend.dir, hit.blobId)).then(
        () => true,
        () => false,
      );
    } else if (!present) {
      present = (await tc.headBlob(dst.registry, dst.repository, hit.blobDigest)) !== undefined;
      if (!present && hit.registry === dst.registry && hit.repository !== dst.repository) {
        present = await tc.mountBlob(dst.registry, dst.repository, hit.blobDigest, hit.repository).catch(() => false);
      }
    }
    if (present) {
      log.debug({ layer: layer.digest, blob: hit.blobDigest }, 'layer conversion cache hit');
      progress({ phase: 'cached', bytes: layer.size, total: layer.size });
      const converted: ConvertedLayer = {
        sourceDigest: layer.digest,
        blobDigest: hit.blobDigest,
        blobSize: hit.blobSize,
        tarBytes: 0,
        cached: true,
      };
      return hit.blobDigest
        ? { bootstrap: hit.bootstrap, desc: blobDesc(hit.blobDigest, hit.blobSize), converted }
        : { bootstrap: hit.bootstrap, converted };
    }
  }
  throwIfAborted(opts.signal);
  const work = await mkdtemp(join(ctx.work, 'layer-'));
  const streams: Array<{ destroy(): void }> = [];
  try {
    progress({ phase: 'start', bytes: 0, total: layer.size });
    const getOpts: { signal?: AbortSignal } = {};
    if (opts.signal) getOpts.signal = opts.signal;
    const raw = await sc.getBlob(src.registry, src.repository, layer.digest, getOpts);
    let seen = 0;
    const rawMeter = new Meter({
      onBytes: (n) => {
        seen += n;
        progress({ phase: 'bytes', bytes: seen, total: layer.size });
      },
    });
    raw.on('error', (e) => rawMeter.destroy(e));
    raw.pipe(rawMeter);
    const tar = decompressed(rawMeter);
    const tarMeter = new Meter({ hash: diffId !== undefined });
    tar.on('error', (e) => tarMeter.destroy(e));
    tar.pipe(tarMeter);
    // Errors reach the builder through tarMeter; these listeners only keep a stream that fails after
    // the builder gave up from crashing the process. Everything is torn down in `finally`.
    for (const s of [raw, rawMeter, tar, tarMeter]) s.on('error', () => {});
    streams.push(raw, rawMeter, tar, tarMeter);
    const buildOpts: Parameters<typeof buildLayer>[0] = {
      source: tarMeter,
      blobDir: work,
      workDir: work,
      fsVersion: ctx.build.fsVersion,
      compressor: ctx.build.compressor as Compressor,
      chunkSize: ctx.build.chunkSize,
      digester: ctx.build.digester as 'sha256' | 'blake3',
    };
    if (ctx.build.compressLevel !== undefined) buildOpts.compressLevel = ctx.build.compressLevel;
    if (ctx.chunkDict) buildOpts.chunkDict = ctx.chunkDict;
    if (ctx.chunkDictTables) buildOpts.chunkDictTables = ctx.chunkDictTables;
    if (opts.prefetchPatterns?.length) buildOpts.prefetchPatterns = opts.prefetchPatterns;
    const built = await buildLayer(buildOpts);
    if (diffId !== undefined) {
      const got = tarMeter.digest();
      if (got !== diffId) throw new DigestMismatchError(diffId, got, `uncompressed layer ${layer.digest} (config diff_id)`);
    }
    ctx.stats.uncompressed += tarMeter.bytes;
    let desc: Descriptor | undefined;
    let blobDigest = '';
    if (built.blobId) {
      blobDigest = `sha256:${built.blobId}`;
      progress({ phase: 'push' });
      if (opts.backend) {
        await mkdir(opts.backend.dir, { recursive: true });
        await copyFile(built.blobPath, join(opts.backend.dir, built.blobId));
      } else {
        await tc.pushBlob(dst.registry, dst.repository, blobDigest, built.blobSize, () => createReadStream(built.blobPath));
      }
      desc = blobDesc(blobDigest, built.blobSize);
    }
    await opts.cache?.put({
      key,
      sourceDigest: layer.digest,
      blobDigest,
      blobId: built.blobId,
      blobSize: built.blobSize,
      uncompressedSize: built.uncompressedSize,
      chunkCount: built.chunkCount,
      bootstrap: built.bootstrap,
      registry: dst.registry,
      repository: dst.repository,
    });
    progress({ phase: 'done' });
    log.debug({ layer: layer.digest, blob: blobDigest, tarBytes: tarMeter.bytes, blobSize: built.blobSize }, 'layer converted');
    const converted: ConvertedLayer = {
      sourceDigest: layer.digest,
      blobDigest,
      blobSize: built.blobSize,
      tarBytes: tarMeter.bytes,
      cached: false,
    };
    return desc ? { bootstrap: built.bootstrap, desc, converted } : { bootstrap: built.bootstrap, converted };
  } finally {
    for (const s of streams) s.destroy();
    await rm(work, { recursive: true, force: true });
  }
}

async function pushJson(ctx: Ctx, value: unknown, mediaType: string): Promise<Descriptor> {
  const data = Buffer.from(JSON.stringify(value));
  const d = await ctx.tc.pushBuffer(ctx.dst.registry, ctx.dst.repository, data, mediaType);
  ctx.stats.targetSize += data.length;
  return d;
}

/** Converts one image manifest; pushes its blobs, config and the manifest by digest. */
async function convertManifest(ctx: Ctx, srcDesc: Descriptor, body: Buffer, platform?: string): Promise<Descriptor & { body: Buffer }> {
  const { src, sc, opts } = ctx;
  const man = parseImageManifest(body, srcDesc.mediaType, `${formatReference(src)}: manifest ${srcDesc.digest}`);
  if (isNydusManifest(man))
    throw new FerryError('FAILED_PRECONDITION', `${formatReference(src)}: manifest ${srcDesc.digest} is already a Nydus image`);
  refuseEncryptedLayers(man, `${formatReference(src)}: manifest ${srcDesc.digest}`);
  const configBuf = await sc.getBlobBuffer(src.registry, src.repository, man.config.digest, MAX_CONFIG_BYTES);
  const config = parseImageConfig(configBuf, `${formatReference(src)}: config ${man.config.digest}`);
  ctx.stats.sourceSize += body.length + configBuf.length + man.layers.reduce((a, l) => a + l.size, 0);
  const diffIds = config.rootfs.diff_ids;
  if (diffIds.length !== man.layers.length) {
    throw new FerryError(
      'INVALID_ARGUMENT',
      `${formatReference(src)}: config has ${diffIds.length} diff_ids for ${man.layers.length} layers`,
    );
  }
  // A layer repeated in one image (Docker's empty layer, say) is converted once.
  const unique = [...new Map(man.layers.map((l, i) => [l.digest, i])).values()].sort((a, b) => a - b);
  const converted = await mapLimit(unique, opts.layerConcurrency ?? 2, (i) => convertLayer(ctx, man.layers[i]!, diffIds[i], platform));
  const byDigest = new Map(unique.map((i, k) => [man.layers[i]!.digest, converted[k]!]));
  const results = man.layers.map((l) => byDigest.get(l.digest)!);
  ctx.stats.layers.push(...converted.map((r) => r.converted));
  throwIfAborted(opts.signal);
  const mergeOpts: Parameters<typeof mergeBootstraps>[1] = { fsVersion: ctx.build.fsVersion, omitChunkTable: opts.chunkTable !== true };
  if (opts.prefetchPatterns?.length) mergeOpts.prefetchPatterns = opts.prefetchPatterns;
  const merged = mergeBootstraps(
    results.map((r) => r.bootstrap),
    mergeOpts,
  );
  const produced = new Set(results.flatMap((r) => (r.converted.blobDigest ? [r.converted.blobDigest] : [])));
  const extraLayers = ctx.dict ? await dictBlobLayers(ctx, merged, produced) : [];
  const boot = await packBootstrapLayer(merged, await blobMetaFiles(ctx, merged));
  const bootDesc: Descriptor = {
    mediaType: MediaType.OCI_LAYER_GZIP,
    digest: sha256Digest(boot.blob),
    size: boot.blob.length,
    annotations: { [NydusAnnotation.BOOTSTRAP]: 'true', [NydusAnnotation.FS_VERSION]: String(ctx.build.fsVersion) },
  };
  opts.onProgress?.({ id: 'bootstrap', ...(platform ? { platform } : {}), phase: 'push', bytes: 0, total: bootDesc.size });
  await ctx.tc.pushBlob(ctx.dst.registry, ctx.dst.repository, bootDesc.digest, bootDesc.size, boot.blob);
  opts.onProgress?.({ id: 'bootstrap', ...(platform ? { platform } : {}), phase: 'done', bytes: bootDesc.size, total: bootDesc.size });
  const blobLayers = opts.backend ? [] : [...results.flatMap((r) => (r.desc ? [r.desc] : [])), ...extraLayers];
  const layers = [...blobLayers, bootDesc];
  ctx.stats.targetSize += layers.reduce((a, l) => a + l.size, 0);
  const newConfig: ImageConfig = {
    ...config,
    rootfs: { type: 'layers', diff_ids: [...blobLayers.map((l) => l.digest), boot.diffId] },
    history: [
      ...(config.history ?? []),
      { created: new Date().toISOString(), created_by: 'Nydus Converter', comment: 'Nydus Bootstrap Layer' },
    ],
  };
  const configDesc = await pushJson(ctx, newConfig, opts.mergePlatform ? NYDUS_CONFIG_MEDIA_TYPE : MediaType.OCI_CONFIG);
  const annotations: Record<string, string> = {
    [ConvertAnnotation.SOURCE_DIGEST]: srcDesc.digest,
    [ConvertAnnotation.SOURCE_REFERENCE]: formatReference(src),
    [NydusAnnotation.FS_VERSION]: String(ctx.build.fsVersion),
    [ConvertAnnotation.BUILDER_VERSION]: BUILDER_VERSION,
    ...(opts.annotations ?? {}),
  };
  if (opts.harborAnnotation) {
    annotations[ConvertAnnotation.HARBOR_DRIVER_NAME] = 'nydus';
    annotations[ConvertAnnotation.HARBOR_SOURCE_DIGEST] = srcDesc.digest;
  }
  const manifest: ImageManifest = {
    schemaVersion: 2,
    mediaType: MediaType.OCI_MANIFEST,
    config: configDesc,
    layers,
    annotations,
  };
  if (opts.withReferrer) manifest.subject = { mediaType: srcDesc.mediaType, digest: srcDesc.digest, size: srcDesc.size };
  const data = Buffer.from(JSON.stringify(manifest));
  // with a subject: findable as a referrer of the source also on registries without the referrers API (tag schema)
  const digest = manifest.subject
    ? (await pushReferrer(ctx.tc, ctx.dst, data, MediaType.OCI_MANIFEST, manifest.subject.digest)).digest
    : await ctx.tc.putManifest(withDigest(ctx.dst, sha256Digest(data)), data, MediaType.OCI_MANIFEST);
  ctx.stats.targetSize += data.length;
  return { mediaType: MediaType.OCI_MANIFEST, digest, size: data.length, body: data };
}

/** Makes a source manifest (and its blobs) available in the target repository (merge-platform). */
async function copyManifest(ctx: Ctx, d: Descriptor, body: Buffer): Promise<void> {
  const { src, dst, tc } = ctx;
  const same = src.registry === dst.registry && src.repository === dst.repository;
  if (!same) {
    const man = parseImageManifest(body, d.mediaType, `${formatReference(src)}: manifest ${d.digest}`);
    for (const b of [man.config, ...man.layers]) await copyBlob(ctx, b, src.repository);
  }
  if (!same || !(await tc.headManifest(withDigest(dst, d.digest)))) {
    await tc.putManifest(withDigest(dst, d.digest), body, d.mediaType);
  }
}

function platformOfConfig(config: ImageConfig | undefined): Platform | undefined {
  if (!config?.os || !config.architecture) return undefined;
  const p: Platform = { os: config.os, architecture: config.architecture };
  if (config.variant) p.variant = config.variant;
  return p;
}

/**
 * Adds a Nydus image to the conversion's chunk dictionary: its bootstrap, blob tables and where its
 * blobs are. Refused (INVALID_ARGUMENT) when its chunk size or digester is not the build's.
 */
async function addChunkDict(ctx: Ctx, refText: string): Promise<void> {
  const ref = parseReference(refText);
  const dict = await fetchNydusBootstrap(ctx.sc, ref);
  const bs = openBootstrap(dict.bootstrap);
  const chunkSize = ctx.build.chunkSize ?? DEFAULT_CONVERT_CHUNK_SIZE;
  if (bs.chunkSize !== chunkSize || bs.digester !== ctx.build.digester)
    throw new FerryError(
      'INVALID_ARGUMENT',
      `chunk dictionary ${refText}: chunk size 0x${bs.chunkSize.toString(16)} / ${bs.digester} digests, the conversion uses 0x${chunkSize.toString(16)} / ${ctx.build.digester}`,
    );
  const tables = await nydusBlobTables(ctx.sc, ref, dict.bootstrap, dict.blobMeta);
  for (const [id, t] of tables ?? []) {
    ctx.chunkDictTables ??= new Map();
    ctx.chunkDictTables.set(id, t);
  }
  (ctx.chunkDict ??= []).push(dict.bootstrap);
  ctx.dict ??= { layers: new Map() };
  for (const l of dict.manifest.layers) if (!ctx.dict.layers.has(l.digest)) ctx.dict.layers.set(l.digest, { ref, desc: l });
}

/** Converts `source` into a Nydus image at `target`. */
export async function convertImage(opts: ConvertOptions): Promise<ConvertResult> {
  const t0 = Date.now();
  const src = typeof opts.source === 'string' ? parseReference(opts.source) : opts.source;
  const dst = typeof opts.target === 'string' ? parseReference(opts.target) : opts.target;
  if (dst.tag === undefined) throw new FerryError('INVALID_ARGUMENT', `target ${formatReference(dst)} needs a tag`);
  const sc = opts.sourceClient ?? new RegistryClient();
  const tc = opts.targetClient ?? sc;
  const log = (opts.log ?? silentLogger()).child({ source: formatReference(src), target: formatReference(dst) });
  const build: LayerBuildOptions = {
    fsVersion: opts.fsVersion ?? 6,
    compressor: opts.compressor ?? 'zstd',
    chunkSize: opts.chunkSize ?? DEFAULT_CONVERT_CHUNK_SIZE,
    digester: opts.digester ?? 'blake3',
  };
  const level = opts.compressLevel ?? (build.compressor === 'zstd' ? DEFAULT_CONVERT_ZSTD_LEVEL : undefined);
  if (level !== undefined) build.compressLevel = level;
  if (opts.prefetchPatterns?.length) build.prefetchPatterns = opts.prefetchPatterns;
  if (opts.workDir) await mkdir(opts.workDir, { recursive: true });
  const work = await mkdtemp(join(opts.workDir ?? tmpdir(), 'ferry-convert-'));
  const ctx: Ctx = { src, dst, sc, tc, build, opts, log, work, stats: { sourceSize: 0, targetSize: 0, uncompressed: 0, layers: [] } };
  try {
    if (opts.chunkDictRef) await addChunkDict(ctx, opts.chunkDictRef);
    else
      for (const ref of opts.chunkDictRefs ?? [])
        await addChunkDict(ctx, ref).catch((err: unknown) => {
          log.warn({ dict: ref, err: (err as Error).message }, 'chunk dictionary image left out');
        });
    if (ctx.chunkDict?.length)
      build.chunkDict = ctx.chunkDict.length === 1 ? sha256Digest(ctx.chunkDict[0]!) : sha256Digest(Buffer.concat(ctx.chunkDict));
    log.info('conversion started');
    const top = await sc.getManifest(src, opts.signal ? { signal: opts.signal } : {});
    const topDesc: Descriptor = { mediaType: top.mediaType, digest: top.digest, size: top.body.length };
    const parsed = parseManifestDocument(top.body, top.mediaType, `${formatReference(src)}: manifest ${top.digest}`);
    const wanted = (opts.platforms ?? []).map(parsePlatform);
    const manifests: ConvertResult['manifests'] = [];
    // As acceld ≥ PR #369: the index carries the source annotations too.
    const indexAnnotations = (sourceDigest: string): Record<string, string> => ({
      [ConvertAnnotation.SOURCE_DIGEST]: sourceDigest,
      [ConvertAnnotation.SOURCE_REFERENCE]: formatReference(src),
      [NydusAnnotation.FS_VERSION]: String(build.fsVersion),
      [ConvertAnnotation.BUILDER_VERSION]: BUILDER_VERSION,
      ...(opts.annotations ?? {}),
      ...(opts.harborAnnotation
        ? { [ConvertAnnotation.HARBOR_DRIVER_NAME]: 'nydus', [ConvertAnnotation.HARBOR_SOURCE_DIGEST]: sourceDigest }
        : {}),
    });
    let finalBody: Buffer;
    let finalType: string;
    if (parsed.kind === 'index') {
      const idx = parsed.index;
      ctx.stats.sourceSize += top.body.length;
      const children = idx.manifests.filter((d) => {
        if (!d.platform || d.platform.os === 'unknown' || d.platform.architecture === 'unknown') return false; // attestations
        if (isNydusEntry(d)) return false;
        return wanted.length === 0 || wanted.some((w) => platformMatches(d.platform, w));
      });
      if (children.length === 0)
        throw new FerryError(
          'NOT_FOUND',
          `${formatReference(src)}: no manifest for platform(s) ${wanted.map(formatPlatform).join(', ') || 'any'}`,
        );
      const entries: Descriptor[] = [];
      for (const child of children) {
        throwIfAborted(opts.signal);
        const cm = await sc.getManifest(withDigest(src, child.digest));
        const p = formatPlatform(child.platform!);
        const { body: _b, ...nd } = await convertManifest(
          ctx,
          { mediaType: cm.mediaType, digest: cm.digest, size: cm.body.length },
          cm.body,
          p,
        );
        manifests.push({ platform: p, digest: nd.digest, sourceDigest: child.digest });
        if (opts.mergePlatform) {
          await copyManifest(ctx, child, cm.body);
          entries.push(child);
        }
        entries.push(
          opts.mergePlatform
            ? {
                ...nd,
                platform: { ...child.platform!, 'os.features': [NydusAnnotation.PLATFORM_FEATURE] },
                artifactType: NYDUS_MANIFEST_ARTIFACT_TYPE,
              }
            : { ...nd, platform: child.platform! },
        );
      }
      const index: ImageIndex = {
        schemaVersion: 2,
        mediaType: MediaType.OCI_INDEX,
        manifests: entries,
        annotations: indexAnnotations(top.digest),
      };
      finalBody = Buffer.from(JSON.stringify(index));
      finalType = MediaType.OCI_INDEX;
    } else {
      const { body: ndBody, ...nd } = await convertManifest(ctx, topDesc, top.body);
      manifests.push({ digest: nd.digest, sourceDigest: top.digest });
      if (opts.mergePlatform) {
        const man = parsed.manifest;
        const cfgBuf = await sc.getBlobBuffer(src.registry, src.repository, man.config.digest, MAX_CONFIG_BYTES);
        const cfg = parseImageConfig(cfgBuf, `${formatReference(src)}: config ${man.config.digest}`);
        const platform = platformOfConfig(cfg) ?? { os: 'linux', architecture: 'amd64' };
        await copyManifest(ctx, topDesc, top.body);
        const index: ImageIndex = {
          schemaVersion: 2,
          mediaType: MediaType.OCI_INDEX,
          annotations: indexAnnotations(top.digest),
          manifests: [
            { ...topDesc, platform },
            {
              ...nd,
              platform: { ...platform, 'os.features': [NydusAnnotation.PLATFORM_FEATURE] },
              artifactType: NYDUS_MANIFEST_ARTIFACT_TYPE,
            },
          ],
        };
        finalBody = Buffer.from(JSON.stringify(index));
        finalType = MediaType.OCI_INDEX;
      } else {
        finalBody = ndBody;
        finalType = MediaType.OCI_MANIFEST;
      }
    }
    throwIfAborted(opts.signal);
    // Before the tag: a failure here leaves nothing tagged, and the next attempt carries them again.
    const carried = await carrySupplyChain({
      sourceClient: sc,
      targetClient: tc,
      source: src,
      target: dst,
      sourceDigest: top.digest,
      targetDigest: sha256Digest(finalBody),
      log,
    });
    const attestations = opts.signKey
      ? await attestConversion({
          client: tc,
          target: dst,
          source: formatReference(src),
          manifests,
          key: opts.signKey,
          tool: BUILDER_VERSION,
          log,
        })
      : [];
    // The tag goes last: nothing is tagged before every blob and child manifest is in.
    const targetDigest = await tc.putManifest(dst, finalBody, finalType);
    // A remote cache record goes up after the target: a failure there costs only future cache hits.
    await opts.cache?.flush?.().catch((err: unknown) => log.warn({ err: (err as Error).message }, 'could not update the conversion cache'));
    if (finalType === MediaType.OCI_INDEX) ctx.stats.targetSize += finalBody.length;
    const res: ConvertResult = {
      source: formatReference(src),
      sourceDigest: top.digest,
      target: formatReference(dst),
      targetDigest,
      mediaType: finalType,
      sourceSize: ctx.stats.sourceSize,
      targetSize: ctx.stats.targetSize,
      uncompressedBytes: ctx.stats.uncompressed,
      layers: ctx.stats.layers,
      manifests,
      carried,
      attestations,
      durationMs: Date.now() - t0,
    };
    log.info(
      { digest: targetDigest, durationMs: res.durationMs, layers: res.layers.length, cached: res.layers.filter((l) => l.cached).length },
      'conversion finished',
    );
    return res;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
