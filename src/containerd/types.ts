/**
 * @module containerd/types
 * containerd's snapshot model as plain data, shared by its snapshots API client and by Ferry's
 * snapshotter that serves the same API: snapshot kinds, info records and mounts.
 */

/** A snapshot's kind: a read-only view, an active (writable) snapshot, or a committed layer. */
export type Kind = 'VIEW' | 'ACTIVE' | 'COMMITTED';

/** A mount containerd performs (`mount -t type -o options source target`). */
export interface Mount {
  type: string;
  source: string;
  target: string;
  options: string[];
}

export interface SnapshotInfo {
  name: string;
  parent: string;
  kind: Kind;
  created: number;
  updated: number;
  labels: Record<string, string>;
}
