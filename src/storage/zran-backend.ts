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
import { FerryError } from '../core/index.js';
import { inflateFrom, spanOf, type ZranBlob, type ZranChunk } from '../format/zran/index.js';
import type { Backend, ReadProgress } from './backend.js';

/** Inflated spans kept for the next reads (sequential readers, read-ahead): at most this many bytes. */
const SPAN_CACHE_BYTES = 32 << 20;

interface Span {
  blob: ZranBlob;
  /** layer output [base, end) this span holds once inflated */
  base: number;
  end: number;
  size: number;
  plain: Promise<Buffer>;
}

/** Chunks whose contexts are this many apart or more are read with separate requests. */
const MAX_CONTEXT_GAP = 1;

export class ZranBackend implements Backend {
  readonly kind: string;
  /** compressed bytes read from the gzip layers */
  layerBytes = 0;
  private readonly blobs = new Map<string, ZranBlob>();
  /** inflated spans, least recently used first */
  private readonly spans: Span[] = [];

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
    const end = Math.max(...run.map((c) => layerStart(c) + c.size));
    const { base, plain } = await this.inflated(z, run[0]!.context, end, signal);
    if (base + plain.length < end)
      throw new FerryError('DATA_LOSS', `zran: layer ${z.layerDigest} inflates to ${base + plain.length}, need ${end}`);
    for (const c of run) {
      const from = Math.max(c.offset, offset);
      const to = Math.min(c.offset + c.size, offset + out.length);
      const src = layerStart(c) + (from - c.offset) - base;
      plain.copy(out, from - offset, src, src + (to - from));
    }
  }

  /**
   * The layer's output from context `first` through `end` at least: from the span cache (a span
   * inflated for an earlier read, or in flight) or one ranged read, inflated whole — its contexts
   * to the end, so the next chunks of a sequential reader are there already.
   */
  private async inflated(z: ZranBlob, first: number, end: number, signal: AbortSignal): Promise<{ base: number; plain: Buffer }> {
    const at = z.contexts[first]!.outOffset;
    for (const s of this.spans) {
      if (s.blob === z && s.base <= at && s.end >= end) {
        this.spans.splice(this.spans.indexOf(s), 1);
        this.spans.push(s); // most recently used last
        return { base: s.base, plain: await s.plain };
      }
    }
    const span = spanOf(z, first, end);
    const base = span.context.outOffset;
    const next = z.contexts.find((c) => c.outOffset >= end);
    const entry: Span = {
      blob: z,
      base,
      end: next ? next.outOffset : z.uncompressedSize,
      size: (next ? next.outOffset : z.uncompressedSize) - base,
      plain: this.inner.read(z.layerDigest.replace(/^sha256:/, ''), span.inOffset, span.inLength, signal).then((raw) => {
        this.layerBytes += raw.length;
        return inflateFrom(span.context, raw);
      }),
    };
    this.spans.push(entry);
    entry.plain.catch(() => {
      const i = this.spans.indexOf(entry);
      if (i >= 0) this.spans.splice(i, 1);
    });
    let bytes = this.spans.reduce((n, s) => n + s.size, 0);
    while (bytes > SPAN_CACHE_BYTES && this.spans.length > 1) bytes -= this.spans.shift()!.size;
    return { base, plain: await entry.plain };
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
