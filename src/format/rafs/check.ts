/**
 * @module format/rafs/check
 * Full validation of a bootstrap: every inode, directory, symlink, xattr and chunk reference the
 * tree reaches, the v6 chunk table, and — given a way to read blob bytes — each blob's CI table
 * (against the bootstrap) and every chunk (decompressed, digest verified). Throws a FerryError
 * naming the first problem; returns counts and non-fatal warnings.
 */
import { FerryError } from '../../core/index.js';
import { chunkDigest, decodeChunk, getCodec } from '../compress/index.js';
import { S_IFDIR, S_IFLNK, S_IFMT, S_IFREG, fileTypeOfMode } from '../erofs/index.js';
import { BLOB_META_HEADER_SIZE, decodeBlobMetaHeader, decodeCiTable } from './blob-meta.js';
import { checkCiHeader } from './blob-tables.js';
import { openBootstrap, type BlobInfo, type ChunkRef, type CiLocation, type RafsBootstrap } from './reader.js';

/** Reads `length` bytes at `offset` of a blob (throw NOT_FOUND / DATA_LOSS as appropriate). */
export type BlobReader = (blob: BlobInfo, offset: number, length: number) => Buffer;

export interface CheckOptions {
  readBlob?: BlobReader;
  /** Called after each verified chunk. */
  onChunk?: (done: number, total: number, bytes: number) => void;
}

export interface CheckReport {
  version: 5 | 6;
  entries: number;
  dirs: number;
  files: number;
  symlinks: number;
  others: number;
  chunkRefs: number;
  uniqueChunks: number;
  chunksVerified: number;
  bytesVerified: number;
  warnings: string[];
}

/** Reads and validates a v6 blob's CI header + table (at `ci_offset`) against the blob table. */
export function loadCiTable(blob: BlobInfo, readBlob: BlobReader): CiLocation[] {
  if (blob.ciOffset === 0 && blob.ciCompressedSize === 0)
    throw new FerryError('FAILED_PRECONDITION', `blob ${blob.blobId} has no CI table`);
  const hdr = decodeBlobMetaHeader(readBlob(blob, blob.ciOffset + blob.ciCompressedSize, BLOB_META_HEADER_SIZE));
  checkCiHeader(blob, hdr);
  const raw = readBlob(blob, blob.ciOffset, blob.ciCompressedSize);
  const comp = ['none', 'lz4_block', 'gzip', 'zstd'][hdr.ciCompressor];
  if (!comp) throw new FerryError('DATA_LOSS', `blob ${blob.blobId}: invalid CI compressor ${hdr.ciCompressor}`);
  const data =
    comp === 'none' || blob.ciCompressedSize === blob.ciUncompressedSize ? raw : getCodec(comp).decompress(raw, blob.ciUncompressedSize);
  return decodeCiTable(data, blob.chunkCount, hdr.features);
}

function key(blobIndex: number, chunkIndex: number): number {
  return blobIndex * 0x1000000 + chunkIndex;
}

