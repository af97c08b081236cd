/**
 * @module builder/inspect
 * What `ferry rafs inspect` says of each entry of a bootstrap: an `ls -l` style mode, owner, size,
 * time, link count, device numbers, symlink target, chunk count and xattrs.
 */
import { S_IFBLK, S_IFCHR, S_IFDIR, S_IFIFO, S_IFLNK, S_IFMT, S_IFREG, S_IFSOCK } from '../core/index.js';
import { decodeRdev } from '../format/erofs/index.js';
import type { RafsBootstrap, WalkEntry } from '../format/rafs/index.js';

/** The special bits `ls -l` shows in the execute columns. */
const S_ISUID = 0o4000;
const S_ISGID = 0o2000;
const S_ISVTX = 0o1000;
/** Printable ASCII: xattr values made of it are shown as text, others as hex. */
const PRINTABLE = /^[\x20-\x7e]*$/;

/** `ls -l`-style mode string. */
export function modeString(mode: number): string {
  const t = mode & S_IFMT;
  const c =
    t === S_IFDIR
      ? 'd'
      : t === S_IFLNK
        ? 'l'
        : t === S_IFCHR
          ? 'c'
          : t === S_IFBLK
            ? 'b'
            : t === S_IFIFO
              ? 'p'
              : t === S_IFSOCK
                ? 's'
                : '-';
  const rwx = (v: number, s: boolean, sc: string): string =>
    `${v & 4 ? 'r' : '-'}${v & 2 ? 'w' : '-'}${s ? (v & 1 ? sc : sc.toUpperCase()) : v & 1 ? 'x' : '-'}`;
  return (
    c +
    rwx((mode >> 6) & 7, (mode & S_ISUID) !== 0, 's') +
    rwx((mode >> 3) & 7, (mode & S_ISGID) !== 0, 's') +
    rwx(mode & 7, (mode & S_ISVTX) !== 0, 't')
  );
}

export interface InspectEntry {
  path: string;
  ino: number;
  mode: string;
  uid: number;
  gid: number;
  size: number;
  mtime: number;
  nlink: number;
  rdev?: { major: number; minor: number };
  target?: string;
  chunks?: number;
  xattrs?: Record<string, string>;
}

export function describeEntry(bs: RafsBootstrap, e: WalkEntry): InspectEntry {
  const t = e.stat.mode & S_IFMT;
  const out: InspectEntry = {
    path: `/${e.path}`,
    ino: e.ino,
    mode: modeString(e.stat.mode),
    uid: e.stat.uid,
    gid: e.stat.gid,
    size: e.stat.size,
    mtime: e.stat.mtime,
    nlink: e.stat.nlink,
  };
  if (t === S_IFCHR || t === S_IFBLK) out.rdev = decodeRdev(e.stat.rdev);
  if (t === S_IFLNK) out.target = bs.readlink(e.ino);
  // v6 files are chunk-based: one chunk index per chunk-size piece (no chunk table needed)
  if (t === S_IFREG) out.chunks = bs.version === 6 ? Math.ceil(e.stat.size / bs.chunkSize) : bs.chunks(e.ino).length;
  const x = bs.xattrs(e.ino);
  if (x.size > 0) {
    const shown = (v: Buffer): string => (PRINTABLE.test(v.toString('latin1')) ? v.toString() : `0x${v.toString('hex')}`);
    out.xattrs = Object.fromEntries([...x].map(([k, v]) => [k, shown(v)]));
  }
  return out;
}
