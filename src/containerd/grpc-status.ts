/**
 * @module containerd/grpc-status
 * The one table mapping Ferry error codes to gRPC status codes, as containerd's errdefs
 * (`errdefs/grpc.go`) reads them back: NOT_FOUND, ALREADY_EXISTS, FAILED_PRECONDITION,
 * INVALID_ARGUMENT, UNAVAILABLE and UNIMPLEMENTED must be exact — the remote-snapshot protocol
 * depends on ALREADY_EXISTS from Prepare. And the reverse, for Ferry's containerd client.
 */
import { status, Metadata, type ServiceError } from '@grpc/grpc-js';
import { FerryError, type ErrorCode } from '../core/index.js';

export const GRPC_STATUS: Readonly<Record<ErrorCode, status>> = {
  INVALID_ARGUMENT: status.INVALID_ARGUMENT,
  NOT_FOUND: status.NOT_FOUND,
  ALREADY_EXISTS: status.ALREADY_EXISTS,
  FAILED_PRECONDITION: status.FAILED_PRECONDITION,
  UNAVAILABLE: status.UNAVAILABLE,
  NOT_IMPLEMENTED: status.UNIMPLEMENTED,
  DATA_LOSS: status.DATA_LOSS,
  CANCELED: status.CANCELLED,
  DEADLINE_EXCEEDED: status.DEADLINE_EXCEEDED,
  UNAUTHENTICATED: status.UNAUTHENTICATED,
  PERMISSION_DENIED: status.PERMISSION_DENIED,
  RESOURCE_EXHAUSTED: status.RESOURCE_EXHAUSTED,
  ABORTED: status.ABORTED,
  INTERNAL: status.INTERNAL,
};

/** A gRPC error object for a thrown value (FerryErrors by the table, anything else INTERNAL). */
export function toGrpcError(err: unknown): Partial<ServiceError> {
  const code = FerryError.is(err) ? GRPC_STATUS[err.code] : status.INTERNAL;
  const message = err instanceof Error ? err.message : String(err);
  return { code, details: message, message, metadata: new Metadata() };
}

/** The Ferry error for a gRPC status returned by containerd (the reverse of the table). */
export function fromGrpcError(err: unknown, context: string): FerryError {
  const e = err as Partial<ServiceError>;
  const code =
    typeof e.code === 'number'
      ? ((Object.entries(GRPC_STATUS).find(([, s]) => s === e.code)?.[0] as ErrorCode | undefined) ?? 'INTERNAL')
      : 'INTERNAL';
  const details = e.details ?? (err instanceof Error ? err.message : String(err));
  return new FerryError(code === 'INTERNAL' && e.code === status.UNKNOWN ? 'INTERNAL' : code, `${context}: ${details}`, { cause: err });
}
