/**
 * @module format/compress
 * Nydus data-blob chunks: the per-chunk codecs (`codecs.ts`: none / lz4_block / zstd / gzip behind
 * one interface), the chunk digests (`digest.ts`: sha256 / blake3) and the one chunk decoder
 * (`chunk.ts`: decompress + verify) that every reader of chunks goes through.
 */
export {
  COMPRESSORS,
  COMPRESSOR_CODES,
  MAX_CHUNK_SIZE,
  checkCompressLevel,
  compressorFromCode,
  getCodec,
  isCompressorName,
  type Codec,
  type CompressorName,
} from './codecs.js';
export { DIGESTERS, chunkDigest, type DigesterName } from './digest.js';
export { decodeChunk, type ChunkCodec, type DecodeChunkOptions, type EncodedChunk } from './chunk.js';
