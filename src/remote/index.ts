/**
 * @module remote
 * The registry client every part of Ferry uses to talk to registries: references, auth, manifests,
 * blobs (ranges, uploads, mounts) and platform selection.
 */
export {
  parseReference,
  formatReference,
  manifestReference,
  withTag,
  withDigest,
  apiHost,
  DOCKER_HUB,
  DOCKER_HUB_API,
  type ImageReference,
} from './reference.js';
export {
  parseChallenges,
  dockerConfigCredentials,
  decodeBasicAuth,
  basicHeader,
  TokenCache,
  type Credentials,
  type Challenge,
} from './auth.js';
export {
  CredentialChain,
  SuppliedCredentials,
  DockerConfigSource,
  PullSecretSource,
  credentialChain,
  staticCredentials,
  parseUserPassword,
  runCredentialHelper,
  matchAuths,
  credentialKey,
  normaliseRegistryHost,
  type CredentialSource,
  type CredentialProvider,
  type FoundCredentials,
  type ChainConfig,
  type HelperRunner,
} from './credentials.js';
export {
  RegistryClient,
  MANIFEST_ACCEPT,
  statusCode,
  type RegistryClientOptions,
  type BlobRangeOptions,
  type FetchedManifest,
  type GetManifestOptions,
  type ResolveImageOptions,
  type ResolvedImage,
} from './client.js';
export { pushReferrer, referrersFromTag, readReferrersIndex, type ReferrerPush } from './referrers.js';
export { collectRange } from './streams.js';
// Platform selection lives with the OCI model (oci/platform.ts); re-exported for the registry client's users.
export {
  resolvePlatform,
  resolveNydusManifest,
  isNydusEntry,
  parsePlatform,
  formatPlatform,
  platformMatches,
  currentPlatform,
  ANY_PLATFORM,
} from '../oci/index.js';
export { defaultDockerConfigPath } from '../core/index.js';
