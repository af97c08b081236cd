/**
 * @module format/erofs/xattr
 * Inline extended attributes: a 12-byte `erofs_xattr_ibody_header` (`@0 u32 name filter/reserved`,
 * `@4 u8 h_shared_count`, `@5 7 reserved`), `h_shared_count` u32 shared-xattr ids, then entries
 * (`@0 u8 e_name_len` (suffix length), `@1 u8 e_name_index`, `@2 u16 e_value_size`, name suffix,
 * value, zero padding to 4 bytes). `i_xattr_icount = (area − 12) / 4 + 1`.
 */
import { FerryError } from '../../core/index.js';
import { alignUp, need } from './binary.js';
import { EROFS_XATTR_ENTRY_SIZE, EROFS_XATTR_IBODY_HEADER_SIZE, EROFS_XATTR_PREFIXES } from './constants.js';

/** Header of the inline xattr area. */
export interface ErofsXattrIbodyHeader {
  nameFilter: number;
  sharedCount: number;
}

export function decodeErofsXattrIbodyHeader(buf: Buffer, off: number): ErofsXattrIbodyHeader {
  need(buf, off, EROFS_XATTR_IBODY_HEADER_SIZE, 'erofs xattr header');
  return { nameFilter: buf.readUInt32LE(off), sharedCount: buf.readUInt8(off + 4) };
}

export function writeErofsXattrIbodyHeader(buf: Buffer, off: number, rec: ErofsXattrIbodyHeader): void {
  need(buf, off, EROFS_XATTR_IBODY_HEADER_SIZE, 'erofs xattr header (write)');
  buf.fill(0, off, off + EROFS_XATTR_IBODY_HEADER_SIZE);
  buf.writeUInt32LE(rec.nameFilter >>> 0, off);
  buf.writeUInt8(rec.sharedCount, off + 4);
}

/** One xattr entry header. */
export interface ErofsXattrEntry {
  nameLen: number;
  nameIndex: number;
  valueSize: number;
}

export function decodeErofsXattrEntry(buf: Buffer, off: number): ErofsXattrEntry {
  need(buf, off, EROFS_XATTR_ENTRY_SIZE, 'erofs xattr entry');
  return { nameLen: buf.readUInt8(off), nameIndex: buf.readUInt8(off + 1), valueSize: buf.readUInt16LE(off + 2) };
}

export function writeErofsXattrEntry(buf: Buffer, off: number, rec: ErofsXattrEntry): void {
  need(buf, off, EROFS_XATTR_ENTRY_SIZE, 'erofs xattr entry (write)');
  buf.writeUInt8(rec.nameLen, off);
  buf.writeUInt8(rec.nameIndex, off + 1);
  buf.writeUInt16LE(rec.valueSize, off + 2);
}

/** Splits a full xattr name into its EROFS prefix index and suffix; throws for unsupported namespaces. */
export function splitXattrName(name: string): { index: number; suffix: Buffer } {
  let best: [number, string] | undefined;
  for (const [idx, prefix] of EROFS_XATTR_PREFIXES) {
    if (name.startsWith(prefix) && (best === undefined || prefix.length > best[1].length)) best = [idx, prefix];
  }
  if (!best) throw new FerryError('INVALID_ARGUMENT', `xattr ${JSON.stringify(name)}: namespace not supported by EROFS`);
  const suffix = Buffer.from(name.slice(best[1].length), 'utf8');
  if (suffix.length > 255) throw new FerryError('INVALID_ARGUMENT', `xattr name ${JSON.stringify(name)} too long`);
  return { index: best[0], suffix };
}

/**
 * Encodes the inline xattr area (header + sorted entries) for `xattrs`; returns the bytes and the
 * `i_xattr_icount` value. An empty set encodes to zero bytes and icount 0.
 */
export function encodeErofsXattrs(xattrs: ReadonlyMap<string, Buffer> | Record<string, Buffer>): { body: Buffer; icount: number } {
  const list = (xattrs instanceof Map ? [...xattrs.entries()] : Object.entries(xattrs)) as [string, Buffer][];
  if (list.length === 0) return { body: Buffer.alloc(0), icount: 0 };
  list.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  const parts: Buffer[] = [Buffer.alloc(EROFS_XATTR_IBODY_HEADER_SIZE)];
  for (const [name, value] of list) {
    const { index, suffix } = splitXattrName(name);
    if (value.length > 0xffff) throw new FerryError('INVALID_ARGUMENT', `xattr ${name}: value longer than 65535 bytes`);
    const len = alignUp(EROFS_XATTR_ENTRY_SIZE + suffix.length + value.length, 4);
    const e = Buffer.alloc(len);
    writeErofsXattrEntry(e, 0, { nameLen: suffix.length, nameIndex: index, valueSize: value.length });
    suffix.copy(e, EROFS_XATTR_ENTRY_SIZE);
    value.copy(e, EROFS_XATTR_ENTRY_SIZE + suffix.length);
    parts.push(e);
  }
  const body = Buffer.concat(parts);
  const icount = (body.length - EROFS_XATTR_IBODY_HEADER_SIZE) / 4 + 1;
  if (icount > 0xffff) throw new FerryError('INVALID_ARGUMENT', 'xattrs too large for one inode');
  return { body, icount };
}

/**
 * Decodes the inline xattr area at `off` of `size` bytes (= 12 + 4 × (icount − 1)). Shared xattrs
 * (h_shared_count > 0) are read from `sharedBase + 4 × id` when `sharedBase` is given, else refused.
 */
export function decodeErofsXattrs(buf: Buffer, off: number, size: number, sharedBase?: number): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  if (size === 0) return out;
  need(buf, off, size, 'erofs inline xattrs');
  const h = decodeErofsXattrIbodyHeader(buf, off);
  let p = off + EROFS_XATTR_IBODY_HEADER_SIZE;
  const end = off + size;
  const readEntry = (at: number, limit: number): number => {
    if (at + EROFS_XATTR_ENTRY_SIZE > limit) throw new FerryError('DATA_LOSS', 'erofs xattr entry crosses the xattr area');
    const e = decodeErofsXattrEntry(buf, at);
    const prefix = EROFS_XATTR_PREFIXES.get(e.nameIndex);
    if (prefix === undefined) throw new FerryError('DATA_LOSS', `erofs xattr: unknown name index ${e.nameIndex}`);
    const nameStart = at + EROFS_XATTR_ENTRY_SIZE;
    const valStart = nameStart + e.nameLen;
    const valEnd = valStart + e.valueSize;
    if (valEnd > limit) throw new FerryError('DATA_LOSS', 'erofs xattr name/value crosses the xattr area');
    out.set(prefix + buf.toString('utf8', nameStart, valStart), Buffer.from(buf.subarray(valStart, valEnd)));
    return alignUp(valEnd - at, 4);
  };
  if (h.sharedCount > 0) {
    if (sharedBase === undefined) throw new FerryError('DATA_LOSS', 'erofs shared xattrs are not supported in RAFS images');
    need(buf, p, 4 * h.sharedCount, 'erofs shared xattr ids');
    for (let i = 0; i < h.sharedCount; i++) {
      const at = sharedBase + 4 * buf.readUInt32LE(p + 4 * i);
      need(buf, at, EROFS_XATTR_ENTRY_SIZE, 'erofs shared xattr');
      readEntry(at, buf.length);
    }
    p += 4 * h.sharedCount;
  }
  while (p < end) {
    if (end - p < EROFS_XATTR_ENTRY_SIZE) break;
    p += readEntry(p, end);
  }
  return out;
}
