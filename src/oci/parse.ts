/**
 * @module oci/parse
 * Validating parsers of the OCI image documents (and Docker schema2, their twin with other media
 * types): manifests, indexes, descriptors and image configs. Pure: bytes in, typed documents out.
 * Every problem is a `FerryError('INVALID_ARGUMENT')` naming the document and the field, so a
 * malformed manifest from a registry, a push or a file fails where it is read instead of as a
 * TypeError far away. Fields Ferry does not read are kept as they are, never rewritten.
 *
 * The media type of a document is decided as the Distribution spec has a registry decide it for a
 * push: the document's own `mediaType` field, which must agree with the Content-Type when both name
 * a manifest type; else the Content-Type; else the shape (`manifests` → index, `config` → manifest).
 */
import { FerryError, isDigest } from '../core/index.js';
import { INDEX_TYPES, MediaType } from './media-types.js';
import type { Descriptor, ImageConfig, ImageIndex, ImageManifest, Platform } from './types.js';

type Obj = Record<string, unknown>;

/** The manifest media types a document may have (schema1 is refused). */
export const MANIFEST_MEDIA_TYPES: readonly string[] = [
  MediaType.OCI_MANIFEST,
  MediaType.OCI_INDEX,
  MediaType.DOCKER_MANIFEST,
  MediaType.DOCKER_MANIFEST_LIST,
];

/** The one schemaVersion of OCI and Docker schema2 documents. */
const SCHEMA_VERSION = 2;
/** Docker's schema1, refused (signed JWS manifests, long gone from registries). */
const DOCKER_SCHEMA1_VERSION = 1;

function invalid(what: string, msg: string): never {
  throw new FerryError('INVALID_ARGUMENT', `${what}: ${msg}`);
}

