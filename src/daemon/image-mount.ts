/**
 * @module daemon/image-mount
 * One mounted image. FUSE mode: the RAFS tree served over FUSE from the bootstrap, file data from
 * the storage device. EROFS mode (v6 bootstraps): the kernel mounts the bootstrap itself as EROFS
 * with each blob's uncompressed view as an extra device; each view is a file on a small FUSE mount
 * of ours (one file per blob) put behind a read-only loop device, so only data block reads that
 * miss the kernel's page cache come to us — metadata never leaves the kernel.
 * (Over 600 lines: one image mount's whole lifecycle — chunk lists, both modes, EROFS take-over, prefetch and fill wiring.)
 */
import { existsSync } from 'node:fs';
import { mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { FerryError, S_IFDIR, S_IFMT, S_IFREG, systemClock } from '../core/index.js';
import type { Logger } from '../observe/index.js';
import {
  openBootstrap,
  ciFromMetaFile,
  decodeBlobTail,
  loadBlobTables,
  tailRange,
  type BlobInfo,
  type CiLocation,
  type RafsBootstrap,
  type ChunkRef,
} from '../format/rafs/index.js';
import { decodeZranIndex } from '../format/zran/index.js';
import { FuseSession, clearStaleMounts, mountsAt, run, unmount } from '../fuse/index.js';
import { changeLoopFile, cleanupMountLeftovers, reattachableLoops } from './leftovers.js';
import {
  LocalFsBackend,
  ProxyBackend,
  RegistryBackend,
  StorageDevice,
  type ChunkIndex,
  ZranBackend,
  type Backend,
  type DeviceBlob,
  type DeviceChunk,
} from '../storage/index.js';
import { BlobViewFs, RafsFs, readFileRange } from './rafs-fs.js';
import { BackgroundFill } from './fill.js';
import { ciTableForThreads } from './fast-path.js';
import { startupRanges, type FileRange } from './startup-prefetch.js';
import { DEFAULT_WHOLE_ELF, DEFAULT_WHOLE_FILE, DEFAULT_WHOLE_SO } from '../config/daemon.js';
import { markFiles } from './whole-files.js';
import { REDACTED_AUTH, type MountInfo, type MountRequest, type PrefetchTrace } from './protocol.js';
import type { CredentialSource } from '../remote/index.js';
import { traceByBlob, traceOf } from '../oci/index.js';

export interface ImageMountOptions {
  log: Logger;
  /** working directory of this mount (blob-view mount point lives here) */
  workDir: string;
  defaultCacheDir: string;
  defaultMode: 'erofs' | 'fuse';
  amplifyBytes: number;
  /** storage/fetch-plan: gap merged over, on-demand miss window (starting, largest, byte budget: storage/speculation), requests in flight */
  mergeGap?: number;
  missWindow?: number;
  missWindowMax?: number;
  amplifyBudget?: number;
  /** count reads of every chunk fetched ahead (storage device `countAhead`) */
  countAhead?: boolean;
  fetchConcurrency?: number;
  /** size limits of files fetched whole: the start-up set's ELF files, and at their first read shared objects and other files (default: config/daemon's) */
  whole?: { elf: number; so: number; file: number };
  /** requests through a P2P proxy cut at this grid (the peers' range-task grid; 0 = not cut) */
  p2pRangeGrid?: number;
  requestTimeoutMs: number;
  retries: number;
  requestDeadlineMs: number;
  prefetchMergeBytes: number;
  prefetchBandwidth: number;
  fuseThreads: number;
  proxyFallback: boolean;
  /** FUSE mode: answer lookups/attributes/cached reads in the reader threads (default true) */
  fastPath?: boolean;
  /** the node's chunks by digest: misses another blob's cache holds are copied from there (storage/chunk-index) */
  chunkIndex?: ChunkIndex;
  /** default P2P proxy for registry backends whose request names none */
  defaultProxy?: string;
  /** credential sources asked after the mount's own credentials (the daemon's chain) */
  credentialSources?: readonly CredentialSource[];
  /** background fill (daemon/fill.ts): wholly cached this long after the mount (ms; 0 = off), idle rate bytes/s */
  fillDeadlineMs?: number;
  fillRate?: number;
}

/** Read-ahead of EROFS mounts (KiB), see mountErofs. */
const EROFS_READAHEAD_KB = 0;
/** The FUSE fast paths run in reader threads (FUSE mode: the image tree; EROFS mode: blob views). */
export const FAST_PATH_MODULE = new URL('./fast-path.js', import.meta.url).href;
export const VIEW_FAST_PATH_MODULE = new URL('./view-fast-path.js', import.meta.url).href;

/**
 * Chunks per blob index from a v6 bootstrap's chunk table (every chunk its inodes reference):
 * reading the table is a few ms, where walking every inode of a python-sized tree took 150–700 ms
 * on the mount's critical path. Entries are checked against their blob's sizes; v5 bootstraps are
 * walked.
 */
function chunksPerBlob(bs: RafsBootstrap): Map<number, DeviceChunk[]> {
  const per = new Map<number, DeviceChunk[]>();
  const add = (blobIndex: number, c: DeviceChunk): void => {
    let l = per.get(blobIndex);
    if (!l) per.set(blobIndex, (l = []));
    l.push(c);
  };
  const table = bs.version === 6 ? bs.chunkLocations() : [];
  if (table.length > 0) {
    for (const c of table) {
      const b = bs.blobs[c.blobIndex];
      if (!b) throw new FerryError('DATA_LOSS', `rafs bootstrap: chunk table entry references blob ${c.blobIndex} of ${bs.blobs.length}`);
      if (
        c.uncompressedOffset + c.uncompressedSize > b.uncompressedSize ||
        (b.compressedSize > 0 && c.compressedOffset + c.compressedSize > b.compressedSize)
      ) {
        throw new FerryError('DATA_LOSS', `rafs bootstrap: chunk ${c.chunkIndex} of blob ${b.blobId} lies outside the blob`);
      }
      add(c.blobIndex, c);
    }
    return per;
  }
  for (const e of bs.walk()) {
    if ((e.stat.mode & S_IFMT) !== S_IFREG || e.stat.size === 0) continue;
    for (const c of bs.chunks(e.ino)) add(c.blobIndex, c);
  }
  return per;
}

/** The blobs of an image mount: their chunks, codecs and (without a chunk table) table loaders. */
interface MountBlobs {
  blobs: DeviceBlob[];
  /** bytes and requests fetched from the backend while the mount came up (blob tables) */
  fetched: { bytes: number; requests: number };
  /** per blob index: the CI table, when the bootstrap has no chunk table (for FUSE fast-path threads) */
  ci: Array<{ blobIndex: number; entries: CiLocation[] }>;
}

const EMPTY = Buffer.alloc(0);

function deviceBlob(b: BlobInfo, chunks: DeviceChunk[], prepare?: DeviceBlob['prepare']): DeviceBlob {
  let n = b.chunkCount;
  for (const c of chunks) if (c.chunkIndex >= n) n = c.chunkIndex + 1;
  return {
    blobId: b.blobId,
    uncompressedSize: b.uncompressedSize,
    chunkCount: n,
    chunks,
    codec: { compressor: b.compressor, digester: b.digester },
    ...(prepare ? { prepare } : {}),
  };
}

/**
 * A v6 bootstrap without a chunk table maps chunks through each blob's CI table, as nydusd does
 * for INLINED_CHUNK_DIGEST images: taken from `<blob id>.blob.meta` beside the bootstrap (the
 * bootstrap layer ships them), else fetched with the digests at mount time. The chunk digests are
 * fetched from the blob's tail (verified through its ToC) when the first chunk of that blob is —
 * a blob the container never reads costs nothing at all.
 */
async function blobsFromTables(bs: RafsBootstrap, bootDir: string, backend: Backend, deadlineMs: number): Promise<MountBlobs> {
  const out: MountBlobs = { blobs: [], ci: [], fetched: { bytes: 0, requests: 0 } };
  for (const b of bs.blobs) {
    if (!b.blobId || b.uncompressedSize <= 0) continue;
    const meta = await readFile(join(bootDir, `${b.blobId}.blob.meta`)).catch((err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return undefined;
      throw err;
    });
    let entries: CiLocation[];
    let digests: Buffer[] | undefined;
    if (meta) {
      entries = ciFromMetaFile(b, meta);
    } else {
      ({ entries, digests } = await loadBlobTables(b, async (blob, off, len) => {
        const buf = await backend.read(blob.blobId, off, len, AbortSignal.timeout(deadlineMs));
        out.fetched.bytes += buf.length;
        out.fetched.requests++;
        return buf;
      }));
    }
    const chunks: DeviceChunk[] = entries.map((e, i) => ({
      chunkIndex: i,
      compressedOffset: e.compressedOffset,
      compressedSize: e.compressedSize,
      uncompressedOffset: e.uncompressedOffset,
      uncompressedSize: e.uncompressedSize,
      compressed: e.compressed,
      digest: digests?.[i] ?? EMPTY,
    }));
    bs.setCiTable(b.index, entries, digests);
    out.ci.push({ blobIndex: b.index, entries });
    const prepare = digests
      ? undefined
      : async (read: (offset: number, length: number) => Promise<Buffer>): Promise<void> => {
          const r = tailRange(b, { withCi: false });
          const d = decodeBlobTail(b, await read(r.offset, r.length), r.offset).digests;
          for (const c of chunks) c.digest = d[c.chunkIndex]!;
          bs.setCiTable(b.index, entries, d);
        };
    out.blobs.push(deviceBlob(b, chunks, prepare));
  }
  return out;
}

/** Ids of the blobs an EROFS mount has a device (a view file and a loop device) for. */
function viewBlobIds(bs: RafsBootstrap): string[] {
  return bs.blobs.filter((b) => b.blobId && b.uncompressedSize > 0).map((b) => b.blobId);
}

function blobsOf(bs: RafsBootstrap): MountBlobs {
  const per = chunksPerBlob(bs);
  return {
    blobs: bs.blobs.filter((b) => b.blobId && b.uncompressedSize > 0).map((b) => deviceBlob(b, per.get(b.index) ?? [])),
    ci: [],
    fetched: { bytes: 0, requests: 0 },
  };
}

/** Chunk references grouped by blob, as `StorageDevice.prefetch` takes them. */
function byBlob(refs: Iterable<ChunkRef>): Array<{ blobId: string; chunks: DeviceChunk[] }> {
  const per = new Map<string, DeviceChunk[]>();
  for (const c of refs) {
    let l = per.get(c.blobId);
    if (!l) per.set(c.blobId, (l = []));
    l.push(c);
  }
  return [...per].map(([blobId, chunks]) => ({ blobId, chunks }));
}

/** Chunks of the files at/under the given inodes (prefetch lists). */
function chunksUnder(bs: RafsBootstrap, inos: Iterable<number>): Array<{ blobId: string; chunks: DeviceChunk[] }> {
  const refs: ChunkRef[] = [];
  const seen = new Set<number>();
  const stack = [...inos];
  let budget = 10_000_000;
  while (stack.length && budget-- > 0) {
    const ino = stack.pop()!;
    if (seen.has(ino)) continue;
    seen.add(ino);
    const st = bs.stat(ino);
    const t = st.mode & S_IFMT;
    if (t === S_IFDIR) for (const e of bs.readdir(ino)) stack.push(e.ino);
    else if (t === S_IFREG && st.size > 0) refs.push(...bs.chunks(ino));
  }
  return byBlob(refs);
}

export class ImageMount {
  readonly req: MountRequest;
  activeMode: 'erofs' | 'fuse' = 'fuse';
  private device!: StorageDevice;
  /** teardown started (marking whole files stops) / files marked whole, once done */
  private tornDown = false;
  private wholeFilesMarked: number | undefined;
  private fuse: FuseSession | null = null;
  private view: FuseSession | null = null;
  private loops: string[] = [];
  private readonly viewDir: string;
  private readonly log: Logger;

  private constructor(
    req: MountRequest,
    private readonly o: ImageMountOptions,
  ) {
    this.req = req;
    this.viewDir = join(o.workDir, 'blobs');
    this.log = o.log.child({ mount: req.id, ...(req.image ? { image: req.image } : {}) });
  }

  static async mount(req: MountRequest, o: ImageMountOptions): Promise<ImageMount> {
    const m = new ImageMount(req, o);
    try {
      await m.start();
    } catch (err) {
      await m.teardown().catch(() => undefined);
      throw err;
    }
    return m;
  }

  /** The registry backend (also behind a P2P proxy backend), whose credentials `setAuth` replaces. */
  private registry: RegistryBackend | undefined;

  /** New credentials for the registry backend (base64 `user:password`), from the next token request on. */
  setAuth(auth: string | undefined): void {
    if (this.req.backend.type !== 'registry') throw new FerryError('FAILED_PRECONDITION', `mount ${this.req.id} has no registry backend`);
    if (auth === undefined) delete this.req.backend.auth;
    else this.req.backend.auth = auth;
    this.registry?.setAuth(auth);
  }

  private backend(): Backend {
    const b = this.req.backend;
    if (b.type === 'localfs') return new LocalFsBackend(b.dir);
    const reg = new RegistryBackend({
      host: b.host,
      repo: b.repo,
      ...(b.insecure !== undefined ? { insecure: b.insecure } : {}),
      ...(b.auth ? { auth: b.auth } : {}),
      ...(this.o.credentialSources ? { credentialSources: this.o.credentialSources } : {}),
      ...(this.req.image ? { image: this.req.image } : {}),
      timeoutMs: this.o.requestTimeoutMs,
      retries: this.o.retries,
      log: this.log,
    });
    this.registry = reg;
    const proxy = b.proxy ?? this.o.defaultProxy;
    if (proxy)
      return new ProxyBackend({
        proxyUrl: proxy,
        registry: reg,
        fallback: this.o.proxyFallback,
        timeoutMs: this.o.requestTimeoutMs,
        log: this.log,
        rangeGrid: this.o.p2pRangeGrid ?? 0,
      });
    return reg;
  }

  /** The backend itself, or in front of it the OCI-ref reader of the mount's zran index. */
  private async withZran(inner: Backend): Promise<Backend> {
    const path = this.req.zranIndex;
    if (!path) return inner;
    try {
      const z = new ZranBackend(inner, decodeZranIndex(await readFile(path)));
      this.zran = z;
      return z;
    } catch (err) {
      await inner.close().catch(() => undefined);
      if (FerryError.is(err)) throw err;
      throw new FerryError('INVALID_ARGUMENT', `zran index ${path}: ${(err as Error).message}`, { cause: err });
    }
  }

  /** The OCI-ref reader, when the mount has a zran index. */
  private zran: ZranBackend | undefined;

  /** Milliseconds each step of the last mount took (logged with 'image mounted'). */
  readonly timings: Record<string, number> = {};

  private async start(): Promise<void> {
    let t0 = performance.now();
    const lap = (step: string): void => {
      const t = performance.now();
      this.timings[step] = Math.round((t - t0) * 10) / 10;
      t0 = t;
    };
    const buf = await readFile(this.req.bootstrapPath).catch((err: NodeJS.ErrnoException) => {
      throw new FerryError(err.code === 'ENOENT' ? 'NOT_FOUND' : 'INVALID_ARGUMENT', `bootstrap ${this.req.bootstrapPath}: ${err.message}`);
    });
    const bs = openBootstrap(buf);
    lap('bootstrapMs');
    // Only a view dir left behind can have loop devices or mounts on it (a clean unmount removes
    // it): a fresh one skips the `losetup -l` scan (~15 ms of every cold start).
    // (a dead FUSE view mount answers ENOTCONN: existsSync says false, the mount table does not)
    const leftover = mountsAt(this.viewDir).length > 0 || existsSync(this.viewDir);
    // a dead daemon's EROFS mount still there (under a running container, say) is taken over, not removed
    const reattach =
      leftover && this.wantsErofs(bs) ? await reattachableLoops(this.req.mountpoint, this.viewDir, viewBlobIds(bs)) : undefined;
    if (reattach)
      this.log.info({ mountpoint: this.req.mountpoint, loops: reattach.size }, 'taking over the EROFS mount of a previous daemon');
    else if (leftover) await cleanupMountLeftovers(this.req.mountpoint, this.viewDir, this.log);
    else await clearStaleMounts(this.req.mountpoint);
    if (!reattach) {
      // (after the cleanup: a dead FUSE mount point answers ENOTCONN)
      await mkdir(this.req.mountpoint, { recursive: true });
      await mkdir(this.viewDir, { recursive: true });
    }
    lap('cleanupMs');
    const backend = await this.withZran(this.backend());
    const tableless = !bs.canMapChunks();
    let mb: MountBlobs;
    try {
      mb = tableless ? await blobsFromTables(bs, dirname(this.req.bootstrapPath), backend, this.o.requestDeadlineMs) : blobsOf(bs);
      lap('chunkListMs');
      this.device = await StorageDevice.open({
        blobs: mb.blobs,
        backend,
        cacheDir: this.req.cacheDir ?? this.o.defaultCacheDir,
        log: this.log,
        amplifyBytes: this.o.amplifyBytes,
        ...(this.o.mergeGap !== undefined ? { mergeGap: this.o.mergeGap } : {}),
        ...(this.o.missWindow !== undefined ? { missWindow: this.o.missWindow } : {}),
        ...(this.o.missWindowMax !== undefined ? { missWindowMax: this.o.missWindowMax } : {}),
        ...(this.o.amplifyBudget !== undefined ? { amplifyBudget: this.o.amplifyBudget } : {}),
        familiesPending: true,
        ...(this.o.countAhead ? { countAhead: true } : {}),
        ...(this.o.fetchConcurrency !== undefined ? { fetchConcurrency: this.o.fetchConcurrency } : {}),
        requestDeadlineMs: this.o.requestDeadlineMs,
        prefetchMergeBytes: this.o.prefetchMergeBytes,
        prefetchBandwidth: this.o.prefetchBandwidth,
        ...(this.o.chunkIndex ? { chunkIndex: this.o.chunkIndex } : {}),
      });
    } catch (err) {
      await backend.close().catch(() => undefined);
      throw err;
    }
    const { ci, fetched } = mb;
    this.device.stats.bytesFetched += fetched.bytes;
    this.device.stats.requests += fetched.requests;
    lap('deviceMs');
    // What the container will read goes out now, while the mount (and containerd, and runc) get
    // ready: the chunks an earlier start read (a prefetch trace), else the command's loader reads.
    if (this.req.trace) this.prefetchTrace(this.req.trace);
    else if (this.req.startup) void this.prefetchStartup(bs, this.req.startup);
    void this.markWholeFiles(bs);
    const want = this.req.mode ?? this.o.defaultMode;
    if (reattach) {
      await this.reattachErofs(reattach, lap);
      this.activeMode = 'erofs';
    } else if (want === 'erofs' && bs.version === 6) {
      try {
        await this.mountErofs(lap);
        this.activeMode = 'erofs';
      } catch (err) {
        if (this.req.mode === 'erofs') throw err;
        this.log.warn({ err: (err as Error).message }, 'erofs mode failed, falling back to fuse mode');
        await this.teardownErofs();
      }
    } else if (want === 'erofs' && this.req.mode === 'erofs') {
      throw new FerryError('FAILED_PRECONDITION', 'erofs mode needs a RAFS v6 bootstrap; this one is v5');
    }
    if (this.activeMode === 'fuse') {
      const dev = this.device;
      this.fuse = await FuseSession.mount({
        mountpoint: this.req.mountpoint,
        fs: new RafsFs(bs, this.device),
        log: this.log,
        source: `ferry-${this.req.id}`,
        subtype: 'ferry',
        readers: this.o.fuseThreads,
        ...(this.o.fastPath === false
          ? {}
          : {
              fastPath: {
                module: FAST_PATH_MODULE,
                data: {
                  bootstrapPath: this.req.bootstrapPath,
                  timeout: 365 * 24 * 3600,
                  caches: dev.sharedCaches(),
                  ci: ci.map((t) => ({ blobIndex: t.blobIndex, table: ciTableForThreads(t.entries) })),
                },
              },
              onFastHits: (n: number) => dev.countHits(n),
            }),
      });
      lap('fuseMs');
    }
    if (this.req.prefetch) {
      if (Array.isArray(this.req.prefetch)) {
        const inos = this.req.prefetch.map((p) => bs.lookup(p)).filter((i): i is number => i !== undefined);
        this.device.prefetch(chunksUnder(bs, inos));
      } else {
        const list = bs.prefetchInodes;
        if (list.length === 0 || (list.length === 1 && list[0] === bs.rootIno)) this.device.prefetch('all');
        else this.device.prefetch(chunksUnder(bs, list));
      }
    }
    this.device.startDecoders();
    this.startFill();
    this.log.info(
      { mode: this.activeMode, mountpoint: this.req.mountpoint, blobs: this.device.blobIds().length, timings: this.timings },
      'image mounted',
    );
  }

  private fill: BackgroundFill | undefined;

  /** With a fill deadline: the rest of the image is fetched in the background (after the start-up set). */
  private startFill(): void {
    const deadlineMs = this.o.fillDeadlineMs ?? 0;
    if (deadlineMs <= 0) return;
    this.fill = new BackgroundFill({ device: this.device, clock: systemClock, deadlineMs, rate: this.o.fillRate ?? 0, log: this.log });
    this.fill.start();
  }

  private wantsErofs(bs: RafsBootstrap): boolean {
    return (this.req.mode ?? this.o.defaultMode) === 'erofs' && bs.version === 6;
  }

  /**
   * Takes over a dead daemon's EROFS mount: a new blob-view FUSE mount replaces the dead one and
   * each loop device under the EROFS mount is pointed at its new view file. On failure the
   * leftovers are removed (what a restart did before) and the error is thrown.
   */
  private async reattachErofs(loops: Map<string, string>, lap: (step: string) => void): Promise<void> {
    try {
      await clearStaleMounts(this.viewDir);
      await mkdir(this.viewDir, { recursive: true });
      await this.mountView();
      lap('viewFuseMs');
      for (const [id, dev] of loops) {
        await changeLoopFile(dev, join(this.viewDir, id));
        this.loops.push(dev);
      }
      lap('reattachMs');
    } catch (err) {
      this.log.error({ err: (err as Error).message }, 'taking over the EROFS mount failed: removing it');
      this.loops = [...loops.values()];
      await this.teardownErofs().catch(() => undefined);
      throw err;
    }
  }

  private async mountView(): Promise<void> {
    this.view = await FuseSession.mount({
      mountpoint: this.viewDir,
      fs: new BlobViewFs(this.device),
      log: this.log,
      source: `ferry-view-${this.req.id}`,
      subtype: 'ferry-view',
      ...(this.o.fastPath === false
        ? {}
        : {
            fastPath: { module: VIEW_FAST_PATH_MODULE, data: { blobs: this.device.viewMaps() } },
            onFastHits: (n: number) => this.device.countHits(n),
          }),
      // No page-cache read-ahead on the view files: the EROFS mount above asks for what programs
      // touch, and the device ramps up its own read-ahead for sequential reads (StorageDevice).
      // Read-ahead here fetched chunks nobody read (+18 % bytes for a cold python start).
      readers: this.o.fuseThreads,
      readaheadKb: 0,
    });
  }

  private async mountErofs(lap: (step: string) => void): Promise<void> {
    const ids = this.device.blobIds();
    await this.mountView();
    lap('viewFuseMs');
    for (const id of ids) {
      const r = await run('losetup', ['-f', '--show', '-r', join(this.viewDir, id)], { timeoutMs: 30_000 });
      if (r.code !== 0) throw new FerryError('INTERNAL', `losetup for blob ${id}: ${r.stderr.trim()}`);
      this.loops.push(r.stdout.trim());
    }
    lap('losetupMs');
    const opts = ['ro', ...this.loops.map((l) => `device=${l}`)].join(',');
    const r = await run('mount', ['-t', 'erofs', '-o', opts, this.req.bootstrapPath, this.req.mountpoint], { timeoutMs: 60_000 });
    if (r.code !== 0) throw new FerryError('INTERNAL', `mount -t erofs ${this.req.bootstrapPath}: ${r.stderr.trim() || `exit ${r.code}`}`);
    // EROFS's file read-ahead (the bdi of the device holding the bootstrap; 128 KiB by default)
    // asks the blob views for pages past what a program touches, and each of those pages costs a
    // chunk from the registry. Off: page faults ask for their page, read(2) for what it reads;
    // sequential reads get read-ahead from the device instead. Cold python start, 32 KiB chunks:
    // 2.50 MB fetched at 0 KiB vs 2.68 MB at 16 KiB (and 6.7 MB at the kernel's 128 KiB with
    // 1 MiB chunks).
    const dev = mountsAt(this.req.mountpoint).at(-1)?.dev;
    if (dev) {
      await writeFile(`/sys/class/bdi/${dev}/read_ahead_kb`, String(EROFS_READAHEAD_KB)).catch((err: unknown) =>
        this.log.debug({ err, dev }, 'could not set erofs read-ahead'),
      );
    }
    lap('erofsMountMs');
  }

  private async teardownErofs(): Promise<void> {
    if (mountsAt(this.req.mountpoint).some((m) => m.fsType === 'erofs')) await unmount(this.req.mountpoint);
    for (const l of this.loops.splice(0)) await run('losetup', ['-d', l]);
    if (this.view) {
      await this.view.unmount();
      this.view = null;
    }
  }

  metrics(): MountInfo {
    const s = this.device?.stats;
    const lookups = s ? s.hits + s.misses : 0;
    const fuseReq = (x: FuseSession | null): number => (x ? Object.values(x.stats.requests).reduce((a, b) => a + b, 0) : 0);
    const { trace: _trace, ...req } = this.req;
    // credentials never leave the daemon in an answer: only that there are some
    const backend = req.backend.type === 'registry' && req.backend.auth ? { ...req.backend, auth: REDACTED_AUTH } : req.backend;
    return {
      ...req,
      backend,
      activeMode: this.activeMode,
      metrics: {
        bytesFetched: s?.bytesFetched ?? 0,
        chunksCached: this.device?.chunksCached() ?? 0,
        cacheHitRatio: lookups ? s!.hits / lookups : 0,
        backendErrors: s?.backendErrors ?? 0,
      },
      stats: {
        chunksTotal: this.device?.chunksTotal() ?? 0,
        requests: s?.requests ?? 0,
        proxyFallbacks: this.device?.backend.fallbacks() ?? 0,
        digestMismatches: s?.digestMismatches ?? 0,
        prefetchedBytes: s?.prefetchedBytes ?? 0,
        sharedBytes: s?.sharedBytes ?? 0,
        ...(s ? { ahead: s.ahead } : {}),
        fuseRequests: fuseReq(this.fuse) + fuseReq(this.view) + (this.fuse?.stats.fastRequests ?? 0),
        ...(this.wholeFilesMarked !== undefined ? { wholeFiles: this.wholeFilesMarked } : {}),
        ...(this.zran ? { layerBytes: this.zran.layerBytes } : {}),
      },
      ...(this.fill ? { fill: this.fill.status() } : {}),
    };
  }

  /** The storage device, for the node cache (undefined until the mount is up). */
  get cacheUser(): StorageDevice | undefined {
    return this.device as StorageDevice | undefined;
  }

  /** Resolves when the FUSE side ends by itself (someone ran umount on the mount point). */
  get ended(): Promise<void> {
    return (this.fuse ?? this.view)?.closed ?? new Promise(() => undefined);
  }

  async prefetchIdle(): Promise<void> {
    await this.device.prefetchIdle();
  }

  /** The access trace recorded so far (see StorageDevice.trace). */
  trace(): PrefetchTrace {
    return traceOf(this.device?.trace() ?? []);
  }

  private prefetchTrace(t: PrefetchTrace): void {
    const list: Array<{ blobId: string; chunks: DeviceChunk[] }> = [];
    let unknown = 0;
    let n = 0;
    for (const [blobId, idx] of traceByBlob(t)) {
      const chunks = this.device.chunksByIndex(blobId, idx);
      if (!chunks) {
        unknown += idx.length;
        continue;
      }
      unknown += idx.length - chunks.length;
      n += chunks.length;
      list.push({ blobId, chunks });
    }
    // urgent: the container is about to read these; recorded: a trace of this run keeps them
    this.device.prefetch(list, { urgent: true, record: true });
    if (unknown) this.log.warn({ unknown }, 'prefetch trace names chunks this image does not have (ignored)');
    this.log.info({ chunks: n, blobs: list.length }, 'trace prefetch queued');
  }

  /** Marks the files a read fetches whole and the chunks' families (daemon/whole-files), after the mount is up. */
  private async markWholeFiles(bs: RafsBootstrap): Promise<void> {
    const limits = { so: this.o.whole?.so ?? DEFAULT_WHOLE_SO, other: this.o.whole?.file ?? DEFAULT_WHOLE_FILE };
    const marks = await markFiles(bs, limits, () => this.tornDown).catch((err: unknown) => {
      this.log.warn({ err: (err as Error).message }, 'marking whole files failed (reads fetch only what they touch)');
      return undefined;
    });
    if (!marks) return;
    for (const [blobId, files] of marks.whole) this.device.setWholeFiles(blobId, files);
    for (const [blobId, families] of marks.families) this.device.setFamilies(blobId, families);
    this.wholeFilesMarked = [...marks.whole.values()].reduce((a, m) => a + m.size, 0);
  }

  private async prefetchStartup(bs: RafsBootstrap, hint: NonNullable<MountRequest['startup']>): Promise<void> {
    const t0 = Date.now();
    let bytes = 0;
    const dev = this.device;
    const onFile = (ranges: FileRange[]): void => {
      for (const r of ranges) bytes += r.length;
      // urgent: the container's first process reads these as soon as it runs
      dev.prefetch(byBlob(ranges.flatMap((r) => bs.mapRead(r.ino, r.offset, r.length))), { urgent: true, record: true });
    };
    try {
      const files = await startupRanges(
        bs,
        async (ino, off, len) => Buffer.concat(await readFileRange(bs, dev, ino, off, len)),
        hint,
        onFile,
        this.log,
        this.o.whole?.elf ?? DEFAULT_WHOLE_ELF,
      );
      this.log.info({ command: hint.argv[0], files, bytes, ms: Date.now() - t0 }, 'startup prefetch queued');
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'startup prefetch failed');
    }
  }

  async teardown(): Promise<void> {
    this.tornDown = true;
    // a startup prefetch still reading headers fails its reads once the device closes
    await this.fill?.close();
    if (this.fuse) {
      await this.fuse.unmount();
      this.fuse = null;
    }
    await this.teardownErofs();
    if (this.device) await this.device.close();
    if (mountsAt(this.viewDir).length === 0) await rm(this.viewDir, { recursive: true, force: true }).catch(() => undefined);
    this.log.info('image unmounted');
  }
}
