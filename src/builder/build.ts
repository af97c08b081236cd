/**
 * @module builder/build
 * `buildLayer`: one layer (tar stream or directory) → one data blob in `blobDir` + a bootstrap.
 * `mergeBootstraps`: layer bootstraps → one image bootstrap with OCI overlay semantics.
 */
import type { Readable } from 'node:stream';
import { FerryError } from '../core/index.js';
import { checkCompressLevel, getCodec, type CompressorName } from '../format/compress/index.js';
import { BlobWriter, type BlobStats, type ChunkIndex } from './blob-writer.js';
import { writeBootstrapV6, type BootstrapOptions } from './bootstrap-v6.js';
import { writeBootstrapV5 } from './bootstrap-v5.js';
import { indexChunks, loadBootstrap } from './from-bootstrap.js';
import { resolvePrefetch } from './prefetch.js';
import type { BlobTables } from '../format/rafs/index.js';
import { treeFromDir } from './source-dir.js';
import { applyLayer, newDir, type BlobDesc, type Digester, type Inode } from './tree.js';
import { parseDigester } from './digest.js';

export const DEFAULT_CHUNK_SIZE = 0x100000;

export interface BuildLayerOptions {
  /** a layer tar stream (plain, gzip or zstd) or a directory */
  source: Readable | { dir: string };
  blobDir: string;
  /** where the blob is assembled before it is renamed into blobDir (default blobDir) */
  workDir?: string;
  fsVersion?: 5 | 6;
  compressor?: CompressorName;
  /** chunk compression level (default: the codec's, zstd 3 as nydus-image) */
  compressLevel?: number;
  chunkSize?: number;
  digester?: Digester;
  /** bootstraps whose chunks are referenced instead of stored again (the first one holding a digest wins) */
  chunkDict?: Buffer | readonly Buffer[];
  /** the chunk dictionary's blob tables, by blob id (needed when it has no chunk table) */
  chunkDictTables?: ReadonlyMap<string, BlobTables>;
  /** the bootstrap of the lower layers: the result is that tree with this layer applied */
  parentBootstrap?: Buffer;
  prefetchPatterns?: string[];
  /**
   * also store the layer bootstrap inside the blob (`image.boot` section, zstd), as upstream's
   * converter does with `--blob-inline-meta`; its own blob appears with the placeholder id `x`×64
   * (v6 only)
   */
  inlineBootstrap?: boolean;
  /** compression worker threads (default 0 = compress on the calling thread; output is identical) */
  threads?: number;
  /** called with the number of uncompressed bytes consumed, as they are */
  onProgress?: (bytes: number) => void;
}

export interface BuildLayerResult {
  bootstrap: Buffer;
  /** '' when the layer stored no data (no blob written) */
  blobId: string;
  blobPath: string;
  blobSize: number;
  /** the blob's uncompressed (4 KiB-aligned) address space */
  uncompressedSize: number;
  /** chunks stored in the blob */
  chunkCount: number;
  /**
   * nydusd's cache form of the blob's CI table (uncompressed CI padded to 4 KiB + the 4096-byte
   * header): what current converters ship as `image/<blob id>.blob.meta` in the bootstrap layer.
   * Empty when no blob was written.
   */
  blobMeta: Buffer;
  stats: BlobStats;
}

/** Validates builder options, naming the bad one. */
export function checkBuildOptions(o: { fsVersion?: number; compressor?: string; chunkSize?: number; digester?: string }): {
  fsVersion: 5 | 6;
  compressor: CompressorName;
  chunkSize: number;
  digester: Digester;
} {
  const fsVersion = o.fsVersion ?? 6;
  if (fsVersion !== 5 && fsVersion !== 6) throw new FerryError('INVALID_ARGUMENT', `unsupported fs version ${fsVersion} (expected 5 or 6)`);
  const compressor = getCodec(o.compressor ?? 'zstd').name;
  const chunkSize = o.chunkSize ?? DEFAULT_CHUNK_SIZE;
  if (!Number.isInteger(chunkSize) || chunkSize < 0x1000 || chunkSize > 0x1000000 || (chunkSize & (chunkSize - 1)) !== 0) {
    throw new FerryError(
      'INVALID_ARGUMENT',
      `invalid chunk size ${chunkSize} (0x${Number(chunkSize).toString(16)}): must be a power of two between 0x1000 (4 KiB) and 0x1000000 (16 MiB)`,
    );
  }
  const digester = parseDigester(o.digester ?? 'sha256');
  return { fsVersion, compressor, chunkSize, digester };
}

function writeBootstrap(fsVersion: 5 | 6, root: Inode, o: BootstrapOptions): Buffer {
  return fsVersion === 5 ? writeBootstrapV5(root, o) : writeBootstrapV6(root, o);
}

