/**
 * @module oci/platform
 * Platform strings (`linux/arm64/v8`) and choosing a manifest from an index: for a platform, and —
 * for a lazy pull — the Nydus entry of that platform before the plain one.
 */
import { FerryError } from '../core/index.js';
import { NYDUS_MANIFEST_ARTIFACT_TYPE, NydusAnnotation } from './media-types.js';
import type { Descriptor, ImageIndex, Platform } from './types.js';

/** Node's `process.arch` names → OCI architecture names. */
const NODE_ARCH: Record<string, string> = {
  x64: 'amd64',
  arm64: 'arm64',
  arm: 'arm',
  ia32: '386',
  ppc64: 'ppc64le',
  s390x: 's390x',
  riscv64: 'riscv64',
};

/** The platform this process runs on, in OCI terms. */
export function currentPlatform(): Platform {
  return { os: process.platform === 'win32' ? 'windows' : process.platform, architecture: NODE_ARCH[process.arch] ?? process.arch };
}

/** `os/arch[/variant]` → Platform. */
export function parsePlatform(s: string): Platform {
  const parts = s.trim().split('/');
  if (parts.length < 2 || parts.length > 3 || parts.some((p) => p === '')) {
    throw new FerryError('INVALID_ARGUMENT', `invalid platform ${JSON.stringify(s)} (want os/arch[/variant])`);
  }
  const p: Platform = { os: parts[0]!, architecture: parts[1]! };
  if (parts[2]) p.variant = parts[2];
  return p;
}

export function formatPlatform(p: Platform): string {
  return `${p.os}/${p.architecture}${p.variant ? `/${p.variant}` : ''}`;
}

function normVariant(p: Platform): string {
  if (p.variant) return p.variant;
  if (p.architecture === 'arm64') return 'v8';
  if (p.architecture === 'arm') return 'v7';
  return '';
}

/** True when a descriptor's platform satisfies the wanted one (variant defaults per arch). */
export function platformMatches(have: Platform | undefined, want: Platform): boolean {
  if (!have) return false;
  return have.os === want.os && have.architecture === want.architecture && normVariant(have) === normVariant(want);
}

/**
 * The manifest of `index` for `platform` (default: this machine). Entries that are attestation
 * manifests (`unknown/unknown`) never match. Throws NOT_FOUND listing the available platforms.
 */
export function resolvePlatform(index: ImageIndex, platform: Platform | string = currentPlatform()): Descriptor {
  const want = typeof platform === 'string' ? parsePlatform(platform) : platform;
  const found = index.manifests.find((d) => platformMatches(d.platform, want));
  if (found) return found;
  const have = index.manifests.flatMap((d) => (d.platform ? [formatPlatform(d.platform)] : []));
  throw new FerryError('NOT_FOUND', `no manifest for platform ${formatPlatform(want)} in index (has: ${have.join(', ') || 'none'})`);
}

/** True for an index entry that is a Nydus manifest (its artifactType, or the `nydus.remoteimage.v1` os.feature). */
export function isNydusEntry(d: Descriptor): boolean {
  return (
    d.artifactType === NYDUS_MANIFEST_ARTIFACT_TYPE || (d.platform?.['os.features']?.includes(NydusAnnotation.PLATFORM_FEATURE) ?? false)
  );
}

/**
 * The manifest of `index` to use for a lazy (Nydus) pull: its Nydus entry for `platform`, else the
 * plain entry `resolvePlatform` picks (NOT_FOUND when there is none). `platform` undefined: any
 * platform — the first Nydus entry, else the first entry.
 */
export function resolveNydusManifest(index: ImageIndex, platform?: Platform | string): Descriptor {
  const want = typeof platform === 'string' ? parsePlatform(platform) : platform;
  const nydus = index.manifests.find((d) => isNydusEntry(d) && (!want || platformMatches(d.platform, want)));
  if (nydus) return nydus;
  if (want) return resolvePlatform(index, want);
  if (!index.manifests[0]) throw new FerryError('NOT_FOUND', 'empty index');
  return index.manifests[0];
}

/** `platform` value meaning: any platform (the first matching entry of the index). */
export const ANY_PLATFORM = 'any';

export interface ManifestChoice {
  /** The wanted platform (`os/arch[/variant]` or a Platform), or `ANY_PLATFORM`; default: this machine's. */
  platform?: Platform | string;
  /** `nydus`: the platform's Nydus entry when the index has one (a lazy pull), else the plain entry. */
  prefer?: 'nydus';
}

/** The one entry of `index` a consumer of a single image uses (see ManifestChoice); NOT_FOUND when none fits. */
export function selectManifest(index: ImageIndex, choice: ManifestChoice = {}): Descriptor {
  const any = choice.platform === ANY_PLATFORM;
  const platform = any ? undefined : (choice.platform ?? currentPlatform());
  if (choice.prefer === 'nydus') return resolveNydusManifest(index, platform);
  if (platform !== undefined) return resolvePlatform(index, platform);
  if (!index.manifests[0]) throw new FerryError('NOT_FOUND', 'empty index');
  return index.manifests[0];
}
