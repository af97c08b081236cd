/**
 * @module accel/failures
 * The one place the acceleration service decides whether a failed conversion attempt is worth
 * another: permanent failures (the source is refused — encrypted, already Nydus, malformed —, does
 * not exist, or access is denied) end the task FAILED at once; transient ones (registry down,
 * timeouts, rate limits, bytes lost on the way, internal errors) are retried with backoff up to
 * `converter.retry_limit`.
 */
import { asFerryError, type ErrorCode, type FerryError } from '../core/index.js';

/** Categories that another attempt cannot change. */
const PERMANENT: ReadonlySet<ErrorCode> = new Set([
  'INVALID_ARGUMENT',
  'NOT_FOUND',
  'FAILED_PRECONDITION',
  'UNAUTHENTICATED',
  'PERMISSION_DENIED',
  'NOT_IMPLEMENTED',
]);

export interface FailureClass {
  /** true: fail the task now; false: retry while attempts remain */
  permanent: boolean;
  /** the task's recorded reason: `CODE: message` */
  reason: string;
  error: FerryError;
}

/** Classifies what a conversion attempt threw. */
export function classifyFailure(err: unknown): FailureClass {
  const error = asFerryError(err);
  return { permanent: PERMANENT.has(error.code), reason: `${error.code}: ${error.message}`, error };
}
