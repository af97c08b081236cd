/**
 * @module format/rafs/blob-meta
 * Records nydus-image stores inside a Nydus data blob (its blob meta): the compression-information
 * (CI) table — V1 16-byte entries written by Ferry, V2 24-byte entries decoded too — the 4096-byte
 * CI header ("blob meta header") that follows it, the chunk digest array and the blob feature bits.
 * Pure buffer codecs; every decoder bounds-checks and throws a DATA_LOSS FerryError.
 */
import { BlobFeatures } from './v6.js';
import { FerryError } from '../../core/index.js';

/** Features of a blob written by Ferry's builder: aligned, digest array, reverse tar headers, ToC. */
export const FERRY_BLOB_FEATURES =
  (BlobFeatures.ALIGNED |
    BlobFeatures.INLINED_CHUNK_DIGEST |
    BlobFeatures.HAS_TAR_HEADER |
    BlobFeatures.HAS_TOC |
    BlobFeatures.CAP_TAR_TOC) >>>
  0;

export const BLOB_META_MAGIC = 0xb10bb10b;
export const BLOB_META_HEADER_SIZE = 4096;
export const CI_V1_SIZE = 16;
export const CI_V2_SIZE = 24;
/** Largest chunk a CI entry can describe (16 MiB). */
export const MAX_CI_CHUNK = 1 << 24;
const MAX_COMP_OFFSET = 2 ** 40;

/** One chunk's place in the blob (compressed) and in the uncompressed address space. */
export interface CiEntry {
  compressedOffset: number;
  compressedSize: number;
  uncompressedOffset: number;
  uncompressedSize: number;
  /** true when the stored bytes are compressed (V1: sizes differ; V2: flag bit). */
  compressed: boolean;
  /** V2 only: CRC-32C when flag 0x10 is set. */
  crc32?: number;
  /** V2 only: flag byte (0x02 zran, 0x04 batch, 0x08 encrypted, 0x10 crc). */
  v2Flags?: number;
}

function dataLoss(msg: string): FerryError {
  return new FerryError('DATA_LOSS', `blob meta: ${msg}`);
}

/**
 * Encodes one V1 entry into `out` at `pos`. V1 cannot mark a chunk compressed when the sizes are
 * equal (nydus treats Cs != Us as "compressed"), which the builder guarantees by storing raw
 * whenever compression does not shrink.
 */
export function encodeCiV1(e: CiEntry, out: Buffer, pos: number): void {
  const { compressedOffset: co, compressedSize: cs, uncompressedOffset: uo, uncompressedSize: us } = e;
  if (us < 1 || us > MAX_CI_CHUNK || cs < 1 || cs > MAX_CI_CHUNK)
    throw new FerryError('INVALID_ARGUMENT', `CI entry: chunk size out of range (${cs}/${us})`);
  if (uo % 4096 !== 0 || uo >= 2 ** 44)
    throw new FerryError('INVALID_ARGUMENT', `CI entry: uncompressed offset ${uo} not 4 KiB aligned or too large`);
  if (co < 0 || co >= MAX_COMP_OFFSET) throw new FerryError('INVALID_ARGUMENT', `CI entry: compressed offset ${co} too large`);
  if (e.compressed !== (cs !== us))
    throw new FerryError('INVALID_ARGUMENT', 'CI V1 entry: compressed flag must equal (compressed size != uncompressed size)');
  const u1 = BigInt(us - 1);
  const c1 = BigInt(cs - 1);
  const uncomp = (BigInt(uo) & 0xfff_ffff_f000n) | (((u1 >> 20n) & 0xfn) << 8n) | ((u1 & 0xfffffn) << 44n);
  const comp = BigInt(co) | (((c1 >> 20n) & 0xfn) << 40n) | ((c1 & 0xfffffn) << 44n);
  out.writeBigUInt64LE(uncomp, pos);
  out.writeBigUInt64LE(comp, pos + 8);
}

/** Decodes one V1 entry (32-bit halves, no BigInt: a mount decodes tens of thousands). */
export function decodeCiV1(buf: Buffer, pos: number): CiEntry {
  if (pos < 0 || pos + CI_V1_SIZE > buf.length) throw dataLoss(`CI entry at ${pos} past end of table`);
  const ulo = buf.readUInt32LE(pos);
  const uhi = buf.readUInt32LE(pos + 4);
  const clo = buf.readUInt32LE(pos + 8);
  const chi = buf.readUInt32LE(pos + 12);
  const uncompressedOffset = (uhi & 0xfff) * 0x1_0000_0000 + ((ulo & 0xffff_f000) >>> 0);
  const uncompressedSize = ((((ulo >>> 8) & 0xf) << 20) | (uhi >>> 12)) + 1;
  const compressedOffset = (chi & 0xff) * 0x1_0000_0000 + clo;
  const compressedSize = ((((chi >>> 8) & 0xf) << 20) | (chi >>> 12)) + 1;
  return { compressedOffset, compressedSize, uncompressedOffset, uncompressedSize, compressed: compressedSize !== uncompressedSize };
}

/** Decodes one V2 entry (24 bytes). */
export function decodeCiV2(buf: Buffer, pos: number): CiEntry {
  if (pos < 0 || pos + CI_V2_SIZE > buf.length) throw dataLoss(`CI V2 entry at ${pos} past end of table`);
  const uncomp = buf.readBigUInt64LE(pos);
  const comp = buf.readBigUInt64LE(pos + 8);
  const data = buf.readBigUInt64LE(pos + 16);
  const flags = Number(uncomp >> 56n);
  const e: CiEntry = {
    uncompressedOffset: Number(uncomp & 0xffff_ffffn) * 4096,
    uncompressedSize: Number((uncomp >> 32n) & 0xff_ffffn) + 1,
    compressedOffset: Number(comp & 0xff_ffff_ffffn),
    compressedSize: Number(comp >> 40n),
    compressed: (flags & 0x01) !== 0,
    v2Flags: flags,
  };
  if (flags & 0x10) e.crc32 = Number(data & 0xffff_ffffn);
  return e;
}

