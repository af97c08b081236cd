/**
 * @module format/compress/codecs
 * Per-chunk codecs of Nydus data blobs (those nydus-image writes): `none`, `lz4_block` (a raw LZ4 block, no
 * frame), `zstd` (one frame with the content size, no checksum; level 3 unless told) and `gzip` (one complete
 * member). Every codec works on whole chunks in memory; `compress` returns null when the output would
 * not be strictly smaller than the input, in which case the caller stores the raw bytes and marks
 * the chunk uncompressed.
 */
import { gunzipSync, gzipSync } from 'node:zlib';
import { compressSync as lz4CompressSync, uncompressSync as lz4UncompressSync } from 'lz4-napi';
import { Compressor as ZstdCompressor } from 'zstd-napi';
import zstdBinding from 'zstd-napi/binding.js';
import { FerryError } from '../../core/index.js';

/** Compressor names as nydus-image spells them. */
export const COMPRESSORS = ['none', 'lz4_block', 'zstd', 'gzip'] as const;
export type CompressorName = (typeof COMPRESSORS)[number];

/** On-disk algorithm codes (blob table `compression_algo`, CI header `ci_compressor`). */
export const COMPRESSOR_CODES: Record<CompressorName, number> = { none: 0, lz4_block: 1, gzip: 2, zstd: 3 };

/** Largest chunk Nydus allows (16 MiB); decompression refuses to produce more than this. */
export const MAX_CHUNK_SIZE = 16 << 20;

export interface Codec {
  readonly name: CompressorName;
  /**
   * Compressed bytes, or null when compression does not shrink the input (store raw). `level`:
   * zstd 1–19 (default 3, as nydus-image), gzip 1–9 (default 6); lz4_block and none ignore it.
   */
  compress(buf: Buffer, level?: number): Buffer | null;
  /** Exactly `uncompressedSize` bytes, or a DATA_LOSS FerryError. */
  decompress(buf: Buffer, uncompressedSize: number): Buffer;
}

/** True when `s` names a supported compressor. */
export function isCompressorName(s: string): s is CompressorName {
  return (COMPRESSORS as readonly string[]).includes(s);
}

/** Compressor name from its on-disk code; INVALID_ARGUMENT for an unknown code. */
export function compressorFromCode(code: number): CompressorName {
  for (const n of COMPRESSORS) if (COMPRESSOR_CODES[n] === code) return n;
  throw new FerryError('INVALID_ARGUMENT', `unknown compression algorithm code ${code}`);
}

function checkSize(name: string, uncompressedSize: number): void {
  if (!Number.isInteger(uncompressedSize) || uncompressedSize < 0 || uncompressedSize > MAX_CHUNK_SIZE) {
    throw new FerryError('DATA_LOSS', `${name}: invalid uncompressed size ${uncompressedSize}`);
  }
}

function wrongSize(name: string, got: number, want: number): FerryError {
  return new FerryError('DATA_LOSS', `${name}: chunk decompressed to ${got} bytes, expected ${want}`);
}

const none: Codec = {
  name: 'none',
  compress: () => null,
  decompress(buf, size) {
    if (buf.length !== size) throw wrongSize('none', buf.length, size);
    return buf;
  },
};

/**
 * lz4-napi frames its block output with a 4-byte little-endian uncompressed size (the lz4_flex
 * "size prepended" convention). Nydus stores the bare block, so the prefix is stripped on
 * compression and synthesised from the known size on decompression.
 */
const lz4: Codec = {
  name: 'lz4_block',
  compress(buf) {
    if (buf.length === 0) return null;
    const out = lz4CompressSync(buf);
    const block = out.subarray(4);
    return block.length < buf.length ? block : null;
  },
  decompress(buf, size) {
    checkSize('lz4_block', size);
    const framed = Buffer.allocUnsafe(buf.length + 4);
    framed.writeUInt32LE(size, 0);
    buf.copy(framed, 4);
    let out: Buffer;
    try {
      out = lz4UncompressSync(framed);
    } catch (err) {
      throw new FerryError('DATA_LOSS', `lz4_block: corrupt chunk: ${(err as Error).message}`, { cause: err });
    }
    if (out.length !== size) throw wrongSize('lz4_block', out.length, size);
    return out;
  },
};

/** Checks a compression level against a codec's range. */
export function checkCompressLevel(name: CompressorName, level: number | undefined): void {
  if (level === undefined) return;
  const max = name === 'zstd' ? 19 : name === 'gzip' ? 9 : Infinity;
  if (!Number.isInteger(level) || level < 1 || level > max) {
    throw new FerryError('INVALID_ARGUMENT', `compression level ${level} for ${name}: must be an integer in 1..${max}`);
  }
}

const zstdCompressors = new Map<number, ZstdCompressor>();
let zstdDctx: zstdBinding.DCtx | undefined;
const zstd: Codec = {
  name: 'zstd',
  compress(buf, level = 3) {
    if (buf.length === 0) return null;
    let c = zstdCompressors.get(level);
    if (!c) {
      checkCompressLevel('zstd', level);
      c = new ZstdCompressor();
      c.setParameters({ compressionLevel: level, checksumFlag: false, contentSizeFlag: true });
      zstdCompressors.set(level, c);
    }
    const out = c.compress(buf);
    return out.length < buf.length ? out : null;
  },
  decompress(buf, size) {
    checkSize('zstd', size);
    // Decompress into a buffer of the known size: a hostile frame header cannot make us allocate more.
    const out = Buffer.allocUnsafe(size);
    let n: number;
    try {
      zstdDctx ??= new zstdBinding.DCtx();
      n = zstdDctx.decompress(out, buf);
    } catch (err) {
      throw new FerryError('DATA_LOSS', `zstd: corrupt chunk: ${(err as Error).message}`, { cause: err });
    }
    if (n !== size) throw wrongSize('zstd', n, size);
    return out;
  },
};

const gzip: Codec = {
  name: 'gzip',
  compress(buf, level) {
    if (buf.length === 0) return null;
    checkCompressLevel('gzip', level);
    const out = gzipSync(buf, level === undefined ? {} : { level });
    return out.length < buf.length ? out : null;
  },
  decompress(buf, size) {
    checkSize('gzip', size);
    let out: Buffer;
    try {
      out = gunzipSync(buf, { maxOutputLength: Math.max(size, 1) });
    } catch (err) {
      throw new FerryError('DATA_LOSS', `gzip: corrupt chunk: ${(err as Error).message}`, { cause: err });
    }
    if (out.length !== size) throw wrongSize('gzip', out.length, size);
    return out;
  },
};

const CODECS: Record<CompressorName, Codec> = { none, lz4_block: lz4, zstd, gzip };

/** The codec for a compressor name; INVALID_ARGUMENT naming the valid choices otherwise. */
export function getCodec(name: string): Codec {
  if (!isCompressorName(name)) {
    throw new FerryError('INVALID_ARGUMENT', `unknown compressor ${JSON.stringify(name)} (expected one of ${COMPRESSORS.join(', ')})`);
  }
  return CODECS[name];
}
