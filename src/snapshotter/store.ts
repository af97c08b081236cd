/**
 * @module snapshotter/store
 * Snapshot metadata in SQLite (better-sqlite3, WAL, synchronous=FULL): one row per snapshot
 * (backend key/name, parent name, kind, times, labels, lazy image, usage of committed layers) and
 * one row per lazily mounted image. Every change is one transaction, so a crash leaves either the
 * old or the new state; directories of snapshots are named by the row id, never by the key
 * (containerd keys contain spaces and slashes).
 */
import Database from 'better-sqlite3';
import { FerryError } from '../core/index.js';
import type { Kind } from '../containerd/index.js';

export type { Kind };

export interface SnapshotRow {
  id: number;
  key: string;
  parent: string;
  kind: Kind;
  created: number; // ms since epoch
  updated: number;
  labels: Record<string, string>;
  /** Id of the lazy image this (committed, remote) snapshot is served from; null for ordinary ones. */
  lazy: string | null;
  size: number;
  inodes: number;
}

export interface LazyImageRow {
  id: string;
  ref: string;
  registry: string;
  repo: string;
  manifestDigest: string;
  bootstrapDigest: string;
  insecure: boolean;
  created: number;
}

interface RawSnapshot {
  id: number;
  key: string;
  parent: string;
  kind: string;
  created: number;
  updated: number;
  labels: string;
  lazy: string | null;
  size: number;
  inodes: number;
}
interface RawLazy {
  id: string;
  ref: string;
  registry: string;
  repo: string;
  manifest_digest: string;
  bootstrap_digest: string;
  insecure: number;
  created: number;
}

function toRow(r: RawSnapshot): SnapshotRow {
  return { ...r, kind: r.kind as Kind, labels: JSON.parse(r.labels) as Record<string, string> };
}

export class MetaStore {
  private readonly db: Database.Database;

  constructor(path: string) {
    this.db = new Database(path);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = FULL');
    this.db.pragma('busy_timeout = 5000');
    this.db.exec(`
      CREATE TABLE IF NOT EXISTS snapshots (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        key TEXT NOT NULL UNIQUE,
        parent TEXT NOT NULL DEFAULT '',
        kind TEXT NOT NULL CHECK (kind IN ('VIEW','ACTIVE','COMMITTED')),
        created INTEGER NOT NULL,
        updated INTEGER NOT NULL,
        labels TEXT NOT NULL DEFAULT '{}',
        lazy TEXT,
        size INTEGER NOT NULL DEFAULT 0,
        inodes INTEGER NOT NULL DEFAULT 0
      );
      CREATE INDEX IF NOT EXISTS snapshots_parent ON snapshots(parent);
      CREATE INDEX IF NOT EXISTS snapshots_lazy ON snapshots(lazy);
      CREATE TABLE IF NOT EXISTS lazy_images (
        id TEXT PRIMARY KEY,
        ref TEXT NOT NULL,
        registry TEXT NOT NULL,
        repo TEXT NOT NULL,
        manifest_digest TEXT NOT NULL,
        bootstrap_digest TEXT NOT NULL,
        insecure INTEGER NOT NULL DEFAULT 0,
        created INTEGER NOT NULL
      );
    `);
  }

  close(): void {
    this.db.close();
  }

  /** Runs `fn` in one transaction (IMMEDIATE: writers serialise). */
  tx<T>(fn: () => T): T {
    return this.db.transaction(fn).immediate();
  }

  get(key: string): SnapshotRow | undefined {
    const r = this.db.prepare('SELECT * FROM snapshots WHERE key = ?').get(key) as RawSnapshot | undefined;
    return r ? toRow(r) : undefined;
  }

  mustGet(key: string): SnapshotRow {
    const r = this.get(key);
    if (!r) throw new FerryError('NOT_FOUND', `snapshot ${JSON.stringify(key)} does not exist`);
    return r;
  }

  byId(id: number): SnapshotRow | undefined {
    const r = this.db.prepare('SELECT * FROM snapshots WHERE id = ?').get(id) as RawSnapshot | undefined;
    return r ? toRow(r) : undefined;
  }

  all(): SnapshotRow[] {
    return (this.db.prepare('SELECT * FROM snapshots ORDER BY id').all() as RawSnapshot[]).map(toRow);
  }

  ids(): Set<number> {
    return new Set((this.db.prepare('SELECT id FROM snapshots').all() as Array<{ id: number }>).map((r) => r.id));
  }

  hasChildren(key: string): boolean {
    return this.db.prepare('SELECT 1 FROM snapshots WHERE parent = ? LIMIT 1').get(key) !== undefined;
  }

  insert(row: Omit<SnapshotRow, 'id'>): SnapshotRow {
    const info = this.db
      .prepare(`INSERT INTO snapshots (key, parent, kind, created, updated, labels, lazy, size, inodes)
      VALUES (@key, @parent, @kind, @created, @updated, @labels, @lazy, @size, @inodes)`)
      .run({ ...row, labels: JSON.stringify(row.labels) });
    return { ...row, id: Number(info.lastInsertRowid) };
  }

  /** Turns an active snapshot into a committed one named `name`. */
  commit(id: number, name: string, labels: Record<string, string>, size: number, inodes: number, now: number): void {
    this.db
      .prepare(`UPDATE snapshots SET key = ?, kind = 'COMMITTED', labels = ?, size = ?, inodes = ?, updated = ? WHERE id = ?`)
      .run(name, JSON.stringify(labels), size, inodes, now, id);
  }

  setLabels(id: number, labels: Record<string, string>, now: number): void {
    this.db.prepare('UPDATE snapshots SET labels = ?, updated = ? WHERE id = ?').run(JSON.stringify(labels), now, id);
  }

  delete(id: number): void {
    this.db.prepare('DELETE FROM snapshots WHERE id = ?').run(id);
  }

  lazyRefCount(lazyId: string): number {
    return (this.db.prepare('SELECT COUNT(*) AS n FROM snapshots WHERE lazy = ?').get(lazyId) as { n: number }).n;
  }

  getLazy(id: string): LazyImageRow | undefined {
    const r = this.db.prepare('SELECT * FROM lazy_images WHERE id = ?').get(id) as RawLazy | undefined;
    return r ? fromRawLazy(r) : undefined;
  }

  allLazy(): LazyImageRow[] {
    return (this.db.prepare('SELECT * FROM lazy_images ORDER BY created').all() as RawLazy[]).map(fromRawLazy);
  }

  putLazy(row: LazyImageRow): void {
    this.db
      .prepare(`INSERT INTO lazy_images (id, ref, registry, repo, manifest_digest, bootstrap_digest, insecure, created)
      VALUES (@id, @ref, @registry, @repo, @manifestDigest, @bootstrapDigest, @insecure, @created)
      ON CONFLICT(id) DO UPDATE SET ref = excluded.ref, registry = excluded.registry, repo = excluded.repo,
        manifest_digest = excluded.manifest_digest, insecure = excluded.insecure`)
      .run({ ...row, insecure: row.insecure ? 1 : 0 });
  }

  deleteLazy(id: string): void {
    this.db.prepare('DELETE FROM lazy_images WHERE id = ?').run(id);
  }
}

function fromRawLazy(r: RawLazy): LazyImageRow {
  return {
    id: r.id,
    ref: r.ref,
    registry: r.registry,
    repo: r.repo,
    manifestDigest: r.manifest_digest,
    bootstrapDigest: r.bootstrap_digest,
    insecure: r.insecure !== 0,
    created: r.created,
  };
}
