/**
 * @module snapshotter/snapshotter
 * The snapshotter itself, independent of gRPC: containerd's snapshot model (active, view and
 * committed snapshots in parent chains) stored as overlayfs directories, plus remote (lazy)
 * layers handed to a `RemoteLayers` implementation.
 *
 * Layout under the root dir: `metadata.db` (SQLite), `snapshots/<id>/fs` (the layer's files, the
 * upper dir while active) and `snapshots/<id>/work` (overlay work dir). Mounts follow containerd's
 * overlay snapshotter: a bind mount without parents, a read-only bind for a view of one parent,
 * otherwise overlay with `lowerdir=` nearest parent first. A committed remote snapshot has no files
 * of its own: its whole image is one lazy mount, used as a single lower dir.
 */
import { mkdir, readdir, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { FerryError } from '../core/index.js';
import { silentLogger, type Logger } from '../observe/index.js';
import { matchesAny, parseFilter, type FieldAdaptor } from './filters.js';
import { Label, remoteHint, validateLabels, type RemoteLayerHint } from './labels.js';
import type { Mount, SnapshotInfo } from '../containerd/index.js';
import { MetaStore, type Kind, type SnapshotRow } from './store.js';
import { diskUsage, type Usage } from './usage.js';

export type { Mount, SnapshotInfo } from '../containerd/index.js';

/** The lazy-layer side of the snapshotter (implemented in lazy.ts over the daemon). */
export interface RemoteLayers {
  /**
   * Called for a Prepare carrying `containerd.io/snapshot.ref`. Resolves the layer's image and
   * mounts it lazily; returns the lazy image id, or null when the layer is not a lazy one (then
   * the snapshotter behaves like overlayfs and containerd downloads the layer).
   */
  prepare(hint: RemoteLayerHint): Promise<string | null>;
  /** Mountpoint of a lazy image, mounting it again first when needed. */
  lowerDir(lazyId: string): Promise<string>;
  /** No snapshot references the image any more: unmount and delete it. */
  release(lazyId: string): Promise<void>;
  /** Called at start with the lazy images existing snapshots reference. */
  restore(lazyIds: string[]): Promise<void>;
  close(): Promise<void>;
}

export interface SnapshotterOptions {
  root: string;
  log?: Logger;
  /** The lazy-layer side, or a factory given the opened metadata store. */
  remote?: RemoteLayers | ((store: MetaStore) => RemoteLayers);
  /** Called after each operation (metrics). */
  onOp?: (op: string, ok: boolean, ms: number) => void;
}

const KINDS = new Set<Kind>(['VIEW', 'ACTIVE', 'COMMITTED']);

function toInfo(r: SnapshotRow): SnapshotInfo {
  return { name: r.key, parent: r.parent, kind: r.kind, created: r.created, updated: r.updated, labels: { ...r.labels } };
}

export class Snapshotter {
  readonly root: string;
  private readonly store: MetaStore;
  private readonly log: Logger;
  private readonly remote: RemoteLayers | undefined;
  private readonly inflight = new Map<string, Promise<void>>();
  private closed = false;

  private constructor(opts: SnapshotterOptions, store: MetaStore) {
    this.root = opts.root;
    this.store = store;
    this.log = opts.log ?? silentLogger();
    this.remote = typeof opts.remote === 'function' ? opts.remote(store) : opts.remote;
  }

  /** Opens (or creates) the root dir, repairs directories and restores lazy mounts. */
  static async open(opts: SnapshotterOptions): Promise<Snapshotter> {
    await mkdir(join(opts.root, 'snapshots'), { recursive: true, mode: 0o700 });
    const s = new Snapshotter(opts, new MetaStore(join(opts.root, 'metadata.db')));
    for (const row of s.store.all()) {
      if (row.lazy === null) await mkdir(s.fsDir(row.id), { recursive: true });
      if (row.kind === 'ACTIVE') await mkdir(s.workDir(row.id), { recursive: true });
    }
    if (s.remote) {
      const ids = [
        ...new Set(
          s.store
            .all()
            .map((r) => r.lazy)
            .filter((x): x is string => x !== null),
        ),
      ];
      await s.remote.restore(ids);
    }
    return s;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.allSettled(this.inflight.values());
    await this.remote?.close();
    this.store.close();
  }

  snapshotDir(id: number): string {
    return join(this.root, 'snapshots', String(id));
  }
  fsDir(id: number): string {
    return join(this.snapshotDir(id), 'fs');
  }
  workDir(id: number): string {
    return join(this.snapshotDir(id), 'work');
  }

  // ---------------------------------------------------------------- RPCs

  async prepare(key: string, parent: string, labels: Record<string, string>): Promise<Mount[]> {
    validateLabels(labels);
    if (!key) throw new FerryError('INVALID_ARGUMENT', 'snapshot key must not be empty');
    const hint = remoteHint(labels);
    if (hint && this.remote) {
      const done = await this.tryRemote(key, parent, labels, hint);
      if (done) throw new FerryError('ALREADY_EXISTS', `target snapshot ${JSON.stringify(hint.chainId)}: already exists (remote layer)`);
    }
    return this.create('ACTIVE', key, parent, labels);
  }

  async view(key: string, parent: string, labels: Record<string, string>): Promise<Mount[]> {
    validateLabels(labels);
    if (!key) throw new FerryError('INVALID_ARGUMENT', 'snapshot key must not be empty');
    return this.create('VIEW', key, parent, labels);
  }

  async mounts(key: string): Promise<Mount[]> {
    const row = this.store.mustGet(key);
    if (row.kind === 'COMMITTED') {
      throw new FerryError(
        'FAILED_PRECONDITION',
        `snapshot ${JSON.stringify(key)} is committed: mounts exist only for active snapshots and views`,
      );
    }
    return this.mountsOf(row);
  }

  async commit(name: string, key: string, labels: Record<string, string>): Promise<void> {
    validateLabels(labels);
    if (!name) throw new FerryError('INVALID_ARGUMENT', 'commit name must not be empty');
    const row = this.store.mustGet(key);
    if (row.kind !== 'ACTIVE') {
      throw new FerryError(
        'FAILED_PRECONDITION',
        `snapshot ${JSON.stringify(key)} is ${row.kind.toLowerCase()}, only active snapshots can be committed`,
      );
    }
    const usage = await diskUsage(this.fsDir(row.id));
    this.store.tx(() => {
      if (this.store.get(name)) throw new FerryError('ALREADY_EXISTS', `snapshot ${JSON.stringify(name)} already exists`);
      const cur = this.store.get(key);
      if (!cur || cur.id !== row.id || cur.kind !== 'ACTIVE')
        throw new FerryError('NOT_FOUND', `snapshot ${JSON.stringify(key)} does not exist`);
      this.store.commit(row.id, name, labels, usage.size, usage.inodes, Date.now());
    });
    await rm(this.workDir(row.id), { recursive: true, force: true });
    this.log.debug({ key, name, id: row.id, size: usage.size }, 'committed');
  }

  async remove(key: string): Promise<void> {
    const row = this.store.tx(() => {
      const r = this.store.mustGet(key);
      if (this.store.hasChildren(key)) {
        throw new FerryError('FAILED_PRECONDITION', `cannot remove snapshot ${JSON.stringify(key)}: it has children`);
      }
      this.store.delete(r.id);
      return r;
    });
    await rm(this.snapshotDir(row.id), { recursive: true, force: true });
    if (row.lazy && this.remote && this.store.lazyRefCount(row.lazy) === 0) {
      await this.remote.release(row.lazy).catch((err: unknown) => this.log.warn({ err, lazy: row.lazy }, 'releasing lazy image failed'));
    }
    this.log.debug({ key, id: row.id }, 'removed');
  }

  stat(key: string): SnapshotInfo {
    return toInfo(this.store.mustGet(key));
  }

  update(info: { name: string; labels: Record<string, string> }, paths: string[]): SnapshotInfo {
    validateLabels(info.labels);
    return this.store.tx(() => {
      const row = this.store.mustGet(info.name);
      let labels: Record<string, string>;
      if (paths.length === 0) {
        labels = { ...info.labels };
      } else {
        labels = { ...row.labels };
        for (const p of paths) {
          if (p === 'labels') {
            labels = { ...info.labels };
          } else if (p.startsWith('labels.')) {
            const k = p.slice('labels.'.length);
            const v = info.labels[k];
            if (v === undefined || v === '') delete labels[k];
            else labels[k] = v;
          } else {
            throw new FerryError(
              'INVALID_ARGUMENT',
              `cannot update ${JSON.stringify(p)} of snapshot ${JSON.stringify(info.name)}: only labels are mutable`,
            );
          }
        }
      }
      validateLabels(labels);
      const now = Date.now();
      this.store.setLabels(row.id, labels, now);
      return toInfo({ ...row, labels, updated: now });
    });
  }

  list(filters: string[]): SnapshotInfo[] {
    const parsed = filters.map(parseFilter);
    const out: SnapshotInfo[] = [];
    for (const row of this.store.all()) {
      const info = toInfo(row);
      if (matchesAny(parsed, adaptInfo(info))) out.push(info);
    }
    return out;
  }

  async usage(key: string): Promise<Usage> {
    const row = this.store.mustGet(key);
    if (row.kind === 'COMMITTED') return { size: row.size, inodes: row.inodes };
    if (row.lazy) return { size: 0, inodes: 0 };
    return diskUsage(this.fsDir(row.id));
  }

  /** Deletes directories no snapshot owns and lazy images no snapshot references. */
  async cleanup(): Promise<{ dirs: number; lazy: number }> {
    const ids = this.store.ids();
    let dirs = 0;
    for (const name of await readdir(join(this.root, 'snapshots')).catch(() => [] as string[])) {
      const id = Number(name);
      if (Number.isInteger(id) && String(id) === name && ids.has(id)) continue;
      if (this.inflightDir(name)) continue;
      await rm(join(this.root, 'snapshots', name), { recursive: true, force: true });
      dirs++;
    }
    let lazy = 0;
    // a remote Prepare in flight may have recorded its image but not yet its snapshot: wait for the next Cleanup
    const remoteInFlight = [...this.inflight.keys()].some((k) => k.startsWith('target:'));
    if (this.remote && !remoteInFlight) {
      const used = new Set(
        this.store
          .all()
          .map((r) => r.lazy)
          .filter((x): x is string => x !== null),
      );
      for (const l of this.store.allLazy()) {
        if (used.has(l.id)) continue;
        await this.remote.release(l.id);
        lazy++;
      }
    }
    return { dirs, lazy };
  }

  /** Metadata store, for the lazy layer implementation living beside it. */
  get metadata(): MetaStore {
    return this.store;
  }

  // ------------------------------------------------------------ internals

  private inflightDir(name: string): boolean {
    return this.inflight.has(`dir:${name}`);
  }

  private async create(kind: Kind, key: string, parent: string, labels: Record<string, string>): Promise<Mount[]> {
    const now = Date.now();
    const row = this.store.tx(() => {
      if (this.store.get(key)) throw new FerryError('ALREADY_EXISTS', `snapshot ${JSON.stringify(key)} already exists`);
      if (parent) {
        const p = this.store.get(parent);
        if (!p) throw new FerryError('NOT_FOUND', `parent snapshot ${JSON.stringify(parent)} does not exist`);
        if (p.kind !== 'COMMITTED') throw new FerryError('FAILED_PRECONDITION', `parent ${JSON.stringify(parent)} is not committed`);
      }
      return this.store.insert({ key, parent, kind, created: now, updated: now, labels, lazy: null, size: 0, inodes: 0 });
    });
    const marker = `dir:${row.id}`;
    const p = (async () => {
      await mkdir(this.fsDir(row.id), { recursive: true, mode: 0o755 });
      if (kind === 'ACTIVE') await mkdir(this.workDir(row.id), { recursive: true, mode: 0o711 });
    })();
    this.inflight.set(
      marker,
      p.catch(() => {}),
    );
    try {
      await p;
      return await this.mountsOf(row);
    } catch (err) {
      this.store.tx(() => this.store.delete(row.id));
      await rm(this.snapshotDir(row.id), { recursive: true, force: true });
      throw err;
    } finally {
      this.inflight.delete(marker);
    }
  }

  /**
   * The remote path: mount the layer's image lazily and record a committed snapshot named by the
   * chain id with the given parent and labels. Returns true when the target now exists (the
   * caller answers ALREADY_EXISTS), false to fall back to an ordinary snapshot.
   */
  private async tryRemote(key: string, parent: string, labels: Record<string, string>, hint: RemoteLayerHint): Promise<boolean> {
    const target = hint.chainId;
    const existing = this.store.get(target);
    if (existing) {
      if (existing.kind === 'COMMITTED' && existing.parent === parent) return true;
      return false;
    }
    const flightKey = `target:${target}`;
    const running = this.inflight.get(flightKey);
    if (running) {
      await running;
      const now = this.store.get(target);
      return now !== undefined && now.kind === 'COMMITTED' && now.parent === parent;
    }
    let ok = false;
    const t0 = Date.now();
    const p = (async () => {
      let lazyId: string | null;
      try {
        lazyId = await this.remote!.prepare(hint);
      } catch (err) {
        if (hint.nydusBlob || hint.nydusBootstrap) {
          // a Nydus layer cannot be downloaded and applied instead (containerd has no processor for it)
          const e = err as Error;
          this.log.error({ err, key, target, ref: hint.ref }, 'Nydus layer cannot be mounted lazily');
          throw new FerryError(
            FerryError.is(err) ? err.code : 'UNAVAILABLE',
            `Nydus layer of ${hint.ref ?? 'an image'} cannot be mounted lazily (and cannot be unpacked any other way): ${e.message}` +
              (FerryError.hasCode(err, 'UNAUTHENTICATED') || FerryError.hasCode(err, 'PERMISSION_DENIED')
                ? ' — private image: pull with credentials (ferry pull --user, the CRI image service of `ferry snapshotter --cri-address` with PullImage auth, --pull-secret, config.json)'
                : ''),
            { cause: err },
          );
        }
        this.log.warn({ err, key, target }, 'remote layer not available, falling back to an ordinary snapshot');
        return;
      }
      if (lazyId === null) return;
      const now = Date.now();
      this.store.tx(() => {
        if (parent) {
          const p = this.store.get(parent);
          if (p?.kind !== 'COMMITTED') throw new FerryError('NOT_FOUND', `parent snapshot ${JSON.stringify(parent)} does not exist`);
        }
        if (this.store.get(target)) return;
        this.store.insert({
          key: target,
          parent,
          kind: 'COMMITTED',
          created: now,
          updated: now,
          labels: { ...labels, [Label.REMOTE]: 'remote snapshot' },
          lazy: lazyId,
          size: 0,
          inodes: 0,
        });
      });
      ok = true;
      this.log.info({ key, target, lazy: lazyId, ms: Date.now() - t0 }, 'remote layer committed');
    })();
    this.inflight.set(
      flightKey,
      p.catch(() => {}),
    );
    try {
      await p;
    } finally {
      this.inflight.delete(flightKey);
    }
    return ok;
  }

  /** Lower dirs of a snapshot's parent chain, nearest first; a lazy parent ends the chain. */
  private async lowerDirs(parent: string): Promise<string[]> {
    const out: string[] = [];
    let name = parent;
    for (let depth = 0; name; depth++) {
      if (depth > 10_000) throw new FerryError('INTERNAL', 'parent chain too long (cycle?)');
      const p = this.store.get(name);
      if (!p) throw new FerryError('NOT_FOUND', `parent snapshot ${JSON.stringify(name)} does not exist`);
      if (p.lazy) {
        if (!this.remote)
          throw new FerryError('UNAVAILABLE', `snapshot ${JSON.stringify(name)} is a lazy layer but no daemon is configured`);
        out.push(await this.remote.lowerDir(p.lazy));
        break;
      }
      out.push(this.fsDir(p.id));
      name = p.parent;
    }
    return out;
  }

  private async mountsOf(row: SnapshotRow): Promise<Mount[]> {
    const lowers = await this.lowerDirs(row.parent);
    if (lowers.length === 0) {
      return [{ type: 'bind', source: this.fsDir(row.id), target: '', options: [row.kind === 'VIEW' ? 'ro' : 'rw', 'rbind'] }];
    }
    if (row.kind === 'VIEW') {
      if (lowers.length === 1) return [{ type: 'bind', source: lowers[0]!, target: '', options: ['ro', 'rbind'] }];
      return [{ type: 'overlay', source: 'overlay', target: '', options: ['index=off', `lowerdir=${lowers.join(':')}`] }];
    }
    return [
      {
        type: 'overlay',
        source: 'overlay',
        target: '',
        options: ['index=off', `workdir=${this.workDir(row.id)}`, `upperdir=${this.fsDir(row.id)}`, `lowerdir=${lowers.join(':')}`],
      },
    ];
  }
}

function adaptInfo(info: SnapshotInfo): FieldAdaptor {
  return (path) => {
    const [head, ...rest] = path;
    switch (head) {
      case 'name':
        return info.name;
      case 'parent':
        return info.parent;
      case 'kind':
        return info.kind.toLowerCase();
      case 'labels':
        return rest.length ? info.labels[rest.join('.')] : undefined;
      default:
        return undefined;
    }
  };
}

export { KINDS };
