/**
 * @module builder/from-bootstrap
 * Reads a bootstrap (through the RAFS reader) back into a builder tree, so layer bootstraps can be
 * merged, a parent bootstrap extended, and a chunk dictionary indexed. Blob table entries are taken
 * verbatim so the CI/ToC locations of existing blobs carry over.
 */
import { FerryError, S_IFMT, S_IFREG, typeOfMode } from '../core/index.js';
import { decodeRdev } from '../format/erofs/index.js';
import {
  openBootstrap,
  decodeRafsV6ExtSuperBlock,
  decodeRafsV6BlobEntry,
  RAFS_V6_BLOB_ENTRY_SIZE,
  COMPRESSOR_BY_CODE,
  DIGESTER_BY_CODE,
  type BlobTables,
} from '../format/rafs/index.js';
import type { CompressorName } from '../format/compress/index.js';
import { chunkKey, type ChunkIndex } from './blob-writer.js';
import type { BlobDesc, ChunkRef, Digester, Inode } from './tree.js';

export interface LoadedBootstrap {
  root: Inode;
  blobs: BlobDesc[];
  chunkSize: number;
  compressor: CompressorName;
  digester: Digester;
  prefetch: Inode[];
}

/**
 * Loads `buf` into a tree. `registry` shares BlobDesc objects between bootstraps by blob id, so a
 * blob referenced from several layers stays one blob-table entry. `blobIdOverride` replaces the
 * placeholder id of a layer bootstrap built with inline meta (64 × 'x') — one id per blob index, or
 * a single id that replaces the placeholder wherever it sits. A v6 bootstrap written without a
 * chunk table needs `tables` (by blob id: CI table and chunk digests, see format/rafs/blob-tables).
 */
