/**
 * @module build/build
 * `ferry build`: a Dockerfile straight to an accelerated image (the role of buildkit's
 * `compression=nydus` output). buildah builds (its `--layers` cache keeps unchanged steps), pushes
 * the result into an OCI layout Ferry keeps in its cache directory, Ferry pushes the OCI image with
 * its own client (blobs the registry has are skipped), and converts it with the conversion pipeline
 * of `ferry convert`: each layer streamed from the registry into the RAFS builder, layers already
 * converted taken from the layer cache (so the base image is converted once), chunks deduplicated
 * against the base image's Nydus form (or a chunk dictionary image) whose blobs are reused. The
 * target tag then names an OCI image, a Nydus image, or the merged index of both (`--both`, as
 * acceld's merge-platform output). A rebuild whose OCI image is the one the tag was converted from
 * pushes nothing.
 */
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { FerryError } from '../core/index.js';
import { MediaType, NydusAnnotation, parseManifestDocument, type ImageIndex, type ImageManifest } from '../oci/index.js';
import { silentLogger, type Logger } from '../observe/index.js';
import {
  formatReference,
  parseReference,
  withDigest,
  withTag,
  type Credentials,
  type ImageReference,
  type RegistryClient,
} from '../remote/index.js';
import { convertImage, fetchNydusBootstrap, SqliteLayerCache, type ConvertResult, type ProgressEvent } from '../convert/index.js';
import { runBuildah, type BuildahStorage } from './buildah.js';
import { baseImageOf } from './dockerfile.js';
import { pushLayoutImage, readLayoutImage, type PushedBlob } from './layout.js';

export type BuildOutput = 'oci' | 'nydus' | 'both';

export type BuildProgress =
  | { phase: 'step'; text: string }
  | { phase: 'push'; digest: string; size: number; sent: boolean }
  | { phase: 'convert'; event: ProgressEvent }
  | { phase: 'unchanged'; digest: string };

export interface BuildOptions {
  context: string;
  /** default CONTEXT/Dockerfile */
  dockerfile?: string;
  buildArgs?: ReadonlyMap<string, string>;
  target?: string;
  platform?: string;
  /** REG/REPO:TAG */
  tag: string;
  /** push to the registry (and accelerate); without it the image stays in buildah's store and the layout */
  push: boolean;
  output: BuildOutput;
  client: RegistryClient;
  /** credentials buildah uses to pull FROM images (given to it in a private auth file on tmpfs, removed after) */
  pullCredentials?: (host: string) => Credentials | undefined;
  /** plain HTTP / no TLS verification for buildah's pulls */
  insecure?: boolean;
  storage?: BuildahStorage;
  /** OCI layout, layer conversion cache and work files */
  cacheDir: string;
  /** a Nydus image whose bootstrap is the chunk dictionary (default: the base image's Nydus form, if any) */
  chunkDictRef?: string;
  log?: Logger;
  signal?: AbortSignal;
  onProgress?: (p: BuildProgress) => void;
}

export interface BuildResult {
  target: string;
  /** digest the tag names (undefined without --push) */
  digest?: string;
  mediaType?: string;
  oci: { digest: string; size: number; configDigest: string; layers: Array<{ digest: string; size: number }> };
  /** blobs of the OCI image and whether each was sent */
  ociBlobs: PushedBlob[];
  nydus?: { digest: string; layers: ConvertResult['layers']; size: number };
  base?: string;
  /** the Nydus image used as chunk dictionary (the base's Nydus form, or --chunk-dict) */
  chunkDict?: string;
  /** the tag already named an acceleration of this very OCI image: nothing converted or pushed */
  unchanged: boolean;
  durationMs: number;
}

/** A buildah-safe local image name for the build (buildah's store keeps it; the layout keys on it). */
function localName(ref: ImageReference): string {
  return `ferry-build/${ref.repository.replace(/[^a-z0-9._/-]/g, '-')}:${ref.tag ?? 'latest'}`;
}

