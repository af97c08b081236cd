/**
 * @module format/rafs/layer
 * The bootstrap layer of a Nydus image: the gzip tar, last layer of the manifest, that carries the
 * image's RAFS bootstrap as `image/image.boot` and the per-blob `image/<blob id>.blob.meta` files
 * beside it, packed as nydusify packs it (same entries, modes and zero timestamps, so equal
 * bootstraps give equal layers) and unpacked with size limits.
 */
import { createHash } from 'node:crypto';
import { Readable } from 'node:stream';
import { gzipSync } from 'node:zlib';
import { FerryError } from '../../core/index.js';
import { readLayer, writeTar, type TarEntry } from '../tar/index.js';

/** Largest bootstrap a bootstrap layer may hold (also the most a reader fetches of a bootstrap layer). */
export const MAX_BOOTSTRAP_BYTES = 1 << 30;
/** Most blob.meta bytes kept from one bootstrap layer. */
const MAX_BLOB_META_BYTES = 256 << 20;
const ZRAN_INDEX_PATH = 'image/zran.index';
const BLOB_META_NAME = /^(?:image\/)?([0-9a-f]{64})\.blob\.meta$/;
/** Modes of the layer's entries (as nydusify writes them): the directory, and the read-only files. */
const DIR_MODE = 0o755;
const FILE_MODE = 0o444;

async function collect(s: AsyncIterable<unknown>): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of s) parts.push(Buffer.isBuffer(c) ? c : Buffer.from(c as Uint8Array));
  return Buffer.concat(parts);
}

/**
 * The bootstrap layer as upstream packs it: a gzip tar holding `image/` (0755), `image/image.boot`
 * (0444) and optional extra files under `image/` (the per-blob `<blob id>.blob.meta` files). Returns
 * the gzip blob and the digest of the uncompressed tar (diff_id).
 */
export async function packBootstrapLayer(
  bootstrap: Buffer,
  extra: Array<{ name: string; data: Buffer }> = [],
): Promise<{ blob: Buffer; diffId: string }> {
  const base = { uid: 0, gid: 0, mtime: 0, xattrs: {} };
  const file = (path: string, data: Buffer): { entry: TarEntry; body: Buffer } => ({
    entry: { ...base, path, type: 'file', mode: FILE_MODE, size: data.length },
    body: data,
  });
  const tar = await collect(
    writeTar([
      { entry: { ...base, path: 'image', type: 'dir', mode: DIR_MODE, size: 0 } },
      file('image/image.boot', bootstrap),
      ...extra.map((e) => file(`image/${e.name}`, e.data)),
    ]),
  );
  return { blob: gzipSync(tar), diffId: `sha256:${createHash('sha256').update(tar).digest('hex')}` };
}

/** What a bootstrap layer holds: the bootstrap and the blob meta files (by blob id). */
export interface BootstrapLayerFiles {
  bootstrap: Buffer;
  blobMeta: Map<string, Buffer>;
  /** `image/zran.index` of an OCI-ref image (format/zran), when present */
  zranIndex?: Buffer;
}

/**
 * The bootstrap inside a bootstrap layer (gzip or plain tar; `image/image.boot` or legacy
 * `image.boot`) and the `image/<blob id>.blob.meta` files beside it.
 */
export async function unpackBootstrapLayerFiles(layer: Buffer | Readable): Promise<BootstrapLayerFiles> {
  // A stream (a verifying registry download) is unpacked as it arrives and read to its end, so a
  // digest mismatch at the end still fails the call.
  let found: Buffer | undefined;
  const blobMeta = new Map<string, Buffer>();
  let metaBytes = 0;
  let zranIndex: Buffer | undefined;
  for await (const { entry, body } of readLayer(Buffer.isBuffer(layer) ? Readable.from([layer]) : layer)) {
    const meta = BLOB_META_NAME.exec(entry.path);
    if (entry.path === 'image/image.boot' || entry.path === 'image.boot') {
      if (entry.size > MAX_BOOTSTRAP_BYTES) {
        throw new FerryError('RESOURCE_EXHAUSTED', `bootstrap layer: image.boot of ${entry.size} bytes (limit ${MAX_BOOTSTRAP_BYTES})`);
      }
      found = await collect(body);
    } else if (meta && entry.type === 'file') {
      metaBytes += entry.size;
      if (metaBytes > MAX_BLOB_META_BYTES) {
        throw new FerryError('RESOURCE_EXHAUSTED', `bootstrap layer: blob.meta files over ${MAX_BLOB_META_BYTES} bytes`);
      }
      blobMeta.set(meta[1]!, await collect(body));
    } else if (entry.path === ZRAN_INDEX_PATH && entry.type === 'file') {
      if (entry.size > MAX_BLOB_META_BYTES)
        throw new FerryError('RESOURCE_EXHAUSTED', `bootstrap layer: zran index of ${entry.size} bytes`);
      zranIndex = await collect(body);
    } else {
      body.resume();
    }
  }
  if (!found) throw new FerryError('INVALID_ARGUMENT', 'bootstrap layer has no image/image.boot');
  return zranIndex ? { bootstrap: found, blobMeta, zranIndex } : { bootstrap: found, blobMeta };
}

/** The bootstrap inside a bootstrap layer (see unpackBootstrapLayerFiles). */
export async function unpackBootstrapLayer(layer: Buffer | Readable): Promise<Buffer> {
  return (await unpackBootstrapLayerFiles(layer)).bootstrap;
}
