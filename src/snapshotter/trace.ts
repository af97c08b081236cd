/**
 * @module snapshotter/trace
 * Prefetch traces in the registry: stored as an OCI artifact whose `subject` is the Nydus image's
 * manifest (artifactType `PREFETCH_TRACE_ARTIFACT_TYPE`, config the empty descriptor, one layer with
 * the trace JSON; the codec of both is oci/prefetch-trace), found through the referrers API or, on
 * registries without it, the OCI 1.1 referrers tag schema (remote/referrers). Pushed by `ferry trace
 * push` from a node that ran the image, which then looks it up as a node would; read by the
 * snapshotter when it mounts the image.
 */
import { FerryError } from '../core/index.js';
import {
  MediaType,
  PREFETCH_TRACE_ARTIFACT_TYPE,
  PREFETCH_TRACE_LIMITS,
  decodePrefetchTrace,
  encodePrefetchTrace,
  newestPrefetchTrace,
  parseImageManifest,
  prefetchTraceLayer,
  prefetchTraceManifest,
  type Descriptor,
  type PrefetchTrace,
} from '../oci/index.js';
import { pushReferrer, withDigest, type ImageReference, type ReferrerPush, type RegistryClient } from '../remote/index.js';

/**
 * The newest prefetch trace attached to a manifest (by its `created` annotation), or undefined when
 * there is none. A trace recorded for another bootstrap layer than `bootstrapDigest` is ignored.
 */
export async function fetchPrefetchTrace(
  reg: RegistryClient,
  ref: ImageReference,
  manifestDigest: string,
  bootstrapDigest?: string,
): Promise<PrefetchTrace | undefined> {
  const newest = newestPrefetchTrace(await reg.referrers(ref.registry, ref.repository, manifestDigest, PREFETCH_TRACE_ARTIFACT_TYPE));
  if (!newest) return undefined;
  const m = await reg.getManifest(withDigest(ref, newest.digest));
  const layer = prefetchTraceLayer(parseImageManifest(m.body, m.mediaType, `prefetch trace ${newest.digest}`), newest.digest);
  const trace = decodePrefetchTrace(await reg.getBlobBuffer(ref.registry, ref.repository, layer.digest, PREFETCH_TRACE_LIMITS.bytes));
  if (bootstrapDigest && trace.bootstrap && trace.bootstrap !== bootstrapDigest) return undefined;
  return trace;
}

/**
 * Pushes a trace as a referrer of `subject` (the Nydus manifest), then looks it up as a node does
 * (referrers API or tag schema): FAILED_PRECONDITION when the registry accepted it but does not
 * list it — no node would ever find it.
 */
export async function pushPrefetchTrace(
  reg: RegistryClient,
  ref: ImageReference,
  subject: Descriptor,
  trace: PrefetchTrace,
): Promise<ReferrerPush> {
  if (trace.chunks.length === 0)
    throw new FerryError('FAILED_PRECONDITION', 'prefetch trace is empty: run a container from the image first');
  const layer = await reg.pushBuffer(ref.registry, ref.repository, encodePrefetchTrace(trace), PREFETCH_TRACE_ARTIFACT_TYPE);
  const config = await reg.pushBuffer(ref.registry, ref.repository, Buffer.from('{}'), MediaType.OCI_EMPTY);
  const body = Buffer.from(JSON.stringify(prefetchTraceManifest({ config, layer, subject, created: new Date() })));
  const pushed = await pushReferrer(reg, ref, body, MediaType.OCI_MANIFEST, subject.digest);
  const listed = await reg.referrers(ref.registry, ref.repository, subject.digest, PREFETCH_TRACE_ARTIFACT_TYPE);
  if (!listed.some((d) => d.digest === pushed.digest)) {
    const where = pushed.via === 'tag-schema' ? `the referrers index tagged ${pushed.tag}` : 'its referrers API';
    throw new FerryError(
      'FAILED_PRECONDITION',
      `pushed prefetch trace ${pushed.digest}, but ${ref.registry}/${ref.repository} does not list it as a referrer of ${subject.digest} in ${where}: no node would find it`,
    );
  }
  return pushed;
}
