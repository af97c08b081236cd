/**
 * @module fuse
 * A FUSE kernel-protocol server in plain TypeScript over /dev/fuse. It knows nothing of images:
 * give it a `FuseFilesystem` (lookup/getattr/readdir/open/read/readlink/xattrs/statfs) and a
 * mount point. Read-only by construction.
 */
export {
  FuseSession,
  FUSE_ROOT_ID,
  type FuseFilesystem,
  type FuseDirEntry,
  type FuseOpenResult,
  type FuseSessionOptions,
  type FuseStats,
} from './server.js';
export { Op, entryOut, attrOut, dtype, type FuseAttr, type StatfsInfo } from './protocol.js';
export { FuseErrno, errnoOf, E as ERRNO } from './errno.js';
export { listMounts, mountsAt, unmount, clearStaleMounts, run, type MountEntry } from './mounts.js';
