/**
 * @module convert
 * OCI → Nydus conversion (registry to registry) and its verification (`ferry convert` / `ferry check`,
 * the conversion engine of `ferry accel`); the blob files a RAFS image's data is read from, chunk
 * digests verified (`ferry rafs unpack/check`; the unpacking itself is builder/unpack.ts).
 */
export {
  convertImage,
  fetchNydusBootstrap,
  nydusBlobTables,
  ConvertAnnotation,
  NYDUS_MANIFEST_ARTIFACT_TYPE,
  NYDUS_CONFIG_MEDIA_TYPE,
  BUILDER_VERSION,
  type ConvertOptions,
  type ConvertResult,
  type ConvertedLayer,
  type ProgressEvent,
  type Compressor,
} from './convert.js';
export { SqliteLayerCache, layerCacheKey, type LayerCache, type CachedLayer, type LayerBuildOptions } from './cache.js';
export { writeBlobMetaFiles, decompressed } from './streams.js';
export { checkImage, type CheckOptions, type CheckResult, type Difference } from './check.js';
export { BlobFiles } from './blob-files.js';
export { carrySupplyChain, type CarryOptions, type CarriedArtifacts } from './supply-chain.js';
export { TieredLayerCache } from './cache.js';
export {
  RemoteLayerCache,
  CACHE_ARTIFACT_TYPE,
  CACHE_BOOTSTRAP_MEDIA_TYPE,
  CacheAnnotation,
  type RemoteLayerCacheOptions,
} from './remote-cache.js';
export {
  attestConversion,
  attestMissing,
  verifyConversionAttestation,
  loadSigningKey,
  loadVerifyKey,
  type AttestOptions,
  type Attested,
} from './attestation.js';
export { convertImageToEstargz, ESTARGZ_DRIVER_NAME, type EstargzConvertOptions } from './estargz/image.js';
export { buildOciRef, OCI_REF_ARTIFACT_TYPE, ZRAN_INDEX_FILE, type OciRefOptions, type OciRefResult } from './oci-ref.js';
