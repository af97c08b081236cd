/**
 * @module accel/oci-ref-task
 * A task under `driver.config.oci_ref: true` (acceld's key): nothing is converted and the target tag
 * is not written; the source image gets an OCI-ref (zran) index as a referrer (convert/oci-ref),
 * once per source digest — a source that has one already completes at once.
 */
import type { AccelDriverOptions } from '../config/accel.js';
import { OCI_REF_ARTIFACT_TYPE, buildOciRef } from '../convert/index.js';
import type { Logger } from '../observe/index.js';
import type { ImageReference, RegistryClient } from '../remote/index.js';

export interface OciRefTaskResult {
  sourceDigest: string;
  targetDigest: string;
  sourceSize: number;
  targetSize: number;
  reason?: string;
}

/** Indexes `src` (pinned to its digest) unless it has an OCI-ref index already. */
export async function ociRefTask(
  src: ImageReference,
  client: RegistryClient,
  d: AccelDriverOptions,
  o: { signal: AbortSignal; workDir: string; log: Logger },
): Promise<OciRefTaskResult> {
  const digest = src.digest!;
  const existing = await client.referrers(src.registry, src.repository, digest, OCI_REF_ARTIFACT_TYPE).catch(() => []);
  const found = existing.find((r) => r.artifactType === OCI_REF_ARTIFACT_TYPE);
  if (found) {
    o.log.info({ artifact: found.digest }, 'source already has an OCI-ref index');
    return { sourceDigest: digest, targetDigest: found.digest, sourceSize: 0, targetSize: found.size, reason: 'already indexed' };
  }
  const res = await buildOciRef({
    source: src,
    client,
    log: o.log,
    signal: o.signal,
    workDir: o.workDir,
    chunkSize: d.chunkSize,
    digester: d.digester,
  });
  o.log.info({ artifact: res.digest, via: res.push.via, checkpoints: res.checkpoints, ms: res.ms }, 'OCI-ref index attached to the source');
  return { sourceDigest: digest, targetDigest: res.digest, sourceSize: res.sourceBytes, targetSize: res.pushedBytes };
}
