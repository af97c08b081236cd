/**
 * @module config/parse
 * The one way every server's schema is applied: validate once, and on failure throw
 * INVALID_ARGUMENT naming every problem — unknown keys by their full path, so a misspelt key in a
 * config file is found at once.
 */
import { z } from 'zod';
import { FerryError, parseDuration, parseSize } from '../core/index.js';

/** One line naming every issue of a failed parse. */
export function issuesText(err: z.ZodError): string {
  return err.issues
    .map((i) => {
      const path = i.path.join('.');
      if (i.code === 'unrecognized_keys') {
        const keys = (i as { keys: string[] }).keys;
        return `unknown key${keys.length > 1 ? 's' : ''} ${keys.map((k) => (path ? `${path}.${k}` : k)).join(', ')}`;
      }
      return `${path || '(root)'}: ${i.message}`;
    })
    .join('; ');
}

/** Parses `input` (undefined/null → `{}`) with `schema`; throws `invalid <what> config: …`. */
export function parseConfig<S extends z.ZodType>(schema: S, input: unknown, what: string): z.output<S> {
  const r = schema.safeParse(input ?? {});
  if (!r.success) throw new FerryError('INVALID_ARGUMENT', `invalid ${what} config: ${issuesText(r.error)}`);
  return r.data;
}

function unitSchema(parse: (v: string | number) => number) {
  return z.union([z.string(), z.number()]).transform((v, ctx) => {
    try {
      return parse(v);
    } catch (err) {
      ctx.addIssue({ code: 'custom', message: (err as Error).message });
      return z.NEVER;
    }
  });
}

/** A duration in a config ("30s", "500ms", or milliseconds), parsed to milliseconds. */
export const durationSchema = unitSchema(parseDuration);
/** A size in a config ("512MiB", "0x100000", or bytes), parsed to bytes. */
export const sizeSchema = unitSchema(parseSize);
