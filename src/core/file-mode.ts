/**
 * @module core/file-mode
 * The POSIX file-type bits of `st_mode` (`<sys/stat.h>`) and the file types they name, defined once for the tar, RAFS and EROFS
 * codecs, the builder and the daemon. Constants only, importing nothing: the FUSE fast-path threads
 * load this through core/index.ts, which is as light.
 */

/** Mask of the file-type bits. */
export const S_IFMT = 0o170000;
export const S_IFSOCK = 0o140000;
export const S_IFLNK = 0o120000;
export const S_IFREG = 0o100000;
export const S_IFBLK = 0o060000;
export const S_IFDIR = 0o040000;
export const S_IFCHR = 0o020000;
export const S_IFIFO = 0o010000;
/** Mask of the permission bits (with setuid, setgid and sticky). */
export const S_IPERM = 0o7777;

/** A file's type by name, as the builder and the tar codec call it. */
export type FileType = 'file' | 'dir' | 'symlink' | 'char' | 'block' | 'fifo' | 'socket';

/** The `st_mode` type bits of each file type. */
export const MODE_OF_TYPE: Readonly<Record<FileType, number>> = {
  file: S_IFREG,
  dir: S_IFDIR,
  symlink: S_IFLNK,
  char: S_IFCHR,
  block: S_IFBLK,
  fifo: S_IFIFO,
  socket: S_IFSOCK,
};

/** The file type of an `st_mode`, or undefined for type bits that name none. */
export function typeOfMode(mode: number): FileType | undefined {
  switch (mode & S_IFMT) {
    case S_IFREG:
      return 'file';
    case S_IFDIR:
      return 'dir';
    case S_IFLNK:
      return 'symlink';
    case S_IFCHR:
      return 'char';
    case S_IFBLK:
      return 'block';
    case S_IFIFO:
      return 'fifo';
    case S_IFSOCK:
      return 'socket';
    default:
      return undefined;
  }
}
