/**
 * @module oci/media-types
 * Media types of the OCI image spec, Docker's schema2, and Nydus, plus the annotation keys
 * Nydus/acceld write. Values are the exact strings the upstream specs and tools use.
 */

export const MediaType = {
  OCI_MANIFEST: 'application/vnd.oci.image.manifest.v1+json',
  OCI_INDEX: 'application/vnd.oci.image.index.v1+json',
  OCI_CONFIG: 'application/vnd.oci.image.config.v1+json',
  OCI_LAYER: 'application/vnd.oci.image.layer.v1.tar',
  OCI_LAYER_GZIP: 'application/vnd.oci.image.layer.v1.tar+gzip',
  OCI_LAYER_ZSTD: 'application/vnd.oci.image.layer.v1.tar+zstd',
  OCI_LAYER_NONDIST_GZIP: 'application/vnd.oci.image.layer.nondistributable.v1.tar+gzip',
  OCI_EMPTY: 'application/vnd.oci.empty.v1+json',
  DOCKER_MANIFEST: 'application/vnd.docker.distribution.manifest.v2+json',
  DOCKER_MANIFEST_LIST: 'application/vnd.docker.distribution.manifest.list.v2+json',
  DOCKER_CONFIG: 'application/vnd.docker.container.image.v1+json',
  DOCKER_LAYER_GZIP: 'application/vnd.docker.image.rootfs.diff.tar.gzip',
  DOCKER_FOREIGN_LAYER_GZIP: 'application/vnd.docker.image.rootfs.foreign.diff.tar.gzip',
  DOCKER_SCHEMA1_SIGNED: 'application/vnd.docker.distribution.manifest.v1+prettyjws',
  /** Nydus data-blob and bootstrap layers are OCI layer media types told apart by annotations. */
  NYDUS_BLOB: 'application/vnd.oci.image.layer.nydus.blob.v1',
} as const;

/** Manifest media types a registry serves (single-image manifests). */
export const IMAGE_MANIFEST_TYPES: readonly string[] = [MediaType.OCI_MANIFEST, MediaType.DOCKER_MANIFEST];
/** Index media types (multi-platform). */
export const INDEX_TYPES: readonly string[] = [MediaType.OCI_INDEX, MediaType.DOCKER_MANIFEST_LIST];

export function isIndexMediaType(mt: string | undefined): boolean {
  return mt !== undefined && INDEX_TYPES.includes(mt);
}
export function isImageManifestMediaType(mt: string | undefined): boolean {
  return mt !== undefined && IMAGE_MANIFEST_TYPES.includes(mt);
}

/** artifactType of a Nydus manifest's entry in an index (nydusify's merge-platform / referrer output). */
export const NYDUS_MANIFEST_ARTIFACT_TYPE = 'application/vnd.nydus.image.manifest.v1+json';

/** Annotation keys written by nydusify / nydus-snapshotter's converter / acceld. */
export const NydusAnnotation = {
  BLOB: 'containerd.io/snapshot/nydus-blob',
  BOOTSTRAP: 'containerd.io/snapshot/nydus-bootstrap',
  FS_VERSION: 'containerd.io/snapshot/nydus-fs-version',
  BLOB_IDS: 'containerd.io/snapshot/nydus-blob-ids',
  REF_LAYER: 'containerd.io/snapshot/nydus-ref-layer',
  SOURCE_CHAINID: 'containerd.io/snapshot/nydus-source-chainid',
  /** Platform feature marking Nydus entries of a merged index. */
  PLATFORM_FEATURE: 'nydus.remoteimage.v1',
  /** Uncompressed digest of a layer (containerd convention). */
  UNCOMPRESSED: 'containerd.io/uncompressed',
} as const;
