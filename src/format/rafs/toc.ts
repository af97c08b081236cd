/**
 * @module format/rafs/toc
 * The tail of a Nydus data blob, as nydus-image lays it out: "reverse" tar headers (each 512-byte GNU header
 * follows the payload it describes, so a reader walks from the end) and the blob table of contents
 * (`rafs.blob.toc`, 128-byte entries). Pure buffer codecs with bounds checks.
 */
import { createHash } from 'node:crypto';
import { FerryError } from '../../core/index.js';

export const TAR_BLOCK = 512;
export const TOC_ENTRY_SIZE = 128;

/** Names of the blob sections as upstream writes them. */
export const BlobSection = {
  DATA: 'image.blob',
  META: 'blob.meta',
  META_HEADER: 'blob.meta.header',
  DIGEST: 'blob.digest',
  BOOTSTRAP: 'image.boot',
  TOC: 'rafs.blob.toc',
} as const;

/** ToC entry compression flags. */
export const TocFlag = { NONE: 0x1, ZSTD: 0x2, LZ4_BLOCK: 0x4 } as const;

function dataLoss(msg: string): FerryError {
  return new FerryError('DATA_LOSS', `blob toc: ${msg}`);
}

/**
 * A 512-byte GNU tar header as the Rust `tar` crate's `new_gnu()` writes it for nydus blobs: name,
 * zero mode/uid/gid, octal size (base-256 when ≥ 8 GiB), mtime "00000000000", typeflag '0',
 * magic "ustar " + " \0".
 */
export function encodeTarHeader(name: string, size: number): Buffer {
  const h = Buffer.alloc(TAR_BLOCK);
  const nb = Buffer.from(name, 'utf8');
  if (nb.length > 100) throw new FerryError('INVALID_ARGUMENT', `tar header name too long: ${name}`);
  nb.copy(h, 0);
  if (size < 8 * 2 ** 30) {
    h.write(`${size.toString(8).padStart(11, '0')}\0`, 124, 'latin1');
  } else {
    h[124] = 0x80;
    let v = BigInt(size);
    for (let i = 135; i > 124; i--) {
      h[i] = Number(v & 0xffn);
      v >>= 8n;
    }
  }
  h.write('00000000000\0', 136, 'latin1');
  h[156] = 0x30; // '0'
  h.write('ustar ', 257, 'latin1');
  h.write(' \0', 263, 'latin1');
  h.fill(0x20, 148, 156);
  let sum = 0;
  for (let i = 0; i < TAR_BLOCK; i++) sum += h[i]!;
  // tar-rs writes 7 octal digits + NUL
  h.write(`${sum.toString(8).padStart(7, '0')}\0`, 148, 'latin1');
  return h;
}

/** Parses a reverse tar header; null when the block is not a valid tar header. */
export function parseTarHeader(h: Buffer): { name: string; size: number } | null {
  if (h.length < TAR_BLOCK) return null;
  const magic = h.toString('latin1', 257, 263);
  if (magic !== 'ustar ' && magic !== 'ustar\0') return null;
  let sum = 0;
  for (let i = 0; i < TAR_BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : h[i]!;
  const chk = parseInt(
    h
      .toString('latin1', 148, 156)
      .replace(/[\0 ]+$/g, '')
      .trim(),
    8,
  );
  if (chk !== sum) return null;
  let size: number;
  if (h[124]! & 0x80) {
    let v = 0n;
    for (let i = 125; i < 136; i++) v = (v << 8n) | BigInt(h[i]!);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) return null;
    size = Number(v);
  } else {
    const s = h
      .toString('latin1', 124, 136)
      .replace(/[\0 ]+$/g, '')
      .trim();
    size = s ? parseInt(s, 8) : 0;
    if (!Number.isFinite(size)) return null;
  }
  const end = h.indexOf(0);
  const name = h.toString('utf8', 0, end < 0 || end > 100 ? 100 : end);
  return { name, size };
}

