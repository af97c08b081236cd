/**
 * @module format/zran/inflate-at
 * Resuming a deflate stream at a checkpoint without zlib's inflatePrime (which Node does not
 * expose): the compressed bytes are re-aligned so the block starts at bit 0 (the checkpoint's
 * leftover bits of the byte before it first), then raw-inflated with the checkpoint's window as the
 * preset dictionary. The input may end anywhere past the wanted bytes (a sync flush decodes what
 * it holds).
 */
import { constants, inflateRawSync } from 'node:zlib';
import { FerryError } from '../../core/index.js';

/** Where a resumed inflate starts: a checkpoint's bit offset, its leftover byte and its window. */
export interface ResumePoint {
  bits: number;
  byte: number;
  window: Buffer;
}

/** Largest output one resumed inflate may produce (a guard against a hostile index). */
const MAX_RESUME_OUTPUT = 256 << 20;

/** The bit stream starting `bits` bits before `data`, as whole bytes (the final partial byte dropped). */
export function alignBits(bits: number, byte: number, data: Buffer): Buffer {
  if (bits === 0) return data;
  const out = Buffer.allocUnsafe(data.length);
  const keep = 8 - bits;
  let carry = byte >> keep;
  for (let i = 0; i < data.length; i++) {
    const b = data[i]!;
    out[i] = (carry | (b << bits)) & 0xff;
    carry = b >> keep;
  }
  return out;
}

/**
 * `length` bytes at `skip` past the checkpoint, inflated from `compressed` (the gzip file from the
 * checkpoint's inOffset on). DATA_LOSS when the input does not inflate or is too short.
 */
export function inflateAt(at: ResumePoint, compressed: Buffer, skip: number, length: number): Buffer {
  if (at.bits < 0 || at.bits > 7 || at.window.length > 32 * 1024)
    throw new FerryError('DATA_LOSS', `zran: bad checkpoint (bits ${at.bits})`);
  let out: Buffer;
  try {
    out = inflateRawSync(alignBits(at.bits, at.byte, compressed), {
      ...(at.window.length ? { dictionary: at.window } : {}),
      finishFlush: constants.Z_SYNC_FLUSH,
      maxOutputLength: MAX_RESUME_OUTPUT,
    });
  } catch (err) {
    throw new FerryError('DATA_LOSS', `zran: inflate from checkpoint failed: ${(err as Error).message}`, { cause: err });
  }
  if (out.length < skip + length) {
    throw new FerryError('DATA_LOSS', `zran: ${compressed.length} compressed bytes inflate to ${out.length}, need ${skip + length}`);
  }
  return out.subarray(skip, skip + length);
}
