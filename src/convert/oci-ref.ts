/**
 * @module convert/oci-ref
 * OCI-ref (upstream Nydus' zran) images: lazy loading of an ordinary gzip OCI image without a copy
 * of its data. Each gzip layer is read once to record inflate checkpoints (format/zran) and to find
 * where every file chunk sits in the layer's tar; a RAFS v6 bootstrap is built from the same tar with
 * chunks stored raw into a blob that is never pushed (its chunk table gives each chunk's place in
 * that blob); the zran index maps those places to the gzip layer. Both travel in one bootstrap layer
 * (`image/image.boot`, `image/zran.index`) of an artifact whose `subject` is the source manifest,
 * pushed into the source repository (referrers API or tag schema) — the snapshotter finds it there
 * and reads the original layers by range.
 */
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import { DEFAULT_CONVERT_CHUNK_SIZE } from '../config/accel.js';
import { FerryError, sha256Digest } from '../core/index.js';
import { buildLayer, mergeBootstraps } from '../builder/index.js';
import { chunkDigest, type DigesterName } from '../format/compress/index.js';
import { openBootstrap, packBootstrapLayer } from '../format/rafs/index.js';
import { TarParser } from '../format/tar/index.js';
import {
  DEFAULT_SPACING,
  GzipIndexer,
  contextsOf,
  encodeZranIndex,
  type ZranBlob,
  type ZranChunk,
  type ZranContext,
} from '../format/zran/index.js';
import { MediaType, NydusAnnotation, type Descriptor, type ImageManifest } from '../oci/index.js';
import { silentLogger, type Logger } from '../observe/index.js';
import { RegistryClient, formatReference, parseReference, pushReferrer, type ImageReference, type ReferrerPush } from '../remote/index.js';

/** artifactType of the OCI-ref artifact attached to a source image. */
export const OCI_REF_ARTIFACT_TYPE = 'application/vnd.ferry.nydus.oci-ref.v1';
/** Name of the zran index inside the artifact's bootstrap layer. */
export const ZRAN_INDEX_FILE = 'zran.index';
const GZIP_LAYER_TYPES: readonly string[] = [MediaType.OCI_LAYER_GZIP, MediaType.DOCKER_LAYER_GZIP];

export interface OciRefOptions {
  source: string | ImageReference;
  client?: RegistryClient;
  /** output between inflate checkpoints (default 2 MiB) */
  spacing?: number;
  /** default: the conversions' (config/accel DEFAULT_CONVERT_CHUNK_SIZE) */
  chunkSize?: number;
  digester?: DigesterName;
  workDir?: string;
  log?: Logger;
  signal?: AbortSignal;
}

export interface OciRefResult {
  /** the source manifest the artifact refers to */
  subject: Descriptor;
  /** the artifact's manifest digest */
  digest: string;
  push: ReferrerPush;
  bootstrapLayer: Descriptor;
  /** bytes of bootstrap + zran index pushed (all that is stored besides the source image) */
  pushedBytes: number;
  sourceBytes: number;
  checkpoints: number;
  ms: number;
}

/** Where each chunk of a layer's files sits in its tar, by chunk digest + size. */
class ChunkLocator {
  readonly at = new Map<string, number>();
  private buf: Buffer;
  private fill = 0;
  private start = 0;
  private left = 0;

  constructor(
    private readonly chunkSize: number,
    private readonly digester: DigesterName,
  ) {
    this.buf = Buffer.alloc(chunkSize);
  }

  readonly visitor = {
    entry: (e: { type: string; size: number }): void => {
      this.left = e.type === 'file' ? e.size : 0;
      this.fill = 0;
    },
    data: (piece: Buffer, offset?: number): void => {
      if (this.left === 0 || offset === undefined) return;
      let p = 0;
      while (p < piece.length) {
        if (this.fill === 0) this.start = offset + p;
        const k = Math.min(piece.length - p, this.chunkSize - this.fill, this.left);
        piece.copy(this.buf, this.fill, p, p + k);
        this.fill += k;
        this.left -= k;
        p += k;
        if (this.fill === this.chunkSize || this.left === 0) this.flush();
      }
    },
    end: (): void => {
      if (this.fill) this.flush();
    },
  };

  private flush(): void {
    const data = this.buf.subarray(0, this.fill);
    const key = `${chunkDigest(this.digester, data).toString('hex')}:${this.fill}`;
    if (!this.at.has(key)) this.at.set(key, this.start);
    this.fill = 0;
  }
}

/** Pass 1 over a downloaded gzip layer: checkpoints and the chunk locations in its tar. */
async function indexLayer(path: string, spacing: number, chunkSize: number, digester: DigesterName) {
  const locator = new ChunkLocator(chunkSize, digester);
  const tar = new TarParser(locator.visitor);
  const ix = new GzipIndexer(spacing, (piece) => {
    if (!tar.done) tar.push(piece);
  });
  for await (const piece of createReadStream(path, { highWaterMark: 1 << 20 })) ix.push(piece as Buffer);
  tar.finish();
  return { gz: ix.finish(), chunks: locator.at };
}

function contextAt(contexts: readonly ZranContext[], out: number): number {
  let lo = 0;
  let hi = contexts.length - 1;
  while (lo < hi) {
    const mid = (lo + hi + 1) >>> 1;
    if (contexts[mid]!.outOffset <= out) lo = mid;
    else hi = mid - 1;
  }
  return lo;
}

