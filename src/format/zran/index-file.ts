/**
 * @module format/zran/index-file
 * The OCI-ref (zran) index Ferry ships beside a bootstrap whose chunks live in the original gzip
 * layers: per blob (one per layer), its inflate contexts — the fields of upstream Nydus'
 * ZranInflateContext: compressed and uncompressed offset and length, the leftover byte and its bit
 * count, and a window dictionary — and, per chunk of the bootstrap's blob (in the blob's own
 * address space, what the storage device asks for), the context it is inflated from and its offset
 * in that context's output. Little-endian records, every count and offset bounds-checked on decode.
 *
 *   header   : magic u32 'FZRN', version u32 (1), blob count u32, reserved u32
 *   per blob : blob id [32], layer digest [32], compressed size u64, uncompressed size u64,
 *              context count u32, chunk count u32
 *              contexts × 40: in_offset u64, out_offset u64, in_len u32, out_len u32, ctx_byte u8,
 *                             ctx_bits u8, reserved u16, dict_offset u32 (from the blob's dict
 *                             area), dict_size u32
 *              chunks × 24  : blob offset u64, size u32, context u32, offset in context u32, reserved u32
 *              dict area    : the windows, concatenated
 */
import { FerryError } from '../../core/index.js';
import type { Checkpoint } from './checkpoints.js';

export const ZRAN_INDEX_MAGIC = 0x4e525a46; // 'FZRN'
const VERSION = 1;
const HEADER = 16;
const BLOB_HEADER = 96;
const CTX = 40;
const CHUNK = 24;
const MAX_DICT = 32 * 1024;

export interface ZranContext {
  inOffset: number;
  outOffset: number;
  inLen: number;
  outLen: number;
  bits: number;
  byte: number;
  window: Buffer;
}

export interface ZranChunk {
  /** offset and size in the bootstrap's blob (its compressed address space: the chunk stored raw) */
  offset: number;
  size: number;
  context: number;
  /** where the chunk starts in the context's output */
  contextOffset: number;
}

export interface ZranBlob {
  /** the bootstrap's blob id (64 hex) */
  blobId: string;
  /** the gzip layer the bytes are read from */
  layerDigest: string;
  compressedSize: number;
  uncompressedSize: number;
  contexts: ZranContext[];
  /** sorted by offset */
  chunks: ZranChunk[];
}

function loss(msg: string): FerryError {
  return new FerryError('DATA_LOSS', `zran index: ${msg}`);
}

/** Contexts from a gzip index's checkpoints: each spans to the next (its partial byte included). */
export function contextsOf(checkpoints: readonly Checkpoint[], compressedSize: number, uncompressedSize: number): ZranContext[] {
  return checkpoints.map((c, i) => {
    const next = checkpoints[i + 1];
    const inEnd = next ? next.inOffset + (next.bits ? 1 : 0) : compressedSize;
    const outEnd = next ? next.outOffset : uncompressedSize;
    return {
      inOffset: c.inOffset,
      outOffset: c.outOffset,
      inLen: inEnd - c.inOffset,
      outLen: outEnd - c.outOffset,
      bits: c.bits,
      byte: c.byte,
      window: c.window,
    };
  });
}

function hex32(s: string, what: string): Buffer {
  const h = s.replace(/^sha256:/, '');
  if (!/^[0-9a-f]{64}$/.test(h)) throw new FerryError('INVALID_ARGUMENT', `zran index: ${what} ${s} is not a sha256 digest`);
  return Buffer.from(h, 'hex');
}

function encodeBlob(b: ZranBlob): Buffer {
  const dictSize = b.contexts.reduce((n, c) => n + c.window.length, 0);
  const out = Buffer.alloc(BLOB_HEADER + b.contexts.length * CTX + b.chunks.length * CHUNK + dictSize);
  hex32(b.blobId, 'blob id').copy(out, 0);
  hex32(b.layerDigest, 'layer digest').copy(out, 32);
  out.writeBigUInt64LE(BigInt(b.compressedSize), 64);
  out.writeBigUInt64LE(BigInt(b.uncompressedSize), 72);
  out.writeUInt32LE(b.contexts.length, 80);
  out.writeUInt32LE(b.chunks.length, 84);
  let p = BLOB_HEADER;
  let dict = 0;
  const dictBase = BLOB_HEADER + b.contexts.length * CTX + b.chunks.length * CHUNK;
  for (const c of b.contexts) {
    out.writeBigUInt64LE(BigInt(c.inOffset), p);
    out.writeBigUInt64LE(BigInt(c.outOffset), p + 8);
    out.writeUInt32LE(c.inLen, p + 16);
    out.writeUInt32LE(c.outLen, p + 20);
    out.writeUInt8(c.byte, p + 24);
    out.writeUInt8(c.bits, p + 25);
    out.writeUInt32LE(dict, p + 32);
    out.writeUInt32LE(c.window.length, p + 36);
    c.window.copy(out, dictBase + dict);
    dict += c.window.length;
    p += CTX;
  }
  for (const c of b.chunks) {
    out.writeBigUInt64LE(BigInt(c.offset), p);
    out.writeUInt32LE(c.size, p + 8);
    out.writeUInt32LE(c.context, p + 12);
    out.writeUInt32LE(c.contextOffset, p + 16);
    p += CHUNK;
  }
  return out;
}