/** Encodes a whole V1 table. */
export function encodeCiTable(entries: readonly CiEntry[]): Buffer {
  const out = Buffer.alloc(entries.length * CI_V1_SIZE);
  entries.forEach((e, i) => {
    encodeCiV1(e, out, i * CI_V1_SIZE);
  });
  return out;
}

/** Decodes `count` entries of an uncompressed CI table (V1 or V2 per `features`). */
export function decodeCiTable(buf: Buffer, count: number, features: number): CiEntry[] {
  const v2 = (features & BlobFeatures.CHUNK_INFO_V2) !== 0;
  const size = v2 ? CI_V2_SIZE : CI_V1_SIZE;
  if (!Number.isInteger(count) || count < 0 || count * size > buf.length) {
    throw dataLoss(`CI table of ${buf.length} bytes cannot hold ${count} entries of ${size} bytes`);
  }
  const out: CiEntry[] = new Array(count);
  for (let i = 0; i < count; i++) out[i] = v2 ? decodeCiV2(buf, i * size) : decodeCiV1(buf, i * size);
  return out;
}

/** The 4096-byte header stored right after the (possibly compressed) CI table. */
export interface BlobMetaHeader {
  features: number;
  ciCompressor: number;
  ciEntries: number;
  ciOffset: number;
  ciCompressedSize: number;
  ciUncompressedSize: number;
  ctxOffset: number;
  ctxSize: number;
  ctxCount: number;
}

export function encodeBlobMetaHeader(h: BlobMetaHeader): Buffer {
  const b = Buffer.alloc(BLOB_META_HEADER_SIZE);
  b.writeUInt32LE(BLOB_META_MAGIC, 0);
  b.writeUInt32LE(h.features >>> 0, 4);
  b.writeUInt32LE(h.ciCompressor, 8);
  b.writeUInt32LE(h.ciEntries, 12);
  b.writeBigUInt64LE(BigInt(h.ciOffset), 16);
  b.writeBigUInt64LE(BigInt(h.ciCompressedSize), 24);
  b.writeBigUInt64LE(BigInt(h.ciUncompressedSize), 32);
  b.writeBigUInt64LE(BigInt(h.ctxOffset), 40);
  b.writeBigUInt64LE(BigInt(h.ctxSize), 48);
  b.writeUInt32LE(h.ctxCount, 56);
  b.writeUInt32LE(BLOB_META_MAGIC, 4092);
  return b;
}

function safeU64(b: Buffer, pos: number, what: string): number {
  const v = b.readBigUInt64LE(pos);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw dataLoss(`${what} ${v} out of range`);
  return Number(v);
}

export function decodeBlobMetaHeader(b: Buffer, pos = 0): BlobMetaHeader {
  if (pos < 0 || pos + BLOB_META_HEADER_SIZE > b.length) throw dataLoss('truncated blob meta header');
  if (b.readUInt32LE(pos) !== BLOB_META_MAGIC || b.readUInt32LE(pos + 4092) !== BLOB_META_MAGIC) {
    throw dataLoss('bad blob meta header magic');
  }
  return {
    features: b.readUInt32LE(pos + 4),
    ciCompressor: b.readUInt32LE(pos + 8),
    ciEntries: b.readUInt32LE(pos + 12),
    ciOffset: safeU64(b, pos + 16, 'CI offset'),
    ciCompressedSize: safeU64(b, pos + 24, 'CI compressed size'),
    ciUncompressedSize: safeU64(b, pos + 32, 'CI uncompressed size'),
    ctxOffset: safeU64(b, pos + 40, 'context offset'),
    ctxSize: safeU64(b, pos + 48, 'context size'),
    ctxCount: b.readUInt32LE(pos + 56),
  };
}

/** Chunk digest array (`blob.digest`): 32 bytes per CI entry, in CI order. */
export function encodeDigestArray(digests: readonly Buffer[]): Buffer {
  const out = Buffer.alloc(digests.length * 32);
  digests.forEach((d, i) => {
    if (d.length !== 32) throw new FerryError('INVALID_ARGUMENT', `chunk digest ${i} is ${d.length} bytes, expected 32`);
    d.copy(out, i * 32);
  });
  return out;
}

export function decodeDigestArray(buf: Buffer, count: number): Buffer[] {
  if (buf.length < count * 32) throw dataLoss(`digest array of ${buf.length} bytes is too short for ${count} chunks`);
  const out: Buffer[] = new Array(count);
  for (let i = 0; i < count; i++) out[i] = buf.subarray(i * 32, i * 32 + 32);
  return out;
}

/**
 * The nydusd blob-cache form of the blob meta (`<blob_id>.blob.meta`, also shipped as
 * `image/<id>.blob.meta` in bootstrap layers): uncompressed CI bytes, zero padded to 4 KiB,
 * then the 4096-byte header.
 */
export function blobMetaCacheFile(uncompressedCi: Buffer, header: Buffer): Buffer {
  const padded = Math.ceil(uncompressedCi.length / 4096) * 4096;
  const out = Buffer.alloc(padded + BLOB_META_HEADER_SIZE);
  uncompressedCi.copy(out, 0);
  header.copy(out, padded);
  return out;
}
