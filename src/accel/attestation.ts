/**
 * @module accel/attestation
 * The accel side of conversion attestations (convert/attestation.ts signs and pushes them): the
 * signing key of `converter.attestation`, read once when the service opens so that a service asked
 * to sign never starts without a usable key.
 */
import type { KeyObject } from 'node:crypto';
import { FerryError } from '../core/index.js';
import { loadSigningKey } from '../convert/index.js';
import type { AccelConfig } from '../config/accel.js';

/** The key of `converter.attestation` (undefined: conversions are not attested). */
export function signingKeyOf(cfg: AccelConfig, env: NodeJS.ProcessEnv): KeyObject | undefined {
  const a = cfg.converter.attestation;
  if (!a) return undefined;
  const passphrase = a.passphrase_env ? env[a.passphrase_env] : undefined;
  if (a.passphrase_env && !passphrase)
    throw new FerryError('FAILED_PRECONDITION', `accel config: converter.attestation.passphrase_env: ${a.passphrase_env} is not set`);
  return loadSigningKey(a.sign_key_file, passphrase);
}
