/**
 * @module snapshotter/labels
 * Snapshot label keys a remote snapshotter receives (containerd's unpacker, CRI / nerdctl's
 * `cri.*` family, ctr-remote's `remote/stargz.*` family, Nydus layer annotations passed through)
 * and the ones Ferry sets. Only keys `containerd.io/snapshot.ref` and `containerd.io/snapshot/…`
 * reach a proxy snapshotter.
 */
import { FerryError } from '../core/index.js';
import { NydusAnnotation } from '../oci/index.js';

export const Label = {
  /** Target chain id of a layer being unpacked (set by containerd's unpacker). */
  SNAPSHOT_REF: 'containerd.io/snapshot.ref',
  CRI_IMAGE_REF: 'containerd.io/snapshot/cri.image-ref',
  CRI_MANIFEST_DIGEST: 'containerd.io/snapshot/cri.manifest-digest',
  CRI_LAYER_DIGEST: 'containerd.io/snapshot/cri.layer-digest',
  CRI_IMAGE_LAYERS: 'containerd.io/snapshot/cri.image-layers',
  STARGZ_REFERENCE: 'containerd.io/snapshot/remote/stargz.reference',
  STARGZ_DIGEST: 'containerd.io/snapshot/remote/stargz.digest',
  STARGZ_LAYERS: 'containerd.io/snapshot/remote/stargz.layers',
  /** Set by us on committed remote snapshots (stargz sets the same key). */
  REMOTE: 'containerd.io/snapshot/remote',
  /** Set by `ferry pull --plain-http`: the registry speaks plain HTTP. */
  FERRY_PLAIN_HTTP: 'containerd.io/snapshot/ferry.plain-http',
  NYDUS_BLOB: NydusAnnotation.BLOB,
  NYDUS_BOOTSTRAP: NydusAnnotation.BOOTSTRAP,
} as const;

/** containerd's limit: a label's key and value together at most 4096 bytes. */
export const MAX_LABEL_BYTES = 4096;

export function validateLabels(labels: Record<string, string>): void {
  for (const [k, v] of Object.entries(labels)) {
    if (k === '') throw new FerryError('INVALID_ARGUMENT', 'label key must not be empty');
    const n = Buffer.byteLength(k) + Buffer.byteLength(v);
    if (n > MAX_LABEL_BYTES) {
      throw new FerryError(
        'INVALID_ARGUMENT',
        `label ${JSON.stringify(k.slice(0, 64))}: key and value are ${n} bytes, more than ${MAX_LABEL_BYTES}`,
      );
    }
  }
}

/** What the labels of a Prepare say about the image a layer belongs to. */
export interface RemoteLayerHint {
  chainId: string;
  /** Image reference (cri.image-ref, else remote/stargz.reference). */
  ref?: string;
  manifestDigest?: string;
  layerDigest?: string;
  /** This and the following layers' digests, maybe truncated. */
  layers: string[];
  nydusBlob: boolean;
  nydusBootstrap: boolean;
  plainHttp: boolean;
}

/** Reads the remote-snapshot labels; undefined when the Prepare is not a layer unpack. */
export function remoteHint(labels: Record<string, string>): RemoteLayerHint | undefined {
  const chainId = labels[Label.SNAPSHOT_REF];
  if (!chainId) return undefined;
  const list = labels[Label.CRI_IMAGE_LAYERS] ?? labels[Label.STARGZ_LAYERS] ?? '';
  const hint: RemoteLayerHint = {
    chainId,
    layers: list
      .split(',')
      .map((s) => s.trim())
      .filter(Boolean),
    nydusBlob: labels[Label.NYDUS_BLOB] === 'true',
    nydusBootstrap: labels[Label.NYDUS_BOOTSTRAP] === 'true',
    plainHttp: labels[Label.FERRY_PLAIN_HTTP] === 'true',
  };
  const ref = labels[Label.CRI_IMAGE_REF] || labels[Label.STARGZ_REFERENCE];
  if (ref) hint.ref = ref;
  const md = labels[Label.CRI_MANIFEST_DIGEST];
  if (md) hint.manifestDigest = md;
  const ld = labels[Label.CRI_LAYER_DIGEST] || labels[Label.STARGZ_DIGEST];
  if (ld) hint.layerDigest = ld;
  return hint;
}
