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
import type { SqliteMetadata } from './metadata/sqlite.js';

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
export async function collectGarbage(meta: SqliteMetadata, store: BlobStore, opts: GcOptions): Promise<GcResult> {
  const started = Date.now();
  const cutoff = started - opts.minAgeMs;
  const dryRun = opts.dryRun === true;
  const referenced = meta.db.prepare("SELECT 1 FROM manifest_refs WHERE digest = ? AND kind = 'blob' LIMIT 1");
  const row = meta.db.prepare('SELECT touched_at FROM blobs WHERE digest = ?');
  const delRow = meta.db.prepare('DELETE FROM blobs WHERE digest = ?');
  const delLinks = meta.db.prepare('DELETE FROM repo_blobs WHERE digest = ?');
  const result: GcResult = { blobsScanned: 0, blobsDeleted: [], bytesFreed: 0, uploadsRemoved: 0, dryRun };

  for await (const blob of store.list()) {
    result.blobsScanned++;
    const { digest } = blob;
    const decide = (): boolean => {
      if (referenced.get(digest)) return false;
      const r = row.get(digest) as { touched_at: number } | undefined;
      if (r && Number(r.touched_at) >= cutoff) return false;
      if (blob.mtimeMs >= cutoff) return false;
      return true;
    };
    if (dryRun) {
      if (meta.tx(decide)) {
        result.blobsDeleted.push(digest);
        result.bytesFreed += blob.size;
      }
      continue;
    }
    let deleted = false;
    await store.delete(digest, {
      critical: (unlink) => meta.tx(() => {
        if (!decide()) return false as ReturnType<typeof unlink>;
        delLinks.run(digest);
        delRow.run(digest);
        deleted = true;
        return unlink();
      }),
    });
    if (deleted) {
      result.blobsDeleted.push(digest);
      result.bytesFreed += blob.size;
      opts.log?.info({ digest, size: blob.size }, 'blob collected');
    }
  }
  // Rows whose file vanished (should not happen; keeps metadata honest).
  if (!dryRun) {
    const rows = meta.db.prepare('SELECT digest FROM blobs WHERE touched_at < ?').all(cutoff) as Array<{ digest: string }>;
    for (const { digest } of rows) {
      if (!(await store.stat(digest))) {
        meta.tx(() => {
          if (referenced.get(digest)) return;
          delLinks.run(digest);
          delRow.run(digest);
        });
      }
    }
  }
  for (const u of await store.listUploads()) {
    if (u.mtimeMs >= started - opts.uploadMaxAgeMs) continue;
    result.uploadsRemoved++;
    if (!dryRun) {
      await store.abortUpload(u.id);
    }
  }
  opts.log?.info({ scanned: result.blobsScanned, deleted: result.blobsDeleted.length, bytesFreed: result.bytesFreed, uploadsRemoved: result.uploadsRemoved, dryRun }, 'gc finished');
  return result;
}
