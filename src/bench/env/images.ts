/**
 * @module bench/env/images
 * Test and benchmark images: directories → an OCI image layout (one layer per directory, gzip
 * tars made by GNU tar with --xattrs --numeric-owner --sort=name), and pushing a layout to a
 * registry with skopeo. A layer directory may contain OCI whiteout files (`.wh.NAME` deletes NAME
 * of a lower layer, `.wh..wh..opq` makes its directory opaque): they are ordinary empty files in
 * the directory and end up verbatim in the tar, which is how OCI layers express deletions.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdir, readdir, rename, rm, stat, writeFile, readFile } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import { FerryError } from '../../core/index.js';
import { exec, sbinPath } from './exec.js';

export interface ImageConfigInput {
  Cmd?: string[];
  Entrypoint?: string[];
  Env?: string[];
  WorkingDir?: string;
  ExposedPorts?: Record<string, Record<string, never>>;
  Labels?: Record<string, string>;
}

export interface BuildOciImageOptions {
  /** One directory per layer, lowest first. */
  layers: string[];
  config?: ImageConfigInput;
  /** Directory for the OCI layout (created; must be empty or absent). */
  outDir: string;
  /** Tag recorded as org.opencontainers.image.ref.name; default 'latest'. */
  tag?: string;
  /** Layer compression; default gzip. */
  compression?: 'gzip' | 'none';
  /** gzip level 1–9; default 6. */
  gzipLevel?: number;
  architecture?: string;
}

export interface BuiltLayer {
  digest: string;
  diffId: string;
  size: number;
  mediaType: string;
}

export interface BuiltImage {
  layoutDir: string;
  manifestDigest: string;
  manifestSize: number;
  configDigest: string;
  layers: BuiltLayer[];
  /** Sum of layer blob sizes (compressed). */
  compressedSize: number;
  /** Sum of uncompressed tar sizes. */
  uncompressedSize: number;
}

class HashCount extends Transform {
  readonly hash = createHash('sha256');
  bytes = 0;
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.hash.update(chunk);
    this.bytes += chunk.length;
    cb(null, chunk);
  }
}

async function writeBlob(layoutDir: string, data: Buffer): Promise<string> {
  const hex = createHash('sha256').update(data).digest('hex');
  await writeFile(join(layoutDir, 'blobs', 'sha256', hex), data);
  return `sha256:${hex}`;
}

/** Tars one directory (GNU tar, PAX, xattrs, numeric owners, sorted) into a blob of the layout. */
async function buildLayer(
  layoutDir: string,
  dir: string,
  compression: 'gzip' | 'none',
  level: number,
): Promise<BuiltLayer & { uncompressed: number }> {
  const st = await stat(dir).catch(() => undefined);
  if (!st?.isDirectory()) throw new FerryError('INVALID_ARGUMENT', `layer source ${dir} is not a directory`);
  const names = (await readdir(dir)).sort();
  const args = [
    '--create',
    '--file=-',
    '--format=pax',
    '--xattrs',
    '--xattrs-include=*',
    '--numeric-owner',
    '--sort=name',
    '--directory',
    dir,
  ];
  if (names.length) args.push('--', ...names);
  else args.push('--files-from=/dev/null');
  const tar = spawn('tar', args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, PATH: sbinPath(), LC_ALL: 'C' } });
  let stderr = '';
  tar.stderr.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  const exit = new Promise<number>((res) => tar.on('close', (c) => res(c ?? 1)));
  const diff = new HashCount();
  const blob = new HashCount();
  const tmp = join(layoutDir, 'blobs', 'sha256', `.tmp-${process.pid}-${Math.random().toString(36).slice(2)}`);
  if (compression === 'gzip') await pipeline(tar.stdout, diff, createGzip({ level }), blob, createWriteStream(tmp));
  else await pipeline(tar.stdout, diff, blob, createWriteStream(tmp));
  const code = await exit;
  if (code !== 0) {
    await rm(tmp, { force: true });
    throw new FerryError('INTERNAL', `tar of ${dir} failed (${code}): ${stderr.trim()}`);
  }
  const hex = blob.hash.digest('hex');
  await rename(tmp, join(layoutDir, 'blobs', 'sha256', hex));
  return {
    digest: `sha256:${hex}`,
    diffId: `sha256:${diff.hash.digest('hex')}`,
    size: blob.bytes,
    uncompressed: diff.bytes,
    mediaType: compression === 'gzip' ? 'application/vnd.oci.image.layer.v1.tar+gzip' : 'application/vnd.oci.image.layer.v1.tar',
  };
}

