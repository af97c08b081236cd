/**
 * @module format/estargz/footer
 * The 51-byte eStargz footer: an empty gzip member (stored deflate block) whose header carries an
 * extra field with subfield `SG`, 22 bytes long: the TOC member's offset as 16 lowercase hex digits
 * followed by `STARGZ`. It is the last thing in the blob, so a reader finds the TOC with one ranged
 * read of the tail.
 */
import { gunzipSync } from 'node:zlib';
import { FerryError } from '../../core/index.js';

export const FOOTER_SIZE = 51;
const MAGIC = 'STARGZ';

/** The footer pointing at the TOC gzip member at `tocOffset`. */
export function encodeFooter(tocOffset: number): Buffer {
  if (!Number.isSafeInteger(tocOffset) || tocOffset < 0)
    throw new FerryError('INVALID_ARGUMENT', `eStargz footer: bad TOC offset ${tocOffset}`);
  const b = Buffer.alloc(FOOTER_SIZE);
  // gzip header: magic, deflate, FLG.FEXTRA, mtime 0, XFL 0, OS 255 (unknown)
  b.set([0x1f, 0x8b, 0x08, 0x04, 0, 0, 0, 0, 0x00, 0xff], 0);
  b.writeUInt16LE(26, 10); // XLEN: 4-byte subfield header + 22
  b.write('SG', 12, 'latin1');
  b.writeUInt16LE(22, 14);
  b.write(`${tocOffset.toString(16).padStart(16, '0')}${MAGIC}`, 16, 'latin1');
  // final stored block of length 0, then CRC32 = 0 and ISIZE = 0 (already zero)
  b.set([0x01, 0x00, 0x00, 0xff, 0xff], 38);
  return b;
}

/** The TOC offset a footer holds; DATA_LOSS when `b` is not an eStargz footer. */
export function parseFooter(b: Buffer): number {
  const fail = (msg: string): never => {
    throw new FerryError('DATA_LOSS', `eStargz footer: ${msg}`);
  };
  if (b.length !== FOOTER_SIZE) fail(`${b.length} bytes, not ${FOOTER_SIZE}`);
  if (b[0] !== 0x1f || b[1] !== 0x8b || b[2] !== 0x08) fail('not a gzip member');
  if ((b[3]! & 0x04) === 0) fail('no extra field');
  if (b.readUInt16LE(10) !== 26) fail(`extra field of ${b.readUInt16LE(10)} bytes, not 26`);
  if (b.toString('latin1', 12, 14) !== 'SG') fail(`subfield ${JSON.stringify(b.toString('latin1', 12, 14))}, not "SG"`);
  if (b.readUInt16LE(14) !== 22) fail('subfield length is not 22');
  const field = b.toString('latin1', 16, 38);
  if (!field.endsWith(MAGIC)) fail('no STARGZ magic');
  const hex = field.slice(0, 16);
  if (!/^[0-9a-f]{16}$/i.test(hex)) fail(`offset ${JSON.stringify(hex)} is not hex`);
  try {
    if (gunzipSync(b).length !== 0) fail('the footer member is not empty');
  } catch (err) {
    if (FerryError.is(err)) throw err;
    fail(`not a valid gzip member: ${(err as Error).message}`);
  }
  const off = Number.parseInt(hex, 16);
  if (!Number.isSafeInteger(off)) fail('offset out of range');
  return off;
}