export function encodeZranIndex(blobs: readonly ZranBlob[]): Buffer {
  const head = Buffer.alloc(HEADER);
  head.writeUInt32LE(ZRAN_INDEX_MAGIC, 0);
  head.writeUInt32LE(VERSION, 4);
  head.writeUInt32LE(blobs.length, 8);
  return Buffer.concat([head, ...blobs.map(encodeBlob)]);
}

function u64(b: Buffer, p: number, what: string): number {
  const v = b.readBigUInt64LE(p);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw loss(`${what} ${v} out of range`);
  return Number(v);
}

function decodeContext(
  buf: Buffer,
  p: number,
  dictBase: number,
  dictEnd: number,
  b: Pick<ZranBlob, 'compressedSize' | 'uncompressedSize'>,
  i: number,
): ZranContext {
  const c = {
    inOffset: u64(buf, p, 'in offset'),
    outOffset: u64(buf, p + 8, 'out offset'),
    inLen: buf.readUInt32LE(p + 16),
    outLen: buf.readUInt32LE(p + 20),
    byte: buf.readUInt8(p + 24),
    bits: buf.readUInt8(p + 25),
  };
  const dOff = buf.readUInt32LE(p + 32);
  const dLen = buf.readUInt32LE(p + 36);
  if (c.bits > 7 || dLen > MAX_DICT || dictBase + dOff + dLen > dictEnd) throw loss(`context ${i}: bad bits or dictionary`);
  if (c.inOffset + c.inLen > b.compressedSize || c.outOffset + c.outLen > b.uncompressedSize)
    throw loss(`context ${i} lies past its layer`);
  return { ...c, window: buf.subarray(dictBase + dOff, dictBase + dOff + dLen) };
}

function decodeBlob(buf: Buffer, pos: number): { blob: ZranBlob; end: number } {
  if (pos + BLOB_HEADER > buf.length) throw loss('truncated blob header');
  const ctxCount = buf.readUInt32LE(pos + 80);
  const chunkCount = buf.readUInt32LE(pos + 84);
  const dictBase = pos + BLOB_HEADER + ctxCount * CTX + chunkCount * CHUNK;
  if (dictBase > buf.length) throw loss(`${ctxCount} contexts and ${chunkCount} chunks do not fit`);
  const sizes = { compressedSize: u64(buf, pos + 64, 'compressed size'), uncompressedSize: u64(buf, pos + 72, 'uncompressed size') };
  let dictEnd = dictBase;
  for (let i = 0; i < ctxCount; i++) dictEnd += buf.readUInt32LE(pos + BLOB_HEADER + i * CTX + 36);
  if (dictEnd > buf.length) throw loss('truncated dictionaries');
  const contexts: ZranContext[] = [];
  for (let i = 0; i < ctxCount; i++) contexts.push(decodeContext(buf, pos + BLOB_HEADER + i * CTX, dictBase, dictEnd, sizes, i));
  const chunks: ZranChunk[] = [];
  let p = pos + BLOB_HEADER + ctxCount * CTX;
  for (let i = 0; i < chunkCount; i++, p += CHUNK) {
    const c = {
      offset: u64(buf, p, 'chunk offset'),
      size: buf.readUInt32LE(p + 8),
      context: buf.readUInt32LE(p + 12),
      contextOffset: buf.readUInt32LE(p + 16),
    };
    const ctx = contexts[c.context];
    if (!ctx || ctx.outOffset + c.contextOffset + c.size > sizes.uncompressedSize) throw loss(`chunk ${i} lies outside its layer`);
    if (i > 0 && c.offset < chunks[i - 1]!.offset) throw loss('chunks out of order');
    chunks.push(c);
  }
  const blob: ZranBlob = {
    blobId: buf.subarray(pos, pos + 32).toString('hex'),
    layerDigest: `sha256:${buf.subarray(pos + 32, pos + 64).toString('hex')}`,
    ...sizes,
    contexts,
    chunks,
  };
  return { blob, end: dictEnd };
}

export function decodeZranIndex(buf: Buffer): ZranBlob[] {
  if (buf.length < HEADER || buf.readUInt32LE(0) !== ZRAN_INDEX_MAGIC) throw loss('bad magic');
  if (buf.readUInt32LE(4) !== VERSION) throw loss(`unsupported version ${buf.readUInt32LE(4)}`);
  const n = buf.readUInt32LE(8);
  const out: ZranBlob[] = [];
  let pos = HEADER;
  for (let i = 0; i < n; i++) {
    const { blob, end } = decodeBlob(buf, pos);
    out.push(blob);
    pos = end;
  }
  if (pos !== buf.length) throw loss(`${buf.length - pos} trailing bytes`);
  return out;
}

/** The compressed range to fetch and the context to inflate from, for layer output [start, end). */
export interface ZranSpan {
  context: ZranContext;
  /** range of the gzip layer to read */
  inOffset: number;
  inLength: number;
}

/** Compressed bytes read past a span's last context boundary (inflate's look-ahead). */
const SLACK = 64;

/** The span that inflates layer output [start, end) from context `first` (which holds `start`). */
export function spanOf(blob: ZranBlob, first: number, end: number): ZranSpan {
  const context = blob.contexts[first];
  if (!context) throw loss(`no context ${first}`);
  let last = first;
  while (last + 1 < blob.contexts.length && blob.contexts[last + 1]!.outOffset < end) last++;
  const next = blob.contexts[last + 1];
  const inEnd = next ? Math.min(blob.compressedSize, next.inOffset + SLACK) : blob.compressedSize;
  return { context, inOffset: context.inOffset, inLength: inEnd - context.inOffset };
}