function isObject(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** `body` as a JSON object; INVALID_ARGUMENT when it is not JSON or not an object. */
export function parseJsonObject(body: Buffer | string, what: string): Obj {
  let doc: unknown;
  try {
    doc = JSON.parse(typeof body === 'string' ? body : body.toString('utf8'));
  } catch (err) {
    invalid(what, `not valid JSON: ${(err as Error).message}`);
  }
  if (!isObject(doc)) invalid(what, 'must be a JSON object');
  return doc;
}

function optString(o: Obj, key: string, where: string): void {
  if (o[key] !== undefined && typeof o[key] !== 'string') invalid(where, `${key} must be a string`);
}

function optStrings(o: Obj, key: string, where: string): void {
  const v = o[key];
  if (v === undefined) return;
  if (!Array.isArray(v) || !v.every((s) => typeof s === 'string')) invalid(where, `${key} must be an array of strings`);
}

function optStringMap(o: Obj, key: string, where: string): void {
  const v = o[key];
  if (v === undefined) return;
  if (!isObject(v)) invalid(where, `${key} must be an object`);
  for (const x of Object.values(v)) if (typeof x !== 'string') invalid(where, `${key} values must be strings`);
}

function checkPlatform(v: unknown, where: string): Platform {
  if (!isObject(v)) invalid(where, 'platform must be an object');
  if (typeof v.os !== 'string' || typeof v.architecture !== 'string') invalid(where, 'platform needs os and architecture strings');
  optString(v, 'variant', `${where}.platform`);
  optString(v, 'os.version', `${where}.platform`);
  optStrings(v, 'os.features', `${where}.platform`);
  optStrings(v, 'features', `${where}.platform`);
  return v as unknown as Platform;
}

/** A validated descriptor (media type, digest, size; urls, annotations, platform, artifactType when present). */
export function parseDescriptor(v: unknown, where: string): Descriptor {
  if (!isObject(v)) invalid(where, 'descriptor must be an object');
  if (typeof v.mediaType !== 'string' || v.mediaType === '') invalid(where, 'mediaType missing');
  if (typeof v.digest !== 'string' || !isDigest(v.digest)) invalid(where, `invalid digest ${JSON.stringify(v.digest)}`);
  if (typeof v.size !== 'number' || !Number.isSafeInteger(v.size) || v.size < 0) invalid(where, 'invalid size');
  optStrings(v, 'urls', where);
  optStringMap(v, 'annotations', where);
  optString(v, 'artifactType', where);
  optString(v, 'data', where);
  if (v.platform !== undefined) checkPlatform(v.platform, where);
  return v as unknown as Descriptor;
}

function descriptors(o: Obj, key: string, what: string): Descriptor[] {
  const list = o[key];
  if (!Array.isArray(list)) invalid(what, `${key} must be an array`);
  return list.map((d: unknown, i: number) => parseDescriptor(d, `${what}: ${key}[${i}]`));
}

function stripParams(ct: string | undefined): string | undefined {
  if (!ct) return undefined;
  const t = ct.split(';')[0]!.trim().toLowerCase();
  return t === '' ? undefined : t;
}

/** A parsed manifest document: an image manifest or an index, with the media type it was decided to have. */
export type ManifestDocument =
  | { kind: 'manifest'; mediaType: string; manifest: ImageManifest }
  | { kind: 'index'; mediaType: string; index: ImageIndex };

/**
 * Parses and validates a manifest or index. `contentType` is what came with the bytes (an HTTP
 * Content-Type, parameters ignored); `what` names the document in error messages.
 */
export function parseManifestDocument(body: Buffer | string, contentType?: string, what = 'manifest'): ManifestDocument {
  const m = parseJsonObject(body, what);
  const header = stripParams(contentType);
  if (m.mediaType !== undefined && typeof m.mediaType !== 'string') invalid(what, 'mediaType must be a string');
  const field = typeof m.mediaType === 'string' ? m.mediaType : undefined;
  const known = (t: string | undefined): t is string => t !== undefined && MANIFEST_MEDIA_TYPES.includes(t);
  if (m.schemaVersion === DOCKER_SCHEMA1_VERSION || header?.startsWith('application/vnd.docker.distribution.manifest.v1')) {
    invalid(what, 'Docker schema 1 manifests are not supported');
  }
  let mediaType: string;
  if (known(field)) {
    if (known(header) && header !== field) invalid(what, `Content-Type ${header} does not match the manifest's mediaType ${field}`);
    mediaType = field;
  } else if (field !== undefined) {
    invalid(what, `unsupported manifest mediaType ${field}`);
  } else if (known(header)) {
    mediaType = header;
  } else if (Array.isArray(m.manifests)) {
    mediaType = MediaType.OCI_INDEX;
  } else if (m.config !== undefined) {
    mediaType = MediaType.OCI_MANIFEST;
  } else {
    invalid(what, `cannot tell the manifest type (Content-Type ${header ?? 'missing'})`);
  }
  if (m.schemaVersion !== SCHEMA_VERSION) invalid(what, `schemaVersion must be ${SCHEMA_VERSION}`);
  optString(m, 'artifactType', what);
  optStringMap(m, 'annotations', what);
  if (m.subject !== undefined) parseDescriptor(m.subject, `${what}: subject`);
  if (INDEX_TYPES.includes(mediaType)) {
    descriptors(m, 'manifests', what);
    return { kind: 'index', mediaType, index: m as unknown as ImageIndex };
  }
  parseDescriptor(m.config, `${what}: config`);
  descriptors(m, 'layers', what);
  return { kind: 'manifest', mediaType, manifest: m as unknown as ImageManifest };
}

/** An image manifest (INVALID_ARGUMENT for an index or anything malformed). */
export function parseImageManifest(body: Buffer | string, contentType?: string, what = 'manifest'): ImageManifest {
  const doc = parseManifestDocument(body, contentType, what);
  if (doc.kind !== 'manifest') invalid(what, `is an index (${doc.mediaType}), not an image manifest`);
  return doc.manifest;
}

/** An index (INVALID_ARGUMENT for an image manifest or anything malformed). */
export function parseImageIndex(body: Buffer | string, contentType?: string, what = 'index'): ImageIndex {
  const doc = parseManifestDocument(body, contentType, what);
  if (doc.kind !== 'index') invalid(what, `is an image manifest (${doc.mediaType}), not an index`);
  return doc.index;
}

/**
 * An image config: `os` and `architecture`, `rootfs.diff_ids`, and — when present — the fields
 * Ferry reads from `config` (the command, environment and working directory of the image).
 */
export function parseImageConfig(body: Buffer | string, what = 'image config'): ImageConfig {
  const c = parseJsonObject(body, what);
  if (typeof c.os !== 'string' || typeof c.architecture !== 'string') invalid(what, 'needs os and architecture strings');
  optString(c, 'variant', what);
  if (!isObject(c.rootfs)) invalid(what, 'rootfs must be an object');
  optString(c.rootfs, 'type', `${what}: rootfs`);
  if (!Array.isArray(c.rootfs.diff_ids) || !c.rootfs.diff_ids.every(isDigestString)) {
    invalid(what, 'rootfs.diff_ids must be an array of digests');
  }
  if (c.config !== undefined && c.config !== null) {
    if (!isObject(c.config)) invalid(what, 'config must be an object');
    const where = `${what}: config`;
    for (const k of ['Entrypoint', 'Cmd']) if (c.config[k] !== null) optStrings(c.config, k, where);
    optStrings(c.config, 'Env', where);
    optString(c.config, 'WorkingDir', where);
    optString(c.config, 'User', where);
    optStringMap(c.config, 'Labels', where);
  }
  if (c.history !== undefined && !Array.isArray(c.history)) invalid(what, 'history must be an array');
  return c as unknown as ImageConfig;
}

function isDigestString(v: unknown): boolean {
  return typeof v === 'string' && isDigest(v);
}

/** What a registry checks and indexes of a manifest pushed to it (see manifestFacts). */
export interface ManifestFacts {
  mediaType: string;
  isIndex: boolean;
  /** Blobs the manifest needs (config, layers without `urls`), each once. */
  blobs: string[];
  /** Manifests an index needs, each once. */
  manifests: string[];
  subject?: string | undefined;
  /** `artifactType`, else (image manifests) the config's media type. */
  artifactType?: string | undefined;
  annotations?: Record<string, string> | undefined;
  /** For indexes: the entries with their platforms (a registry's content-negotiation downgrade). */
  children: Array<{ digest: string; mediaType: string; platform?: { os?: string; architecture?: string } }>;
}

/** The references and index facts of a parsed document. */
export function manifestFacts(doc: ManifestDocument): ManifestFacts {
  const top = doc.kind === 'index' ? doc.index : doc.manifest;
  const out: ManifestFacts = { mediaType: doc.mediaType, isIndex: doc.kind === 'index', blobs: [], manifests: [], children: [] };
  if (doc.kind === 'index') {
    for (const d of doc.index.manifests) {
      out.manifests.push(d.digest);
      const platform = d.platform ? { os: d.platform.os, architecture: d.platform.architecture } : undefined;
      out.children.push({ digest: d.digest, mediaType: d.mediaType, ...(platform ? { platform } : {}) });
    }
  } else {
    const m = doc.manifest;
    out.blobs.push(m.config.digest);
    // Foreign / non-distributable layers with URLs live elsewhere.
    for (const l of m.layers) if (!(l.urls && l.urls.length > 0)) out.blobs.push(l.digest);
    out.artifactType = m.config.mediaType;
  }
  if (top.artifactType !== undefined) out.artifactType = top.artifactType;
  if (top.subject) out.subject = top.subject.digest;
  if (top.annotations) out.annotations = top.annotations;
  out.blobs = [...new Set(out.blobs)];
  out.manifests = [...new Set(out.manifests)];
  return out;
}
