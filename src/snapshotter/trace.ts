/**
 * @module snapshotter/trace
 * Prefetch traces in the registry: stored as an OCI artifact whose `subject` is the Nydus image's
 * manifest (artifactType `PREFETCH_TRACE_ARTIFACT_TYPE`, config the empty descriptor, one layer with
 * the trace JSON, see daemon/trace), found through the referrers API. Pushed by `ferry trace push`
 * from a node that ran the image; read by the snapshotter when it mounts the image.
 */
import { createHash } from 'node:crypto';
import { FerryError } from '../core/index.js';
import { MediaType, type Descriptor, type ImageManifest } from '../oci/index.js';
import { withDigest, type ImageReference, type RegistryClient } from '../remote/index.js';
import { decodePrefetchTrace, PREFETCH_TRACE_ARTIFACT_TYPE, PREFETCH_TRACE_LIMITS, type PrefetchTrace } from '../daemon/protocol.js';

const CREATED = 'org.opencontainers.image.created';

/**
 * The newest prefetch trace attached to a manifest (by its `created` annotation), or undefined when
 * there is none. A trace recorded for another bootstrap layer than `bootstrapDigest` is ignored.
 */
export async function fetchPrefetchTrace(reg: RegistryClient, ref: ImageReference, manifestDigest: string, bootstrapDigest?: string): Promise<PrefetchTrace | undefined> {
  const list = await reg.referrers(ref.registry, ref.repository, manifestDigest, PREFETCH_TRACE_ARTIFACT_TYPE);
  if (list.length === 0) return undefined;
  const newest = [...list].sort((a, b) => (a.annotations?.[CREATED] ?? '').localeCompare(b.annotations?.[CREATED] ?? '')).at(-1)!;
  const m = await reg.getManifest(withDigest(ref, newest.digest));
  const man = JSON.parse(m.body.toString('utf8')) as ImageManifest;
  const layer = man.layers?.find((l) => l.mediaType === PREFETCH_TRACE_ARTIFACT_TYPE);
  if (!layer) throw new FerryError('INVALID_ARGUMENT', `prefetch trace ${newest.digest}: no ${PREFETCH_TRACE_ARTIFACT_TYPE} layer`);
  if (layer.size > PREFETCH_TRACE_LIMITS.bytes) throw new FerryError('INVALID_ARGUMENT', `prefetch trace ${newest.digest}: layer of ${layer.size} bytes`);
  const trace = decodePrefetchTrace(await reg.getBlobBuffer(ref.registry, ref.repository, layer.digest, PREFETCH_TRACE_LIMITS.bytes));
  if (bootstrapDigest && trace.bootstrap && trace.bootstrap !== bootstrapDigest) return undefined;
  return trace;
}

/** Pushes a trace as a referrer of `subject` (the Nydus manifest); returns the artifact manifest's digest. */
export async function pushPrefetchTrace(reg: RegistryClient, ref: ImageReference, subject: Descriptor, trace: PrefetchTrace): Promise<string> {
  if (trace.chunks.length === 0) throw new FerryError('FAILED_PRECONDITION', 'prefetch trace is empty: run a container from the image first');
  const data = Buffer.from(JSON.stringify(trace));
  const layer = await reg.pushBuffer(ref.registry, ref.repository, data, PREFETCH_TRACE_ARTIFACT_TYPE);
  const empty = Buffer.from('{}');
  const config = await reg.pushBuffer(ref.registry, ref.repository, empty, MediaType.OCI_EMPTY);
  const manifest: ImageManifest = {
    schemaVersion: 2, mediaType: MediaType.OCI_MANIFEST, artifactType: PREFETCH_TRACE_ARTIFACT_TYPE, config, layers: [layer],
    subject: { mediaType: subject.mediaType, digest: subject.digest, size: subject.size },
    annotations: { [CREATED]: new Date().toISOString() },
  };
  const body = Buffer.from(JSON.stringify(manifest));
  const digest = `sha256:${createHash('sha256').update(body).digest('hex')}`;
  await reg.putManifest(withDigest(ref, digest), body, MediaType.OCI_MANIFEST);
  return digest;
}
