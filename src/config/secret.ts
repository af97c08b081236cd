/**
 * @module config/secret
 * A secret a config names but does not hold: read from an environment variable or from a file that
 * only its owner may read (first line). Never from the config itself, a command line or a log line.
 */
import { readFileSync, statSync } from 'node:fs';
import { FerryError } from '../core/index.js';

export interface SecretSource {
  /** What the secret is for, first in every error message (`database`, `console.accel`). */
  what: string;
  /** The environment variable holding it, and the config key that named it. */
  env?: { name: string; key: string } | undefined;
  /** The owner-only file holding it, and the config key that named it. */
  file?: { path: string; key: string } | undefined;
}

/** The secret (environment first, then file), or undefined when neither is configured. */
export function readSecret(s: SecretSource, env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (s.env) {
    const v = env[s.env.name];
    if (v === undefined || v === '') {
      throw new FerryError('FAILED_PRECONDITION', `${s.what}: environment variable ${s.env.name} (${s.env.key}) is not set`);
    }
    return v;
  }
  if (!s.file) return undefined;
  const { path, key } = s.file;
  let mode: number;
  let text: string;
  try {
    mode = statSync(path).mode;
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new FerryError('FAILED_PRECONDITION', `${s.what}: cannot read ${key} ${path}`, { cause: err });
  }
  if ((mode & 0o077) !== 0) {
    throw new FerryError(
      'FAILED_PRECONDITION',
      `${s.what}: ${key} ${path} is readable by group or others (mode ${(mode & 0o777).toString(8)}); chmod 600 it`,
    );
  }
  const secret = text.split('\n')[0] ?? '';
  if (!secret) throw new FerryError('FAILED_PRECONDITION', `${s.what}: ${key} ${path} is empty`);
  return secret;
}
