/**
 * @module oci
 * The OCI image model shared by the registry, the converter, the snapshotter and the P2P layer:
 * media types, annotation keys, descriptor/manifest/index/config types and image references.
 * Pure data: no I/O.
 */
export {
  MediaType, NydusAnnotation, HarborAnnotation, NYDUS_MANIFEST_ARTIFACT_TYPE, NYDUS_CONFIG_MEDIA_TYPE, IMAGE_MANIFEST_TYPES, INDEX_TYPES,
  isIndexMediaType, isImageManifestMediaType,
} from './media-types.js';
export {
  isIndex, type Platform, type Descriptor, type ImageManifest, type ImageIndex, type Manifest, type ImageConfig,
} from './types.js';
