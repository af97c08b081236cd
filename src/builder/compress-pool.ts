/**
 * @module builder/compress-pool
 * A small pool of worker threads compressing chunks off the main thread, so tar parsing, hashing
 * and compression of a layer run on different cores. Workers are created on first use, unref'd
 * (they never keep the process alive) and shared by every blob writer of the process.
 */
import { Worker } from 'node:worker_threads';
import { availableParallelism } from 'node:os';
import { FerryError } from '../core/index.js';
import type { CompressorName } from '../format/compress/index.js';

interface Pending {
  resolve: (b: Buffer | null) => void;
  reject: (e: Error) => void;
}

class CompressPool {
  private readonly workers: { w: Worker; busy: number }[] = [];
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;

  constructor(private readonly size: number) {}

  private spawn(): { w: Worker; busy: number } {
    const w = new Worker(new URL('./compress-worker.js', import.meta.url));
    w.unref();
    const slot = { w, busy: 0 };
    w.on('message', (m: { id: number; out?: Uint8Array | null; error?: string }) => {
      const p = this.pending.get(m.id);
      if (!p) return;
      this.pending.delete(m.id);
      slot.busy--;
      if (slot.busy === 0) w.unref();
      if (m.error !== undefined) p.reject(new FerryError('INTERNAL', `compression worker: ${m.error}`));
      else p.resolve(m.out ? Buffer.from(m.out.buffer, m.out.byteOffset, m.out.byteLength) : null);
    });
    w.on('error', (err) => {
      // fail everything in flight on this pool; the next call spawns fresh workers
      for (const [, p] of this.pending) p.reject(new FerryError('INTERNAL', `compression worker failed: ${err.message}`, { cause: err }));
      this.pending.clear();
      const i = this.workers.indexOf(slot);
      if (i >= 0) this.workers.splice(i, 1);
    });
    this.workers.push(slot);
    return slot;
  }

  /** Compresses a copy of `data` in a worker. */
  compress(name: CompressorName, data: Buffer, level?: number): Promise<Buffer | null> {
    let slot = this.workers.reduce<{ w: Worker; busy: number } | undefined>((a, s) => (!a || s.busy < a.busy ? s : a), undefined);
    if (!slot || (slot.busy > 0 && this.workers.length < this.size)) slot = this.spawn();
    const id = this.nextId++;
    const copy = new Uint8Array(data.length); // exact-size copy: never clone a larger parent buffer
    copy.set(data);
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      if (slot!.busy++ === 0) slot!.w.ref();
      slot!.w.postMessage({ id, name, level, buf: copy }, [copy.buffer]);
    });
  }
}

let pool: CompressPool | undefined;

/**
 * Default number of compression threads: 0 (compress on the calling thread). On a busy 2-core
 * machine the copies and messages of offloading cost more than they bring; pass `threads` (or
 * `--threads`) to use idle cores. `suggestedCompressThreads()` is one per core beyond the first.
 */
export function defaultCompressThreads(): number {
  return 0;
}

export function suggestedCompressThreads(): number {
  return Math.max(0, Math.min(4, availableParallelism() - 1));
}

export function compressPool(threads: number): CompressPool {
  pool ??= new CompressPool(Math.max(1, threads));
  return pool;
}
