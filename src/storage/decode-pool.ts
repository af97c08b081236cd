/**
 * @module storage/decode-pool
 * A small pool of worker threads that decompress and verify chunks, so that a cold read of a large
 * file (zstd + blake3 over megabytes) neither blocks the FUSE request loop on the main thread nor
 * leaves the second core idle.
 */
import { Worker } from 'node:worker_threads';
import { FerryError, type ErrorCode } from '../core/index.js';
import type { ChunkCodec, EncodedChunk } from '../format/compress/index.js';
import type { DecodeJob } from './decode-worker.js';

interface Pending {
  resolve(b: Buffer): void;
  reject(e: unknown): void;
}

export class DecodePool {
  private readonly workers: Worker[] = [];
  private readonly load: number[] = [];
  private readonly pending = new Map<number, Pending>();
  private readonly owner = new Map<number, number>();
  private nextId = 1;

  constructor(threads: number) {
    for (let i = 0; i < threads; i++) {
      const w = new Worker(new URL('./decode-worker.js', import.meta.url));
      w.unref();
      w.on('message', (m: { id: number; ok: boolean; data?: Uint8Array; code?: ErrorCode; message?: string }) => {
        const p = this.pending.get(m.id);
        this.pending.delete(m.id);
        const wi = this.owner.get(m.id);
        this.owner.delete(m.id);
        if (wi !== undefined) this.load[wi]!--;
        if (!p) return;
        if (m.ok && m.data) p.resolve(Buffer.from(m.data.buffer, m.data.byteOffset, m.data.byteLength));
        else p.reject(new FerryError(m.code ?? 'INTERNAL', m.message ?? 'chunk decode failed'));
      });
      w.on('error', (err) => {
        for (const [id, wi] of this.owner) {
          if (wi !== i) continue;
          this.pending.get(id)?.reject(err);
          this.pending.delete(id);
          this.owner.delete(id);
        }
      });
      this.workers.push(w);
      this.load.push(0);
    }
  }

  /** Decodes one chunk in the least loaded thread (`raw` is copied, the caller's buffer stays its own). */
  decode(blob: ChunkCodec & { blobId: string }, c: EncodedChunk, raw: Buffer): Promise<Buffer> {
    let wi = 0;
    for (let i = 1; i < this.load.length; i++) if (this.load[i]! < this.load[wi]!) wi = i;
    const id = this.nextId++;
    const copy = new Uint8Array(raw.length);
    copy.set(raw);
    return new Promise<Buffer>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.owner.set(id, wi);
      this.load[wi]!++;
      const job: DecodeJob = {
        id,
        blob: { compressor: blob.compressor, digester: blob.digester, blobId: blob.blobId },
        chunk: {
          chunkIndex: c.chunkIndex,
          compressedSize: c.compressedSize,
          uncompressedSize: c.uncompressedSize,
          compressed: c.compressed,
          digest: new Uint8Array(c.digest),
        },
        raw: copy,
      };
      this.workers[wi]!.postMessage(job, [copy.buffer]);
    });
  }

  async close(): Promise<void> {
    for (const p of this.pending.values()) p.reject(new FerryError('CANCELED', 'decode pool closed'));
    this.pending.clear();
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}
