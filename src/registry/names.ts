/**
 * @module registry/names
 * The distribution-spec grammars for repository names, tags and references. Every value taken from a
 * request path passes through here before it is used anywhere.
 */
import { isDigest, parseDigest, FerryError } from '../core/index.js';
import { OciError } from './errors.js';

const COMPONENT = '[a-z0-9]+(?:(?:\\.|_|__|-+)[a-z0-9]+)*';
/** `<name>` of the spec. */
export const NAME_GRAMMAR = new RegExp(`^${COMPONENT}(?:/${COMPONENT})*$`);
/** A tag. */
export const TAG_GRAMMAR = /^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$/;
/** Longest repository name accepted (clients cap host/name at 255). */
export const MAX_NAME_LENGTH = 255;

export function isValidName(name: string): boolean {
  return name.length <= MAX_NAME_LENGTH && NAME_GRAMMAR.test(name);
}

export function isValidTag(tag: string): boolean {
  return TAG_GRAMMAR.test(tag);
}

/** Throws NAME_INVALID unless `name` is a valid repository name. */
export function checkName(name: string): string {
  if (!isValidName(name)) throw new OciError('NAME_INVALID', `invalid repository name ${JSON.stringify(name.slice(0, 300))}`);
  return name;
}

/** Throws DIGEST_INVALID (400) unless `d` is a valid, supported digest. */
export function checkDigest(d: string): string {
  try {
    parseDigest(d);
    return d;
  } catch (err) {
    throw new OciError('DIGEST_INVALID', FerryError.is(err) ? err.message : `invalid digest ${JSON.stringify(d)}`);
  }
}

/** A manifest reference: a digest (when it has a `:`) or a tag. */
export function parseReference(ref: string): { digest: string } | { tag: string } {
  if (ref.includes(':')) return { digest: checkDigest(ref) };
  if (!isValidTag(ref)) throw new OciError('TAG_INVALID', `invalid tag ${JSON.stringify(ref.slice(0, 200))}`, { status: 400 });
  return { tag: ref };
}

/** The project of a repository: its first path segment; single-segment names live in `library`. */
export function projectOf(repo: string): string {
  const i = repo.indexOf('/');
  return i < 0 ? 'library' : repo.slice(0, i);
}

export { isDigest };