/** One ToC entry. */
export interface TocEntry {
  flags: number;
  name: string;
  /** sha256 of the uncompressed payload (for `image.blob`: chunk data ‖ its tar header). */
  digest: Buffer;
  compressedOffset: number;
  compressedSize: number;
  uncompressedSize: number;
}

export function encodeToc(entries: readonly TocEntry[]): Buffer {
  const b = Buffer.alloc(entries.length * TOC_ENTRY_SIZE);
  entries.forEach((e, i) => {
    const p = i * TOC_ENTRY_SIZE;
    const nb = Buffer.from(e.name, 'utf8');
    if (nb.length > 16) throw new FerryError('INVALID_ARGUMENT', `ToC entry name too long: ${e.name}`);
    if (e.digest.length !== 32) throw new FerryError('INVALID_ARGUMENT', 'ToC entry digest must be 32 bytes');
    b.writeUInt32LE(e.flags, p);
    nb.copy(b, p + 8);
    e.digest.copy(b, p + 24);
    b.writeBigUInt64LE(BigInt(e.compressedOffset), p + 56);
    b.writeBigUInt64LE(BigInt(e.compressedSize), p + 64);
    b.writeBigUInt64LE(BigInt(e.uncompressedSize), p + 72);
  });
  return b;
}

export function decodeToc(b: Buffer): TocEntry[] {
  if (b.length % TOC_ENTRY_SIZE !== 0) throw dataLoss(`ToC size ${b.length} is not a multiple of ${TOC_ENTRY_SIZE}`);
  const out: TocEntry[] = [];
  for (let p = 0; p < b.length; p += TOC_ENTRY_SIZE) {
    const nameRaw = b.subarray(p + 8, p + 24);
    const end = nameRaw.indexOf(0);
    const name = nameRaw.toString('utf8', 0, end < 0 ? 16 : end);
    const big = [b.readBigUInt64LE(p + 56), b.readBigUInt64LE(p + 64), b.readBigUInt64LE(p + 72)];
    if (big.some((v) => v > BigInt(Number.MAX_SAFE_INTEGER))) throw dataLoss(`ToC entry ${name}: offset/size out of range`);
    out.push({
      flags: b.readUInt32LE(p),
      name,
      digest: Buffer.from(b.subarray(p + 24, p + 56)),
      compressedOffset: Number(big[0]),
      compressedSize: Number(big[1]),
      uncompressedSize: Number(big[2]),
    });
  }
  return out;
}

/** A section found by walking the reverse tar headers from the end of a blob. */
export interface TarSection {
  name: string;
  /** absolute offset of the payload in the blob */
  offset: number;
  size: number;
  /** absolute offset of the 512-byte header that follows the payload */
  headerOffset: number;
}

/**
 * Walks the reverse tar headers of a blob of `blobSize` bytes, reading with `read(offset, length)`
 * (sync, e.g. over a Buffer or a file descriptor). Stops at the first block that is not a header or
 * after `maxSections`. Returns sections last-to-first.
 */
export function walkReverseTar(read: (offset: number, length: number) => Buffer, blobSize: number, maxSections = 16): TarSection[] {
  const out: TarSection[] = [];
  let end = blobSize;
  while (end >= TAR_BLOCK && out.length < maxSections) {
    const h = parseTarHeader(read(end - TAR_BLOCK, TAR_BLOCK));
    if (!h) break;
    const headerOffset = end - TAR_BLOCK;
    if (h.size > headerOffset) throw dataLoss(`section ${h.name} of ${h.size} bytes runs past the start of the blob`);
    out.push({ name: h.name, offset: headerOffset - h.size, size: h.size, headerOffset });
    end = headerOffset - h.size;
  }
  return out;
}

/** The ToC entry describing one payload: sha256 of the (uncompressed) bytes. */
export function tocEntryFor(
  name: string,
  payload: Buffer,
  offset: number,
  flags: number = TocFlag.NONE,
  uncompressedSize = payload.length,
  digestOf?: Buffer,
): TocEntry {
  return {
    flags,
    name,
    digest: digestOf ?? createHash('sha256').update(payload).digest(),
    compressedOffset: offset,
    compressedSize: payload.length,
    uncompressedSize,
  };
}