/** A docker-style auth file in a private directory on tmpfs when there is one; removed by the caller. */
async function authFile(hosts: string[], creds: BuildOptions['pullCredentials']): Promise<string | undefined> {
  const auths: Record<string, { auth: string }> = {};
  for (const h of hosts) {
    const c = creds?.(h);
    if (c) auths[h] = { auth: Buffer.from(`${c.username}:${c.password}`).toString('base64') };
  }
  if (Object.keys(auths).length === 0) return undefined;
  const base = await mkdir('/dev/shm', { recursive: true }).then(
    () => '/dev/shm',
    () => undefined,
  );
  const dir = await mkdtemp(join(base ?? resolve('/tmp'), 'ferry-build-auth-'));
  const path = join(dir, 'auth.json');
  await writeFile(path, JSON.stringify({ auths }), { mode: 0o600 });
  return path;
}

/** The Nydus image a base reference is known under: itself (a merged index or Nydus image) or `<tag>-nydus`. */
async function baseNydusForm(client: RegistryClient, base: ImageReference, log: Logger): Promise<string | undefined> {
  const candidates = [base, ...(base.tag ? [withTag(base, `${base.tag}-nydus`)] : [])];
  for (const c of candidates) {
    try {
      await fetchNydusBootstrap(client, c);
      return formatReference(c);
    } catch (err) {
      log.debug({ ref: formatReference(c), err: (err as Error).message }, 'no Nydus form of the base here');
    }
  }
  return undefined;
}

/** Whether the tag already names the acceleration (`output`) of the OCI manifest `ociDigest`. */
async function alreadyAccelerated(client: RegistryClient, dst: ImageReference, ociDigest: string, output: BuildOutput): Promise<boolean> {
  if (output === 'oci') return (await client.headManifest(dst).catch(() => undefined))?.digest === ociDigest;
  const got = await client.getManifest(dst).catch(() => undefined);
  if (!got) return false;
  const doc = parseManifestDocument(got.body, got.mediaType);
  const annotated: ImageIndex | ImageManifest = doc.kind === 'index' ? doc.index : doc.manifest;
  if ((output === 'both') !== (doc.kind === 'index')) return false;
  return annotated.annotations?.[NydusAnnotation.SOURCE_DIGEST] === ociDigest;
}

function buildahBuildArgs(o: BuildOptions, dockerfile: string, name: string, iidFile: string): string[] {
  const args = ['build', '--format', 'oci', '--layers', '-f', dockerfile, '-t', name, '--iidfile', iidFile];
  for (const [k, v] of o.buildArgs ?? []) args.push('--build-arg', `${k}=${v}`);
  if (o.target) args.push('--target', o.target);
  if (o.platform) args.push('--platform', o.platform);
  if (o.insecure) args.push('--tls-verify=false');
  args.push(o.context);
  return args;
}

