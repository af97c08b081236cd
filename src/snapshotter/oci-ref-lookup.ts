/**
 * @module snapshotter/oci-ref-lookup
 * The OCI-ref (zran) index of an ordinary gzip image: found through the referrers API (or the tag
 * schema), its bootstrap layer returned so the snapshotter can run the original image lazily.
 * Undefined — and a log line saying why — means the image is pulled normally: the lookup is off
 * (`daemon.ociRef`, the default), the attestation policy is on (indexes carry no conversion
 * attestation), the lookup failed, or no index is attached.
 */
import { FerryError } from '../core/index.js';
import { OCI_REF_ARTIFACT_TYPE } from '../convert/index.js';
import { NydusAnnotation, parseImageManifest, type Descriptor } from '../oci/index.js';
import type { Logger } from '../observe/index.js';
import { formatReference, withDigest, type ImageReference, type RegistryClient } from '../remote/index.js';

export async function ociRefBootstrap(
  reg: RegistryClient,
  log: Logger,
  ref: ImageReference,
  manifestDigest: string,
  o: { enabled: boolean; attestationPolicy: boolean },
): Promise<Descriptor | undefined> {
  const where = { ref: formatReference(ref), manifest: manifestDigest };
  if (!o.enabled) {
    log.warn(where, 'image has no nydus bootstrap layer: not lazy');
    return undefined;
  }
  if (o.attestationPolicy) {
    // an index is not a conversion the policy key signed: the image is pulled (and checked) as usual
    log.info(where, 'attestation policy: OCI-ref indexes are not attested, pulling the image normally');
    return undefined;
  }
  let found: Descriptor[];
  try {
    found = await reg.referrers(ref.registry, ref.repository, manifestDigest, OCI_REF_ARTIFACT_TYPE);
  } catch (err) {
    log.warn({ ...where, err }, 'OCI-ref index lookup failed: pulling the image normally');
    return undefined;
  }
  const art = found.filter((d) => d.artifactType === OCI_REF_ARTIFACT_TYPE).at(-1);
  if (!art) {
    log.info(where, 'no OCI-ref index attached: pulling the image normally');
    return undefined;
  }
  const m = await reg.getManifest(withDigest(ref, art.digest));
  const boot = parseImageManifest(m.body, m.mediaType, `OCI-ref artifact ${art.digest}`).layers.find(
    (l) => l.annotations?.[NydusAnnotation.BOOTSTRAP] === 'true',
  );
  if (!boot) throw new FerryError('INVALID_ARGUMENT', `OCI-ref artifact ${art.digest} of ${where.ref} has no bootstrap layer`);
  log.info(
    { ...where, artifact: art.digest, bootstrap: boot.digest },
    'OCI-ref index found: running the image lazily from its gzip layers',
  );
  return boot;
}
