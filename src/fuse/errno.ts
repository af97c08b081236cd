/**
 * @module fuse/errno
 * The one table mapping Ferry error codes to the errno a FUSE reply carries, and `FuseErrno` for
 * filesystems that want to answer with a specific errno.
 */
import { constants } from 'node:os';
import { FerryError, type ErrorCode } from '../core/index.js';

export const E = constants.errno;

/** An error that is answered with exactly this errno (positive value, e.g. E.ENOENT). */
export class FuseErrno extends Error {
  readonly errno: number;
  constructor(errno: number, message?: string) {
    super(message ?? `errno ${errno}`);
    this.name = 'FuseErrno';
    this.errno = errno;
  }
}

const TABLE: Record<ErrorCode, number> = {
  INVALID_ARGUMENT: E.EINVAL,
  NOT_FOUND: E.ENOENT,
  ALREADY_EXISTS: E.EEXIST,
  FAILED_PRECONDITION: E.EIO,
  UNAVAILABLE: E.EIO,
  NOT_IMPLEMENTED: E.ENOSYS,
  DATA_LOSS: E.EIO,
  CANCELED: E.EINTR,
  DEADLINE_EXCEEDED: E.EIO,
  UNAUTHENTICATED: E.EACCES,
  PERMISSION_DENIED: E.EACCES,
  RESOURCE_EXHAUSTED: E.ENOMEM,
  ABORTED: E.EIO,
  INTERNAL: E.EIO,
};

/** errno (positive) for any thrown value. */
export function errnoOf(err: unknown): number {
  if (err instanceof FuseErrno) return err.errno;
  if (FerryError.is(err)) return TABLE[err.code] ?? E.EIO;
  const code = (err as NodeJS.ErrnoException | null)?.code;
  if (typeof code === 'string' && code in E) return (E as Record<string, number>)[code]!;
  return E.EIO;
}
