/**
 * @module convert/estargz/image
 * OCI/Docker image → eStargz image, registry to registry (the role of acceld's estargz driver and
 * `ctr-remote image convert --estargz --oci`). Every layer is rewritten as eStargz (layer.ts); the
 * config keeps everything but `rootfs.diff_ids`, which become the digests of the new uncompressed
 * tars (they include the landmark and TOC entries); the manifest is OCI with upstream's layer
 * annotations and Harbor's acceleration annotations naming the driver and the source digest.
 * Indexes are converted per platform into one index. Push order: blobs → child manifests by digest
 * → the tag last.
 */
import { mkdtemp, mkdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FerryError, sha256Digest } from '../../core/index.js';
import {
  HarborAnnotation,
  MediaType,
  parseImageConfig,
  parseImageManifest,
  parseManifestDocument,
  platformMatches,
  type Descriptor,
  type ImageConfig,
  type ImageIndex,
  type ImageManifest,
} from '../../oci/index.js';
import { EstargzAnnotation } from '../../format/estargz/index.js';
import { silentLogger, type Logger } from '../../observe/index.js';
import {
  RegistryClient,
  formatPlatform,
  formatReference,
  parsePlatform,
  parseReference,
  withDigest,
  type ImageReference,
} from '../../remote/index.js';
import { MAX_CONFIG_BYTES, isNydusManifest, mapLimit, refuseEncryptedLayers, throwIfAborted, type ConvertResult } from '../convert.js';
import { carrySupplyChain } from '../supply-chain.js';
import { convertLayerToEstargz, type EstargzLayerOptions } from './layer.js';
import { tracedFiles } from './trace.js';

export const ESTARGZ_DRIVER_NAME = 'estargz';

export interface EstargzConvertOptions {
  source: string | ImageReference;
  target: string | ImageReference;
  sourceClient?: RegistryClient;
  targetClient?: RegistryClient;
  /** files put first, behind `.prefetch.landmark` (paths in the image) */
  prioritizedFiles?: string[];
  /**
   * Without prioritizedFiles: take them from the newest prefetch trace of the source's Nydus
   * conversion when there is one (trace.ts). Default true.
   */
  prefetchFromTrace?: boolean;
  /** largest payload per gzip member (default 4 MiB) */
  chunkSize?: number;
  /** gzip level (default 9, as upstream) */
  compressionLevel?: number;
  platforms?: string[];
  annotations?: Record<string, string>;
  workDir?: string;
  layerConcurrency?: number;
  log?: Logger;
  signal?: AbortSignal;
}

interface Ctx {
  o: EstargzConvertOptions;
  src: ImageReference;
  dst: ImageReference;
  sc: RegistryClient;
  tc: RegistryClient;
  work: string;
  log: Logger;
  stats: { sourceSize: number; targetSize: number; uncompressed: number; layers: ConvertResult['layers'] };
}

function refuseEstargz(man: ImageManifest, where: string): void {
  if (isNydusManifest(man)) throw new FerryError('FAILED_PRECONDITION', `${where} is a Nydus image`);
  if (man.layers.length > 0 && man.layers.every((l) => l.annotations?.[EstargzAnnotation.TOC_DIGEST]))
    throw new FerryError('FAILED_PRECONDITION', `${where} is already eStargz (every layer has ${EstargzAnnotation.TOC_DIGEST})`);
}

async function pushJson(ctx: Ctx, value: unknown, mediaType: string): Promise<Descriptor> {
  const data = Buffer.from(JSON.stringify(value));
  const d = await ctx.tc.pushBuffer(ctx.dst.registry, ctx.dst.repository, data, mediaType);
  ctx.stats.targetSize += data.length;
  return d;
}

function annotationsFor(ctx: Ctx, sourceDigest: string): Record<string, string> {
  return {
    [HarborAnnotation.ACCELERATION_DRIVER]: ESTARGZ_DRIVER_NAME,
    [HarborAnnotation.ACCELERATION_SOURCE_DIGEST]: sourceDigest,
    ...(ctx.o.annotations ?? {}),
  };
}