export async function buildLayer(opts: BuildLayerOptions): Promise<BuildLayerResult> {
  const { fsVersion, compressor, chunkSize, digester } = checkBuildOptions(opts);
  const registry = new Map<string, BlobDesc>();
  const known: ChunkIndex = new Map();
  let parent: ReturnType<typeof loadBootstrap> | undefined;
  if (opts.parentBootstrap) {
    parent = loadBootstrap(opts.parentBootstrap, registry);
    if (parent.chunkSize !== chunkSize) {
      throw new FerryError(
        'INVALID_ARGUMENT',
        `parent bootstrap chunk size 0x${parent.chunkSize.toString(16)} differs from 0x${chunkSize.toString(16)}`,
      );
    }
    indexChunks(parent.root, known);
  }
  for (const dictBuf of opts.chunkDict === undefined ? [] : Buffer.isBuffer(opts.chunkDict) ? [opts.chunkDict] : opts.chunkDict) {
    const dict = loadBootstrap(dictBuf, registry, undefined, opts.chunkDictTables);
    if (dict.chunkSize !== chunkSize) {
      throw new FerryError(
        'INVALID_ARGUMENT',
        `chunk dict chunk size 0x${dict.chunkSize.toString(16)} differs from 0x${chunkSize.toString(16)}`,
      );
    }
    if (dict.digester !== digester)
      throw new FerryError('INVALID_ARGUMENT', `chunk dict uses ${dict.digester} digests, the build uses ${digester}`);
    indexChunks(dict.root, known);
  }
  checkCompressLevel(compressor, opts.compressLevel);
  const writer = new BlobWriter({
    workDir: opts.workDir ?? opts.blobDir,
    compressor,
    digester,
    chunkSize,
    known,
    ...(opts.threads !== undefined ? { threads: opts.threads } : {}),
    ...(opts.compressLevel !== undefined ? { compressLevel: opts.compressLevel } : {}),
  });
  if (opts.inlineBootstrap && fsVersion !== 6) throw new FerryError('INVALID_ARGUMENT', 'an inline bootstrap needs RAFS v6');
  let layer: Inode;
  let tree: Inode | undefined;
  let prefetch: Inode[] = [];
  let fin: Awaited<ReturnType<BlobWriter['finish']>>;
  const blobs: BlobDesc[] = parent ? [...parent.blobs] : [];
  const bootOpts = (): BootstrapOptions => ({ chunkSize, compressor, digester, blobs: [...blobs, writer.desc], prefetch });
  try {
    const src = { writer, chunkSize, onBytes: opts.onProgress };
    layer =
      'dir' in opts.source && typeof opts.source.dir === 'string'
        ? await treeFromDir(opts.source.dir, { ...src, prefetchPatterns: opts.prefetchPatterns })
        : await (await import('./source-tar.js')).treeFromTar(opts.source as Readable, src);
    tree = parent ? applyLayer(parent.root, layer) : layer;
    prefetch = resolvePrefetch(tree, opts.prefetchPatterns);
    const t = tree;
    fin = await writer.finish(
      opts.blobDir,
      opts.inlineBootstrap
        ? () => {
            writer.fixRefs(layer);
            return writeBootstrapV6(t, { ...bootOpts(), keepInlineMeta: true });
          }
        : undefined,
    );
    writer.fixRefs(layer);
  } catch (err) {
    await writer.abort();
    throw err;
  }
  if (fin) blobs.push(fin.desc);
  const bootstrap = writeBootstrap(fsVersion, tree, { chunkSize, compressor, digester, blobs, prefetch });
  return {
    bootstrap,
    blobId: fin?.desc.blobId ?? '',
    blobPath: fin?.blobPath ?? '',
    blobSize: fin?.blobSize ?? 0,
    uncompressedSize: fin?.desc.uncompressedSize ?? 0,
    chunkCount: fin?.desc.chunkCount ?? 0,
    blobMeta: fin?.blobMeta ?? Buffer.alloc(0),
    stats: writer.stats,
  };
}

export interface MergeOptions {
  fsVersion?: 5 | 6;
  prefetchPatterns?: string[];
  /** per layer: blob ids to use instead of the ids in that layer's blob table (e.g. layer digests) */
  blobIds?: (readonly string[] | undefined)[];
  /** v6: no chunk table when every blob carries its own tables (see BootstrapOptions.omitChunkTable) */
  omitChunkTable?: boolean;
}

/**
 * Merges layer bootstraps (lowest first) into one image bootstrap: OCI whiteouts and opaque
 * directories of each layer hide entries of the layers below and are not kept; the blob table
 * lists every layer's blobs in layer order.
 */
export function mergeBootstraps(layers: Buffer[], opts: MergeOptions = {}): Buffer {
  if (layers.length === 0) throw new FerryError('INVALID_ARGUMENT', 'merge needs at least one layer bootstrap');
  const fsVersion = opts.fsVersion ?? 6;
  if (fsVersion !== 5 && fsVersion !== 6)
    throw new FerryError('INVALID_ARGUMENT', `unsupported fs version ${String(fsVersion)} (expected 5 or 6)`);
  const registry = new Map<string, BlobDesc>();
  const root = newDir();
  const blobs: BlobDesc[] = [];
  let first: ReturnType<typeof loadBootstrap> | undefined;
  let prefetch: Inode[] = [];
  layers.forEach((buf, i) => {
    const l = loadBootstrap(buf, registry, opts.blobIds?.[i]);
    if (!first) first = l;
    else if (l.chunkSize !== first.chunkSize) {
      throw new FerryError(
        'INVALID_ARGUMENT',
        `layer ${i}: chunk size 0x${l.chunkSize.toString(16)} differs from 0x${first.chunkSize.toString(16)}`,
      );
    }
    for (const b of l.blobs) if (!blobs.includes(b)) blobs.push(b);
    applyLayer(root, l.root);
    prefetch = prefetch.concat(l.prefetch.filter((n) => n !== l.root));
    if (l.prefetch.includes(l.root)) prefetch.unshift(root);
  });
  const f = first!;
  const chosen = opts.prefetchPatterns ? resolvePrefetch(root, opts.prefetchPatterns) : [...new Set(prefetch)];
  return writeBootstrap(fsVersion, root, {
    chunkSize: f.chunkSize,
    compressor: f.compressor,
    digester: f.digester,
    blobs,
    prefetch: chosen,
    ...(opts.omitChunkTable ? { omitChunkTable: true } : {}),
  });
}
