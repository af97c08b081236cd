/**
 * @module build/build
 * `ferry build`: a Dockerfile straight to an accelerated image (the role of buildkit's
 * `compression=nydus` output). buildah builds (its `--layers` cache keeps unchanged steps) and pushes
 * the OCI image to the registry (its blob-info cache skips, without compressing them again, layers
 * the registry has, such as the base's), and Ferry converts it with the conversion pipeline of
 * `ferry convert`: each layer streamed from the registry into the RAFS builder, layers already
 * converted taken from the layer cache (so the base image is converted once), chunks deduplicated
 * against the base image's Nydus form (or a chunk dictionary image) whose blobs are reused. The
 * target tag then names an OCI image, a Nydus image, or the merged index of both (`--both`, as
 * acceld's merge-platform output). A rebuild whose image (buildah's image id = config digest) is the
 * one the tag already holds, or was converted from, pushes nothing.
 */
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { FerryError } from '../core/index.js';
import { NydusAnnotation, parseImageManifest, parseManifestDocument, type ImageIndex, type ImageManifest } from '../oci/index.js';
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

export type BuildOutput = 'oci' | 'nydus' | 'both';

export type BuildProgress =
  | { phase: 'step'; text: string }
  | { phase: 'push'; digest: string }
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
  /** push to the registry (and accelerate); without it the image stays in buildah's store */
  push: boolean;
  output: BuildOutput;
  client: RegistryClient;
  /** credentials buildah uses to pull FROM images and push (given to it in a private auth file on tmpfs, removed after) */
  buildahCredentials?: (host: string) => Credentials | undefined;
  /**
   * plain HTTP / no TLS verification for buildah's pulls and push; without it, only when every
   * registry involved (base and target) is on loopback
   */
  insecure?: boolean;
  storage?: BuildahStorage;
  /** layer conversion cache and work files */
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
  /** the OCI image: its config digest (buildah's image id); manifest and layers once pushed */
  oci: { configDigest: string; digest?: string; size?: number; layers?: Array<{ digest: string; size: number }> };
  nydus?: { digest: string; layers: ConvertResult['layers']; size: number };
  base?: string;
  /** the Nydus image used as chunk dictionary (the base's Nydus form, or --chunk-dict) */
  chunkDict?: string;
  /** the tag already named an acceleration of this very OCI image: nothing converted or pushed */
  unchanged: boolean;
  durationMs: number;
}

const LOOPBACK = /^(localhost|127\.|\[::1\])/;

/** Whether buildah may skip TLS: asked to, or every registry it talks to is on loopback (plain HTTP). */
export function plainHttp(o: BuildOptions, hosts: Array<string | undefined>): boolean {
  return o.insecure === true || hosts.every((h) => h === undefined || LOOPBACK.test(h));
}

/** A buildah-safe local image name for the build (buildah's store keeps it). */
function localName(ref: ImageReference): string {
  return `ferry-build/${ref.repository.replace(/[^a-z0-9._/-]/g, '-')}:${ref.tag ?? 'latest'}`;
}

