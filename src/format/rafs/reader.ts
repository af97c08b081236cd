/**
 * @module format/rafs/reader
 * Reads a RAFS v6 (EROFS) or v5 bootstrap held in memory: blobs, path lookup, stat, readdir,
 * readlink, xattrs, chunk lists and the mapping of a (file, offset, length) read to the chunks to
 * fetch (chunks are decoded by format/compress, reads planned by read-plan.ts). One reader per
 * version, as nydus keeps `direct_v5` and `direct_v6` apart: reader-v6.ts and reader-v5.ts, on
 * the shared tree logic of reader-base.ts; this file picks one by magic. Every offset and count read
 * from the bootstrap is checked against the buffer before it is used, so hostile input yields
 * `FerryError('DATA_LOSS')` naming the structure — never a RangeError or a huge allocation — and
 * directory loops are detected by `walk()`.
 */
import { FerryError } from '../../core/index.js';
import { EROFS_SUPER_MAGIC, EROFS_SUPER_OFFSET } from '../erofs/index.js';
import { corrupt, type OpenBootstrapOptions, type RafsBootstrap } from './reader-base.js';
import { V5Bootstrap } from './reader-v5.js';
import { V6Bootstrap } from './reader-v6.js';
import { RAFS_V5_SUPER_MAGIC } from './v5.js';
import { RafsSuperFlags } from './v6.js';

export type {
  BlobInfo,
  BootstrapSummary,
  ChunkLocation,
  ChunkRef,
  CiLocation,
  DirEntry,
  OpenBootstrapOptions,
  RafsBootstrap,
  RafsStat,
  WalkEntry,
} from './reader-base.js';

/** Parses a v5 or v6 bootstrap (detected by magic). */
export function openBootstrap(buf: Buffer, opts: OpenBootstrapOptions = {}): RafsBootstrap {
  if (!Buffer.isBuffer(buf)) throw new FerryError('INVALID_ARGUMENT', 'openBootstrap expects a Buffer');
  if (buf.length >= 8 && buf.readUInt32LE(0) === RAFS_V5_SUPER_MAGIC) return new V5Bootstrap(buf, opts);
  if (buf.length >= EROFS_SUPER_OFFSET + 4 && buf.readUInt32LE(EROFS_SUPER_OFFSET) === EROFS_SUPER_MAGIC) return new V6Bootstrap(buf, opts);
  throw corrupt(`not a RAFS bootstrap (${buf.length} bytes, no v5 or v6 magic)`);
}

/** Which RAFS version a buffer holds (by magic), or undefined. */
export function detectBootstrapVersion(buf: Buffer): 5 | 6 | undefined {
  if (buf.length >= 8 && buf.readUInt32LE(0) === RAFS_V5_SUPER_MAGIC) return 5;
  if (buf.length >= EROFS_SUPER_OFFSET + 4 && buf.readUInt32LE(EROFS_SUPER_OFFSET) === EROFS_SUPER_MAGIC) return 6;
  return undefined;
}

/** True when the superblock flags say uid/gid are stored explicitly. */
export function hasExplicitUidGid(flags: number): boolean {
  return (flags & RafsSuperFlags.EXPLICIT_UID_GID) !== 0;
}