/** Builds an OCI image layout from layer directories. */
export async function buildOciImage(opts: BuildOciImageOptions): Promise<BuiltImage> {
  if (opts.layers.length === 0) throw new FerryError('INVALID_ARGUMENT', 'an image needs at least one layer');
  const layoutDir = resolve(opts.outDir);
  await mkdir(join(layoutDir, 'blobs', 'sha256'), { recursive: true });
  const layers: Array<BuiltLayer & { uncompressed: number }> = [];
  for (const dir of opts.layers) {
    layers.push(await buildLayer(layoutDir, dir, opts.compression ?? 'gzip', opts.gzipLevel ?? 6));
  }
  const created = new Date().toISOString();
  const cfgIn = opts.config ?? {};
  const config = {
    created,
    architecture: opts.architecture ?? 'amd64',
    os: 'linux',
    config: {
      Env: cfgIn.Env ?? ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'],
      ...(cfgIn.Cmd ? { Cmd: cfgIn.Cmd } : {}),
      ...(cfgIn.Entrypoint ? { Entrypoint: cfgIn.Entrypoint } : {}),
      ...(cfgIn.WorkingDir ? { WorkingDir: cfgIn.WorkingDir } : {}),
      ...(cfgIn.ExposedPorts ? { ExposedPorts: cfgIn.ExposedPorts } : {}),
      ...(cfgIn.Labels ? { Labels: cfgIn.Labels } : {}),
    },
    rootfs: { type: 'layers', diff_ids: layers.map((l) => l.diffId) },
    history: layers.map((_, i) => ({ created, created_by: `ferry bench/env layer ${i}` })),
  };
  const configBuf = Buffer.from(JSON.stringify(config));
  const configDigest = await writeBlob(layoutDir, configBuf);
  const manifest = {
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.manifest.v1+json',
    config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: configDigest, size: configBuf.length },
    layers: layers.map((l) => ({ mediaType: l.mediaType, digest: l.digest, size: l.size })),
  };
  const manifestBuf = Buffer.from(JSON.stringify(manifest));
  const manifestDigest = await writeBlob(layoutDir, manifestBuf);
  const index = {
    schemaVersion: 2,
    mediaType: 'application/vnd.oci.image.index.v1+json',
    manifests: [
      {
        mediaType: manifest.mediaType,
        digest: manifestDigest,
        size: manifestBuf.length,
        platform: { architecture: config.architecture, os: 'linux' },
        annotations: { 'org.opencontainers.image.ref.name': opts.tag ?? 'latest' },
      },
    ],
  };
  await writeFile(join(layoutDir, 'index.json'), JSON.stringify(index));
  await writeFile(join(layoutDir, 'oci-layout'), JSON.stringify({ imageLayoutVersion: '1.0.0' }));
  return {
    layoutDir,
    manifestDigest,
    manifestSize: manifestBuf.length,
    configDigest,
    layers: layers.map(({ uncompressed: _u, ...l }) => l),
    compressedSize: layers.reduce((a, l) => a + l.size, 0),
    uncompressedSize: layers.reduce((a, l) => a + l.uncompressed, 0),
  };
}

/** Creates the OCI whiteout marker in a layer directory: deletes `path` (relative) of lower layers. */
export async function whiteout(layerDir: string, path: string): Promise<void> {
  const clean = path.replace(/^\/+/, '');
  const target = join(layerDir, dirname(clean), `.wh.${clean.split('/').pop() ?? ''}`);
  await mkdir(dirname(target), { recursive: true });
  await writeFile(target, '');
}

/** Creates the opaque-directory marker: `dir` (relative) hides everything below it from lower layers. */
export async function opaqueDir(layerDir: string, dir: string): Promise<void> {
  const d = join(layerDir, dir.replace(/^\/+/, ''));
  await mkdir(d, { recursive: true });
  await writeFile(join(d, '.wh..wh..opq'), '');
}

export interface PushOptions {
  /** 'user:password' or an object. */
  creds?: string | { username: string; password: string };
  /** Manifest format written to the registry; default 'oci'. */
  format?: 'oci' | 'v2s2';
  /** Plain HTTP / unverified TLS; default true (test registries on loopback). */
  insecure?: boolean;
  /** Tag inside the layout to push; default the only image in it. */
  tag?: string;
  timeoutMs?: number;
  netns?: string;
}

/** Copies an OCI layout to `host:port/repo:tag` with skopeo; returns the pushed manifest digest. */
export async function pushImage(layoutDir: string, ref: string, opts: PushOptions = {}): Promise<string> {
  const digestFile = join(dirname(resolve(layoutDir)), `.digest-${process.pid}-${Math.random().toString(36).slice(2)}`);
  const args = ['copy', '--quiet', `--digestfile=${digestFile}`];
  if (opts.insecure ?? true) args.push('--dest-tls-verify=false');
  if (opts.creds) {
    const c = typeof opts.creds === 'string' ? opts.creds : `${opts.creds.username}:${opts.creds.password}`;
    args.push(`--dest-creds=${c}`);
  }
  args.push('--format', opts.format ?? 'oci');
  args.push(`oci:${resolve(layoutDir)}${opts.tag ? `:${opts.tag}` : ''}`, `docker://${ref}`);
  const execOpts: Parameters<typeof exec>[2] = { timeoutMs: opts.timeoutMs ?? 600_000 };
  if (opts.netns !== undefined) execOpts.netns = opts.netns;
  const r = await exec('skopeo', args, execOpts);
  try {
    if (r.code !== 0)
      throw new FerryError('UNAVAILABLE', `skopeo copy to ${ref} failed: ${r.stderr.trim().split('\n').slice(-5).join('\n')}`);
    return (await readFile(digestFile, 'utf8')).trim();
  } finally {
    await rm(digestFile, { force: true });
  }
}
