/**
 * @module format/compress/chunk
 * The one chunk decoder: a Nydus data-blob chunk's raw bytes → its uncompressed bytes, decompressed
 * when marked compressed and verified against its digest. The RAFS reader, the storage device (on
 * the main thread and in its decode threads), `rafs check`/`unpack` and `ferry check` all decode
 * through it; nothing here knows bootstraps, blobs on disk or the cache.
 */
import { DigestMismatchError, FerryError } from '../../core/index.js';
import { chunkDigest, type DigesterName } from './digest.js';
import { getCodec, type CompressorName } from './codecs.js';

/** How a blob's chunks are encoded: one compressor and one digester per blob. */
export interface ChunkCodec {
  compressor: CompressorName;
  digester: DigesterName;
}

/** What the decoder needs of a chunk (the RAFS reader's ChunkRef and storage's DeviceChunk have it). */
export interface EncodedChunk {
  /** CI index, for messages */
  chunkIndex: number;
  compressedSize: number;
  uncompressedSize: number;
  /** false: stored raw (compression did not shrink it) */
  compressed: boolean;
  /** the digest of the uncompressed bytes; empty when unknown (a CI table without digests) */
  digest: Uint8Array;
}

export interface DecodeChunkOptions {
  /**
   * A chunk whose digest is unknown: 'fail' (default, FAILED_PRECONDITION) or 'skip' verification
   * (readers that hold CI tables without digests and say so).
   */
  unknownDigest?: 'fail' | 'skip';
}

/**
 * Decompresses (when marked compressed) and verifies one chunk: DATA_LOSS when `raw` has the wrong
 * size or does not decompress, DigestMismatchError when the bytes do not match the digest.
 * `blob` names the blob in messages.
 */
export function decodeChunk(blob: ChunkCodec & { blobId: string }, chunk: EncodedChunk, raw: Buffer, opts?: DecodeChunkOptions): Buffer {
  if (raw.length !== chunk.compressedSize) {
    throw new FerryError(
      'DATA_LOSS',
      `chunk ${chunk.chunkIndex} of blob ${blob.blobId}: got ${raw.length} bytes, expected ${chunk.compressedSize}`,
    );
  }
  let data: Buffer;
  if (chunk.compressed) {
    data = getCodec(blob.compressor).decompress(raw, chunk.uncompressedSize);
  } else {
    if (raw.length !== chunk.uncompressedSize) {
      throw new FerryError(
        'DATA_LOSS',
        `uncompressed chunk ${chunk.chunkIndex} of blob ${blob.blobId}: ${raw.length} bytes, expected ${chunk.uncompressedSize}`,
      );
    }
    data = raw;
  }
  if (chunk.digest.length === 0) {
    if (opts?.unknownDigest === 'skip') return data;
    throw new FerryError(
      'FAILED_PRECONDITION',
      `chunk ${chunk.chunkIndex} of blob ${blob.blobId}: no digest known (CI table without digests)`,
    );
  }
  const got = chunkDigest(blob.digester, data);
  if (!got.equals(chunk.digest)) {
    throw new DigestMismatchError(
      `${blob.digester}:${Buffer.from(chunk.digest.buffer, chunk.digest.byteOffset, chunk.digest.byteLength).toString('hex')}`,
      `${blob.digester}:${got.toString('hex')}`,
      `chunk ${chunk.chunkIndex} of blob ${blob.blobId}`,
    );
  }
  return data;
}