/** Converts one image manifest; pushes its layers, config and the manifest by digest. */
async function convertManifest(ctx: Ctx, srcDesc: Descriptor, body: Buffer): Promise<Descriptor & { body: Buffer }> {
  const { src, sc } = ctx;
  const where = `${formatReference(src)}: manifest ${srcDesc.digest}`;
  const man = parseImageManifest(body, srcDesc.mediaType, where);
  refuseEstargz(man, where);
  refuseEncryptedLayers(man, where);
  const configBuf = await sc.getBlobBuffer(src.registry, src.repository, man.config.digest, MAX_CONFIG_BYTES);
  const config = parseImageConfig(configBuf, `${formatReference(src)}: config ${man.config.digest}`);
  ctx.stats.sourceSize += body.length + configBuf.length + man.layers.reduce((a, l) => a + l.size, 0);
  const diffIds = config.rootfs.diff_ids;
  if (diffIds.length !== man.layers.length)
    throw new FerryError('INVALID_ARGUMENT', `${where}: config has ${diffIds.length} diff_ids for ${man.layers.length} layers`);
  const unique = [...new Map(man.layers.map((l, i) => [l.digest, i])).values()].sort((a, b) => a - b);
  const prioritized = ctx.o.prioritizedFiles?.length
    ? ctx.o.prioritizedFiles
    : ctx.o.prefetchFromTrace === false
      ? []
      : ((await tracedFiles(sc, src, srcDesc.digest, ctx.log)) ?? []);
  const converted = await mapLimit(unique, ctx.o.layerConcurrency ?? 2, async (i) => {
    throwIfAborted(ctx.o.signal);
    const work = await mkdtemp(join(ctx.work, 'layer-'));
    try {
      const lo: EstargzLayerOptions = { sc, tc: ctx.tc, src, dst: ctx.dst, work, prioritized };
      if (ctx.o.chunkSize) lo.chunkSize = ctx.o.chunkSize;
      if (ctx.o.compressionLevel !== undefined) lo.level = ctx.o.compressionLevel;
      if (ctx.o.signal) lo.signal = ctx.o.signal;
      const r = await convertLayerToEstargz(lo, man.layers[i]!, diffIds[i]);
      ctx.stats.uncompressed += r.tarBytes;
      ctx.stats.layers.push({
        sourceDigest: man.layers[i]!.digest,
        blobDigest: r.desc.digest,
        blobSize: r.desc.size,
        tarBytes: r.tarBytes,
        cached: false,
      });
      if (r.missed.length) ctx.log.info({ layer: man.layers[i]!.digest, missed: r.missed.length }, 'prioritized files not in this layer');
      return r;
    } finally {
      await rm(work, { recursive: true, force: true });
    }
  });
  const byDigest = new Map(unique.map((i, k) => [man.layers[i]!.digest, converted[k]!]));
  const results = man.layers.map((l) => byDigest.get(l.digest)!);
  const layers = results.map((r) => r.desc);
  ctx.stats.targetSize += layers.reduce((a, l) => a + l.size, 0);
  const newConfig: ImageConfig = { ...config, rootfs: { type: 'layers', diff_ids: results.map((r) => r.diffId) } };
  const configDesc = await pushJson(ctx, newConfig, MediaType.OCI_CONFIG);
  const manifest: ImageManifest = {
    schemaVersion: 2,
    mediaType: MediaType.OCI_MANIFEST,
    config: configDesc,
    layers,
    annotations: annotationsFor(ctx, srcDesc.digest),
  };
  const data = Buffer.from(JSON.stringify(manifest));
  const digest = await ctx.tc.putManifest(withDigest(ctx.dst, sha256Digest(data)), data, MediaType.OCI_MANIFEST);
  ctx.stats.targetSize += data.length;
  return { mediaType: MediaType.OCI_MANIFEST, digest, size: data.length, body: data };
}