/** A docker-style auth file in a private directory on tmpfs when there is one; removed by the caller. */
async function authFile(hosts: string[], creds: BuildOptions['buildahCredentials']): Promise<string | undefined> {
  const auths: Record<string, { auth: string }> = {};
  for (const h of hosts) {
    const c = creds?.(h);
    if (c) auths[h] = { auth: Buffer.from(`${c.username}:${c.password}`).toString('base64') };
  }
  if (Object.keys(auths).length === 0) return undefined;
  const dir = await mkdtemp(join(existsSync('/dev/shm') ? '/dev/shm' : tmpdir(), 'ferry-build-auth-'));
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

/**
 * The OCI manifest the tag holds as `output` says (the tag's own manifest for `oci`; for `nydus` and
 * `both`, the source its acceleration was made from) when its config is `configDigest`, else undefined.
 */
async function heldImage(
  client: RegistryClient,
  dst: ImageReference,
  configDigest: string,
  output: BuildOutput,
): Promise<{ digest: string; body: Buffer; manifest: ImageManifest } | undefined> {
  const got = await client.getManifest(dst).catch(() => undefined);
  if (!got) return undefined;
  const doc = parseManifestDocument(got.body, got.mediaType);
  if ((output === 'both') !== (doc.kind === 'index')) return undefined;
  const annotated: ImageIndex | ImageManifest = doc.kind === 'index' ? doc.index : doc.manifest;
  const source = output === 'oci' ? got.digest : annotated.annotations?.[NydusAnnotation.SOURCE_DIGEST];
  if (!source) return undefined;
  const oci = output === 'oci' ? got : await client.getManifest(withDigest(dst, source)).catch(() => undefined);
  if (!oci) return undefined;
  const manifest = parseImageManifest(oci.body, oci.mediaType);
  return manifest.config.digest === configDigest ? { digest: oci.digest, body: oci.body, manifest } : undefined;
}

function buildahBuildArgs(o: BuildOptions, dockerfile: string, name: string, iidFile: string, plain: boolean): string[] {
  const args = ['build', '--format', 'oci', '--layers', '-f', dockerfile, '-t', name, '--iidfile', iidFile];
  for (const [k, v] of o.buildArgs ?? []) args.push('--build-arg', `${k}=${v}`);
  if (o.target) args.push('--target', o.target);
  if (o.platform) args.push('--platform', o.platform);
  if (plain) args.push('--tls-verify=false');
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
  await mkdir(o.cacheDir, { recursive: true });
  const auth = await authFile([...new Set([base?.registry, dst.registry].filter((h): h is string => !!h))], o.buildahCredentials);
  const run = {
    ...(o.storage ? { storage: o.storage } : {}),
    ...(o.signal ? { signal: o.signal } : {}),
    ...(auth ? { env: { REGISTRY_AUTH_FILE: auth } } : {}),
    onLine: (l: string) => {
      if (/^STEP \d+\/\d+:|^COMMIT|^--> |^Copying (blob|config)|^Writing manifest/.test(l)) o.onProgress?.({ phase: 'step', text: l });
      log.debug({ line: l }, 'buildah');
    },
  };
  const scratch = await mkdtemp(join(o.cacheDir, 'run-'));
  const result: BuildResult = {
    target: formatReference(dst),
    oci: { configDigest: '' },
    ...(base ? { base: formatReference(base) } : {}),
    unchanged: false,
    durationMs: 0,
  };
  try {
    await runBuildah(buildahBuildArgs(o, dockerfile, name, join(scratch, 'iid'), plainHttp(o, [base?.registry, dst.registry])), run);
    result.oci.configDigest = (await readFile(join(scratch, 'iid'), 'utf8')).trim();
    if (o.push) await pushAndAccelerate(o, dst, base, name, run, join(scratch, 'digest'), result, log);
  } finally {
    if (auth) await rm(join(auth, '..'), { recursive: true, force: true });
    await rm(scratch, { recursive: true, force: true });
  }
  result.durationMs = Date.now() - t0;
  return result;
}

async function pushAndAccelerate(
  o: BuildOptions,
  dst: ImageReference,
  base: ImageReference | undefined,
  name: string,
  run: Parameters<typeof runBuildah>[1],
  digestFile: string,
  result: BuildResult,
  log: Logger,
): Promise<void> {
  const held = await heldImage(o.client, dst, result.oci.configDigest, o.output);
  const describe = (digest: string, body: Buffer, m: ImageManifest): void => {
    result.oci = { ...result.oci, digest, size: body.length, layers: m.layers.map((l) => ({ digest: l.digest, size: l.size })) };
  };
  if (held) {
    describe(held.digest, held.body, held.manifest);
    const head = await o.client.headManifest(dst);
    result.unchanged = true;
    if (head) {
      result.digest = head.digest;
      result.mediaType = head.mediaType;
    }
    o.onProgress?.({ phase: 'unchanged', digest: held.digest });
    return;
  }
  // The OCI image goes under the tag first; an acceleration then moves the tag to its result.
  const push = ['push', '--format', 'oci', '--digestfile', digestFile, ...(plainHttp(o, [dst.registry]) ? ['--tls-verify=false'] : [])];
  await runBuildah([...push, name, `docker://${formatReference(dst)}`], run);
  const ociDigest = (await readFile(digestFile, 'utf8')).trim();
  const pushed = await o.client.getManifest(withDigest(dst, ociDigest));
  describe(ociDigest, pushed.body, parseImageManifest(pushed.body, pushed.mediaType));
  o.onProgress?.({ phase: 'push', digest: ociDigest });
  if (o.output === 'oci') {
    result.digest = ociDigest;
    result.mediaType = pushed.mediaType;
    return;
  }
  const chunkDict = o.chunkDictRef ?? (base ? await baseNydusForm(o.client, base, log) : undefined);
  if (chunkDict) result.chunkDict = chunkDict;
  const cache = new SqliteLayerCache(join(o.cacheDir, 'layers.db'));
  try {
    const conv = await convertImage({
      source: withDigest(dst, ociDigest),
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
