/**
 * @module builder/blob-view
 * Materialises the "uncompressed blob view" of a Nydus data blob (what nydusd's blob cache holds):
 * each chunk's uncompressed bytes at its uncompressed offset, zero padding, length = the
 * 4 KiB-aligned uncompressed size. This is the layout EROFS addresses as an extra device (what
 * nydusd keeps as `<blob_id>.blob.data`), so `fsck.erofs --device=` and kernel mounts can read
 * Ferry images.
 */
import { open } from 'node:fs/promises';
import { FerryError } from '../core/index.js';
import { getCodec, compressorFromCode, type CompressorName } from '../format/compress/index.js';
import {
  walkReverseTar,
  decodeToc,
  decodeBlobMetaHeader,
  decodeCiTable,
  BlobSection,
  BLOB_META_HEADER_SIZE,
  type CiEntry,
  type BlobMetaHeader,
} from '../format/rafs/index.js';

/** Reads the CI header and table of a blob file (located through its ToC or reverse tar headers). */
export async function readBlobMeta(blobPath: string): Promise<{ header: BlobMetaHeader; entries: CiEntry[]; size: number }> {
  const fh = await open(blobPath, 'r');
  try {
    const { size } = await fh.stat();
    const read = async (off: number, len: number): Promise<Buffer> => {
      if (off < 0 || off + len > size) throw new FerryError('DATA_LOSS', `${blobPath}: read ${off}+${len} past end (${size})`);
      const b = Buffer.alloc(len);
      let got = 0;
      while (got < len) {
        const { bytesRead } = await fh.read(b, got, len - got, off + got);
        if (bytesRead === 0) throw new FerryError('DATA_LOSS', `${blobPath}: short read`);
        got += bytesRead;
      }
      return b;
    };
    // the tail (ToC + headers) is small: read the last 64 KiB and walk it
    const tailLen = Math.min(size, 1 << 16);
    const tail = await read(size - tailLen, tailLen);
    const base = size - tailLen;
    const sections = walkReverseTar(
      (o, l) => {
        if (o < base) throw new FerryError('DATA_LOSS', `${blobPath}: blob tail larger than expected`);
        return tail.subarray(o - base, o - base + l);
      },
      size,
      2,
    );
    let headerOffset: number | undefined;
    const tocSec = sections.find((s) => s.name === BlobSection.TOC);
    if (tocSec && tocSec.offset >= base) {
      const toc = decodeToc(tail.subarray(tocSec.offset - base, tocSec.offset - base + tocSec.size));
      headerOffset = toc.find((e) => e.name === BlobSection.META_HEADER)?.compressedOffset;
    }
    if (headerOffset === undefined) {
      const all = walkReverseTar((o, l) => tail.subarray(o - base, o - base + l), size);
      const meta = all.find((s) => s.name === BlobSection.META);
      if (!meta) throw new FerryError('DATA_LOSS', `${blobPath}: no blob.meta section found`);
      headerOffset = meta.offset + meta.size - BLOB_META_HEADER_SIZE;
    }
    const header = decodeBlobMetaHeader(await read(headerOffset, BLOB_META_HEADER_SIZE));
    let ci = await read(header.ciOffset, header.ciCompressedSize);
    if (header.ciCompressor !== 0) ci = getCodec(compressorFromCode(header.ciCompressor)).decompress(ci, header.ciUncompressedSize);
    return { header, entries: decodeCiTable(ci, header.ciEntries, header.features), size };
  } finally {
    await fh.close();
  }
}

/**
 * Writes the uncompressed view of `blobPath` to `outPath` and returns its size. `compressor` is the
 * blob's chunk compressor (from the bootstrap's blob table).
 */
export async function blobView(blobPath: string, outPath: string, compressor: CompressorName): Promise<number> {
  const { entries } = await readBlobMeta(blobPath);
  const codec = getCodec(compressor);
  const src = await open(blobPath, 'r');
  const dst = await open(outPath, 'w');
  try {
    let end = 0;
    for (const e of entries) {
      const raw = Buffer.alloc(e.compressedSize);
      const { bytesRead } = await src.read(raw, 0, raw.length, e.compressedOffset);
      if (bytesRead !== raw.length) throw new FerryError('DATA_LOSS', `${blobPath}: chunk at ${e.compressedOffset} truncated`);
      const data = e.compressed ? codec.decompress(raw, e.uncompressedSize) : raw;
      await dst.write(data, 0, data.length, e.uncompressedOffset);
      end = Math.max(end, e.uncompressedOffset + Math.ceil(e.uncompressedSize / 4096) * 4096);
    }
    await dst.truncate(end);
    return end;
  } finally {
    await src.close();
    await dst.close();
  }
}