/** Converts `source` into an eStargz image at `target`. */
export async function convertImageToEstargz(o: EstargzConvertOptions): Promise<ConvertResult> {
  const t0 = Date.now();
  const src = typeof o.source === 'string' ? parseReference(o.source) : o.source;
  const dst = typeof o.target === 'string' ? parseReference(o.target) : o.target;
  if (dst.tag === undefined) throw new FerryError('INVALID_ARGUMENT', `target ${formatReference(dst)} needs a tag`);
  const sc = o.sourceClient ?? new RegistryClient();
  const tc = o.targetClient ?? sc;
  const log = (o.log ?? silentLogger()).child({ source: formatReference(src), target: formatReference(dst), format: 'estargz' });
  if (o.workDir) await mkdir(o.workDir, { recursive: true });
  const work = await mkdtemp(join(o.workDir ?? tmpdir(), 'ferry-convert-'));
  const ctx: Ctx = { o, src, dst, sc, tc, work, log, stats: { sourceSize: 0, targetSize: 0, uncompressed: 0, layers: [] } };
  try {
    log.info('conversion started');
    const top = await sc.getManifest(src, o.signal ? { signal: o.signal } : {});
    const parsed = parseManifestDocument(top.body, top.mediaType, `${formatReference(src)}: manifest ${top.digest}`);
    const manifests: ConvertResult['manifests'] = [];
    let finalBody: Buffer;
    let finalType: string;
    if (parsed.kind === 'index') {
      const wanted = (o.platforms ?? []).map(parsePlatform);
      ctx.stats.sourceSize += top.body.length;
      const children = parsed.index.manifests.filter(
        (d) =>
          d.platform &&
          d.platform.os !== 'unknown' &&
          d.platform.architecture !== 'unknown' &&
          (wanted.length === 0 || wanted.some((w) => platformMatches(d.platform, w))),
      );
      if (children.length === 0)
        throw new FerryError(
          'NOT_FOUND',
          `${formatReference(src)}: no manifest for platform(s) ${wanted.map(formatPlatform).join(', ') || 'any'}`,
        );
      const entries: Descriptor[] = [];
      for (const child of children) {
        throwIfAborted(o.signal);
        const cm = await sc.getManifest(withDigest(src, child.digest));
        const { body: _b, ...nd } = await convertManifest(
          ctx,
          { mediaType: cm.mediaType, digest: cm.digest, size: cm.body.length },
          cm.body,
        );
        manifests.push({ platform: formatPlatform(child.platform!), digest: nd.digest, sourceDigest: child.digest });
        entries.push({ ...nd, platform: child.platform! });
      }
      const index: ImageIndex = {
        schemaVersion: 2,
        mediaType: MediaType.OCI_INDEX,
        manifests: entries,
        annotations: annotationsFor(ctx, top.digest),
      };
      finalBody = Buffer.from(JSON.stringify(index));
      finalType = MediaType.OCI_INDEX;
      ctx.stats.targetSize += finalBody.length;
    } else {
      const { body, ...nd } = await convertManifest(ctx, { mediaType: top.mediaType, digest: top.digest, size: top.body.length }, top.body);
      manifests.push({ digest: nd.digest, sourceDigest: top.digest });
      finalBody = body;
      finalType = MediaType.OCI_MANIFEST;
    }
    throwIfAborted(o.signal);
    const carried = await carrySupplyChain({
      sourceClient: sc,
      targetClient: tc,
      source: src,
      target: dst,
      sourceDigest: top.digest,
      targetDigest: sha256Digest(finalBody),
      log,
    });
    const targetDigest = await tc.putManifest(dst, finalBody, finalType);
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
      // conversion attestations are of Nydus conversions (the snapshotter's policy runs only those)
      attestations: [],
      durationMs: Date.now() - t0,
    };
    log.info({ digest: targetDigest, durationMs: res.durationMs, layers: res.layers.length }, 'conversion finished');
    return res;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
