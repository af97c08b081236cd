/**
 * @module accel/drivers
 * The conversion a task runs, by `converter.driver.type`: `nydus` (convert/convert.ts, with the
 * layer cache and `rules[].cache_tag`) or `estargz` (convert/estargz: prioritized files from
 * `prefetch_patterns`, the Ferry keys `estargz_chunk_size` / `estargz_compression_level`).
 */
import type { KeyObject } from 'node:crypto';
import type { AccelConfig, AccelDriverOptions } from '../config/accel.js';
import {
  convertImage,
  convertImageToEstargz,
  RemoteLayerCache,
  TieredLayerCache,
  type ConvertOptions,
  type ConvertResult,
  type EstargzConvertOptions,
  type LayerCache,
} from '../convert/index.js';
import { NydusAnnotation } from '../oci/index.js';
import type { Logger } from '../observe/index.js';
import type { ImageReference, RegistryClient } from '../remote/index.js';

export interface DriverRun {
  driver: AccelDriverOptions;
  config: AccelConfig;
  /** the service's local layer cache (nydus) */
  cache: LayerCache;
  /** the source pinned to the digest the attempt converts */
  source: ImageReference;
  target: ImageReference;
  /** the source as the task names it (tag, not digest) */
  sourceRef: string;
  client: RegistryClient;
  log: Logger;
  signal: AbortSignal;
  workDir: string;
  /** converter.attestation's key: Nydus conversions are signed (eStargz ones are not: see docs/security.md) */
  signKey?: KeyObject;
  /** the project's automatic chunk dictionary (nydus; used when no chunk_dict_ref is set) */
  chunkDictRefs?: string[];
}

function estargzOptions(r: DriverRun): EstargzConvertOptions {
  const d = r.driver;
  const eo: EstargzConvertOptions = {
    source: r.source,
    target: r.target,
    sourceClient: r.client,
    targetClient: r.client,
    log: r.log,
    signal: r.signal,
    workDir: r.workDir,
  };
  if (d.platforms.length) eo.platforms = d.platforms;
  if (d.prefetchPatterns) eo.prioritizedFiles = d.prefetchPatterns;
  if (d.estargzChunkSize) eo.chunkSize = d.estargzChunkSize;
  if (d.estargzCompressionLevel !== undefined) eo.compressionLevel = d.estargzCompressionLevel;
  return eo;
}

function nydusOptions(r: DriverRun): ConvertOptions {
  const d = r.driver;
  // rules[].cache_tag: the repository's cache image (shared by every converter that can pull it),
  // behind the local SQLite cache.
  let cache: LayerCache = r.cache;
  if (d.cacheTag) {
    const remote = new RemoteLayerCache({
      client: r.client,
      repo: r.target,
      tag: d.cacheTag,
      maxRecords: r.config.provider.cache_size ?? 200,
      log: r.log,
      ...(r.config.provider.cache_version !== undefined ? { version: r.config.provider.cache_version } : {}),
    });
    cache = new TieredLayerCache([r.cache, remote]);
  }
  const opts: ConvertOptions = {
    source: r.source,
    target: r.target,
    sourceClient: r.client,
    targetClient: r.client,
    fsVersion: d.fsVersion,
    compressor: d.compressor,
    chunkSize: d.chunkSize,
    digester: d.digester,
    chunkTable: d.chunkTable,
    mergePlatform: d.mergeManifest,
    withReferrer: d.withReferrer,
    harborAnnotation: d.harborAnnotation,
    cache,
    log: r.log,
    signal: r.signal,
    workDir: r.workDir,
    annotations: { [NydusAnnotation.SOURCE_REFERENCE]: r.sourceRef },
  };
  if (d.platforms.length) opts.platforms = d.platforms;
  if (d.chunkDictRef) opts.chunkDictRef = d.chunkDictRef;
  else if (r.chunkDictRefs?.length) opts.chunkDictRefs = r.chunkDictRefs;
  if (d.prefetchPatterns) opts.prefetchPatterns = d.prefetchPatterns;
  if (d.backend) opts.backend = d.backend;
  if (r.signKey) opts.signKey = r.signKey;
  return opts;
}

/** Runs the configured driver's conversion. */
export function convertWithDriver(r: DriverRun): Promise<ConvertResult> {
  return r.driver.format === 'estargz' ? convertImageToEstargz(estargzOptions(r)) : convertImage(nydusOptions(r));
}
