/**
 * @module convert/streams
 * Stream helpers of the conversion pipeline: sniffing and undoing a layer's compression (gzip,
 * zstd or none) while counting and hashing both sides, and writing the blob meta files a bootstrap
 * layer carries where the daemon looks for them. (The bootstrap layer's codec is format/rafs/layer.)
 */
import { createHash, type Hash } from 'node:crypto';
import { PassThrough, type Readable, Transform, type TransformCallback } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { DecompressStream } from 'zstd-napi';
import { FerryError } from '../core/index.js';
import { detectCompression } from '../format/tar/index.js';

// The bootstrap layer codec lives in format/rafs (layer.ts); re-exported here for check.ts.
export { unpackBootstrapLayerFiles } from '../format/rafs/index.js';

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
    const dec: Transform | undefined =
      kind === 'gzip' ? createGunzip() : kind === 'zstd' ? (new DecompressStream() as unknown as Transform) : undefined;
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
    if (head.length >= 4) {
      src.pause();
      decide();
      src.resume();
    }
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
  out.on('close', () => {
    if (!src.destroyed) src.destroy();
  });
  return out;
}

/** Collects a stream into one buffer. */
export async function collect(s: Readable): Promise<Buffer> {
  const parts: Buffer[] = [];
  for await (const c of s) parts.push(Buffer.isBuffer(c) ? c : Buffer.from(c as Uint8Array));
  return Buffer.concat(parts);
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
