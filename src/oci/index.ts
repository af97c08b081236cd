/**
 * @module oci
 * The OCI image model shared by the registry, the converter, the snapshotter and the P2P layer:
 * media types, annotation keys, descriptor/manifest/index/config types, validating parsers of those
 * documents, platform selection in an index, and the prefetch-trace artifact. Pure: no I/O.
 */
export {
  MediaType,
  NydusAnnotation,
  HarborAnnotation,
  NYDUS_MANIFEST_ARTIFACT_TYPE,
  NYDUS_CONFIG_MEDIA_TYPE,
  IMAGE_MANIFEST_TYPES,
  INDEX_TYPES,
  isIndexMediaType,
  isImageManifestMediaType,
  isEncryptedLayerMediaType,
} from './media-types.js';
export {
  isIndex,
  type Platform,
  type Descriptor,
  type ImageManifest,
  type ImageIndex,
  type Manifest,
  type ImageConfig,
} from './types.js';
export {
  parseManifestDocument,
  parseImageManifest,
  parseImageIndex,
  parseImageConfig,
  parseDescriptor,
  parseJsonObject,
  manifestFacts,
  MANIFEST_MEDIA_TYPES,
  type ManifestDocument,
  type ManifestFacts,
} from './parse.js';
export {
  currentPlatform,
  parsePlatform,
  formatPlatform,
  platformMatches,
  resolvePlatform,
  resolveNydusManifest,
  isNydusEntry,
  selectManifest,
  ANY_PLATFORM,
  type ManifestChoice,
} from './platform.js';
export {
  PREFETCH_TRACE_ARTIFACT_TYPE,
  PREFETCH_TRACE_LIMITS,
  PREFETCH_TRACE_CREATED,
  parsePrefetchTrace,
  decodePrefetchTrace,
  encodePrefetchTrace,
  traceOf,
  traceByBlob,
  prefetchTraceManifest,
  prefetchTraceLayer,
  newestPrefetchTrace,
  type PrefetchTrace,
} from './prefetch-trace.js';
export {
  referrersTag,
  referrerDescriptor,
  mergeReferrersIndex,
  cosignTag,
  artifactTagSubject,
  COSIGN_TAG_SUFFIXES,
  type CosignTagSuffix,
} from './referrers.js';
export {
  ATTESTATION_ARTIFACT_TYPE,
  ATTESTATION_PREDICATE_ANNOTATION,
  CONVERSION_PREDICATE_TYPE,
  DSSE_ENVELOPE_MEDIA_TYPE,
  IN_TOTO_PAYLOAD_TYPE,
  MAX_ENVELOPE_BYTES,
  attestationManifest,
  checkConversionStatement,
  conversionStatement,
  envelopeLayer,
  keyIdOf,
  openEnvelope,
  pae,
  signStatement,
  type ConversionPredicate,
  type ConversionStatement,
  type DsseEnvelope,
} from './attestation.js';
