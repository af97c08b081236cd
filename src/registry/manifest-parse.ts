/**
 * @module registry/manifest-parse
 * Validation of pushed manifests: JSON shape, media type agreement between header and body,
 * descriptors, and the references the registry must check or index (blobs, child manifests,
 * subject). The bytes are never rewritten.
 */
import { isDigest } from '../core/index.js';
import { MediaType } from '../oci/index.js';
import { OciError } from './errors.js';

export const MANIFEST_MEDIA_TYPES = [
  MediaType.OCI_MANIFEST, MediaType.OCI_INDEX, MediaType.DOCKER_MANIFEST, MediaType.DOCKER_MANIFEST_LIST,
] as const;

const INDEXES: readonly string[] = [MediaType.OCI_INDEX, MediaType.DOCKER_MANIFEST_LIST];

export interface ParsedManifest {
  mediaType: string;
  isIndex: boolean;
  blobs: string[];
  manifests: string[];
  subject?: string | undefined;
  artifactType?: string | undefined;
  annotations?: Record<string, string> | undefined;
  /** For lists: children with their platforms (content negotiation downgrade). */
  children: Array<{ digest: string; mediaType: string; platform?: { os?: string; architecture?: string } }>;
}

function bad(msg: string): never {
  throw new OciError('MANIFEST_INVALID', msg);
}

interface RawDescriptor {
  mediaType?: unknown;
  digest?: unknown;
  size?: unknown;
  urls?: unknown;
  platform?: { os?: unknown; architecture?: unknown };
}

function checkDescriptor(d: unknown, where: string): RawDescriptor & { digest: string; mediaType: string } {
  if (typeof d !== 'object' || d === null || Array.isArray(d)) bad(`${where}: descriptor must be an object`);
  const desc = d as RawDescriptor;
  if (typeof desc.mediaType !== 'string' || desc.mediaType === '') bad(`${where}: mediaType missing`);
  if (typeof desc.digest !== 'string' || !isDigest(desc.digest)) bad(`${where}: invalid digest ${JSON.stringify(desc.digest)}`);
  if (typeof desc.size !== 'number' || !Number.isSafeInteger(desc.size) || desc.size < 0) bad(`${where}: invalid size`);
  return desc as RawDescriptor & { digest: string; mediaType: string };
}

function stripParams(ct: string | undefined): string | undefined {
  if (!ct) return undefined;
  const t = ct.split(';')[0]!.trim().toLowerCase();
  return t === '' ? undefined : t;
}

/** Validates `body` pushed with Content-Type `contentType`. Throws MANIFEST_INVALID. */
export function parseManifest(body: Buffer, contentType: string | undefined): ParsedManifest {
  let doc: unknown;
  try {
    doc = JSON.parse(body.toString('utf8'));
  } catch (err) {
    bad(`manifest is not valid JSON: ${(err as Error).message}`);
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) bad('manifest must be a JSON object');
  const m = doc as Record<string, unknown>;
  const header = stripParams(contentType);
  const field = typeof m.mediaType === 'string' ? m.mediaType : undefined;
  if (m.mediaType !== undefined && typeof m.mediaType !== 'string') bad('mediaType must be a string');
  const known = (t: string | undefined): t is string => t !== undefined && (MANIFEST_MEDIA_TYPES as readonly string[]).includes(t);
  if (m.schemaVersion === 1 || header?.startsWith('application/vnd.docker.distribution.manifest.v1')) {
    throw new OciError('MANIFEST_INVALID', 'Docker schema 1 manifests are not supported');
  }
  let mediaType: string;
  if (known(field)) {
    if (known(header) && header !== field) bad(`Content-Type ${header} does not match the manifest's mediaType ${field}`);
    mediaType = field;
  } else if (field !== undefined) {
    bad(`unsupported manifest mediaType ${field}`);
  } else if (known(header)) {
    mediaType = header;
  } else if (Array.isArray(m.manifests)) {
    mediaType = MediaType.OCI_INDEX;
  } else if (m.config !== undefined) {
    mediaType = MediaType.OCI_MANIFEST;
  } else {
    bad(`cannot tell the manifest type (Content-Type ${header ?? 'missing'})`);
  }
  if (m.schemaVersion !== 2) bad('schemaVersion must be 2');
  const isIndex = INDEXES.includes(mediaType);
  const out: ParsedManifest = { mediaType, isIndex, blobs: [], manifests: [], children: [] };
  if (isIndex) {
    if (!Array.isArray(m.manifests)) bad('index: manifests must be an array');
    m.manifests.forEach((d: unknown, i: number) => {
      const desc = checkDescriptor(d, `manifests[${i}]`);
      out.manifests.push(desc.digest);
      const platform = desc.platform && typeof desc.platform === 'object'
        ? { ...(typeof desc.platform.os === 'string' ? { os: desc.platform.os } : {}), ...(typeof desc.platform.architecture === 'string' ? { architecture: desc.platform.architecture } : {}) }
        : undefined;
      out.children.push({ digest: desc.digest, mediaType: desc.mediaType, ...(platform ? { platform } : {}) });
    });
  } else {
    const config = checkDescriptor(m.config, 'config');
    out.blobs.push(config.digest);
    if (!Array.isArray(m.layers)) bad('layers must be an array');
    m.layers.forEach((d: unknown, i: number) => {
      const desc = checkDescriptor(d, `layers[${i}]`);
      // Foreign / non-distributable layers with URLs live elsewhere.
      if (Array.isArray(desc.urls) && desc.urls.length > 0) return;
      out.blobs.push(desc.digest);
    });
    out.artifactType = config.mediaType;
  }
  if (m.artifactType !== undefined) {
    if (typeof m.artifactType !== 'string') bad('artifactType must be a string');
    out.artifactType = m.artifactType;
  }
  if (m.subject !== undefined) out.subject = checkDescriptor(m.subject, 'subject').digest;
  if (m.annotations !== undefined) {
    if (typeof m.annotations !== 'object' || m.annotations === null || Array.isArray(m.annotations)) bad('annotations must be an object');
    for (const v of Object.values(m.annotations)) if (typeof v !== 'string') bad('annotation values must be strings');
    out.annotations = m.annotations as Record<string, string>;
  }
  out.blobs = [...new Set(out.blobs)];
  out.manifests = [...new Set(out.manifests)];
  return out;
}
