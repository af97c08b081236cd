/**
 * @module convert/estargz/trace
 * Prioritized files for an eStargz conversion from a prefetch trace, when one exists: the trace is
 * recorded on the source's Nydus conversion (a referrer of that Nydus manifest, chunks in the order
 * a container first read them — oci/prefetch-trace.ts). The Nydus manifest converted from the
 * source digest is found among the source's referrers (converted `with_referrer`) or at the tag
 * `<tag>-nydus`; its bootstrap maps the traced chunks back to files, ordered by the first traced
 * chunk of each. Anything missing (no Nydus conversion, no trace, another bootstrap) means no
 * trace-based order: undefined, never an error.
 */
import { openBootstrap } from '../../format/rafs/index.js';
import {
  NydusAnnotation,
  PREFETCH_TRACE_ARTIFACT_TYPE,
  PREFETCH_TRACE_LIMITS,
  decodePrefetchTrace,
  newestPrefetchTrace,
  parseImageManifest,
  parseManifestDocument,
  prefetchTraceLayer,
  type PrefetchTrace,
} from '../../oci/index.js';
import type { Logger } from '../../observe/index.js';
import { withDigest, withTag, type ImageReference, type RegistryClient } from '../../remote/index.js';
import { fetchNydusBootstrap, isNydusManifest, nydusBlobTables } from '../convert.js';

/** Digest of a Nydus manifest converted from `sourceDigest` in the source's repository, if any. */
async function nydusConversionOf(client: RegistryClient, src: ImageReference, sourceDigest: string): Promise<string | undefined> {
  const isConversion = async (digest: string): Promise<boolean> => {
    const m = await client.getManifest(withDigest(src, digest));
    const doc = parseManifestDocument(m.body, m.mediaType, `manifest ${digest}`);
    return (
      doc.kind === 'manifest' && isNydusManifest(doc.manifest) && doc.manifest.annotations?.[NydusAnnotation.SOURCE_DIGEST] === sourceDigest
    );
  };
  for (const d of await client.referrers(src.registry, src.repository, sourceDigest)) if (await isConversion(d.digest)) return d.digest;
  if (src.tag === undefined) return undefined;
  const tagged = await client.getManifest(withTag(src, `${src.tag}-nydus`)).catch(() => undefined);
  if (!tagged) return undefined;
  const doc = parseManifestDocument(tagged.body, tagged.mediaType, `manifest ${tagged.digest}`);
  const candidates = doc.kind === 'index' ? doc.index.manifests.map((d) => d.digest) : [tagged.digest];
  for (const d of candidates.slice(0, 64)) if (await isConversion(d)) return d;
  return undefined;
}

async function newestTrace(client: RegistryClient, src: ImageReference, digest: string): Promise<PrefetchTrace | undefined> {
  const newest = newestPrefetchTrace(await client.referrers(src.registry, src.repository, digest, PREFETCH_TRACE_ARTIFACT_TYPE));
  if (!newest) return undefined;
  const m = await client.getManifest(withDigest(src, newest.digest));
  const layer = prefetchTraceLayer(parseImageManifest(m.body, m.mediaType, `prefetch trace ${newest.digest}`), newest.digest);
  return decodePrefetchTrace(await client.getBlobBuffer(src.registry, src.repository, layer.digest, PREFETCH_TRACE_LIMITS.bytes));
}

/** The files a trace read, in the order of their first traced chunk ('/'-rooted paths). */
export async function tracedFiles(
  client: RegistryClient,
  src: ImageReference,
  sourceDigest: string,
  log: Logger,
): Promise<string[] | undefined> {
  try {
    const nydus = await nydusConversionOf(client, src, sourceDigest);
    if (!nydus) return undefined;
    const trace = await newestTrace(client, src, nydus);
    if (!trace) return undefined;
    const ref = withDigest(src, nydus);
    const { bootstrap, blobMeta, manifest } = await fetchNydusBootstrap(client, ref);
    const bootDigest = manifest.layers[manifest.layers.length - 1]!.digest;
    if (trace.bootstrap && trace.bootstrap !== bootDigest) return undefined;
    const bs = openBootstrap(bootstrap);
    const tables = await nydusBlobTables(client, ref, bootstrap, blobMeta);
    for (const b of bs.blobs) {
      const t = tables?.get(b.blobId);
      if (t) bs.setCiTable(b.index, t.entries, t.digests);
    }
    const rank = new Map<string, number>();
    trace.chunks.forEach(([bi, ci], i) => {
      const key = `${trace.blobs[bi]}:${ci}`;
      if (!rank.has(key)) rank.set(key, i);
    });
    const files: Array<{ path: string; first: number }> = [];
    for (const w of bs.walk()) {
      if ((w.stat.mode & 0o170000) !== 0o100000 || w.stat.size === 0) continue;
      let first = Number.POSITIVE_INFINITY;
      for (const c of bs.chunks(w.ino)) first = Math.min(first, rank.get(`${c.blobId}:${c.chunkIndex}`) ?? first);
      if (first !== Number.POSITIVE_INFINITY) files.push({ path: `/${w.path}`, first });
    }
    files.sort((a, b) => a.first - b.first);
    log.info({ nydus, files: files.length }, 'prioritized files from the prefetch trace of the Nydus conversion');
    return files.map((f) => f.path);
  } catch (err) {
    log.warn({ err: (err as Error).message }, 'prefetch trace not used');
    return undefined;
  }
}
