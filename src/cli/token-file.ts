/**
 * @module cli/token-file
 * A bearer token read from a file (never from a flag value: command lines are visible to every
 * user), through the one owner-only secret reader (config/secret): the file must not be readable by
 * group or others; the token is its first line, trimmed, at least 16 characters. A flag naming a
 * bad file is a bad argument (exit 2).
 */
import { FerryError } from '../core/index.js';
import { readSecret } from '../config/secret.js';

export function readTokenFile(path: string, what: string): string {
  let token: string;
  try {
    token = (readSecret({ what: 'token file', file: { path, key: what } }) ?? '').trim();
  } catch (err) {
    throw new FerryError('INVALID_ARGUMENT', (err as Error).message, { cause: err });
  }
  if (token.length < 16) throw new FerryError('INVALID_ARGUMENT', `${what} ${path}: the token must have at least 16 characters`);
  return token;
}
