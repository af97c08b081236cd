/**
 * @module core/file-mode
 * The POSIX file-type bits of `st_mode` (`<sys/stat.h>`), defined once for the tar, RAFS and EROFS
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
