/**
 * @module format/erofs/dirent
 * Directory entries (`erofs_dirent`, 12 bytes) and the block packing of directory data: each
 * 4096-byte block holds its dirent array followed by its names (no NUL terminators); `nameoff` is
 * relative to the start of its block; the last name of a block ends at the first NUL or at the end
 * of the block (or of the directory data).
 */
import { FerryError } from '../../core/index.js';
import { need, putU64, putUint, u64 } from './binary.js';
import { EROFS_BLOCK_SIZE, EROFS_DIRENT_SIZE } from './constants.js';

/** `@0 u64 nid`, `@8 u16 nameoff`, `@10 u8 file_type`, `@11 u8 reserved`. */
export interface ErofsDirent {
  nid: number;
  nameoff: number;
  fileType: number;
}

export function decodeErofsDirent(buf: Buffer, off: number): ErofsDirent {
  need(buf, off, EROFS_DIRENT_SIZE, 'erofs dirent');
  return { nid: u64(buf, off, 'dirent nid'), nameoff: buf.readUInt16LE(off + 8), fileType: buf.readUInt8(off + 10) };
}

export function writeErofsDirent(buf: Buffer, off: number, rec: ErofsDirent): void {
  need(buf, off, EROFS_DIRENT_SIZE, 'erofs dirent (write)');
  putU64(buf, off, rec.nid, 'dirent nid');
  putUint(buf, off + 8, rec.nameoff, 2, 'dirent nameoff');
  putUint(buf, off + 10, rec.fileType, 1, 'dirent file_type');
  buf[off + 11] = 0;
}

export function encodeErofsDirent(rec: ErofsDirent): Buffer {
  const b = Buffer.alloc(EROFS_DIRENT_SIZE);
  writeErofsDirent(b, 0, rec);
  return b;
}

/** A named directory entry as stored in directory data. */
export interface ErofsNamedDirent {
  name: Buffer;
  nid: number;
  fileType: number;
}

/** Byte comparison EROFS uses to order entries (shorter prefix first). */
export function compareDirentNames(a: Buffer, b: Buffer): number {
  return Buffer.compare(a, b);
}

/**
 * Computes the directory `i_size` for sorted names (the rule nydus uses): entries are packed into
 * blocks; before an entry that would not fit, the size is rounded up to the next block. The final
 * size is not rounded.
 */
export function erofsDirSize(names: readonly Buffer[], blockSize = EROFS_BLOCK_SIZE): number {
  let size = 0;
  for (const n of names) {
    const len = EROFS_DIRENT_SIZE + n.length;
    if ((size % blockSize) + len > blockSize) size = Math.ceil(size / blockSize) * blockSize;
    size += len;
  }
  return size;
}

/**
 * Encodes a directory's data (exactly `erofsDirSize` bytes). `entries` must include `.` and `..`
 * and be sorted by `compareDirentNames`; each block's unused tail is zero.
 */
export function encodeErofsDirData(entries: readonly ErofsNamedDirent[], blockSize = EROFS_BLOCK_SIZE): Buffer {
  for (let i = 1; i < entries.length; i++) {
    if (compareDirentNames(entries[i - 1]!.name, entries[i]!.name) >= 0) {
      throw new FerryError('INVALID_ARGUMENT', `directory entries not sorted/unique at ${entries[i]!.name.toString()}`);
    }
  }
  const size = erofsDirSize(
    entries.map((e) => e.name),
    blockSize,
  );
  const out = Buffer.alloc(size);
  // split into blocks with the same rule as erofsDirSize
  let i = 0;
  let blockStart = 0;
  while (i < entries.length) {
    let used = 0;
    let j = i;
    while (j < entries.length && used + EROFS_DIRENT_SIZE + entries[j]!.name.length <= blockSize) {
      used += EROFS_DIRENT_SIZE + entries[j]!.name.length;
      j++;
    }
    if (j === i) throw new FerryError('INVALID_ARGUMENT', 'directory entry name too long for a block');
    let nameoff = (j - i) * EROFS_DIRENT_SIZE;
    for (let k = i; k < j; k++) {
      const e = entries[k]!;
      writeErofsDirent(out, blockStart + (k - i) * EROFS_DIRENT_SIZE, { nid: e.nid, nameoff, fileType: e.fileType });
      e.name.copy(out, blockStart + nameoff);
      nameoff += e.name.length;
    }
    i = j;
    blockStart += blockSize;
  }
  return out;
}

/**
 * Decodes one directory block `buf[off, off+len)` (len ≤ block size). Validates that dirents and
 * names stay inside the block and that nameoffs increase; DATA_LOSS otherwise.
 */
export function decodeErofsDirBlock(buf: Buffer, off: number, len: number): ErofsNamedDirent[] {
  need(buf, off, len, 'erofs directory block');
  if (len < EROFS_DIRENT_SIZE) throw new FerryError('DATA_LOSS', `erofs directory block too short (${len} bytes)`);
  const first = decodeErofsDirent(buf, off);
  if (first.nameoff < EROFS_DIRENT_SIZE || first.nameoff % EROFS_DIRENT_SIZE !== 0 || first.nameoff > len) {
    throw new FerryError('DATA_LOSS', `erofs directory block: invalid first nameoff ${first.nameoff}`);
  }
  const count = first.nameoff / EROFS_DIRENT_SIZE;
  const out: ErofsNamedDirent[] = [];
  for (let k = 0; k < count; k++) {
    const d = k === 0 ? first : decodeErofsDirent(buf, off + k * EROFS_DIRENT_SIZE);
    let end: number;
    if (k + 1 < count) {
      end = buf.readUInt16LE(off + (k + 1) * EROFS_DIRENT_SIZE + 8);
    } else {
      end = d.nameoff;
      while (end < len && buf[off + end] !== 0) end++;
    }
    if (d.nameoff < first.nameoff || end > len || end <= d.nameoff) {
      throw new FerryError('DATA_LOSS', `erofs directory block: invalid name bounds ${d.nameoff}..${end}`);
    }
    out.push({ name: Buffer.from(buf.subarray(off + d.nameoff, off + end)), nid: d.nid, fileType: d.fileType });
  }
  return out;
}
