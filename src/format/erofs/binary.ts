/**
 * @module format/erofs/binary
 * Little-endian field access with bounds checks that raise typed errors. Every on-disk record
 * decoder in format/erofs and format/rafs reads through these, so a truncated or hostile buffer
 * yields `FerryError('DATA_LOSS')` naming the record, never a RangeError.
 */
import { FerryError } from '../../core/index.js';

/** Throws DATA_LOSS unless `[off, off + len)` lies inside `buf`. */
export function need(buf: Uint8Array, off: number, len: number, what: string): void {
  if (!Number.isSafeInteger(off) || !Number.isSafeInteger(len) || off < 0 || len < 0 || off + len > buf.length) {
    throw new FerryError('DATA_LOSS', `${what}: truncated or out of range (offset ${off}, length ${len}, buffer ${buf.length} bytes)`);
  }
}

/** Reads a u64 as a number; DATA_LOSS when it exceeds Number.MAX_SAFE_INTEGER. */
export function u64(buf: Buffer, off: number, what: string): number {
  const v = buf.readBigUInt64LE(off);
  if (v > BigInt(Number.MAX_SAFE_INTEGER)) {
    throw new FerryError('DATA_LOSS', `${what}: 64-bit value ${v} at offset ${off} is too large`);
  }
  return Number(v);
}

/** Writes a non-negative safe integer as u64. */
export function putU64(buf: Buffer, off: number, v: number, what = 'u64'): void {
  if (!Number.isSafeInteger(v) || v < 0) throw new FerryError('INVALID_ARGUMENT', `${what}: ${v} is not a u64`);
  buf.writeBigUInt64LE(BigInt(v), off);
}

/** Writes an unsigned integer field of `width` bytes (1, 2, 4), checking its range. */
export function putUint(buf: Buffer, off: number, v: number, width: 1 | 2 | 4, what: string): void {
  if (!Number.isInteger(v) || v < 0 || v >= 2 ** (8 * width)) {
    throw new FerryError('INVALID_ARGUMENT', `${what}: ${v} does not fit in ${width * 8} bits`);
  }
  buf.writeUIntLE(v, off, width);
}

/** Writes `s` as ASCII into a fixed-width field, zero padded; throws when too long. */
export function putFixedString(buf: Buffer, off: number, width: number, s: string, what: string): void {
  const b = Buffer.from(s, 'utf8');
  if (b.length > width) throw new FerryError('INVALID_ARGUMENT', `${what}: ${JSON.stringify(s)} longer than ${width} bytes`);
  buf.fill(0, off, off + width);
  b.copy(buf, off);
}

/** Reads a fixed-width, NUL-padded string field. */
export function fixedString(buf: Buffer, off: number, width: number): string {
  let end = off;
  while (end < off + width && buf[end] !== 0) end++;
  return buf.toString('utf8', off, end);
}

/** Rounds `v` up to a multiple of `a` (a power of two). */
export function alignUp(v: number, a: number): number {
  return Math.ceil(v / a) * a;
}
