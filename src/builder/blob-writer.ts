/**
 * @module builder/blob-writer
 * Writes one Nydus data blob (nydus-image's layout) while chunks arrive: compressed chunk data
 * streams into a temporary file in the work directory; `finish()` appends the CI table + header,
 * the chunk digest array and the ToC, each followed by its reverse tar header, then renames the
 * file to `<blobDir>/<sha256 of the whole blob>`. Identical chunks (same digest and size) are
 * stored once; chunks found in a chunk dictionary are referenced, not stored.
 */
import { createHash, type Hash } from 'node:crypto';
import { open, rename, unlink, mkdir, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { FerryError } from '../core/index.js';
import { getCodec, COMPRESSOR_CODES, type Codec, type CompressorName } from '../format/compress/index.js';
import {
  encodeCiTable,
  encodeBlobMetaHeader,
  blobMetaCacheFile,
  BlobFeatures,
  encodeDigestArray,
  FERRY_BLOB_FEATURES,
  BLOB_META_HEADER_SIZE,
  type CiEntry,
  encodeTarHeader,
  encodeToc,
  tocEntryFor,
  BlobSection,
  TocFlag,
  TAR_BLOCK,
} from '../format/rafs/index.js';
import { chunkDigest } from './digest.js';
import { compressPool, defaultCompressThreads } from './compress-pool.js';
import type { BlobDesc, ChunkRef, Digester, Inode } from './tree.js';

/** Chunks already available elsewhere (chunk dictionary, parent bootstrap), keyed by digest hex + size. */
export type ChunkIndex = Map<string, Omit<ChunkRef, 'fileOffset'>>;

export function chunkKey(digest: Buffer, size: number): string {
  return `${digest.toString('hex')}:${size}`;
}

const WRITE_BUFFER = 4 << 20;

export interface BlobWriterOptions {
  workDir: string;
  compressor: CompressorName;
  /** chunk compression level (codec default when absent; see format/compress) */
  compressLevel?: number;
  digester: Digester;
  chunkSize: number;
  /** chunks to reference instead of storing (dictionary / parent) */
  known?: ChunkIndex;
  /**
   * worker threads compressing chunks of at least 64 KiB (default 0: all on the calling thread).
   * Blob bytes are identical either way.
   */
  threads?: number;
}

/** Chunks smaller than this are compressed inline: a worker round trip would cost more. */
const OFFLOAD_MIN = 64 << 10;

interface Job {
  entry: CiEntry;
  data: Buffer;
  result: Promise<Buffer | null> | Buffer | null;
}

export interface BlobStats {
  /** uncompressed bytes of every chunk added (before dedup) */
  inputBytes: number;
  /** chunks added, stored, deduplicated within the blob, found in the dictionary */
  chunksIn: number;
  chunksStored: number;
  chunksDeduped: number;
  chunksFromDict: number;
  /** xattrs EROFS cannot store (namespaces other than user/trusted/security/ACL), dropped */
  xattrsDropped: number;
}

/** Options of `BlobWriter.addSync`. */
export interface AddChunkOptions {
  /** `data` is a scratch buffer the caller reuses after the call (the writer copies what it keeps) */
  transient?: boolean;
}

export class BlobWriter {
  readonly desc: BlobDesc;
  readonly stats: BlobStats = { inputBytes: 0, chunksIn: 0, chunksStored: 0, chunksDeduped: 0, chunksFromDict: 0, xattrsDropped: 0 };
  private readonly codec: Codec;
  private readonly own = new Map<string, Omit<ChunkRef, 'fileOffset'>>();
  private readonly ci: CiEntry[] = [];
  private readonly digests: Buffer[] = [];
  private readonly hash: Hash = createHash('sha256');
  private fh: FileHandle | undefined;
  private readonly tmpPath: string;
  private pending: Buffer[] = [];
  private pendingBytes = 0;
  private written = 0;
  private uncompressedEnd = 0;
  private finished = false;
  private readonly jobs: Job[] = [];
  private readonly threads: number;
  private readonly maxInflight: number;

  constructor(private readonly opts: BlobWriterOptions) {
    this.codec = getCodec(opts.compressor);
    this.threads = opts.compressor === 'none' ? 0 : (opts.threads ?? defaultCompressThreads());
    this.maxInflight = 2 * this.threads + 2;
    this.tmpPath = join(opts.workDir, `blob-${process.pid}-${randomBytes(6).toString('hex')}.tmp`);
    this.desc = {
      blobId: '',
      chunkSize: opts.chunkSize,
      chunkCount: 0,
      compressor: opts.compressor,
      digester: opts.digester,
      features: FERRY_BLOB_FEATURES,
      compressedSize: 0,
      uncompressedSize: 0,
      tocSize: 0,
      tocDigest: Buffer.alloc(32),
      ciCompressor: 0,
      ciOffset: 0,
      ciCompressedSize: 0,
      ciUncompressedSize: 0,
    };
  }

  /** Bytes of compressed data stored so far. */
  get dataSize(): number {
    return this.written + this.pendingBytes;
  }

  /**
   * Adds one chunk (uncompressed bytes, ≤ chunk size; kept by reference until written, so the
   * caller must not modify it afterwards) and returns
   * where it lives — in this blob (new or deduplicated) or in a known blob.
   */
  async add(data: Buffer): Promise<Omit<ChunkRef, 'fileOffset'>> {
    const ref = this.addSync(data);
    if (this.needsFlush) await this.flush();
    return ref;
  }

  /** True when enough data is pending that the caller should `await flush()`. */
  get needsFlush(): boolean {
    return this.pendingBytes >= WRITE_BUFFER || this.jobs.length >= this.maxInflight;
  }

  /**
   * The final CI entry of chunk `index` of this blob. With worker threads, refs returned by `add`
   * carry their compressed placement only once the chunk was written; `fixRefs` copies it over.
   */
  entry(index: number): CiEntry {
    return this.ci[index]!;
  }

  /**
   * `add` without the write: the caller awaits `flush()` when `needsFlush` says so. With
   * `transient`, `data` is a scratch buffer the caller reuses after the call: the writer copies it
   * when it has to keep the raw bytes (stored uncompressed, or compressed later in a worker).
   */
  addSync(data: Buffer, opts?: AddChunkOptions): Omit<ChunkRef, 'fileOffset'> {
    const transient = opts?.transient === true;
    if (this.finished) throw new FerryError('FAILED_PRECONDITION', 'blob writer already finished');
    if (data.length === 0 || data.length > this.opts.chunkSize) throw new FerryError('INTERNAL', `chunk of ${data.length} bytes`);
    this.stats.inputBytes += data.length;
    this.stats.chunksIn++;
    const digest = chunkDigest(this.opts.digester, data);
    const key = chunkKey(digest, data.length);
    const mine = this.own.get(key);
    if (mine) {
      this.stats.chunksDeduped++;
      return mine;
    }
    const known = this.opts.known?.get(key);
    if (known) {
      this.stats.chunksFromDict++;
      return known;
    }

    const entry: CiEntry = {
      compressedOffset: -1,
      compressedSize: 0,
      uncompressedOffset: this.uncompressedEnd,
      uncompressedSize: data.length,
      compressed: false,
    };
    this.uncompressedEnd += Math.ceil(data.length / 4096) * 4096;
    const ref: Omit<ChunkRef, 'fileOffset'> = {
      blob: this.desc,
      chunkIndex: this.ci.length,
      ...entry,
      digest,
    };
    this.ci.push(entry);
    this.digests.push(digest);
    this.own.set(key, ref);
    this.stats.chunksStored++;
    const offload = this.threads > 0 && data.length >= OFFLOAD_MIN;
    if (offload && transient) data = Buffer.from(data);
    const result = offload
      ? compressPool(this.threads).compress(this.opts.compressor, data, this.opts.compressLevel)
      : this.codec.compress(data, this.opts.compressLevel);
    if (result === null && transient) data = Buffer.from(data);
    this.jobs.push({ entry, data, result });
    // without workers every job is complete: place it right away
    if (this.threads === 0) this.placeDone();
    // fill the placement in the returned ref as soon as it is known (always, without workers)
    if (entry.compressedOffset >= 0) Object.assign(ref, entry);
    return ref;
  }

  /** Copies the final compressed placement into every chunk reference to this blob under `root`. */
  fixRefs(root: Inode): void {
    const visit = (n: Inode): void => {
      for (const c of n.chunks ?? []) {
        if (c.blob !== this.desc) continue;
        const e = this.ci[c.chunkIndex]!;
        if (e.compressedOffset < 0) throw new FerryError('INTERNAL', `chunk ${c.chunkIndex} was never placed`);
        c.compressedOffset = e.compressedOffset;
        c.compressedSize = e.compressedSize;
        c.compressed = e.compressed;
      }
      if (n.children) for (const ch of n.children.values()) visit(ch);
    };
    visit(root);
  }

  /** Places completed jobs at the head of the queue (in CI order) into the pending writes. */
  private placeDone(): void {
    while (this.jobs.length && !(this.jobs[0]!.result instanceof Promise)) {
      const job = this.jobs.shift()!;
      const z = job.result as Buffer | null;
      const stored = z ?? job.data;
      job.entry.compressedOffset = this.dataSize;
      job.entry.compressedSize = stored.length;
      job.entry.compressed = z !== null;
      this.pending.push(stored);
      this.pendingBytes += stored.length;
    }
  }

  /** Waits for in-flight compression down to `limit` jobs, placing results in order. */
  private async settle(limit: number): Promise<void> {
    this.placeDone();
    while (this.jobs.length > limit) {
      const head = this.jobs[0]!;
      head.result = await head.result;
      this.placeDone();
    }
  }

  private async write(b: Buffer): Promise<void> {
    this.pending.push(b);
    this.pendingBytes += b.length;
    if (this.pendingBytes >= WRITE_BUFFER) await this.flush();
  }

  async flush(): Promise<void> {
    await this.settle(Math.floor(this.maxInflight / 2));
    if (this.pendingBytes === 0) return;
    if (!this.fh) {
      await mkdir(this.opts.workDir, { recursive: true });
      this.fh = await open(this.tmpPath, 'w');
    }
    const bufs = this.pending;
    const total = this.pendingBytes;
    this.pending = [];
    this.pendingBytes = 0;
    for (const b of bufs) this.hash.update(b);
    const { bytesWritten } = await this.fh.writev(bufs, this.written);
    if (bytesWritten !== total) {
      // a short vectored write: finish the rest buffer by buffer
      const off = bytesWritten;
      const rest = Buffer.concat(bufs, total).subarray(off);
      let p = 0;
      while (p < rest.length) {
        const r = await this.fh.write(rest, p, rest.length - p, this.written + off + p);
        p += r.bytesWritten;
      }
    }
    this.written += total;
  }

  /** True when at least one chunk is stored in this blob. */
  get hasData(): boolean {
    return this.ci.length > 0;
  }

  /**
   * Completes the blob and moves it to `<blobDir>/<blobId>`; returns null (and writes nothing)
   * when no chunk was stored in it. With `inlineBootstrap` (upstream's `--blob-inline-meta`), the
   * bootstrap it returns — built while `desc` carries the placeholder id `x`×64 and the blob size
   * before the bootstrap, as upstream does — is stored zstd-compressed as the `image.boot` section.
   */
  async finish(
    blobDir: string,
    inlineBootstrap?: () => Buffer,
  ): Promise<{ desc: BlobDesc; blobPath: string; blobSize: number; blobMeta: Buffer } | null> {
    if (this.finished) throw new FerryError('FAILED_PRECONDITION', 'blob writer already finished');
    this.finished = true;
    if (!this.hasData) {
      await this.abort();
      return null;
    }
    await this.settle(0);
    const features = (FERRY_BLOB_FEATURES | (inlineBootstrap ? BlobFeatures.INLINED_FS_META : 0)) >>> 0;
    this.desc.features = features;
    const dataSize = this.dataSize;
    const dataHeader = encodeTarHeader(BlobSection.DATA, dataSize);
    await this.write(dataHeader);
    await this.flush();
    // image.blob ToC digest = sha256(chunk data ‖ its tar header): the running hash right now
    const dataDigest = this.hash.copy().digest();

    const ciRaw = encodeCiTable(this.ci);
    let ciStored = ciRaw;
    let ciCompressor = 0;
    if (this.opts.compressor === 'zstd') {
      // compress the CI table with the blob's compressor when it shrinks (zstd only: the Go ToC
      // reader of nydus-snapshotter decodes none/zstd CI tables, nothing else)
      const z = getCodec('zstd').compress(ciRaw);
      if (z) {
        ciStored = z;
        ciCompressor = COMPRESSOR_CODES.zstd;
      }
    }
    const ciOffset = this.written;
    const header = encodeBlobMetaHeader({
      features,
      ciCompressor,
      ciEntries: this.ci.length,
      ciOffset,
      ciCompressedSize: ciStored.length,
      ciUncompressedSize: ciRaw.length,
      ctxOffset: 0,
      ctxSize: 0,
      ctxCount: 0,
    });
    await this.write(ciStored);
    await this.write(header);
    await this.write(encodeTarHeader(BlobSection.META, ciStored.length + BLOB_META_HEADER_SIZE));
    const digestOffset = ciOffset + ciStored.length + BLOB_META_HEADER_SIZE + TAR_BLOCK;
    const digestArray = encodeDigestArray(this.digests);
    await this.write(digestArray);
    await this.write(encodeTarHeader(BlobSection.DIGEST, digestArray.length));
    const entries = [
      tocEntryFor(BlobSection.DATA, Buffer.alloc(0), 0, TocFlag.NONE, this.uncompressedEnd, dataDigest),
      tocEntryFor(
        BlobSection.META,
        ciStored,
        ciOffset,
        ciCompressor === 0 ? TocFlag.NONE : TocFlag.ZSTD,
        ciRaw.length,
        createHash('sha256').update(ciRaw).digest(),
      ),
      tocEntryFor(BlobSection.META_HEADER, header, ciOffset + ciStored.length),
      tocEntryFor(BlobSection.DIGEST, digestArray, digestOffset),
    ];
    if (inlineBootstrap) {
      const bootOffset = this.dataSize;
      Object.assign(this.desc, {
        blobId: 'x'.repeat(64),
        chunkCount: this.ci.length,
        compressedSize: bootOffset,
        uncompressedSize: this.uncompressedEnd,
        ciCompressor,
        ciOffset,
        ciCompressedSize: ciStored.length,
        ciUncompressedSize: ciRaw.length,
      } satisfies Partial<BlobDesc>);
      const boot = inlineBootstrap();
      const z = getCodec('zstd').compress(boot);
      const payload = z ?? boot;
      await this.write(payload);
      await this.write(encodeTarHeader(BlobSection.BOOTSTRAP, payload.length));
      entries.push(
        tocEntryFor(
          BlobSection.BOOTSTRAP,
          payload,
          bootOffset,
          z ? TocFlag.ZSTD : TocFlag.NONE,
          boot.length,
          createHash('sha256').update(boot).digest(),
        ),
      );
    }
    const toc = encodeToc(entries);
    // the image.blob entry's compressed size is the data length, not the empty placeholder
    toc.writeBigUInt64LE(BigInt(dataSize), 64);
    const tocHeader = encodeTarHeader(BlobSection.TOC, toc.length);
    await this.write(toc);
    await this.write(tocHeader);
    await this.flush();
    await this.fh!.sync();
    await this.fh!.close();
    this.fh = undefined;

    const blobId = this.hash.digest('hex');
    const blobPath = join(blobDir, blobId);
    await mkdir(blobDir, { recursive: true });
    await rename(this.tmpPath, blobPath).catch(async (err: NodeJS.ErrnoException) => {
      if (err.code !== 'EXDEV') throw err;
      const { copyFile } = await import('node:fs/promises');
      await copyFile(this.tmpPath, blobPath);
      await unlink(this.tmpPath);
    });
    Object.assign(this.desc, {
      blobId,
      chunkCount: this.ci.length,
      compressedSize: this.written,
      uncompressedSize: this.uncompressedEnd,
      tocSize: toc.length + TAR_BLOCK,
      tocDigest: createHash('sha256').update(toc).update(tocHeader).digest(),
      ciCompressor,
      ciOffset,
      ciCompressedSize: ciStored.length,
      ciUncompressedSize: ciRaw.length,
    } satisfies Partial<BlobDesc>);
    return { desc: this.desc, blobPath, blobSize: this.written, blobMeta: blobMetaCacheFile(ciRaw, header) };
  }

  /** Removes the temporary file (after a failure, or when the blob stayed empty). */
  async abort(): Promise<void> {
    this.finished = true;
    await Promise.allSettled(this.jobs.map((j) => j.result));
    this.jobs.length = 0;
    this.pending = [];
    this.pendingBytes = 0;
    if (this.fh) {
      await this.fh.close().catch(() => {});
      this.fh = undefined;
    }
    await unlink(this.tmpPath).catch(() => {});
  }
}
