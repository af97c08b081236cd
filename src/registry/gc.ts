/**
 * @module registry/gc
 * Garbage collection: deletes blobs no manifest references, while the registry (every replica of it)
 * keeps running. Each candidate is decided and removed under the metadata store's lock for that
 * digest — the lock a blob commit and a manifest push referencing it take — so:
 * - a manifest committed during the run either sees the blob (and the blob is then referenced and
 *   kept) or is rejected with MANIFEST_BLOB_UNKNOWN because the blob is already gone; it never
 *   points at a missing blob;
 * - uploads in progress are not blobs; blobs committed or touched (linked, mounted, referenced)
 *   less than `minAgeMs` before the run started are kept (Harbor's rule: what is pushed during a gc
 *   is not collected), which also covers a push whose manifest has not arrived yet.
 * With `deleteUntagged`, untagged manifests older than `minAgeMs` that no index lists (and that are
 * no referrer of a present subject) are deleted first, so their blobs can go in the same run.
 * Stale upload sessions older than `uploadMaxAgeMs` are removed too. Progress goes to `onLine`
 * (the run's log of the GC API); `shouldStop` is checked between blobs.
 */
import type { Logger } from '../observe/index.js';
import type { BlobStore } from '../content/index.js';
import type { GcJobMetadata, GcMetadata } from './metadata/metadata.js';

export interface GcOptions {
  dryRun?: boolean;
  minAgeMs: number;
  uploadMaxAgeMs: number;
  /** Delete untagged manifests first (Harbor's `delete_untagged`). Needs `manifests`. */
  deleteUntagged?: boolean;
  log?: Logger;
  /** Receives one line per step and per deleted item. */
  onLine?: (line: string) => void;
  /** Checked between blobs: true stops the run (result `stopped`). */
  shouldStop?: () => boolean;
  /** The run's start time (ms); default now. */
  now?: number;
}

export interface GcResult {
  blobsScanned: number;
  blobsDeleted: string[];
  bytesFreed: number;
  manifestsDeleted: string[];
  uploadsRemoved: number;
  dryRun: boolean;
  stopped: boolean;
}

/** The store parts gc uses: blobs, and for `deleteUntagged` manifests. */
export type GcStore = GcMetadata & {
  untaggedManifests?: GcJobMetadata['untaggedManifests'];
  deleteManifest?(repo: string, digest: string): Promise<boolean>;
};

/** Runs one collection (see module doc). */
export async function collectGarbage(meta: GcStore, store: BlobStore, opts: GcOptions): Promise<GcResult> {
  const started = opts.now ?? Date.now();
  const cutoff = started - opts.minAgeMs;
  const dryRun = opts.dryRun === true;
  const say = (line: string): void => opts.onLine?.(line);
  const result: GcResult = {
    blobsScanned: 0,
    blobsDeleted: [],
    bytesFreed: 0,
    manifestsDeleted: [],
    uploadsRemoved: 0,
    dryRun,
    stopped: false,
  };
  say(`gc started${dryRun ? ' (dry run)' : ''}: keeping what was pushed or touched after ${new Date(cutoff).toISOString()}`);

  if (opts.deleteUntagged && meta.untaggedManifests && meta.deleteManifest) {
    for (const m of await meta.untaggedManifests(cutoff)) {
      if (opts.shouldStop?.()) {
        result.stopped = true;
        break;
      }
      if (!dryRun && !(await meta.deleteManifest(m.repo, m.digest))) continue;
      result.manifestsDeleted.push(`${m.repo}@${m.digest}`);
      say(`${dryRun ? 'would delete' : 'deleted'} untagged manifest ${m.repo}@${m.digest}`);
    }
  }

  for await (const blob of store.list()) {
    if (result.stopped || opts.shouldStop?.()) {
      result.stopped = true;
      break;
    }
    result.blobsScanned++;
    const { digest } = blob;
    if (blob.mtimeMs >= cutoff) continue;
    if (dryRun) {
      if (await meta.isCollectable(digest, cutoff)) {
        result.blobsDeleted.push(digest);
        result.bytesFreed += blob.size;
        say(`would delete blob ${digest} (${blob.size} bytes)`);
      }
      continue;
    }
    // The store hands its unlink to us inside its critical section; the metadata store runs it
    // under the digest's lock, after deciding, so a manifest push in between sees either the blob
    // or neither.
    let collected = false;
    await store.delete(digest, {
      critical: async <T>(unlink: () => Promise<T>): Promise<T> => {
        let out: T | undefined;
        collected = await meta.collectBlob(digest, cutoff, async () => {
          out = await unlink();
        });
        return out as T;
      },
    });
    if (collected) {
      result.blobsDeleted.push(digest);
      result.bytesFreed += blob.size;
      say(`deleted blob ${digest} (${blob.size} bytes)`);
      opts.log?.info({ digest, size: blob.size }, 'blob collected');
    }
  }
  // Rows whose file vanished (should not happen; keeps metadata honest).
  if (!dryRun && !result.stopped) {
    for (const digest of await meta.blobsTouchedBefore(cutoff)) {
      if (!(await store.stat(digest))) await meta.collectBlob(digest, cutoff, async () => undefined);
    }
  }
  if (!result.stopped) {
    for (const u of await store.listUploads()) {
      if (u.mtimeMs >= started - opts.uploadMaxAgeMs) continue;
      result.uploadsRemoved++;
      if (!dryRun) await store.abortUpload(u.id);
    }
  }
  say(
    `gc ${result.stopped ? 'stopped' : 'finished'}: ${result.blobsScanned} blobs scanned, ${result.blobsDeleted.length} ` +
      `${dryRun ? 'collectable' : 'deleted'} (${result.bytesFreed} bytes), ${result.manifestsDeleted.length} untagged manifests, ` +
      `${result.uploadsRemoved} stale uploads`,
  );
  opts.log?.info(
    {
      scanned: result.blobsScanned,
      deleted: result.blobsDeleted.length,
      bytesFreed: result.bytesFreed,
      manifestsDeleted: result.manifestsDeleted.length,
      uploadsRemoved: result.uploadsRemoved,
      dryRun,
      stopped: result.stopped,
    },
    'gc finished',
  );
  return result;
}
