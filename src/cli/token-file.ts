/**
 * @module cli/token-file
 * A bearer token read from a file (never from a flag value: command lines are visible to every
 * user). The file must not be readable by group or others; the token is the trimmed content, at
 * least 16 characters.
 */
import { readFileSync, statSync } from 'node:fs';
import { FerryError } from '../core/index.js';

export function readTokenFile(path: string, what: string): string {
  let mode: number;
  let text: string;
  try {
    mode = statSync(path).mode;
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new FerryError('INVALID_ARGUMENT', `${what} ${path}: ${(err as Error).message}`, { cause: err });
  }
  if (mode & 0o077) throw new FerryError('INVALID_ARGUMENT', `${what} ${path} is readable by group or others (chmod 600 it)`);
  const token = text.trim();
  if (token.length < 16) throw new FerryError('INVALID_ARGUMENT', `${what} ${path}: the token must have at least 16 characters`);
  return token;
}
