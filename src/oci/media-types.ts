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

/**
 * ocicrypt (containers/ocicrypt, OCI image-spec's encryption proposal) marks an encrypted layer by
 * appending `+encrypted` to its media type (`…tar+gzip+encrypted`, `…tar+zstd+encrypted`,
 * `…tar+encrypted`, Docker's `…diff.tar.gzip+encrypted`); the keys travel in
 * `org.opencontainers.image.enc.keys.*` annotations.
 */
export function isEncryptedLayerMediaType(mt: string | undefined): boolean {
  return mt?.endsWith('+encrypted') === true;
}

/** artifactType of a Nydus manifest's entry in an index (nydusify's merge-platform / referrer output). */
export const NYDUS_MANIFEST_ARTIFACT_TYPE = 'application/vnd.nydus.image.manifest.v1+json';
/** Config media type of the Nydus manifest in a merged index (nydusify's merge-platform output). */
export const NYDUS_CONFIG_MEDIA_TYPE = 'application/vnd.nydus.image.config.v1+json';

/**
 * Annotation keys written by nydusify / nydus-snapshotter's converter / acceld — the one definition
 * of each (the converter, the conversion cache and the snapshotter's labels use these).
 */
export const NydusAnnotation = {
  BLOB: 'containerd.io/snapshot/nydus-blob',
  BOOTSTRAP: 'containerd.io/snapshot/nydus-bootstrap',
  FS_VERSION: 'containerd.io/snapshot/nydus-fs-version',
  BLOB_IDS: 'containerd.io/snapshot/nydus-blob-ids',
  REF_LAYER: 'containerd.io/snapshot/nydus-ref-layer',
  SOURCE_CHAINID: 'containerd.io/snapshot/nydus-source-chainid',
  /** Digest of the source (OCI) manifest a Nydus manifest was converted from; of a source layer on a cache record. */
  SOURCE_DIGEST: 'containerd.io/snapshot/nydus-source-digest',
  /** Reference the conversion read its source from. */
  SOURCE_REFERENCE: 'containerd.io/snapshot/nydus-source-reference',
  /** Name and version of the converter. */
  BUILDER_VERSION: 'containerd.io/snapshot/nydus-builder-version',
  /** Conversion cache (acceld's cache_version): records of another version are not used. */
  CACHE_VERSION: 'containerd.io/snapshot/nydus-cache-version',
  /** Digest and size of the Nydus data blob a conversion cache record describes. */
  BLOB_DIGEST: 'containerd.io/snapshot/nydus-blob-digest',
  BLOB_SIZE: 'containerd.io/snapshot/nydus-blob-size',
  /** Platform feature marking Nydus entries of a merged index. */
  PLATFORM_FEATURE: 'nydus.remoteimage.v1',
  /** Uncompressed digest of a layer (containerd convention). */
  UNCOMPRESSED: 'containerd.io/uncompressed',
} as const;

/** Annotations Harbor's acceleration service puts on a converted manifest (its UI links the pair). */
export const HarborAnnotation = {
  ACCELERATION_DRIVER: 'io.goharbor.artifact.v1alpha1.acceleration.driver.name',
  ACCELERATION_SOURCE_DIGEST: 'io.goharbor.artifact.v1alpha1.acceleration.source.digest',
} as const;
