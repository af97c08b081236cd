/**
 * @module storage/arrivals
 * The chunks of one ranged request, each handled (decoded, verified, cached — the device's
 * `handle`) as soon as its own bytes have arrived rather than when the whole request has: a reader
 * waiting for the first chunk of a 1 MiB request does not wait for the rest. One promise per chunk.
 */
import type { ChunkPlace } from './fetch-plan.js';

interface Deferred {
  promise: Promise<void>;
  resolve(): void;
  reject(e: unknown): void;
}

function deferred(): Deferred {
  let resolve!: () => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<void>((a, b) => {
    resolve = a;
    reject = b;
  });
  promise.catch(() => undefined);
  return { promise, resolve, reject };
}

export class ChunkArrivals<C extends ChunkPlace> {
  private readonly ds: Deferred[];
  private readonly start: number;
  private next = 0;

  /** `group`: the request's chunks, sorted by compressed offset, not overlapping. */
  constructor(
    private readonly group: readonly C[],
    private readonly handle: (c: C, raw: Buffer) => Promise<void>,
  ) {
    this.ds = group.map(() => deferred());
    this.start = group[0]!.compressedOffset;
  }

  /** One promise per chunk of the group, in its order. */
  get promises(): Promise<void>[] {
    return this.ds.map((d) => d.promise);
  }

  /** Hands over every chunk whose bytes all lie in the first `filled` bytes of `buf` (the request's bytes from its start). */
  arrived(buf: Buffer, filled: number): void {
    while (this.next < this.group.length) {
      const c = this.group[this.next]!;
      const at = c.compressedOffset - this.start;
      if (at + c.compressedSize > filled) break;
      const d = this.ds[this.next++]!;
      this.handle(c, buf.subarray(at, at + c.compressedSize)).then(d.resolve, d.reject);
    }
  }

  /** Fails every chunk not handed over yet (the request failed). */
  fail(err: unknown): void {
    while (this.next < this.group.length) this.ds[this.next++]!.reject(err);
  }
}
