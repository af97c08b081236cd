/**
 * @module core/digest
 * OCI content digests (`algorithm:hex`): parsing, validation and hashing helpers.
 */
import { createHash, type Hash } from 'node:crypto';
import { FerryError } from './errors.js';

/** Algorithms Ferry computes; others are rejected as unsupported. */
export const DIGEST_ALGORITHMS = { sha256: 64, sha512: 128 } as const;
export type DigestAlgorithm = keyof typeof DIGEST_ALGORITHMS;

/** The OCI image-spec digest grammar. */
export const DIGEST_GRAMMAR = /^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$/;

export interface ParsedDigest {
  algorithm: DigestAlgorithm;
  hex: string;
}

/**
 * Parses and validates a digest string. Throws INVALID_ARGUMENT for a malformed digest and
 * NOT_IMPLEMENTED for a well-formed digest of an algorithm Ferry does not support.
 */
export function parseDigest(digest: string): ParsedDigest {
  if (typeof digest !== 'string' || !DIGEST_GRAMMAR.test(digest)) {
    throw new FerryError('INVALID_ARGUMENT', `invalid digest ${JSON.stringify(digest)}`);
  }
  const i = digest.indexOf(':');
  const algorithm = digest.slice(0, i);
  const hex = digest.slice(i + 1);
  if (!(algorithm in DIGEST_ALGORITHMS)) {
    throw new FerryError('NOT_IMPLEMENTED', `unsupported digest algorithm ${algorithm}`);
  }
  const len = DIGEST_ALGORITHMS[algorithm as DigestAlgorithm];
  if (hex.length !== len || !/^[a-f0-9]+$/.test(hex)) {
    throw new FerryError('INVALID_ARGUMENT', `invalid ${algorithm} digest ${JSON.stringify(digest)}`);
  }
  return { algorithm: algorithm as DigestAlgorithm, hex };
}

/** True when `digest` is a valid, supported digest. */
export function isDigest(digest: string): boolean {
  try {
    parseDigest(digest);
    return true;
  } catch {
    return false;
  }
}

/** `sha256:<hex>` of a buffer. */
export function sha256Digest(data: Uint8Array | string): string {
  return `sha256:${createHash('sha256').update(data).digest('hex')}`;
}

/** A hasher for `algorithm` whose `digest()` returns `algorithm:hex`. */
export function digester(algorithm: DigestAlgorithm = 'sha256'): { hash: Hash; digest(): string } {
  const hash = createHash(algorithm);
  return { hash, digest: () => `${algorithm}:${hash.digest('hex')}` };
}