export function loadBootstrap(
  buf: Buffer,
  registry = new Map<string, BlobDesc>(),
  blobIdOverride?: readonly string[],
  tables?: ReadonlyMap<string, BlobTables>,
): LoadedBootstrap {
  const bs = openBootstrap(buf);
  if (!bs.canMapChunks()) {
    for (const b of bs.blobs) {
      const t = tables?.get(b.blobId);
      if (t) bs.setCiTable(b.index, t.entries, t.digests);
      else if (b.chunkCount > 0) {
        throw new FerryError(
          'FAILED_PRECONDITION',
          `bootstrap has no chunk table and the tables of blob ${b.blobId} were not loaded (CI table and chunk digests are needed)`,
        );
      }
    }
  }
  const compressor = bs.compressor as CompressorName;
  const digester = bs.digester as Digester;
  const blobs: BlobDesc[] = [];
  // v6: blob table entries verbatim (CI/ToC locations); v5: what the reader knows of each blob
  const entries =
    bs.version === 6
      ? v6BlobEntries(buf)
      : bs.blobs.map((b) => ({
          blobId: b.blobId,
          chunkSize: b.chunkSize,
          chunkCount: b.chunkCount,
          compressionAlgo: COMPRESSOR_BY_CODE.indexOf(b.compressor),
          digestAlgo: DIGESTER_BY_CODE.indexOf(b.digester),
          features: b.features,
          compressedSize: b.compressedSize,
          uncompressedSize: b.uncompressedSize,
          blobTocSize: b.blobTocSize,
          blobTocDigest: b.blobTocDigest,
          ciCompressor: COMPRESSOR_BY_CODE.indexOf(b.ciCompressor),
          ciOffset: b.ciOffset,
          ciCompressedSize: b.ciCompressedSize,
          ciUncompressedSize: b.ciUncompressedSize,
          blobMetaDigest: Buffer.alloc(32),
          blobMetaSize: 0,
        }));
  // a single override names the layer's own blob: the placeholder `x`×64 when there is one
  const placeholder = entries.findIndex((e) => e.blobId === 'x'.repeat(64));
  for (let i = 0; i < entries.length; i++) {
    const e = entries[i]!;
    let blobId = e.blobId;
    const over =
      blobIdOverride?.length === 1 && placeholder >= 0 ? (i === placeholder ? blobIdOverride[0] : undefined) : blobIdOverride?.[i];
    if (over) blobId = over.replace(/^sha256:/, '');
    let desc = registry.get(blobId);
    if (!desc) {
      const comp = COMPRESSOR_BY_CODE[e.compressionAlgo];
      const dig = DIGESTER_BY_CODE[e.digestAlgo];
      if (!comp || !dig)
        throw new FerryError('DATA_LOSS', `blob ${blobId}: unknown compression ${e.compressionAlgo} or digest ${e.digestAlgo}`);
      desc = {
        blobId,
        chunkSize: e.chunkSize,
        chunkCount: e.chunkCount,
        compressor: comp as CompressorName,
        digester: dig as Digester,
        features: e.features,
        compressedSize: e.compressedSize,
        uncompressedSize: e.uncompressedSize,
        tocSize: e.blobTocSize,
        tocDigest: e.blobTocDigest,
        ciCompressor: e.ciCompressor,
        ciOffset: e.ciOffset,
        ciCompressedSize: e.ciCompressedSize,
        ciUncompressedSize: e.ciUncompressedSize,
        metaDigest: e.blobMetaDigest,
        metaSize: e.blobMetaSize,
      };
      registry.set(blobId, desc);
    }
    blobs.push(desc);
  }

  const byIno = new Map<number, Inode>();
  const byLink = new Map<number, Inode>();
  const visiting = new Set<number>();
  const build = (ino: number): Inode => {
    const known = byIno.get(ino);
    if (known) {
      if (known.type === 'dir') throw new FerryError('DATA_LOSS', `directory inode ${ino} is linked twice (loop)`);
      return known;
    }
    const st = bs.stat(ino);
    // v5 stores one record per hardlink path, sharing i_ino
    if (bs.version === 5 && (st.mode & S_IFMT) === S_IFREG && st.nlink > 1) {
      const first = byLink.get(st.ino);
      if (first) {
        byIno.set(ino, first);
        return first;
      }
    }
    const type = typeOfMode(st.mode);
    if (!type) throw new FerryError('DATA_LOSS', `inode ${ino}: unknown file type in mode 0o${st.mode.toString(8)}`);
    const node: Inode = {
      type,
      perm: st.mode & 0o7777,
      uid: st.uid,
      gid: st.gid,
      mtime: st.mtime,
      mtimeNsec: st.mtimeNsec ?? 0,
      size: 0,
      xattrs: new Map(bs.xattrs(ino)),
    };
    byIno.set(ino, node);
    if (bs.version === 5 && type === 'file' && st.nlink > 1) byLink.set(st.ino, node);
    if (type === 'dir') {
      if (visiting.has(ino)) throw new FerryError('DATA_LOSS', `directory loop at inode ${ino}`);
      visiting.add(ino);
      node.children = new Map();
      for (const { name, ino: child } of bs.readdir(ino)) {
        if (name === '.' || name === '..') continue;
        node.children.set(name, build(child));
      }
      visiting.delete(ino);
    } else if (type === 'file') {
      node.size = st.size;
      node.chunks = bs.chunks(ino).map((c): ChunkRef => {
        const blob = blobs[c.blobIndex];
        if (!blob) throw new FerryError('DATA_LOSS', `inode ${ino}: chunk refers to blob index ${c.blobIndex} of ${blobs.length}`);
        return {
          blob,
          chunkIndex: c.chunkIndex,
          compressedOffset: c.compressedOffset,
          compressedSize: c.compressedSize,
          uncompressedOffset: c.uncompressedOffset,
          uncompressedSize: c.uncompressedSize,
          compressed: c.compressed,
          digest: Buffer.from(c.digest),
          fileOffset: c.fileOffset,
        };
      });
    } else if (type === 'symlink') {
      const t = bs.readlink(ino) as string | Buffer;
      node.target = Buffer.isBuffer(t) ? t : Buffer.from(t, 'utf8');
      node.size = node.target.length;
    } else if (type === 'char' || type === 'block') {
      const { major, minor } = decodeRdev(st.rdev);
      node.rdevMajor = major;
      node.rdevMinor = minor;
    }
    return node;
  };
  const root = build(bs.rootIno);
  const prefetch = (bs.prefetchInodes ?? []).map((i: number) => byIno.get(i)).filter((x: Inode | undefined): x is Inode => !!x);
  return { root, blobs, chunkSize: bs.chunkSize, compressor, digester, prefetch };
}

function v6BlobEntries(buf: Buffer): ReturnType<typeof decodeRafsV6BlobEntry>[] {
  const ext = decodeRafsV6ExtSuperBlock(buf);
  const out = [];
  for (let i = 0; i < ext.blobTableSize / RAFS_V6_BLOB_ENTRY_SIZE; i++) {
    out.push(decodeRafsV6BlobEntry(buf, ext.blobTableOffset + i * RAFS_V6_BLOB_ENTRY_SIZE));
  }
  return out;
}

/** Every chunk of a loaded bootstrap, keyed for dedup lookups. */
export function indexChunks(root: Inode, into: ChunkIndex = new Map()): ChunkIndex {
  const visit = (n: Inode): void => {
    for (const c of n.chunks ?? []) {
      const k = chunkKey(c.digest, c.uncompressedSize);
      if (!into.has(k)) {
        const { fileOffset: _f, ...rest } = c;
        into.set(k, rest);
      }
    }
    if (n.children) for (const c of n.children.values()) visit(c);
  };
  visit(root);
  return into;
}
