/**
 * @module registry/gc
 * Garbage collection: deletes blobs no manifest references, while the registry keeps running.
 * Each candidate is decided and removed inside one metadata write transaction, the same lock a
 * blob commit and a manifest push take, so:
 * - a manifest committed during the run either sees the blob (and the blob is then referenced and
 *   kept) or is rejected with MANIFEST_BLOB_UNKNOWN because the blob is already gone; it never
 *   points at a missing blob;
 * - uploads in progress are separate files and are never blobs; blobs committed or touched
 *   (linked, mounted, referenced) less than `minAgeMs` ago are kept, which covers a push whose
 *   manifest has not arrived yet.
 * Stale upload sessions older than `uploadMaxAgeMs` are removed too.
 */
import type { Logger } from '../observe/index.js';
import type { BlobStore } from '../content/index.js';
import type { GcMetadata } from './metadata/metadata.js';

export interface GcOptions {
  dryRun?: boolean;
  minAgeMs: number;
  uploadMaxAgeMs: number;
  log?: Logger;
}

export interface GcResult {
  blobsScanned: number;
  blobsDeleted: string[];
  bytesFreed: number;
  uploadsRemoved: number;
  dryRun: boolean;
}

/** Runs one collection (see module doc). */
export async function collectGarbage(meta: GcMetadata, store: BlobStore, opts: GcOptions): Promise<GcResult> {
  const started = Date.now();
  const cutoff = started - opts.minAgeMs;
  const dryRun = opts.dryRun === true;
  const result: GcResult = { blobsScanned: 0, blobsDeleted: [], bytesFreed: 0, uploadsRemoved: 0, dryRun };

  for await (const blob of store.list()) {
    result.blobsScanned++;
    const { digest } = blob;
    if (blob.mtimeMs >= cutoff) continue;
    if (dryRun) {
      if (await meta.isCollectable(digest, cutoff)) {
        result.blobsDeleted.push(digest);
        result.bytesFreed += blob.size;
      }
      continue;
    }
    // The store hands its unlink to us inside its critical section; the metadata store runs it in
    // its write lock, after deciding, so a manifest push in between sees either the blob or neither.
    let collected: Promise<boolean> = Promise.resolve(false);
    await store.delete(digest, {
      critical: (unlink) => {
        let out = false as ReturnType<typeof unlink>;
        collected = meta.collectBlob(digest, cutoff, () => {
          out = unlink();
        });
        return out;
      },
    });
    if (await collected) {
      result.blobsDeleted.push(digest);
      result.bytesFreed += blob.size;
      opts.log?.info({ digest, size: blob.size }, 'blob collected');
    }
  }
  // Rows whose file vanished (should not happen; keeps metadata honest).
  if (!dryRun) {
    for (const digest of await meta.blobsTouchedBefore(cutoff)) {
      if (!(await store.stat(digest))) await meta.collectBlob(digest, cutoff, () => undefined);
    }
  }
  for (const u of await store.listUploads()) {
    if (u.mtimeMs >= started - opts.uploadMaxAgeMs) continue;
    result.uploadsRemoved++;
    if (!dryRun) {
      await store.abortUpload(u.id);
    }
  }
  opts.log?.info(
    {
      scanned: result.blobsScanned,
      deleted: result.blobsDeleted.length,
      bytesFreed: result.bytesFreed,
      uploadsRemoved: result.uploadsRemoved,
      dryRun,
    },
    'gc finished',
  );
  return result;
}
