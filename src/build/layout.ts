/**
 * @module build/layout
 * The OCI image layout buildah pushes a built image into (`buildah push IMAGE oci:DIR:NAME`), read
 * back and pushed to a registry by Ferry's own client (so registry credentials never reach buildah's
 * command line or an auth file): blobs the registry already has are not sent again.
 */
import { createReadStream } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { FerryError, parseDigest } from '../core/index.js';
import { parseImageManifest, parseImageConfig, type Descriptor, type ImageConfig, type ImageManifest } from '../oci/index.js';
import { withDigest, withTag, type ImageReference, type RegistryClient } from '../remote/index.js';

const REF_NAME = 'org.opencontainers.image.ref.name';
/** Largest index.json / manifest / config read from the layout. */
const MAX_JSON_BYTES = 16 << 20;

export interface LayoutImage {
  manifestDigest: string;
  manifestBody: Buffer;
  manifest: ImageManifest;
  config: ImageConfig;
}

export interface PushedBlob {
  digest: string;
  size: number;
  /** false when the registry already had it */
  sent: boolean;
}

function blobPath(dir: string, digest: string): string {
  const { algorithm, hex } = parseDigest(digest);
  return join(dir, 'blobs', algorithm, hex);
}

async function readJsonFile(path: string, what: string): Promise<Buffer> {
  const buf = await readFile(path).catch((e: unknown) => {
    throw new FerryError('NOT_FOUND', `${what}: ${(e as Error).message}`);
  });
  if (buf.length > MAX_JSON_BYTES) throw new FerryError('RESOURCE_EXHAUSTED', `${what} is over ${MAX_JSON_BYTES} bytes`);
  return buf;
}

/** The image tagged `name` in the layout at `dir`. */
export async function readLayoutImage(dir: string, name: string): Promise<LayoutImage> {
  const index = JSON.parse((await readJsonFile(join(dir, 'index.json'), 'OCI layout index')).toString()) as { manifests?: Descriptor[] };
  const entry = (index.manifests ?? []).filter((d) => d.annotations?.[REF_NAME] === name).pop();
  if (!entry) throw new FerryError('NOT_FOUND', `OCI layout ${dir} has no image named ${name}`);
  const manifestBody = await readJsonFile(blobPath(dir, entry.digest), `manifest ${entry.digest}`);
  const manifest = parseImageManifest(manifestBody, entry.mediaType, `layout manifest ${entry.digest}`);
  const config = parseImageConfig(
    await readJsonFile(blobPath(dir, manifest.config.digest), 'config'),
    `layout config ${manifest.config.digest}`,
  );
  return { manifestDigest: entry.digest, manifestBody, manifest, config };
}

/**
 * Pushes the image's blobs (those the registry lacks; each checked against its digest by the
 * client) and its manifest, by digest, or under `tag` when given. Returns what was sent.
 */
export async function pushLayoutImage(
  client: RegistryClient,
  dir: string,
  img: LayoutImage,
  dst: ImageReference,
  tag?: string,
): Promise<PushedBlob[]> {
  const out: PushedBlob[] = [];
  for (const d of [img.manifest.config, ...img.manifest.layers]) {
    const r = await client.pushBlob(dst.registry, dst.repository, d.digest, d.size, () => createReadStream(blobPath(dir, d.digest)));
    out.push({ digest: d.digest, size: d.size, sent: !r.existed });
  }
  const mt = img.manifest.mediaType ?? 'application/vnd.oci.image.manifest.v1+json';
  await client.putManifest(withDigest(dst, img.manifestDigest), img.manifestBody, mt);
  if (tag !== undefined) await client.putManifest(withTag(dst, tag), img.manifestBody, mt);
  return out;
}
