/**
 * @module builder/source-tar
 * Builds a tree from an OCI layer tar stream (plain, gzip or zstd — detected by readLayer). File
 * bodies go chunk by chunk into the blob writer. Whiteouts (`.wh.*`) are kept verbatim as empty
 * files, as upstream's per-layer bootstraps do (`--whiteout-spec none`); merging applies them.
 */
import type { Readable } from 'node:stream';
import { FerryError } from '../core/index.js';
import { parseLayer, type TarEntry, type TarVisitor } from '../format/tar/index.js';
import { insertPath, lookupPath, newDir, splitPath, storableXattrs, type Inode } from './tree.js';
import { FileChunker } from './chunker.js';
import type { BlobWriter } from './blob-writer.js';

export interface TarSourceOptions {
  writer: BlobWriter;
  chunkSize: number;
  onBytes?: ((n: number) => void) | undefined;
}

export async function treeFromTar(input: Readable, opts: TarSourceOptions): Promise<Inode> {
  const root = newDir();
  const { writer } = opts;
  let file: { chunker: FileChunker; node: Inode; path: string } | undefined;
  const scratch: { buf?: Buffer } = {};
  const visitor: TarVisitor = {
    entry(entry: TarEntry): void {
      const parts = splitPath(entry.path);
      // EROFS/RAFS store unsigned times: entries dated before 1970 are clamped to the epoch
      const mtime = entry.mtime > 0 ? Math.floor(entry.mtime) : 0;
      const base: Inode = {
        type: 'file',
        perm: entry.mode & 0o7777,
        uid: entry.uid,
        gid: entry.gid,
        mtime,
        mtimeNsec: entry.mtime > 0 ? Math.round((entry.mtime - mtime) * 1e9) % 1_000_000_000 : 0,
        size: 0,
        xattrs: new Map(Object.entries(entry.xattrs ?? {})),
      };
      if (base.xattrs.size) writer.stats.xattrsDropped += storableXattrs(base.xattrs).dropped.length;
      switch (entry.type) {
        case 'file': {
          if (parts.length === 0) throw new FerryError('INVALID_ARGUMENT', 'a regular file cannot be the layer root');
          // inserted once its body is complete (as before: a truncated body inserts nothing)
          file = {
            chunker: new FileChunker(entry.size, writer, opts.chunkSize, opts.onBytes, scratch),
            node: { ...base, size: entry.size },
            path: entry.path,
          };
          return;
        }
        case 'hardlink': {
          const target = entry.linkname === undefined ? undefined : lookupPath(root, entry.linkname);
          if (!target)
            throw new FerryError('INVALID_ARGUMENT', `hardlink ${entry.path} → ${entry.linkname}: target not found earlier in the layer`);
          if (target.type === 'dir')
            throw new FerryError('INVALID_ARGUMENT', `hardlink ${entry.path} → ${entry.linkname}: target is a directory`);
          insertPath(root, entry.path, target);
          return;
        }
        case 'dir':
          insertPath(root, entry.path, newDir({ ...base, type: 'dir' }));
          return;
        case 'symlink': {
          const target = Buffer.from(entry.linkname ?? '', 'utf8');
          if (target.length === 0) throw new FerryError('INVALID_ARGUMENT', `symlink ${entry.path} has an empty target`);
          // symlink permissions are not meaningful on Linux: stored as 0777, what any unpacked layer shows
          insertPath(root, entry.path, { ...base, type: 'symlink', perm: 0o777, target, size: target.length });
          return;
        }
        case 'char':
        case 'block':
        case 'fifo':
          insertPath(root, entry.path, { ...base, type: entry.type, rdevMajor: entry.devmajor ?? 0, rdevMinor: entry.devminor ?? 0 });
          return;
        default:
          throw new FerryError(
            'INVALID_ARGUMENT',
            `${entry.path}: unsupported tar entry type ${String((entry as { type: unknown }).type)}`,
          );
      }
    },
    data(piece: Buffer): void {
      file!.chunker.push(piece);
    },
    end(): void {
      const f = file!;
      file = undefined;
      f.node.chunks = f.chunker.finish();
      insertPath(root, f.path, f.node);
    },
  };
  await parseLayer(input, visitor, { afterPiece: () => (writer.needsFlush ? writer.flush() : undefined) });
  return root;
}