/** The zran blob of one layer: its bootstrap's chunks (stored raw in the unpushed blob) mapped into the layer. */
function zranBlobOf(layer: Descriptor, bootstrap: Buffer, blobId: string, idx: Awaited<ReturnType<typeof indexLayer>>): ZranBlob {
  const contexts = contextsOf(idx.gz.checkpoints, idx.gz.compressedSize, idx.gz.uncompressedSize);
  const bs = openBootstrap(bootstrap);
  const seen = new Set<number>();
  const chunks: ZranChunk[] = [];
  for (const c of bs.chunkLocations()) {
    if (bs.blobs[c.blobIndex]?.blobId !== blobId || seen.has(c.compressedOffset)) continue;
    seen.add(c.compressedOffset);
    if (c.compressed || c.compressedSize !== c.uncompressedSize)
      throw new FerryError('INTERNAL', `oci-ref: chunk ${c.chunkIndex} stored compressed`);
    const tarOffset = idx.chunks.get(`${c.digest.toString('hex')}:${c.uncompressedSize}`);
    if (tarOffset === undefined)
      throw new FerryError('INTERNAL', `oci-ref: chunk ${c.chunkIndex} of layer ${layer.digest} not found in its tar`);
    const context = contextAt(contexts, tarOffset);
    chunks.push({ offset: c.compressedOffset, size: c.compressedSize, context, contextOffset: tarOffset - contexts[context]!.outOffset });
  }
  chunks.sort((a, b) => a.offset - b.offset);
  return {
    blobId,
    layerDigest: layer.digest,
    compressedSize: idx.gz.compressedSize,
    uncompressedSize: idx.gz.uncompressedSize,
    contexts,
    chunks,
  };
}

/** Builds the OCI-ref bootstrap + zran index of `source` and attaches them to it as a referrer. */
export async function buildOciRef(o: OciRefOptions): Promise<OciRefResult> {
  const t0 = Date.now();
  const log = (o.log ?? silentLogger()).child({ component: 'oci-ref' });
  const client = o.client ?? new RegistryClient();
  const ref = typeof o.source === 'string' ? parseReference(o.source) : o.source;
  const spacing = o.spacing ?? DEFAULT_SPACING;
  const chunkSize = o.chunkSize ?? DEFAULT_CONVERT_CHUNK_SIZE;
  const digester = o.digester ?? 'blake3';
  const { manifest, fetched } = await client.resolveImage(ref, o.signal ? { signal: o.signal } : {});
  for (const l of manifest.layers) {
    if (!GZIP_LAYER_TYPES.includes(l.mediaType)) {
      throw new FerryError(
        'FAILED_PRECONDITION',
        `${formatReference(ref)}: layer ${l.digest} is ${l.mediaType}; OCI-ref needs gzip layers`,
      );
    }
  }
  const work = await mkdtemp(join(o.workDir ?? tmpdir(), 'ferry-ociref-'));
  try {
    const bootstraps: Buffer[] = [];
    const blobs: ZranBlob[] = [];
    for (const [i, layer] of manifest.layers.entries()) {
      const file = join(work, `layer-${i}`);
      await pipeline(
        await client.getBlob(ref.registry, ref.repository, layer.digest, o.signal ? { signal: o.signal } : {}),
        createWriteStream(file),
      );
      const idx = await indexLayer(file, spacing, chunkSize, digester);
      const built = await buildLayer({
        source: createReadStream(file),
        blobDir: join(work, 'blobs'),
        fsVersion: 6,
        compressor: 'none',
        chunkSize,
        digester,
      });
      bootstraps.push(built.bootstrap);
      if (built.blobId) blobs.push(zranBlobOf(layer, built.bootstrap, built.blobId, idx));
      await rm(file, { force: true });
      await rm(join(work, 'blobs'), { recursive: true, force: true });
      log.debug({ layer: layer.digest, checkpoints: idx.gz.checkpoints.length }, 'layer indexed');
    }
    const merged = mergeBootstraps(bootstraps, { fsVersion: 6, omitChunkTable: false });
    const index = encodeZranIndex(blobs);
    const boot = await packBootstrapLayer(merged, [{ name: ZRAN_INDEX_FILE, data: index }]);
    const bootstrapLayer: Descriptor = {
      mediaType: MediaType.OCI_LAYER_GZIP,
      digest: sha256Digest(boot.blob),
      size: boot.blob.length,
      annotations: { [NydusAnnotation.BOOTSTRAP]: 'true', [NydusAnnotation.FS_VERSION]: '6' },
    };
    await client.pushBlob(ref.registry, ref.repository, bootstrapLayer.digest, bootstrapLayer.size, boot.blob);
    const config = await client.pushBuffer(ref.registry, ref.repository, Buffer.from('{}'), MediaType.OCI_EMPTY);
    const subject: Descriptor = { mediaType: fetched.mediaType, digest: fetched.digest, size: fetched.body.length };
    const checkpoints = blobs.reduce((n, b) => n + b.contexts.length, 0);
    const art: ImageManifest = {
      schemaVersion: 2,
      mediaType: MediaType.OCI_MANIFEST,
      artifactType: OCI_REF_ARTIFACT_TYPE,
      config,
      layers: [bootstrapLayer],
      subject,
      annotations: { 'org.opencontainers.image.created': new Date().toISOString() },
    };
    const body = Buffer.from(JSON.stringify(art));
    const push = await pushReferrer(client, ref, body, MediaType.OCI_MANIFEST, subject.digest);
    const sourceBytes = manifest.layers.reduce((n, l) => n + l.size, 0);
    log.info(
      { ref: formatReference(ref), artifact: push.digest, via: push.via, checkpoints, bootstrapLayer: bootstrapLayer.size },
      'OCI-ref index pushed',
    );
    return {
      subject,
      digest: push.digest,
      push,
      bootstrapLayer,
      pushedBytes: bootstrapLayer.size + body.length + 2,
      sourceBytes,
      checkpoints,
      ms: Date.now() - t0,
    };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}
