/**
 * @module storage/zran-backend
 * OCI-ref (zran) blobs: a backend in front of another that serves the blobs an OCI-ref bootstrap
 * names — blobs that were never written, whose chunks are stored raw at offsets the bootstrap
 * gives — out of the image's original gzip layers. A read of such a blob becomes, per run of
 * chunks, one ranged read of the gzip layer from the inflate context before the first chunk to
 * just past the last, inflated from that context's window; the chunk bytes land where the blob's
 * layout puts them (the device then verifies each chunk's digest as for any blob: a wrong index
 * fails there). Blobs without an index go to the inner backend unchanged.
 */
import { inflateAt, spanOf, type ZranBlob, type ZranChunk } from '../format/zran/index.js';
import type { Backend, ReadProgress } from './backend.js';

/** Chunks whose contexts are this many apart or more are read with separate requests. */
const MAX_CONTEXT_GAP = 1;

export class ZranBackend implements Backend {
  readonly kind: string;
  /** compressed bytes read from the gzip layers */
  layerBytes = 0;
  private readonly blobs = new Map<string, ZranBlob>();

  constructor(
    private readonly inner: Backend,
    blobs: readonly ZranBlob[],
  ) {
    this.kind = `zran+${inner.kind}`;
    for (const b of blobs) this.blobs.set(b.blobId, b);
  }

  fallbacks(): number {
    return this.inner.fallbacks();
  }

  close(): Promise<void> {
    return this.inner.close();
  }

  read(blobId: string, offset: number, length: number, signal: AbortSignal, progress?: ReadProgress): Promise<Buffer> {
    const z = this.blobs.get(blobId);
    if (!z) return this.inner.read(blobId, offset, length, signal, progress);
    return this.readZran(z, offset, length, signal);
  }

  private async readZran(z: ZranBlob, offset: number, length: number, signal: AbortSignal): Promise<Buffer> {
    const out = Buffer.alloc(length);
    const runs = runsOf(overlappingChunks(z.chunks, offset, offset + length));
    await Promise.all(runs.map((run) => this.readRun(z, run, out, offset, signal)));
    return out;
  }

  private async readRun(z: ZranBlob, run: ZranChunk[], out: Buffer, offset: number, signal: AbortSignal): Promise<void> {
    const layerStart = (c: ZranChunk): number => z.contexts[c.context]!.outOffset + c.contextOffset;
    const first = run[0]!;
    const end = Math.max(...run.map((c) => layerStart(c) + c.size));
    const span = spanOf(z, first.context, end);
    const raw = await this.inner.read(z.layerDigest.replace(/^sha256:/, ''), span.inOffset, span.inLength, signal);
    this.layerBytes += raw.length;
    const base = span.context.outOffset;
    const plain = inflateAt(span.context, raw, 0, end - base);
    for (const c of run) {
      const from = Math.max(c.offset, offset);
      const to = Math.min(c.offset + c.size, offset + out.length);
      const src = layerStart(c) + (from - c.offset) - base;
      plain.copy(out, from - offset, src, src + (to - from));
    }
  }
}

/** The chunks of a blob (sorted by offset) that overlap [start, end). */
function overlappingChunks(chunks: readonly ZranChunk[], start: number, end: number): ZranChunk[] {
  let lo = 0;
  let hi = chunks.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    const c = chunks[mid]!;
    if (c.offset + c.size <= start) lo = mid + 1;
    else hi = mid;
  }
  const out: ZranChunk[] = [];
  for (let i = lo; i < chunks.length && chunks[i]!.offset < end; i++) out.push(chunks[i]!);
  return out;
}

/** Chunks grouped into runs read with one request: in layer order, contexts near each other. */
function runsOf(chunks: ZranChunk[]): ZranChunk[][] {
  const sorted = [...chunks].sort((a, b) => a.context - b.context || a.contextOffset - b.contextOffset);
  const runs: ZranChunk[][] = [];
  let cur: ZranChunk[] = [];
  let lastCtx = -2;
  for (const c of sorted) {
    if (cur.length && c.context - lastCtx > MAX_CONTEXT_GAP) {
      runs.push(cur);
      cur = [];
    }
    cur.push(c);
    lastCtx = Math.max(lastCtx, c.context);
  }
  if (cur.length) runs.push(cur);
  return runs;
}
