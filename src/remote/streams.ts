/**
 * @module remote/streams
 * Stream stages of blob reads: an idle timeout while a body streams, digest (and size) verification
 * of what passes through, the slice of a body whose server ignored our Range header, and a ranged
 * body collected into one buffer (telling a callback as its bytes arrive).
 */
import { createHash } from 'node:crypto';
import { Transform, type Readable, type TransformCallback } from 'node:stream';
import { DigestMismatchError, FerryError, parseDigest } from '../core/index.js';

/** Passes bytes through, failing the stream if no data arrives for `ms`. */
export function idleTimeout(src: Readable, ms: number, what: string): Readable {
  let timer: NodeJS.Timeout | undefined;
  const out = new Transform({
    transform(chunk: Buffer, _enc, cb: TransformCallback) {
      arm();
      cb(null, chunk);
    },
    flush(cb: TransformCallback) {
      if (timer) clearTimeout(timer);
      cb();
    },
  });
  const arm = (): void => {
    if (timer) clearTimeout(timer);
    timer = setTimeout(() => {
      const err = new FerryError('DEADLINE_EXCEEDED', `${what}: no data for ${ms} ms`);
      src.destroy(err);
      out.destroy(err);
    }, ms);
  };
  arm();
  src.on('error', (err) => {
    if (timer) clearTimeout(timer);
    out.destroy(err);
  });
  out.on('close', () => {
    if (timer) clearTimeout(timer);
    if (!src.destroyed) src.destroy();
  });
  src.pipe(out);
  return out;
}

/** Hashes what passes through and fails at the end when the digest (or size) is not the expected one. */
export function verifying(src: Readable, digest: string, size?: number): Readable {
  const { algorithm } = parseDigest(digest);
  const hash = createHash(algorithm);
  let n = 0;
  const out = new Transform({
    transform(chunk: Buffer, _enc, cb: TransformCallback) {
      hash.update(chunk);
      n += chunk.length;
      cb(null, chunk);
    },
    flush(cb: TransformCallback) {
      const got = `${algorithm}:${hash.digest('hex')}`;
      if (got !== digest) return cb(new DigestMismatchError(digest, got, 'blob'));
      if (size !== undefined && n !== size) return cb(new FerryError('DATA_LOSS', `blob ${digest}: expected ${size} bytes, got ${n}`));
      cb();
    },
  });
  src.on('error', (err) => out.destroy(err));
  out.on('close', () => {
    if (!src.destroyed) src.destroy();
  });
  src.pipe(out);
  return out;
}

/** Skips `skip` bytes and passes at most `take` bytes (a server that ignored our Range header). */
export function sliceStream(src: Readable, skip: number, take: number): Readable {
  let pos = 0;
  const end = skip + take;
  const out = new Transform({
    transform(chunk: Buffer, _enc, cb: TransformCallback) {
      const s = pos;
      pos += chunk.length;
      const a = Math.max(0, skip - s);
      const b = Math.min(chunk.length, end - s);
      if (b > a) this.push(chunk.subarray(a, b));
      if (pos >= end) {
        src.unpipe(out);
        src.destroy();
        this.push(null);
      }
      cb();
    },
  });
  src.on('error', (err) => out.destroy(err));
  src.pipe(out);
  return out;
}

/** Exactly `length` bytes of a stream into one buffer, telling `progress` as they arrive. */
export async function collectRange(
  stream: Readable,
  length: number,
  what: string,
  progress?: (buf: Buffer, filled: number) => void,
): Promise<Buffer> {
  const out = Buffer.allocUnsafe(length);
  let n = 0;
  try {
    for await (const c of stream) {
      const b = c as Buffer;
      if (n + b.length > length) {
        throw new FerryError('DATA_LOSS', `${what}: server sent more than the ${length} bytes asked for (range ignored?)`);
      }
      b.copy(out, n);
      n += b.length;
      progress?.(out, n);
    }
  } finally {
    stream.destroy();
  }
  if (n !== length) throw new FerryError('UNAVAILABLE', `${what}: short read, ${n} of ${length} bytes`);
  return out;
}
