/**
 * @module cli/mount
 * `ferry mount --image REF | --bootstrap FILE --mountpoint DIR [...]`: mounts one Nydus image lazily
 * in the foreground (an in-process daemon) until it is unmounted from outside or the process is
 * signalled (SIGINT/SIGTERM unmount it).
 */
import { mkdir, readFile, rename, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { Command, Option } from 'commander';
import { FerryError } from '../core/index.js';
import { createLogger, type Logger } from '../observe/index.js';
import { NydusAnnotation } from '../oci/index.js';
import { RegistryClient, parseReference, formatReference, type ImageReference } from '../remote/index.js';
import { writeBlobMetaFiles } from '../convert/index.js';
import { MAX_BOOTSTRAP_BYTES, unpackBootstrapLayerFiles } from '../format/rafs/index.js';
import { parseDaemonConfig } from '../config/daemon.js';
import { Daemon, type MountBackend, type MountRequest } from '../daemon/index.js';
import { mountsAt } from '../fuse/index.js';
import { untilSignal } from './lifecycle.js';
import { plainHttpFlag } from './plain-http.js';

/** Fetches the bootstrap of a Nydus image (last layer annotated nydus-bootstrap) into `dir`. */
export async function fetchBootstrap(client: RegistryClient, ref: ImageReference, dir: string, log: Logger): Promise<string> {
  const { manifest: man } = await client.resolveImage(ref, { prefer: 'nydus' });
  const boot = [...man.layers].reverse().find((l) => l.annotations?.[NydusAnnotation.BOOTSTRAP] === 'true');
  if (!boot)
    throw new FerryError(
      'FAILED_PRECONDITION',
      `${formatReference(ref)} is not a Nydus image (no layer annotated ${NydusAnnotation.BOOTSTRAP})`,
    );
  const hex = boot.digest.replace(/^sha256:/, '');
  if (!/^[0-9a-f]{64}$/.test(hex)) throw new FerryError('INVALID_ARGUMENT', `unsupported bootstrap digest ${boot.digest}`);
  await mkdir(dir, { recursive: true });
  const path = join(dir, `${hex}.boot`);
  const have = await readFile(path).then(
    () => true,
    () => false,
  );
  if (!have) {
    const layer = await client.getBlobBuffer(ref.registry, ref.repository, boot.digest, MAX_BOOTSTRAP_BYTES);
    const { bootstrap, blobMeta } = await unpackBootstrapLayerFiles(layer);
    await writeBlobMetaFiles(dir, blobMeta);
    await writeFile(`${path}.tmp`, bootstrap);
    await rename(`${path}.tmp`, path);
    log.info({ image: formatReference(ref), bootstrap: boot.digest, bytes: bootstrap.length }, 'bootstrap fetched');
  }
  return path;
}

export async function run(argv: string[]): Promise<number> {
  const cmd = new Command('ferry mount')
    .description('mount one Nydus image lazily in the foreground (FUSE or EROFS mode)')
    .option('--image <ref>', 'image reference in a registry (its bootstrap layer is fetched; blobs are read from there)')
    .option('--bootstrap <file>', "a RAFS bootstrap file (blobs from --blob-dir, or from --image's repository)")
    .requiredOption('--mountpoint <dir>', 'where to mount')
    .addOption(new Option('--mode <mode>', 'erofs (kernel, default where it works) or fuse').choices(['erofs', 'fuse']))
    .option('--cache-dir <dir>', 'chunk cache directory (default <data-dir>/cache)')
    .option('--blob-dir <dir>', 'local directory of blob files (localfs backend)')
    .option('--proxy <url>', 'P2P proxy for blob reads, falling back to the registry')
    .option('--prefetch', 'prefetch in the background (bootstrap prefetch table, or everything)')
    .option('--prefetch-files <paths>', 'comma-separated paths to prefetch instead')
    .option('--config <file>', 'nydusd-style JSON configuration (timeouts, amplification, prefetch rate, …)')
    .option('--data-dir <dir>', 'state directory', '/var/lib/ferry/mount')
    .option('--id <id>', 'mount id (default derived from the mount point)')
    .exitOverride();
  plainHttpFlag(cmd, 'plain-http', 'the registry speaks plain HTTP', ['insecure']);
  try {
    cmd.parse(argv, { from: 'user' });
  } catch (e) {
    return (e as { exitCode?: number }).exitCode ?? 2;
  }
  const o = cmd.opts<{
    image?: string;
    bootstrap?: string;
    mountpoint: string;
    mode?: 'erofs' | 'fuse';
    cacheDir?: string;
    blobDir?: string;
    proxy?: string;
    prefetch?: boolean;
    prefetchFiles?: string;
    plainHttp?: boolean;
    config?: string;
    dataDir: string;
    id?: string;
  }>();
  if (!o.image && !o.bootstrap) {
    process.stderr.write('ferry mount: one of --image or --bootstrap is required\n');
    return 2;
  }
  if (o.bootstrap && !o.image && !o.blobDir) {
    process.stderr.write('ferry mount: --bootstrap needs --blob-dir (or --image for the registry holding the blobs)\n');
    return 2;
  }
  const log = createLogger({ name: 'ferry-mount' });
  const config = parseDaemonConfig(o.config ? JSON.parse(await readFile(o.config, 'utf8')) : {});
  const dataDir = resolve(o.dataDir);
  const mountpoint = resolve(o.mountpoint);
  let bootstrapPath = o.bootstrap ? resolve(o.bootstrap) : '';
  let backend: MountBackend;
  if (o.blobDir) backend = { type: 'localfs', dir: resolve(o.blobDir) };
  if (o.image) {
    const ref = parseReference(o.image);
    const client = new RegistryClient({ log, ...(o.plainHttp ? { insecure: () => true } : {}) });
    if (!bootstrapPath) bootstrapPath = await fetchBootstrap(client, ref, join(dataDir, 'bootstraps'), log);
    backend ??= {
      type: 'registry',
      host: ref.registry,
      repo: ref.repository,
      ...(o.plainHttp ? { insecure: true } : {}),
      ...(o.proxy ? { proxy: o.proxy } : {}),
    };
  }
  const id = o.id ?? `mnt${mountpoint.replace(/[^A-Za-z0-9]+/g, '-')}`.slice(0, 100);
  const daemon = new Daemon({ log, dataDir, config });
  const req: MountRequest = {
    id,
    mountpoint,
    bootstrapPath,
    backend: backend!,
    ...(o.mode ? { mode: o.mode } : {}),
    ...(o.cacheDir ? { cacheDir: resolve(o.cacheDir) } : {}),
    ...(o.prefetchFiles ? { prefetch: o.prefetchFiles.split(',').filter(Boolean) } : o.prefetch ? { prefetch: true } : {}),
  };
  // A crashed earlier `ferry mount` of the same id left a record: clean its leftovers first.
  await daemon.restore({ remount: false, ids: [id] });
  const info = await daemon.mount(req);
  process.stdout.write(`${JSON.stringify({ id, mountpoint, mode: info.activeMode })}\n`);
  let stopped = false;
  const ended = new Promise<void>((res) => {
    daemon.ended(id).then(res, res);
    const t = setInterval(() => {
      if (stopped || mountsAt(mountpoint).length === 0) {
        clearInterval(t);
        res();
      }
    }, 1000);
  });
  await Promise.race([
    untilSignal(() => daemon.close(), log),
    ended.then(async () => {
      log.info({ mountpoint }, 'unmounted from outside, exiting');
      await daemon.close();
    }),
  ]);
  stopped = true;
  return 0;
}