/** Builds the Dockerfile and pushes/accelerates the result as `opts.output` says. */
export async function buildImage(o: BuildOptions): Promise<BuildResult> {
  const t0 = Date.now();
  const log = o.log ?? silentLogger();
  const dst = parseReference(o.tag);
  if (dst.tag === undefined || dst.digest !== undefined)
    throw new FerryError('INVALID_ARGUMENT', `-t ${o.tag}: needs REGISTRY/REPOSITORY:TAG`);
  const dockerfile = resolve(o.dockerfile ?? join(o.context, 'Dockerfile'));
  const text = await readFile(dockerfile, 'utf8').catch((e: unknown) => {
    throw new FerryError('INVALID_ARGUMENT', `cannot read ${dockerfile}: ${(e as Error).message}`);
  });
  const baseName = baseImageOf(text, { ...(o.target ? { target: o.target } : {}), ...(o.buildArgs ? { buildArgs: o.buildArgs } : {}) });
  const base = baseName ? parseReference(baseName) : undefined;
  const name = localName(dst);
  const layoutDir = join(o.cacheDir, 'layout');
  await mkdir(layoutDir, { recursive: true });
  const auth = await authFile([...new Set([base?.registry, dst.registry].filter((h): h is string => !!h))], o.pullCredentials);
  const run = {
    ...(o.storage ? { storage: o.storage } : {}),
    ...(o.signal ? { signal: o.signal } : {}),
    ...(auth ? { env: { REGISTRY_AUTH_FILE: auth } } : {}),
    onLine: (l: string) => {
      if (/^STEP \d+\/\d+:|^COMMIT|^--> /.test(l)) o.onProgress?.({ phase: 'step', text: l });
      log.debug({ line: l }, 'buildah');
    },
  };
  const layoutName = name.replace(/[/:]/g, '_');
  const iidFile = join(layoutDir, `${layoutName}.iid`);
  try {
    await runBuildah(buildahBuildArgs(o, dockerfile, name, iidFile), run);
    // The image id is its config digest: when the layout already holds this image, buildah need not
    // compress every layer again to write it there.
    const iid = (await readFile(iidFile, 'utf8')).trim();
    const held = await readLayoutImage(layoutDir, layoutName).catch(() => undefined);
    if (held?.manifest.config.digest !== iid) await runBuildah(['push', '--format', 'oci', name, `oci:${layoutDir}:${layoutName}`], run);
  } finally {
    if (auth) await rm(join(auth, '..'), { recursive: true, force: true });
  }
  const img = await readLayoutImage(layoutDir, layoutName);
  const result: BuildResult = {
    target: formatReference(dst),
    oci: {
      digest: img.manifestDigest,
      size: img.manifestBody.length,
      configDigest: img.manifest.config.digest,
      layers: img.manifest.layers.map((l) => ({ digest: l.digest, size: l.size })),
    },
    ociBlobs: [],
    ...(base ? { base: formatReference(base) } : {}),
    unchanged: false,
    durationMs: 0,
  };
  if (o.push) await pushAndAccelerate(o, dst, base, layoutDir, img, result, log);
  result.durationMs = Date.now() - t0;
  return result;
}

async function pushAndAccelerate(
  o: BuildOptions,
  dst: ImageReference,
  base: ImageReference | undefined,
  layoutDir: string,
  img: Awaited<ReturnType<typeof readLayoutImage>>,
  result: BuildResult,
  log: Logger,
): Promise<void> {
  const blobs = await pushLayoutImage(o.client, layoutDir, img, dst, o.output === 'oci' ? dst.tag : undefined);
  result.ociBlobs = blobs;
  for (const b of blobs) o.onProgress?.({ phase: 'push', ...b });
  if (o.output === 'oci') {
    result.digest = img.manifestDigest;
    result.mediaType = img.manifest.mediaType ?? MediaType.OCI_MANIFEST;
    return;
  }
  if (await alreadyAccelerated(o.client, dst, img.manifestDigest, o.output)) {
    const head = await o.client.headManifest(dst);
    result.unchanged = true;
    if (head) {
      result.digest = head.digest;
      result.mediaType = head.mediaType;
    }
    o.onProgress?.({ phase: 'unchanged', digest: img.manifestDigest });
    return;
  }
  const chunkDict = o.chunkDictRef ?? (base ? await baseNydusForm(o.client, base, log) : undefined);
  if (chunkDict) result.chunkDict = chunkDict;
  const cache = new SqliteLayerCache(join(o.cacheDir, 'layers.db'));
  try {
    const conv = await convertImage({
      source: withDigest(dst, img.manifestDigest),
      target: dst,
      sourceClient: o.client,
      mergePlatform: o.output === 'both',
      cache,
      workDir: join(o.cacheDir, 'work'),
      log,
      ...(chunkDict ? { chunkDictRef: chunkDict } : {}),
      ...(o.signal ? { signal: o.signal } : {}),
      onProgress: (event) => o.onProgress?.({ phase: 'convert', event }),
    });
    result.digest = conv.targetDigest;
    result.mediaType = conv.mediaType;
    result.nydus = { digest: conv.manifests[0]!.digest, layers: conv.layers, size: conv.targetSize };
  } finally {
    cache.close();
  }
}
