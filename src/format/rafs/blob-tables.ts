/**
 * @module format/rafs/blob-tables
 * A v6 bootstrap written without its chunk table (the default for converted images: a large unused
 * file costs 80 bytes of table per 32 KiB chunk, all of it downloaded before any container starts)
 * maps chunks through each blob's own tables, as nydusd does for bootstraps flagged
 * INLINED_CHUNK_DIGEST: the CI table (place and size of every chunk) and the chunk digest array
 * (`blob.digest`, what a read is verified against). The CI table comes from the bootstrap layer's
 * `<blob id>.blob.meta` file or from the blob; the digest array from the blob's tail, trusted only
 * after its ToC — whose sha256 the bootstrap's blob table records — vouches for it.
 */
import { createHash } from 'node:crypto';
import { FerryError } from '../../core/index.js';
import { getCodec } from '../compress/index.js';
import { BLOB_META_HEADER_SIZE, decodeBlobMetaHeader, decodeCiTable, type BlobMetaHeader } from './blob-meta.js';
import type { BlobInfo, CiLocation, RafsBootstrap } from './reader.js';
import { BlobSection, TAR_BLOCK, decodeToc, parseTarHeader, type TocEntry } from './toc.js';
import { BlobFeatures } from './v6.js';

/** What a reader needs of one blob to map and verify chunks without a chunk table. */
export interface BlobTables {
  entries: CiLocation[];
  digests: Buffer[];
}

/** Largest CI table accepted (nydusd's limit is in this range too). */
const MAX_CI_BYTES = 64 * 1024 * 1024;

function dataLoss(blob: BlobInfo, msg: string): FerryError {
  return new FerryError('DATA_LOSS', `blob ${blob.blobId}: ${msg}`);
}

/**
 * True when every blob carries what a table-less bootstrap needs: a CI table, an inlined chunk
 * digest array and a ToC to verify it by (Ferry's builder writes all three into every blob).
 */
export function blobsCarryTables(
  blobs: ReadonlyArray<Pick<BlobInfo, 'features' | 'ciCompressedSize' | 'blobTocSize' | 'chunkCount'>>,
): boolean {
  return (
    blobs.length > 0 &&
    blobs.every(
      (b) =>
        (b.features & BlobFeatures.INLINED_CHUNK_DIGEST) !== 0 &&
        (b.features & BlobFeatures.HAS_TOC) !== 0 &&
        b.ciCompressedSize > 0 &&
        b.blobTocSize > TAR_BLOCK &&
        b.chunkCount > 0,
    )
  );
}

/** A CI header (blob meta header) checked against the bootstrap's blob table entry. */
export function checkCiHeader(blob: BlobInfo, h: BlobMetaHeader): void {
  if (
    h.ciOffset !== blob.ciOffset ||
    h.ciCompressedSize !== blob.ciCompressedSize ||
    h.ciUncompressedSize !== blob.ciUncompressedSize ||
    h.ciEntries !== blob.chunkCount
  ) {
    throw dataLoss(
      blob,
      `CI header (offset ${h.ciOffset}, ${h.ciEntries} entries) disagrees with the bootstrap's blob table (offset ${blob.ciOffset}, ${blob.chunkCount} chunks)`,
    );
  }
  if (h.ciUncompressedSize > MAX_CI_BYTES) throw dataLoss(blob, `CI table of ${h.ciUncompressedSize} bytes is implausible`);
}

/** Checks a decoded CI table against the blob (4 KiB aligned, ascending, inside the blob's sizes). */
function checkEntries(blob: BlobInfo, entries: CiLocation[]): CiLocation[] {
  let prevEnd = 0;
  entries.forEach((e, i) => {
    if (
      e.uncompressedOffset < prevEnd ||
      e.uncompressedOffset + e.uncompressedSize > blob.uncompressedSize ||
      (blob.compressedSize > 0 && e.compressedOffset + e.compressedSize > blob.compressedSize)
    ) {
      throw dataLoss(blob, `CI entry ${i} lies outside the blob or out of order`);
    }
    prevEnd = e.uncompressedOffset + e.uncompressedSize;
  });
  return entries;
}

/**
 * The CI table from nydusd's cache form of the blob meta (`<blob id>.blob.meta`: the uncompressed
 * CI table zero-padded to 4 KiB, then the 4096-byte header), as bootstrap layers ship it.
 */
export function ciFromMetaFile(blob: BlobInfo, file: Buffer): CiLocation[] {
  if (file.length < BLOB_META_HEADER_SIZE) throw dataLoss(blob, `blob.meta file of ${file.length} bytes`);
  const h = decodeBlobMetaHeader(file, file.length - BLOB_META_HEADER_SIZE);
  checkCiHeader(blob, h);
  if (h.ciUncompressedSize > file.length - BLOB_META_HEADER_SIZE) throw dataLoss(blob, 'blob.meta file shorter than its CI table');
  return checkEntries(blob, decodeCiTable(file.subarray(0, h.ciUncompressedSize), h.ciEntries, h.features));
}

/**
 * The byte range of a blob a reader fetches for its tables: from the CI table (`withCi`; or, when
 * the CI table is at hand already, from just after it) to the end of the blob — in Ferry's blobs
 * the meta header, the digest array and the ToC, all in one request.
 */
export function tailRange(blob: BlobInfo, opts: { withCi: boolean }): { offset: number; length: number } {
  if (!blobsCarryTables([blob])) throw new FerryError('FAILED_PRECONDITION', `blob ${blob.blobId} has no CI table, digest array or ToC`);
  const offset = opts.withCi ? blob.ciOffset : blob.ciOffset + blob.ciCompressedSize;
  if (!(blob.compressedSize > offset)) throw dataLoss(blob, `compressed size ${blob.compressedSize} ends before its CI table`);
  return { offset, length: blob.compressedSize - offset };
}

