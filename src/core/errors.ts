/**
 * @module core/errors
 * One error class for all of Ferry, with a closed set of codes modelled on containerd's error
 * categories. Code is what callers branch on; message text is for people. Each service maps codes
 * to its wire format at its edge only (registry → OCI error JSON, snapshotter → gRPC status,
 * filesystem → errno), each through one table.
 */

/** The closed set of error categories. */
export const ERROR_CODES = [
  'INVALID_ARGUMENT',
  'NOT_FOUND',
  'ALREADY_EXISTS',
  'FAILED_PRECONDITION',
  'UNAVAILABLE',
  'NOT_IMPLEMENTED',
  'DATA_LOSS',
  'CANCELED',
  'DEADLINE_EXCEEDED',
  'UNAUTHENTICATED',
  'PERMISSION_DENIED',
  'RESOURCE_EXHAUSTED',
  'ABORTED',
  'INTERNAL',
] as const;

export type ErrorCode = (typeof ERROR_CODES)[number];

const BRAND = Symbol.for('ferry.error');

/** Ferry's error: a category `code`, a message for people, optional ES2022 `cause`. */
export class FerryError extends Error {
  readonly code: ErrorCode;
  readonly [BRAND] = true;

  constructor(code: ErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'FerryError';
    this.code = code;
  }

  /** True for any FerryError, even one created by another copy of this module. */
  static is(err: unknown): err is FerryError {
    return typeof err === 'object' && err !== null && (err as Record<symbol, unknown>)[BRAND] === true;
  }

  /** True when `err` is a FerryError with the given code. */
  static hasCode(err: unknown, code: ErrorCode): boolean {
    return FerryError.is(err) && err.code === code;
  }
}

/** A content digest did not match what was expected. */
export class DigestMismatchError extends FerryError {
  readonly expected: string;
  readonly actual: string;

  constructor(expected: string, actual: string, what = 'content') {
    super('DATA_LOSS', `${what}: digest mismatch: expected ${expected}, got ${actual}`);
    this.name = 'DigestMismatchError';
    this.expected = expected;
    this.actual = actual;
  }
}

/** Wraps any thrown value as a FerryError, keeping FerryErrors as they are. */
export function asFerryError(err: unknown, code: ErrorCode = 'INTERNAL', context?: string): FerryError {
  if (FerryError.is(err)) return err;
  const msg = err instanceof Error ? err.message : String(err);
  return new FerryError(code, context ? `${context}: ${msg}` : msg, { cause: err });
}
