/**
 * @module convert/streams
 * Stream helpers of the conversion pipeline: sniffing and undoing a layer's compression (gzip,
 * zstd or none) while counting and hashing both sides, and packing the bootstrap layer.
 */
import { createHash, type Hash } from 'node:crypto';
import { PassThrough, Readable, Transform, type TransformCallback } from 'node:stream';
import { createGunzip, gzipSync } from 'node:zlib';
import { rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { DecompressStream } from 'zstd-napi';
import { FerryError } from '../core/index.js';
import { readLayer, writeTar, detectCompression, type TarEntry } from '../format/tar/index.js';

/** Counts (and with `hash`, sha256-hashes) bytes passing through; `onBytes` hears of each piece. */
export class Meter extends Transform {
  bytes = 0;
  private readonly hash: Hash | undefined;
  private readonly onBytes: ((n: number) => void) | undefined;
  constructor(opts: { hash?: boolean; onBytes?: (n: number) => void } = {}) {
    super();
    this.hash = opts.hash ? createHash('sha256') : undefined;
    this.onBytes = opts.onBytes;
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.bytes += chunk.length;
    this.hash?.update(chunk);
    this.onBytes?.(chunk.length);
    cb(null, chunk);
  }
  digest(): string {
    return `sha256:${this.hash!.digest('hex')}`;
  }
}

/**
 * Plain tar out of a layer stream of any compression (detected from the magic bytes, not the media
 * type, which registries and tools get wrong often enough).
 */
export function decompressed(src: Readable): Readable {
  const out = new PassThrough();
  let decided = false;
  let head = Buffer.alloc(0);
  const decide = (): void => {
    decided = true;
    const kind = detectCompression(head);
    const dec: Transform | undefined = kind === 'gzip' ? createGunzip()
      : kind === 'zstd' ? new DecompressStream() as unknown as Transform : undefined;
    const first = head;
    const sink = dec ?? out;
    if (dec) {
      dec.on('error', (err) => out.destroy(err));
      dec.pipe(out);
    }
    src.removeListener('data', onData);
    src.removeListener('end', onEnd);
    if (first.length) sink.write(first);
    src.pipe(sink);
  };
  const onData = (c: Buffer): void => {
    head = Buffer.concat([head, c]);
    if (head.length >= 4) { src.pause(); decide(); src.resume(); }
  };
  const onEnd = (): void => {
    if (decided) return;
    // fewer than 4 bytes in all: nothing to sniff, pass them through as they are
    decided = true;
    if (head.length) out.write(head);
    out.end();
  };
  src.on('data', onData);
  src.on('end', onEnd);
  src.on('error', (err) => out.destroy(err));
  out.on('close', () => { if (!src.destroyed) src.destroy(); });
  return out;
}

/** Collects a stream into one buffer. */
export async function collect(s: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of s) parts.push(Buffer.isBuffer(c) ? c : Buffer.from(c as Uint8Array));
  return Buffer.concat(parts);
}

/** Fixed timestamp of the entries of the bootstrap layer, so equal bootstraps give equal layers. */
const EPOCH = new Date(0);

/**
 * The bootstrap layer as upstream packs it: a gzip tar holding `image/` (0755), `image/image.boot`
 * (0444) and optional extra files under `image/` (the per-blob `<blob id>.blob.meta` files). Returns
 * the gzip blob and the digest of the uncompressed tar (diff_id).
 */
export async function packBootstrapLayer(bootstrap: Buffer, extra: Array<{ name: string; data: Buffer }> = []): Promise<{ blob: Buffer; diffId: string }> {
  const base = { uid: 0, gid: 0, mtime: 0, xattrs: {} };
  const file = (path: string, data: Buffer): { entry: TarEntry; body: Buffer } =>
    ({ entry: { ...base, path, type: 'file', mode: 0o444, size: data.length }, body: data });
  const tar = await collect(writeTar([
    { entry: { ...base, path: 'image', type: 'dir', mode: 0o755, size: 0 } },
    file('image/image.boot', bootstrap),
    ...extra.map((e) => file(`image/${e.name}`, e.data)),
  ]));
  return { blob: gzipSync(tar), diffId: `sha256:${createHash('sha256').update(tar).digest('hex')}` };
}

/** Largest bootstrap `unpackBootstrapLayer` takes, and the most blob.meta bytes it keeps. */
const MAX_BOOTSTRAP_BYTES = 1 << 30;
const MAX_BLOB_META_BYTES = 256 << 20;
const BLOB_META_NAME = /^(?:image\/)?([0-9a-f]{64})\.blob\.meta$/;

/** What a bootstrap layer holds: the bootstrap and the blob meta files (by blob id). */
export interface BootstrapLayerFiles {
  bootstrap: Buffer;
  blobMeta: Map<string, Buffer>;
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
  for await (const { entry, body } of readLayer(Buffer.isBuffer(layer) ? Readable.from([layer]) : layer)) {
    const meta = BLOB_META_NAME.exec(entry.path);
    if (entry.path === 'image/image.boot' || entry.path === 'image.boot') {
      if (entry.size > MAX_BOOTSTRAP_BYTES) throw new FerryError('RESOURCE_EXHAUSTED', `bootstrap layer: image.boot of ${entry.size} bytes (limit ${MAX_BOOTSTRAP_BYTES})`);
      found = await collect(body);
    } else if (meta && entry.type === 'file') {
      metaBytes += entry.size;
      if (metaBytes > MAX_BLOB_META_BYTES) throw new FerryError('RESOURCE_EXHAUSTED', `bootstrap layer: blob.meta files over ${MAX_BLOB_META_BYTES} bytes`);
      blobMeta.set(meta[1]!, await collect(body));
    } else {
      body.resume();
    }
  }
  if (!found) throw new FerryError('INVALID_ARGUMENT', 'bootstrap layer has no image/image.boot');
  return { bootstrap: found, blobMeta };
}

/**
 * Writes blob meta files as `<dir>/<blob id>.blob.meta` (where the daemon looks for a bootstrap's
 * CI tables), each through a temporary file and a rename.
 */
export async function writeBlobMetaFiles(dir: string, blobMeta: ReadonlyMap<string, Buffer>): Promise<void> {
  for (const [id, data] of blobMeta) {
    if (!/^[0-9a-f]{64}$/.test(id)) throw new FerryError('INVALID_ARGUMENT', `invalid blob id ${JSON.stringify(id)}`);
    const path = join(dir, `${id}.blob.meta`);
    await writeFile(`${path}.tmp-${process.pid}`, data, { mode: 0o444 });
    await rename(`${path}.tmp-${process.pid}`, path);
  }
}

/** The bootstrap inside a bootstrap layer (see unpackBootstrapLayerFiles). */
export async function unpackBootstrapLayer(layer: Buffer | Readable): Promise<Buffer> {
  return (await unpackBootstrapLayerFiles(layer)).bootstrap;
}
