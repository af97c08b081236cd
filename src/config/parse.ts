/**
 * @module config/parse
 * The one way every server's schema is applied: validate once, and on failure throw
 * INVALID_ARGUMENT naming every problem — unknown keys by their full path, so a misspelt key in a
 * config file is found at once.
 */
import type { z } from 'zod';
import { FerryError } from '../core/index.js';

/** One line naming every issue of a failed parse. */
export function issuesText(err: z.ZodError): string {
  return err.issues.map((i) => {
    const path = i.path.join('.');
    if (i.code === 'unrecognized_keys') {
      const keys = (i as { keys: string[] }).keys;
      return `unknown key${keys.length > 1 ? 's' : ''} ${keys.map((k) => (path ? `${path}.${k}` : k)).join(', ')}`;
    }
    return `${path || '(root)'}: ${i.message}`;
  }).join('; ');
}

/** Parses `input` (undefined/null → `{}`) with `schema`; throws `invalid <what> config: …`. */
export function parseConfig<S extends z.ZodType>(schema: S, input: unknown, what: string): z.output<S> {
  const r = schema.safeParse(input ?? {});
  if (!r.success) throw new FerryError('INVALID_ARGUMENT', `invalid ${what} config: ${issuesText(r.error)}`);
  return r.data;
}