export function checkBootstrap(input: Buffer | RafsBootstrap, opts: CheckOptions = {}): CheckReport {
  const bs = Buffer.isBuffer(input) ? openBootstrap(input) : input;
  const report: CheckReport = {
    version: bs.version,
    entries: 0,
    dirs: 0,
    files: 0,
    symlinks: 0,
    others: 0,
    chunkRefs: 0,
    uniqueChunks: 0,
    chunksVerified: 0,
    bytesVerified: 0,
    warnings: [],
  };
  const unique = new Map<number, ChunkRef>();
  // a v6 bootstrap without a chunk table whose blobs' tables were not loaded: metadata only
  const mapChunks = bs.canMapChunks();
  if (!mapChunks) report.warnings.push('no chunk table and no blob tables loaded: chunk references not checked (give the blobs)');
  const links = new Map<number, { nlink: number; seen: number; path: string }>();
  const where = (path: string): string => `/${path}`;
  for (const e of bs.walk()) {
    report.entries++;
    const t = e.stat.mode & S_IFMT;
    try {
      bs.xattrs(e.ino);
      if (t === S_IFDIR) {
        report.dirs++;
        const kids = bs.dirents(e.ino);
        if (bs.version === 6) {
          const dot = kids.find((k) => k.name === '.');
          const dotdot = kids.find((k) => k.name === '..');
          if (!dot || dot.ino !== e.ino) throw new FerryError('DATA_LOSS', `'.' missing or wrong`);
          if (!dotdot || dotdot.ino !== e.parent) throw new FerryError('DATA_LOSS', `'..' missing or wrong`);
          for (const k of kids) {
            if (k.name === '.' || k.name === '..') continue;
            if (k.fileType !== fileTypeOfMode(bs.stat(k.ino).mode)) {
              throw new FerryError('DATA_LOSS', `entry ${JSON.stringify(k.name)}: dirent type ${k.fileType} disagrees with its inode`);
            }
          }
          for (let i = 1; i < kids.length; i++) {
            if (Buffer.compare(Buffer.from(kids[i - 1]!.name), Buffer.from(kids[i]!.name)) >= 0) {
              throw new FerryError('DATA_LOSS', `entries not sorted/unique at ${JSON.stringify(kids[i]!.name)}`);
            }
          }
        } else {
          const names = new Set<string>();
          for (const k of kids) {
            if (names.has(k.name)) throw new FerryError('DATA_LOSS', `duplicate entry ${JSON.stringify(k.name)}`);
            names.add(k.name);
          }
        }
      } else if (t === S_IFLNK) {
        report.symlinks++;
        if (bs.readlink(e.ino).length === 0) throw new FerryError('DATA_LOSS', 'empty symlink target');
      } else if (t === S_IFREG) {
        report.files++;
        const l = links.get(e.stat.ino);
        if (l) {
          l.seen++;
          continue;
        }
        links.set(e.stat.ino, { nlink: e.stat.nlink, seen: 1, path: e.path });
        const chunks = mapChunks ? bs.chunks(e.ino) : [];
        let covered = 0;
        for (const c of chunks) {
          report.chunkRefs++;
          const blob = bs.blobs[c.blobIndex]!;
          if (blob.chunkCount > 0 && c.chunkIndex >= blob.chunkCount) {
            throw new FerryError('DATA_LOSS', `chunk index ${c.chunkIndex} beyond blob ${blob.blobId}'s ${blob.chunkCount} chunks`);
          }
          if (blob.uncompressedSize > 0 && c.uncompressedOffset + c.uncompressedSize > blob.uncompressedSize) {
            throw new FerryError('DATA_LOSS', `chunk ${c.chunkIndex} lies beyond blob ${blob.blobId}'s uncompressed size`);
          }
          covered += c.uncompressedSize;
          if (!unique.has(key(c.blobIndex, c.chunkIndex)) || bs.version === 5)
            unique.set(bs.version === 5 ? key(c.blobIndex, c.compressedOffset) : key(c.blobIndex, c.chunkIndex), c);
        }
        if (bs.version === 6 && mapChunks && covered !== e.stat.size)
          throw new FerryError('DATA_LOSS', `chunks cover ${covered} of ${e.stat.size} bytes`);
      } else {
        report.others++;
      }
      if (bs.version === 5) {
        // v5 inode digest: hash of the chunk digests (file), the target (symlink), the children's digests (dir)
        let material: Buffer[] = [];
        if (t === S_IFREG) material = bs.chunks(e.ino).map((c) => c.digest);
        else if (t === S_IFLNK) material = [Buffer.from(bs.readlink(e.ino), 'utf8')];
        else if (t === S_IFDIR) material = bs.readdir(e.ino).map((k) => bs.inodeDigest(k.ino)!);
        if (!chunkDigest(bs.digester, Buffer.concat(material)).equals(bs.inodeDigest(e.ino)!)) {
          throw new FerryError('DATA_LOSS', 'inode digest mismatch');
        }
      }
    } catch (err) {
      if (FerryError.is(err) && !err.message.includes(where(e.path))) {
        throw new FerryError(err.code, `${where(e.path)}: ${err.message}`, { cause: err });
      }
      throw err;
    }
  }
  for (const l of links.values()) {
    if (l.nlink !== l.seen && l.nlink > 1) report.warnings.push(`${where(l.path)}: nlink ${l.nlink} but ${l.seen} links in the tree`);
  }
  // v6 chunk table
  const table = bs.chunkTable();
  for (const c of table) {
    const blob = bs.blobs[c.blobIndex];
    if (!blob) throw new FerryError('DATA_LOSS', `chunk table: entry for blob ${c.blobIndex} of ${bs.blobs.length}`);
    if (blob.chunkCount > 0 && c.index >= blob.chunkCount)
      throw new FerryError('DATA_LOSS', `chunk table: chunk ${c.index} beyond blob ${blob.blobId}'s ${blob.chunkCount}`);
    if (c.uncompressedOffset % 4096 !== 0 && (blob.features & 0x1) !== 0)
      throw new FerryError('DATA_LOSS', `chunk table: unaligned chunk ${c.index} in blob ${blob.blobId}`);
  }
  report.uniqueChunks = unique.size;
  if (opts.readBlob) {
    const readBlob = opts.readBlob;
    if (bs.version === 6) {
      const byKey = new Map(table.map((c) => [key(c.blobIndex, c.index), c]));
      for (const blob of bs.blobs) {
        if (blob.ciOffset === 0 && blob.ciCompressedSize === 0) continue;
        const ci = loadCiTable(blob, readBlob);
        ci.forEach((x, i) => {
          const c = byKey.get(key(blob.index, i));
          if (!c) return;
          if (
            c.compressedOffset !== x.compressedOffset ||
            c.compressedSize !== x.compressedSize ||
            c.uncompressedOffset !== x.uncompressedOffset ||
            c.uncompressedSize !== x.uncompressedSize
          ) {
            throw new FerryError('DATA_LOSS', `blob ${blob.blobId}: CI entry ${i} disagrees with the bootstrap's chunk table`);
          }
        });
      }
    }
    const total = unique.size;
    for (const c of unique.values()) {
      const blob = bs.blobs[c.blobIndex]!;
      try {
        const data = decodeChunk(blob, c, readBlob(blob, c.compressedOffset, c.compressedSize));
        report.bytesVerified += data.length;
      } catch (err) {
        if (FerryError.is(err))
          throw new FerryError(err.code, `chunk ${c.chunkIndex} of blob ${blob.blobId}: ${err.message}`, { cause: err });
        throw err;
      }
      report.chunksVerified++;
      opts.onChunk?.(report.chunksVerified, total, report.bytesVerified);
    }
  }
  return report;
}
