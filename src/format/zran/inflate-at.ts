/**
 * @module format/zran/inflate-at
 * Resuming a deflate stream at a checkpoint without zlib's inflatePrime (which Node does not
 * expose). A checkpoint in the middle of a byte leaves `bits` bits of the byte before it to the next
 * block; the compressed bytes cannot simply be shifted into place, since a stored block later in the
 * span must start at the stream's own byte boundaries. Instead the stream is preceded by empty
 * deflate blocks (no output) whose length in bits, plus those `bits` leftover bits, is a whole
 * number of bytes: the original bytes follow unshifted. The result is raw-inflated with the
 * checkpoint's window as the preset dictionary; the input may end anywhere past the wanted bytes (a
 * sync flush decodes what it holds).
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

/** LSB-first bit writer (deflate's bit order). */
class Bits {
  private readonly bytes: number[] = [];
  private acc = 0;
  private n = 0;
  put(value: number, count: number): void {
    for (let i = 0; i < count; i++) {
      this.acc |= ((value >> i) & 1) << this.n;
      if (++this.n === 8) {
        this.bytes.push(this.acc);
        this.acc = 0;
        this.n = 0;
      }
    }
  }
  get length(): number {
    return this.bytes.length * 8 + this.n;
  }
  done(): Buffer {
    if (this.n !== 0) throw new FerryError('INTERNAL', 'zran: resume prefix is not whole bytes');
    return Buffer.from(this.bytes);
  }
}

/** An empty fixed-Huffman block: header (not final, type 01) and the 7-bit end-of-block code — 10 bits. */
function emptyFixedBlock(w: Bits): void {
  w.put(0b010, 3);
  w.put(0, 7);
}

/** Code-length code order of a dynamic block header (RFC 1951 3.2.7). */
const CL_ORDER = [16, 17, 18, 0, 8, 7, 9, 6, 10, 5, 11, 4, 12, 3, 13, 2, 14, 1, 15];

/**
 * An empty dynamic-Huffman block — 333 bits, odd, so that with fixed blocks every length mod 8 can
 * be made: 257 literal/length codes of which only end-of-block has a (1-bit) code, one unused
 * distance code, the code lengths sent with a 1-bit code for "0" and one for "1" (all 19 code-length
 * code lengths sent).
 */
function emptyDynamicBlock(w: Bits): void {
  w.put(0b100, 3); // not final, type 10
  w.put(0, 5); // HLIT: 257 codes
  w.put(0, 5); // HDIST: 1 code
  w.put(15, 4); // HCLEN: 19 code-length code lengths
  for (const sym of CL_ORDER) w.put(sym === 0 || sym === 1 ? 1 : 0, 3);
  for (let i = 0; i < 256; i++) w.put(0, 1); // literals: no code ("0" is code 0)
  w.put(1, 1); // end-of-block: length 1 ("1" is code 1)
  w.put(0, 1); // the distance code: none
  w.put(0, 1); // the block's only symbol: end-of-block (code 0)
}

/**
 * The deflate stream from a checkpoint on, as raw deflate that starts at a byte boundary: empty
 * blocks, the `bits` leftover bits of `byte`, then `data` (the bytes from the checkpoint's
 * inOffset) unshifted.
 */
export function resumeStream(bits: number, byte: number, data: Buffer): Buffer {
  if (bits === 0) return data;
  const w = new Bits();
  const need = (8 - bits) % 8; // prefix length mod 8
  // 10 a + 333 b ≡ need (mod 8), b ∈ {0, 1}, a ∈ 0..3
  const dyn = need % 2 === 1 ? 1 : 0;
  if (dyn) emptyDynamicBlock(w);
  for (let i = 0; i < 4 && w.length % 8 !== need; i++) emptyFixedBlock(w);
  w.put(byte >> (8 - bits), bits);
  return Buffer.concat([w.done(), data]);
}

/**
 * Everything `compressed` (the gzip file from the checkpoint's inOffset on) inflates to from the
 * checkpoint. DATA_LOSS when it does not inflate.
 */
export function inflateFrom(at: ResumePoint, compressed: Buffer): Buffer {
  if (at.bits < 0 || at.bits > 7 || at.window.length > 32 * 1024)
    throw new FerryError('DATA_LOSS', `zran: bad checkpoint (bits ${at.bits})`);
  try {
    return inflateRawSync(resumeStream(at.bits, at.byte, compressed), {
      ...(at.window.length ? { dictionary: at.window } : {}),
      finishFlush: constants.Z_SYNC_FLUSH,
      maxOutputLength: MAX_RESUME_OUTPUT,
    });
  } catch (err) {
    throw new FerryError('DATA_LOSS', `zran: inflate from checkpoint failed: ${(err as Error).message}`, { cause: err });
  }
}

/** `length` bytes at `skip` past the checkpoint (see inflateFrom); DATA_LOSS when the input is too short. */
export function inflateAt(at: ResumePoint, compressed: Buffer, skip: number, length: number): Buffer {
  const out = inflateFrom(at, compressed);
  if (out.length < skip + length) {
    throw new FerryError('DATA_LOSS', `zran: ${compressed.length} compressed bytes inflate to ${out.length}, need ${skip + length}`);
  }
  return out.subarray(skip, skip + length);
}