/**
 * Decodes the tables out of `tail` (the bytes of `tailRange(blob, { withCi })`, `withCi` true when the
 * range starts at the CI table): the ToC is verified against the blob table's ToC digest, and the
 * digest array (and CI table) against their ToC entries. Throws DATA_LOSS naming what disagrees.
 */
export function decodeBlobTail(blob: BlobInfo, tail: Buffer, offset: number): { entries?: CiLocation[]; digests: Buffer[] } {
  if (offset + tail.length !== blob.compressedSize)
    throw dataLoss(blob, `tail ${offset}+${tail.length} does not end at the blob's ${blob.compressedSize} bytes`);
  const tocLen = blob.blobTocSize;
  if (tocLen <= TAR_BLOCK || tocLen > tail.length) throw dataLoss(blob, `ToC of ${tocLen} bytes does not fit the fetched ${tail.length}`);
  const tocBytes = tail.subarray(tail.length - tocLen);
  if (!createHash('sha256').update(tocBytes).digest().equals(blob.blobTocDigest))
    throw dataLoss(blob, 'ToC digest does not match the bootstrap');
  const th = parseTarHeader(tocBytes.subarray(tocLen - TAR_BLOCK));
  if (!th || th.name !== BlobSection.TOC || th.size !== tocLen - TAR_BLOCK) throw dataLoss(blob, 'ToC tar header is invalid');
  const toc = decodeToc(tocBytes.subarray(0, th.size));
  const section = (name: string): { e: TocEntry; bytes: Buffer } => {
    const e = toc.find((x) => x.name === name);
    if (!e) throw dataLoss(blob, `ToC lists no ${name}`);
    const at = e.compressedOffset - offset;
    if (at < 0 || at + e.compressedSize > tail.length - tocLen)
      throw dataLoss(blob, `${name} (${e.compressedOffset}+${e.compressedSize}) is outside the fetched tail`);
    return { e, bytes: tail.subarray(at, at + e.compressedSize) };
  };
  const sha = (b: Buffer): Buffer => createHash('sha256').update(b).digest();
  const dig = section(BlobSection.DIGEST);
  if (dig.e.compressedSize !== blob.chunkCount * 32)
    throw dataLoss(blob, `digest array of ${dig.e.compressedSize} bytes for ${blob.chunkCount} chunks`);
  if (!sha(dig.bytes).equals(dig.e.digest)) throw dataLoss(blob, 'digest array does not match its ToC entry');
  const digests: Buffer[] = new Array(blob.chunkCount);
  for (let i = 0; i < blob.chunkCount; i++) digests[i] = dig.bytes.subarray(i * 32, i * 32 + 32);
  if (offset > blob.ciOffset) return { digests };
  const hdr = section(BlobSection.META_HEADER);
  if (hdr.e.compressedSize !== BLOB_META_HEADER_SIZE || !sha(hdr.bytes).equals(hdr.e.digest))
    throw dataLoss(blob, 'blob meta header does not match its ToC entry');
  const h = decodeBlobMetaHeader(hdr.bytes);
  checkCiHeader(blob, h);
  const meta = section(BlobSection.META);
  if (meta.e.compressedOffset !== blob.ciOffset || meta.e.compressedSize !== blob.ciCompressedSize)
    throw dataLoss(blob, 'ToC places the CI table elsewhere than the blob table');
  const comp = ['none', 'lz4_block', 'gzip', 'zstd'][h.ciCompressor];
  if (!comp) throw dataLoss(blob, `invalid CI compressor ${h.ciCompressor}`);
  const raw =
    comp === 'none' || h.ciCompressedSize === h.ciUncompressedSize
      ? meta.bytes
      : getCodec(comp).decompress(meta.bytes, h.ciUncompressedSize);
  if (!sha(raw).equals(meta.e.digest)) throw dataLoss(blob, 'CI table does not match its ToC entry');
  return { entries: checkEntries(blob, decodeCiTable(raw, h.ciEntries, h.features)), digests };
}

/** Reads `length` bytes at `offset` of a blob. */
export type AsyncBlobReader = (blob: BlobInfo, offset: number, length: number) => Promise<Buffer>;

/**
 * Loads and verifies a blob's tables (CI from `metaFile` when given, else from the blob) with one
 * ranged read of its tail.
 */
export async function loadBlobTables(blob: BlobInfo, read: AsyncBlobReader, metaFile?: Buffer): Promise<BlobTables> {
  const ci = metaFile ? ciFromMetaFile(blob, metaFile) : undefined;
  const r = tailRange(blob, { withCi: !ci });
  const tail = await read(blob, r.offset, r.length);
  if (tail.length !== r.length) throw dataLoss(blob, `got ${tail.length} of ${r.length} tail bytes`);
  const t = decodeBlobTail(blob, tail, r.offset);
  return { entries: ci ?? t.entries!, digests: t.digests };
}

/**
 * Gives a bootstrap without a chunk table the tables of all its blobs (tools that read every file:
 * check, unpack, chunk-dict indexing). A bootstrap that can map its chunks already is left as it is.
 */
export async function attachBlobTables(bs: RafsBootstrap, read: AsyncBlobReader, metaFiles?: ReadonlyMap<string, Buffer>): Promise<void> {
  if (bs.canMapChunks()) return;
  for (const b of bs.blobs) {
    if (!blobsCarryTables([b]))
      throw new FerryError(
        'FAILED_PRECONDITION',
        `bootstrap has no chunk table and blob ${b.blobId} carries no CI table, digest array or ToC`,
      );
    const t = await loadBlobTables(b, read, metaFiles?.get(b.blobId));
    bs.setCiTable(b.index, t.entries, t.digests);
  }
}
