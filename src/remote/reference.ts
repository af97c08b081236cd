/**
 * @module remote/reference
 * Image references with Docker's normalisation rules: `busybox` → `docker.io/library/busybox:latest`,
 * `host:port/repo:tag`, `repo@sha256:…`, `repo:tag@sha256:…`.
 */
import { FerryError, parseDigest } from '../core/index.js';

export interface ImageReference {
  /** Registry host[:port], normalised (`docker.io` for Docker Hub). */
  registry: string;
  /** Repository path inside the registry (`library/busybox`). */
  repository: string;
  tag?: string;
  digest?: string;
}

export const DOCKER_HUB = 'docker.io';
/** The host Docker Hub's API actually answers on. */
export const DOCKER_HUB_API = 'registry-1.docker.io';

const REPO_COMPONENT = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$/;
const TAG = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/;

function looksLikeHost(s: string): boolean {
  return s.includes('.') || s.includes(':') || s === 'localhost' || /^\[.*\]/.test(s);
}

/** Parses and normalises an image reference. Throws INVALID_ARGUMENT naming what is wrong. */
export function parseReference(input: string): ImageReference {
  if (typeof input !== 'string' || input.trim() === '') {
    throw new FerryError('INVALID_ARGUMENT', 'empty image reference');
  }
  let s = input.trim();
  // Tolerate a scheme some users paste (`docker://`, `http://`).
  s = s.replace(/^(docker|oci|https?):\/\//, '');
  let digest: string | undefined;
  const at = s.indexOf('@');
  if (at >= 0) {
    digest = s.slice(at + 1);
    s = s.slice(0, at);
    parseDigest(digest);
  }
  let tag: string | undefined;
  const lastSlash = s.lastIndexOf('/');
  const colon = s.lastIndexOf(':');
  if (colon > lastSlash) {
    tag = s.slice(colon + 1);
    s = s.slice(0, colon);
    if (!TAG.test(tag)) throw new FerryError('INVALID_ARGUMENT', `invalid tag ${JSON.stringify(tag)} in ${JSON.stringify(input)}`);
  }
  let registry = DOCKER_HUB;
  let repository = s;
  const firstSlash = s.indexOf('/');
  if (firstSlash >= 0 && looksLikeHost(s.slice(0, firstSlash))) {
    registry = s.slice(0, firstSlash);
    repository = s.slice(firstSlash + 1);
  }
  if (registry === 'index.docker.io' || registry === DOCKER_HUB_API) registry = DOCKER_HUB;
  if (registry === DOCKER_HUB && !repository.includes('/')) repository = `library/${repository}`;
  if (repository === '' || !repository.split('/').every((c) => REPO_COMPONENT.test(c))) {
    throw new FerryError('INVALID_ARGUMENT', `invalid repository name ${JSON.stringify(repository)} in ${JSON.stringify(input)}`);
  }
  if (repository.length > 255) throw new FerryError('INVALID_ARGUMENT', `repository name too long in ${JSON.stringify(input)}`);
  if (tag === undefined && digest === undefined) tag = 'latest';
  const ref: ImageReference = { registry, repository };
  if (tag !== undefined) ref.tag = tag;
  if (digest !== undefined) ref.digest = digest;
  return ref;
}

/** `registry/repository[:tag][@digest]`. */
export function formatReference(ref: ImageReference): string {
  return `${ref.registry}/${ref.repository}${ref.tag !== undefined ? `:${ref.tag}` : ''}${ref.digest !== undefined ? `@${ref.digest}` : ''}`;
}

/** The manifest reference to put in a URL: the digest when there is one, else the tag. */
export function manifestReference(ref: ImageReference): string {
  const r = ref.digest ?? ref.tag;
  if (r === undefined) throw new FerryError('INVALID_ARGUMENT', `reference ${formatReference(ref)} has neither tag nor digest`);
  return r;
}

/** A copy of `ref` with another tag and no digest. */
export function withTag(ref: ImageReference, tag: string): ImageReference {
  if (!TAG.test(tag)) throw new FerryError('INVALID_ARGUMENT', `invalid tag ${JSON.stringify(tag)}`);
  return { registry: ref.registry, repository: ref.repository, tag };
}

/** A copy of `ref` pinned to a digest (tag dropped). */
export function withDigest(ref: ImageReference, digest: string): ImageReference {
  parseDigest(digest);
  return { registry: ref.registry, repository: ref.repository, digest };
}

/** The host to talk HTTP to for a registry name. */
export function apiHost(registry: string): string {
  return registry === DOCKER_HUB ? DOCKER_HUB_API : registry;
}
