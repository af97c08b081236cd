/**
 * @module snapshotter/lazy
 * Remote (lazy) layers: a Prepare whose labels name a Nydus layer (manifest annotations
 * `nydus-blob` / `nydus-bootstrap`, passed through by containerd) and its image (`cri.image-ref`,
 * else ctr-remote's `remote/stargz.reference`) is answered without any download — the manifest
 * alone says the image is lazy. In the background the image's bootstrap layer is fetched once
 * through the registry client and the whole image is mounted once through the lazy-loading
 * daemon; a container's Prepare/Mounts waits for that mount. Every layer snapshot of that image,
 * and every container on top, shares that one mount (the image's merged tree is the overlay's
 * lower dir).
 *
 * Lazy images are recorded in the metadata store so that a restarted snapshotter re-attaches to
 * (separate daemon) or re-creates (in-process daemon) their mounts.
 */
import { execFile } from 'node:child_process';
import type { KeyObject } from 'node:crypto';
import { mkdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { FerryError } from '../core/index.js';
import { verifyConversionAttestation, writeBlobMetaFiles } from '../convert/index.js';
import { unpackBootstrapLayerFiles } from '../format/rafs/index.js';
import {
  NydusAnnotation,
  parseImageConfig,
  type Descriptor,
  type ImageConfig,
  type ImageManifest,
  type PrefetchTrace,
} from '../oci/index.js';
import { silentLogger, type Logger } from '../observe/index.js';
import {
  basicHeader,
  formatReference,
  parseReference,
  withDigest,
  type CredentialProvider,
  type Credentials,
  type ImageReference,
  type RegistryClient,
} from '../remote/index.js';
import type { LazyFs, MountInfo, MountRequest, StartupHint } from '../daemon/protocol.js';
import type { RemoteLayerHint } from './labels.js';
import { fetchPrefetchTrace, pushPrefetchTrace } from './trace.js';
import { ociRefBootstrap } from './oci-ref-lookup.js';
import type { MetaStore, LazyImageRow } from './store.js';
import type { RemoteLayers } from './snapshotter.js';

const execFileP = promisify(execFile);
/** Longest a mount waits for the prefetch-trace lookup (started with the manifest) to answer. */
const TRACE_WAIT_MS = 1000;
/** Largest image config read for the startup hint. */
const MAX_CONFIG_BYTES = 4 << 20;

export interface LazyImagesOptions {
  root: string;
  store: MetaStore;
  /** The daemon's mount API (src/daemon `Daemon` in-process, or `DaemonClient` to `ferry daemon`). */
  lazyFs: LazyFs;
  registry: RegistryClient;
  mode?: 'erofs' | 'fuse';
  prefetch?: boolean;
  cacheDir?: string;
  /** Plain-HTTP registries (in addition to the `ferry.plain-http` label). */
  insecure?: (host: string) => boolean;
  /**
   * The snapshotter's credential chain (credentials supplied with pulls, pull secrets, config.json):
   * asked per (registry, repository) when a mount request is made; what it answers travels with
   * the request to the daemon, in memory.
   */
  credentials?: CredentialProvider;
  /** P2P proxy URL handed to the daemon's registry backend. */
  proxy?: string;
  /** Hand the daemon each image's command so its loader reads are fetched at mount (default true). */
  startupPrefetch?: boolean;
  /** Look for a prefetch trace attached to each image (OCI referrer) and hand it to the mount (default true). */
  tracePrefetch?: boolean;
  /**
   * Run ordinary gzip OCI images lazily when an OCI-ref (zran) index is attached to them as a
   * referrer (default false: see config `daemon.ociRef`); images without one are pulled as usual.
   */
  ociRef?: boolean;
  /** Push the trace recorded here this long after the mount, for images that have none (off when absent). */
  tracePushAfterMs?: number;
  /**
   * Attestation policy: a Nydus image is resolved only when a conversion attestation of its manifest
   * verifies with this public key (convert/attestation.ts); otherwise its Prepare fails
   * FAILED_PRECONDITION naming the image and why — it is never downloaded instead.
   */
  requireAttestation?: KeyObject;
  log?: Logger;
}

function isLoopback(host: string): boolean {
  const h = host.replace(/:\d+$/, '');
  return h === 'localhost' || h.startsWith('127.') || h === '[::1]';
}

/** Mount id the daemon knows a lazy image by. */
export function mountIdOf(lazyId: string): string {
  return `ferry-snap-${lazyId.slice(0, 24)}`;
}

interface Resolved {
  lazyId: string;
  manifestDigest: string;
  layers: Set<string>;
}

export class LazyImages implements RemoteLayers {
  private readonly o: LazyImagesOptions;
  private readonly log: Logger;
  /** Image resolutions in flight or done, by `registry/repo@manifest-or-tag`. */
  private readonly resolving = new Map<string, Promise<Resolved | null>>();
  /** Each image's command (from its config), by lazy id; read when the mount is brought up. */
  private readonly hints = new Map<string, Promise<StartupHint | undefined>>();
  /** Each image's prefetch trace from the registry (undefined: none), by lazy id; read at mount. */
  private readonly traces = new Map<string, Promise<PrefetchTrace | undefined>>();
  /** Pending automatic trace pushes, by lazy id. */
  private readonly pushTimers = new Map<string, NodeJS.Timeout>();
  /** Mounts known to be up (or being brought up), by lazy id. */
  private readonly mounting = new Map<string, Promise<string>>();

  constructor(opts: LazyImagesOptions) {
    this.o = opts;
    this.log = (opts.log ?? silentLogger()).child({ component: 'lazy' });
  }

  dir(lazyId: string): string {
    return join(this.o.root, 'lazy', lazyId);
  }
  mountpoint(lazyId: string): string {
    return join(this.dir(lazyId), 'mnt');
  }
  bootstrapPath(lazyId: string): string {
    return join(this.dir(lazyId), 'image.boot');
  }
  zranIndexPath(lazyId: string): string {
    return join(this.dir(lazyId), 'zran.index');
  }

  async prepare(hint: RemoteLayerHint): Promise<string | null> {
    const nydus = hint.nydusBlob || hint.nydusBootstrap;
    if (!nydus && (this.o.ociRef !== true || !hint.ref)) return null;
    if (nydus && !hint.ref && this.o.requireAttestation)
      throw new FerryError(
        'FAILED_PRECONDITION',
        `Nydus layer ${hint.layerDigest ?? hint.chainId} has no image reference label: the attestation policy cannot check its image`,
      );
    if (!hint.ref) {
      this.log.warn(
        { chainId: hint.chainId },
        'nydus layer without an image reference label (cri.image-ref / remote/stargz.reference): downloading it',
      );
      return null;
    }
    let ref: ImageReference;
    try {
      ref = parseReference(hint.ref);
    } catch (err) {
      this.log.warn({ err, ref: hint.ref }, 'unparsable image reference label');
      return null;
    }
    if (hint.manifestDigest) ref = withDigest(ref, hint.manifestDigest);
    const insecure = this.isInsecure(ref, hint.plainHttp);
    const key = this.resolveKey(ref, insecure);
    let p = this.resolving.get(key);
    if (!p) {
      p = this.resolve(ref, insecure);
      this.resolving.set(key, p);
      p.catch(() => this.resolving.delete(key));
    }
    let r: Resolved | null;
    try {
      r = await p;
    } catch (err) {
      if (nydus) throw err;
      // an ordinary image whose OCI-ref lookup failed: it is pulled as it always was
      this.log.warn({ err, ref: hint.ref }, 'OCI-ref lookup failed: pulling the image normally');
      return null;
    }
    if (!r) return null;
    if (hint.layerDigest && !r.layers.has(hint.layerDigest)) {
      throw new FerryError(
        'FAILED_PRECONDITION',
        `layer ${hint.layerDigest} is not in ${formatReference(ref)} (${r.manifestDigest}); the tag moved?`,
      );
    }
    // The mount is started now but not awaited: containerd goes on with the next layers (and the
    // client with its image record) meanwhile; the container's Prepare/Mounts waits for it and
    // retries it if it failed.
    this.mountInBackground(r.lazyId);
    return r.lazyId;
  }

  private isInsecure(ref: ImageReference, plainHttp?: boolean): boolean {
    return plainHttp === true || isLoopback(ref.registry) || (this.o.insecure?.(ref.registry) ?? false);
  }

  private resolveKey(ref: ImageReference, insecure: boolean): string {
    return `${ref.registry}/${ref.repository}@${ref.digest ?? ref.tag ?? 'latest'}|${insecure}`;
  }

  /**
   * Starts bringing up an image a pull in this process has just resolved (`ref` with the manifest's
   * digest), from the manifest it already holds: the bootstrap fetch and the mount run while the
   * pull writes content and containerd sends its Prepares, which then find this resolution.
   */
  warm(ref: ImageReference, manifestDigest: string, manifest: ImageManifest, plainHttp: boolean, config?: Promise<ImageConfig>): void {
    if (!manifest.layers.some((l) => l.annotations?.[NydusAnnotation.BOOTSTRAP] === 'true')) return; // not a Nydus image
    const r = withDigest(ref, manifestDigest);
    const insecure = this.isInsecure(r, plainHttp);
    const key = this.resolveKey(r, insecure);
    if (this.resolving.has(key)) return;
    const t0 = Date.now();
    // the config may still be on its way: only the startup hint waits for it (unreadable: no hint)
    const p = this.fromManifest(
      r,
      manifestDigest,
      manifest,
      insecure,
      t0,
      config ? config.catch(() => undefined) : Promise.resolve(undefined),
    );
    this.resolving.set(key, p);
    p.then(
      (res) => {
        if (res) this.mountInBackground(res.lazyId);
      },
      (err: unknown) => {
        this.resolving.delete(key);
        this.log.warn({ err, ref: formatReference(r) }, 'early start of a lazy image failed (retried at Prepare)');
      },
    );
  }

  /** Manifest → bootstrap layer → lazy image record (the bootstrap itself is fetched by the mount). */
  private async resolve(ref: ImageReference, insecure: boolean): Promise<Resolved | null> {
    const t0 = Date.now();
    const reg = this.o.registry;
    const { manifest: man, fetched: m } = await reg.resolveImage(ref, { prefer: 'nydus' });
    // the config (for the startup hint) is fetched alongside; only the mount waits for it
    const config =
      this.o.startupPrefetch === false
        ? Promise.resolve(undefined)
        : reg
            .getBlobBuffer(ref.registry, ref.repository, man.config.digest, MAX_CONFIG_BYTES)
            .then((b) => parseImageConfig(b, `config ${man.config.digest}`))
            .catch((err: unknown) => {
              this.log.debug({ err, ref: formatReference(ref) }, 'image config unreadable: no startup prefetch');
              return undefined;
            });
    return this.fromManifest(ref, m.digest, man, insecure, t0, config);
  }

  private async fromManifest(
    ref: ImageReference,
    manifestDigest: string,
    man: ImageManifest,
    insecure: boolean,
    t0: number,
    config: Promise<ImageConfig | undefined>,
  ): Promise<Resolved | null> {
    const boot =
      [...man.layers].reverse().find((l) => l.annotations?.[NydusAnnotation.BOOTSTRAP] === 'true') ??
      (await this.ociRefBootstrap(ref, manifestDigest));
    if (!boot) return null;
    const lazyId = boot.digest.replace(/^sha256:/, '');
    if (!/^[0-9a-f]{64}$/.test(lazyId)) throw new FerryError('INVALID_ARGUMENT', `unsupported bootstrap layer digest ${boot.digest}`);
    if (this.o.requireAttestation) {
      const att = await verifyConversionAttestation(this.o.registry, ref, manifestDigest, man, this.o.requireAttestation);
      this.log.info({ ref: formatReference(ref), attestation: att }, 'conversion attestation verified');
    }
    await mkdir(join(this.dir(lazyId), 'mnt'), { recursive: true });
    const row: LazyImageRow = {
      id: lazyId,
      ref: formatReference(ref),
      registry: ref.registry,
      repo: ref.repository,
      manifestDigest,
      bootstrapDigest: boot.digest,
      insecure,
      created: Date.now(),
    };
    this.o.store.tx(() => this.o.store.putLazy(row));
    if (this.o.startupPrefetch !== false && !this.hints.has(lazyId)) {
      const hint = config.then(startupHintOf, () => undefined);
      this.hints.set(lazyId, hint);
    }
    if (this.o.tracePrefetch !== false && !this.traces.has(lazyId)) {
      const tt = Date.now();
      this.traces.set(
        lazyId,
        fetchPrefetchTrace(this.o.registry, ref, manifestDigest, boot.digest).then(
          (t) => {
            this.log.debug(
              { ref: row.ref, chunks: t?.chunks.length ?? 0, ms: Date.now() - tt },
              t ? 'prefetch trace found' : 'no prefetch trace',
            );
            return t;
          },
          (err: unknown) => {
            this.log.warn({ err, ref: row.ref }, 'prefetch trace unreadable: mounting without it');
            return undefined;
          },
        ),
      );
    }
    this.log.debug({ ref: row.ref, lazy: lazyId, ms: Date.now() - t0 }, 'lazy image resolved');
    return { lazyId, manifestDigest, layers: new Set(man.layers.map((l) => l.digest)) };
  }

  /** The OCI-ref index's bootstrap layer for an ordinary image (oci-ref-lookup.ts), or undefined. */
  private ociRefBootstrap(ref: ImageReference, manifestDigest: string): Promise<Descriptor | undefined> {
    return ociRefBootstrap(this.o.registry, this.log, ref, manifestDigest, {
      enabled: this.o.ociRef === true,
      attestationPolicy: this.o.requireAttestation !== undefined,
    });
  }

  /**
   * The image's bootstrap on disk, fetched from its bootstrap layer when missing. Part of bringing
   * the mount up, not of Prepare: containerd's unpack goes on while it downloads.
   */
  private async ensureBootstrap(row: LazyImageRow): Promise<string> {
    const bootPath = this.bootstrapPath(row.id);
    if (
      await stat(bootPath).then(
        (s) => s.isFile(),
        () => false,
      )
    )
      return bootPath;
    const t0 = Date.now();
    // decompressed and untarred while it downloads (the download verifies the layer digest at its end)
    const { bootstrap, blobMeta, zranIndex } = await unpackBootstrapLayerFiles(
      await this.o.registry.getBlob(row.registry, row.repo, row.bootstrapDigest),
    );
    await mkdir(this.dir(row.id), { recursive: true });
    // the blobs' CI tables, beside the bootstrap where the daemon looks for them (written first:
    // the bootstrap's presence says the image is complete)
    await writeBlobMetaFiles(this.dir(row.id), blobMeta);
    if (zranIndex) await writeFile(this.zranIndexPath(row.id), zranIndex, { mode: 0o444 });
    const tmp = `${bootPath}.tmp-${process.pid}`;
    await writeFile(tmp, bootstrap, { mode: 0o444 });
    await rename(tmp, bootPath);
    this.log.info({ ref: row.ref, bootstrap: row.bootstrapDigest, bytes: bootstrap.length, ms: Date.now() - t0 }, 'bootstrap fetched');
    return bootPath;
  }

  private async mountRequest(row: LazyImageRow): Promise<MountRequest> {
    const backend: MountRequest['backend'] = { type: 'registry', host: row.registry, repo: row.repo, insecure: row.insecure };
    const auth = authOf(await this.o.credentials?.get(row.registry, row.repo));
    if (auth) backend.auth = auth;
    if (this.o.proxy) backend.proxy = this.o.proxy;
    const req: MountRequest = {
      id: mountIdOf(row.id),
      image: row.ref,
      mountpoint: this.mountpoint(row.id),
      bootstrapPath: this.bootstrapPath(row.id),
      backend,
    };
    if (this.o.mode) req.mode = this.o.mode;
    if (this.o.cacheDir) req.cacheDir = this.o.cacheDir;
    if (this.o.prefetch !== undefined) req.prefetch = this.o.prefetch;
    const zran = this.zranIndexPath(row.id);
    if (
      await stat(zran).then(
        (s) => s.isFile(),
        () => false,
      )
    )
      req.zranIndex = zran;
    return req;
  }

  /**
   * New credentials for (registry, repository) arrived (a pull with credentials, a CRI PullImage
   * with auth): every mounted image of that repository gets them, from its next token request on.
   */
  async credentialsChanged(host: string, repository: string, creds: Credentials | undefined): Promise<void> {
    const rows = this.o.store.allLazy().filter((r) => r.registry === host && r.repo === repository && this.mounting.has(r.id));
    for (const r of rows) {
      const id = mountIdOf(r.id);
      await this.o.lazyFs.setAuth(id, authOf(creds)).then(
        () => this.log.info({ lazy: r.id, ref: r.ref }, 'mount credentials replaced'),
        (err: unknown) => this.log.warn({ err, lazy: r.id, ref: r.ref }, 'replacing mount credentials failed'),
      );
    }
  }

  /**
   * Brings up the lazy mount of the image with this manifest digest (a pull just made it) and
   * waits for it: a pull reports success only when the image can actually be read. False when no
   * lazy image has that digest (an ordinary image).
   */
  async ensureMounted(manifestDigest: string): Promise<boolean> {
    for (let i = 0; i < 2; i++) {
      const row = this.o.store
        .allLazy()
        .filter((r) => r.manifestDigest === manifestDigest)
        .at(-1);
      if (row) {
        await this.lowerDir(row.id);
        return true;
      }
      // a warm start still writing its record: wait for the resolutions in flight once
      await Promise.allSettled(this.resolving.values());
    }
    return false;
  }

  private mountInBackground(lazyId: string): void {
    this.lowerDir(lazyId).catch((err: unknown) =>
      this.log.error({ err, lazy: lazyId }, 'lazy mount failed (retried when a container needs it)'),
    );
  }

  async lowerDir(lazyId: string): Promise<string> {
    let p = this.mounting.get(lazyId);
    if (!p) {
      p = this.mountNow(lazyId);
      this.mounting.set(lazyId, p);
      p.catch(() => this.mounting.delete(lazyId));
    }
    return p;
  }

  private async mountNow(lazyId: string): Promise<string> {
    const row = this.o.store.getLazy(lazyId);
    if (!row) throw new FerryError('NOT_FOUND', `lazy image ${lazyId} is not recorded`);
    await this.ensureBootstrap(row);
    const req = await this.mountRequest(row);
    const hint = await this.hints.get(lazyId);
    if (hint) req.startup = hint;
    // The lookup started with the manifest; a registry slow to answer it does not hold the mount up.
    const lookup = this.traces.get(lazyId);
    const trace =
      lookup && (await Promise.race([lookup, new Promise<undefined>((r) => setTimeout(() => r(undefined), TRACE_WAIT_MS).unref())]));
    if (trace) req.trace = trace;
    const existing = (await this.o.lazyFs.list()).find((x) => x.id === req.id);
    if (existing && existing.mountpoint === req.mountpoint && (await isMountpoint(req.mountpoint))) {
      this.log.info({ lazy: lazyId, mountpoint: req.mountpoint }, 'lazy mount re-attached');
      return req.mountpoint;
    }
    if (existing) await this.o.lazyFs.umount(req.id).catch(() => {});
    await detachStale(req.mountpoint, this.log);
    await mkdir(req.mountpoint, { recursive: true });
    const t0 = Date.now();
    await this.o.lazyFs.mount(req);
    this.log.info({ lazy: lazyId, ref: row.ref, mountpoint: req.mountpoint, ms: Date.now() - t0 }, 'lazy image mounted');
    if (this.o.tracePushAfterMs !== undefined && lookup && !trace && !this.pushTimers.has(lazyId)) {
      const timer = setTimeout(() => {
        void this.pushTrace(row);
      }, this.o.tracePushAfterMs);
      timer.unref();
      this.pushTimers.set(lazyId, timer);
    }
    return req.mountpoint;
  }

  /**
   * Attaches what this node recorded to the image (daemon.tracePush), unless a trace appeared in
   * the registry meanwhile. Failures (no push rights, registry down) are logged, never thrown.
   */
  private async pushTrace(row: LazyImageRow): Promise<void> {
    const ref = withDigest(parseReference(row.ref), row.manifestDigest);
    try {
      if (await fetchPrefetchTrace(this.o.registry, ref, row.manifestDigest, row.bootstrapDigest)) return;
      const trace = await this.trace(row.manifestDigest);
      if (trace.chunks.length === 0) return;
      const head = await this.o.registry.headManifest(ref);
      if (!head) throw new FerryError('NOT_FOUND', `manifest ${row.manifestDigest} is gone`);
      const pushed = await pushPrefetchTrace(
        this.o.registry,
        ref,
        { mediaType: head.mediaType, digest: row.manifestDigest, size: head.size },
        trace,
      );
      this.log.info({ ref: row.ref, trace: pushed.digest, via: pushed.via, chunks: trace.chunks.length }, 'prefetch trace pushed');
    } catch (err) {
      this.log.warn({ err, ref: row.ref }, 'prefetch trace push failed');
    }
  }

  /** The access trace of an image's mount so far, for `ferry trace push` (NOT_FOUND: not mounted here). */
  async trace(manifestDigest: string): Promise<PrefetchTrace> {
    const row = this.o.store
      .allLazy()
      .filter((r) => r.manifestDigest === manifestDigest)
      .at(-1);
    if (!row) throw new FerryError('NOT_FOUND', `no lazy image with manifest ${manifestDigest} on this node`);
    const t = await this.o.lazyFs.trace(mountIdOf(row.id));
    return { ...t, bootstrap: row.bootstrapDigest };
  }

  async release(lazyId: string): Promise<void> {
    this.mounting.delete(lazyId);
    this.hints.delete(lazyId);
    this.traces.delete(lazyId);
    clearTimeout(this.pushTimers.get(lazyId));
    this.pushTimers.delete(lazyId);
    for (const [k, v] of this.resolving) {
      const r = await v.catch(() => null);
      if (r?.lazyId === lazyId) this.resolving.delete(k);
    }
    await this.o.lazyFs.umount(mountIdOf(lazyId)).catch((err: unknown) => {
      if (!FerryError.hasCode(err, 'NOT_FOUND')) this.log.warn({ err, lazy: lazyId }, 'daemon umount failed');
    });
    await detachStale(this.mountpoint(lazyId), this.log);
    await rm(this.dir(lazyId), { recursive: true, force: true });
    this.o.store.tx(() => this.o.store.deleteLazy(lazyId));
    this.log.info({ lazy: lazyId }, 'lazy image released');
  }

  async restore(lazyIds: string[]): Promise<void> {
    // A fresh in-process daemon mounts again what a killed predecessor (this process, before)
    // had mounted for images that still have snapshots — taking over their EROFS mounts, so
    // running containers keep reading — and cleans up the rest; a separate daemon keeps its mounts.
    const fs = this.o.lazyFs;
    if (fs.restore && (await fs.list()).length === 0) {
      await fs
        .restore({ remount: true, ids: lazyIds.map(mountIdOf), others: 'clean' })
        .catch((err: unknown) => this.log.warn({ err }, 'daemon restore failed'));
    }
    for (const id of lazyIds) {
      try {
        await this.lowerDir(id);
      } catch (err) {
        this.log.error({ err, lazy: id }, 'restoring lazy mount failed (will retry on next use)');
      }
    }
  }

  /** Metrics of the daemon's mounts of our images. */
  async mounts(): Promise<MountInfo[]> {
    return (await this.o.lazyFs.list()).filter((m) => m.id.startsWith('ferry-snap-'));
  }

  async close(): Promise<void> {
    for (const t of this.pushTimers.values()) clearTimeout(t);
    this.pushTimers.clear();
    // a mount started in the background must not complete after the daemon closed
    await Promise.allSettled(this.mounting.values());
    await this.o.lazyFs.close();
  }
}

/** base64 `user:password` as a mount request carries it (nydusd's `auth`). */
function authOf(c: Credentials | undefined): string | undefined {
  return c ? basicHeader(c).replace(/^Basic /, '') : undefined;
}

/** The command of an image config (Entrypoint + Cmd), with its Env and WorkingDir; undefined without one. */
export function startupHintOf(config: ImageConfig | undefined): StartupHint | undefined {
  const c = config?.config;
  const argv = [...(c?.Entrypoint ?? []), ...(c?.Cmd ?? [])];
  if (!c || argv.length === 0) return undefined;
  const hint: StartupHint = { argv };
  if (c.Env?.length) hint.env = c.Env;
  if (c.WorkingDir) hint.workingDir = c.WorkingDir;
  return hint;
}

/** True when `dir` is a mount point (its device differs from its parent's, or it is unreadable as a dead FUSE mount). */
async function isMountpoint(dir: string): Promise<boolean> {
  try {
    const [a, b] = await Promise.all([stat(dir), stat(join(dir, '..'))]);
    return a.dev !== b.dev;
  } catch {
    return false;
  }
}

/** Lazily unmounts whatever is (still, maybe dead) mounted on `dir`. */
async function detachStale(dir: string, log: Logger): Promise<void> {
  for (let i = 0; i < 4; i++) {
    let mounted = false;
    try {
      const [a, b] = await Promise.all([stat(dir), stat(join(dir, '..'))]);
      mounted = a.dev !== b.dev;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') return;
      mounted = code === 'ENOTCONN' || code === 'EIO' || code === 'ECONNABORTED';
    }
    if (!mounted) return;
    log.info({ dir }, 'detaching stale mount');
    await execFileP('umount', ['-l', dir]).catch(() => {});
  }
}
