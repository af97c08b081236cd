/**
 * @module registry/errors
 * The wire edge of the registry: OCI distribution error codes, their HTTP statuses, and the one table
 * that maps Ferry's error categories onto them.
 */
import { FerryError, type ErrorCode } from '../core/index.js';

/** OCI distribution-spec error codes (plus the legacy ones clients still know). */
export const OCI_STATUS = {
  BLOB_UNKNOWN: 404,
  BLOB_UPLOAD_INVALID: 400,
  BLOB_UPLOAD_UNKNOWN: 404,
  DIGEST_INVALID: 400,
  MANIFEST_BLOB_UNKNOWN: 400,
  MANIFEST_INVALID: 400,
  MANIFEST_UNKNOWN: 404,
  NAME_INVALID: 400,
  NAME_UNKNOWN: 404,
  SIZE_INVALID: 400,
  UNAUTHORIZED: 401,
  DENIED: 403,
  UNSUPPORTED: 405,
  TOOMANYREQUESTS: 429,
  TAG_INVALID: 400,
  RANGE_INVALID: 416,
  PAGINATION_NUMBER_INVALID: 400,
  /** Not a spec code: oversize bodies (413) and unexpected failures (500). */
  SIZE_TOO_LARGE: 413,
  INTERNAL: 500,
  UNAVAILABLE: 503,
} as const;

export type OciCode = keyof typeof OCI_STATUS;

/** An error with an OCI code; its status comes from OCI_STATUS unless overridden. */
export class OciError extends FerryError {
  readonly oci: OciCode;
  readonly status: number;
  readonly detail: unknown;
  /** Extra response headers (e.g. Retry-After). */
  readonly headers: Readonly<Record<string, string>>;

  constructor(
    oci: OciCode,
    message: string,
    opts: { status?: number; detail?: unknown; cause?: unknown; headers?: Record<string, string> } = {},
  ) {
    super(CATEGORY_OF[oci], message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'OciError';
    this.oci = oci;
    this.status = opts.status ?? OCI_STATUS[oci];
    this.detail = opts.detail;
    this.headers = opts.headers ?? {};
  }
}

const CATEGORY_OF: Record<OciCode, ErrorCode> = {
  BLOB_UNKNOWN: 'NOT_FOUND',
  BLOB_UPLOAD_INVALID: 'INVALID_ARGUMENT',
  BLOB_UPLOAD_UNKNOWN: 'NOT_FOUND',
  DIGEST_INVALID: 'INVALID_ARGUMENT',
  MANIFEST_BLOB_UNKNOWN: 'FAILED_PRECONDITION',
  MANIFEST_INVALID: 'INVALID_ARGUMENT',
  MANIFEST_UNKNOWN: 'NOT_FOUND',
  NAME_INVALID: 'INVALID_ARGUMENT',
  NAME_UNKNOWN: 'NOT_FOUND',
  SIZE_INVALID: 'INVALID_ARGUMENT',
  UNAUTHORIZED: 'UNAUTHENTICATED',
  DENIED: 'PERMISSION_DENIED',
  UNSUPPORTED: 'NOT_IMPLEMENTED',
  TOOMANYREQUESTS: 'RESOURCE_EXHAUSTED',
  TAG_INVALID: 'INVALID_ARGUMENT',
  RANGE_INVALID: 'INVALID_ARGUMENT',
  PAGINATION_NUMBER_INVALID: 'INVALID_ARGUMENT',
  SIZE_TOO_LARGE: 'RESOURCE_EXHAUSTED',
  INTERNAL: 'INTERNAL',
  UNAVAILABLE: 'UNAVAILABLE',
};

/** Ferry error categories → OCI code for errors that did not carry one. */
export const OCI_CODE_OF_CATEGORY: Record<ErrorCode, OciCode> = {
  INVALID_ARGUMENT: 'BLOB_UPLOAD_INVALID',
  NOT_FOUND: 'NAME_UNKNOWN',
  ALREADY_EXISTS: 'BLOB_UPLOAD_INVALID',
  FAILED_PRECONDITION: 'BLOB_UPLOAD_INVALID',
  UNAVAILABLE: 'UNAVAILABLE',
  NOT_IMPLEMENTED: 'UNSUPPORTED',
  DATA_LOSS: 'DIGEST_INVALID',
  CANCELED: 'BLOB_UPLOAD_INVALID',
  DEADLINE_EXCEEDED: 'UNAVAILABLE',
  UNAUTHENTICATED: 'UNAUTHORIZED',
  PERMISSION_DENIED: 'DENIED',
  RESOURCE_EXHAUSTED: 'SIZE_TOO_LARGE',
  ABORTED: 'UNAVAILABLE',
  INTERNAL: 'INTERNAL',
};

/** Converts anything thrown into an OciError for the wire. */
export function toOciError(err: unknown): OciError {
  if (err instanceof OciError) return err;
  if (FerryError.is(err)) {
    return new OciError(OCI_CODE_OF_CATEGORY[err.code], err.message, { cause: err });
  }
  return new OciError('INTERNAL', 'internal error', { cause: err });
}

/** The spec's error body. */
export function errorBody(e: OciError): string {
  const entry: Record<string, unknown> = { code: e.oci, message: e.message };
  if (e.detail !== undefined) entry.detail = e.detail;
  return JSON.stringify({ errors: [entry] });
}
