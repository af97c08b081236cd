/**
 * @module convert/estargz/layer
 * One source layer (gzip, zstd or plain tar) → one eStargz layer. The source is streamed once: its
 * uncompressed tar is hashed (it must equal the config's diff_id) and parsed, file bodies spooled to
 * a work file; then the entries are written in eStargz order (prioritized files and their
 * prerequisites, the landmark, the rest) into a second work file, pushed as the new layer. The
 * layer is never held whole in memory; the caller removes the work dir.
 */
import { createReadStream } from 'node:fs';
import { open, type FileHandle } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import { join } from 'node:path';
import { DigestMismatchError, FerryError } from '../../core/index.js';
import { MediaType, type Descriptor } from '../../oci/index.js';
import { parseLayer, type TarEntry } from '../../format/tar/index.js';
import {
  EstargzAnnotation,
  EstargzWriter,
  isReservedEstargzName,
  landmarkEntry,
  orderEntries,
  type EstargzResult,
} from '../../format/estargz/index.js';
import { NydusAnnotation } from '../../oci/index.js';
import type { RegistryClient, ImageReference } from '../../remote/index.js';
import { decompressed, Meter } from '../streams.js';

export interface EstargzLayerOptions {
  sc: RegistryClient;
  tc: RegistryClient;
  src: ImageReference;
  dst: ImageReference;
  work: string;
  /** prioritized files (paths in the image), prefetched first by the snapshotter */
  prioritized: readonly string[];
  chunkSize?: number;
  level?: number;
  signal?: AbortSignal;
}

export interface EstargzLayer {
  desc: Descriptor;
  diffId: string;
  /** bytes of the source's uncompressed tar */
  tarBytes: number;
  /** prioritized paths this layer does not hold */
  missed: string[];
  result: EstargzResult;
}

interface Spooled {
  entry: TarEntry;
  /** where its body starts in the bodies file */
  at: number;
}

/** Streams the source layer: checks the diff_id, keeps entries, spools bodies to `bodies`. */
async function spool(
  o: EstargzLayerOptions,
  layer: Descriptor,
  diffId: string | undefined,
  bodies: FileHandle,
): Promise<{ entries: Spooled[]; tarBytes: number }> {
  const raw = await o.sc.getBlob(o.src.registry, o.src.repository, layer.digest, o.signal ? { signal: o.signal } : {});
  const tar = decompressed(raw);
  const meter = new Meter({ hash: diffId !== undefined });
  raw.on('error', (e) => tar.destroy(e));
  tar.on('error', (e) => meter.destroy(e));
  tar.pipe(meter);
  const entries: Spooled[] = [];
  let pending: Buffer[] = [];
  let at = 0;
  let flushed = 0;
  const flush = async (): Promise<void> => {
    const out = pending;
    pending = [];
    for (const b of out) {
      await bodies.write(b, 0, b.length, flushed);
      flushed += b.length;
    }
  };
  try {
    await parseLayer(
      meter,
      {
        entry: (entry) => entries.push({ entry, at }),
        data: (piece) => {
          pending.push(piece);
          at += piece.length;
        },
        end: () => {},
      },
      { afterPiece: () => (pending.length ? flush() : undefined) },
    );
    await flush();
  } finally {
    for (const s of [raw, tar, meter]) s.destroy();
  }
  if (diffId !== undefined && meter.digest() !== diffId)
    throw new DigestMismatchError(diffId, meter.digest(), `uncompressed layer ${layer.digest} (config diff_id)`);
  return { entries, tarBytes: meter.bytes };
}

/** Converts one layer and pushes it to the target repository. */
export async function convertLayerToEstargz(o: EstargzLayerOptions, layer: Descriptor, diffId: string | undefined): Promise<EstargzLayer> {
  const bodies = await open(join(o.work, 'bodies'), 'w+');
  const outPath = join(o.work, 'layer.estargz');
  const out = await open(outPath, 'w');
  try {
    const { entries: all, tarBytes } = await spool(o, layer, diffId, bodies);
    const entries = all.filter((s) => !isReservedEstargzName(s.entry.path));
    const ord = orderEntries(
      entries.map((s) => (s.entry.type === 'hardlink' ? { path: s.entry.path, hardlink: s.entry.linkname ?? '' } : { path: s.entry.path })),
      o.prioritized,
    );
    const hash = createHash('sha256');
    let pos = 0;
    const w = new EstargzWriter(
      async (b) => {
        hash.update(b);
        await out.write(b, 0, b.length, pos);
        pos += b.length;
      },
      { ...(o.chunkSize ? { chunkSize: o.chunkSize } : {}), ...(o.level !== undefined ? { level: o.level } : {}) },
    );
    const landmark = landmarkEntry(ord.prioritized > 0);
    const writeLandmark = () => w.append(landmark.entry, async (off, len) => landmark.body.subarray(off, off + len));
    if (ord.prioritized === 0) await writeLandmark();
    for (const [k, i] of ord.order.entries()) {
      if (o.signal?.aborted) throw new FerryError('CANCELED', 'conversion canceled');
      const s = entries[i]!;
      await w.append(s.entry, async (off, len) => {
        const buf = Buffer.alloc(len);
        const { bytesRead } = await bodies.read(buf, 0, len, s.at + off);
        if (bytesRead !== len) throw new FerryError('INTERNAL', `spooled body of ${s.entry.path}: short read`);
        return buf;
      });
      if (k + 1 === ord.prioritized) await writeLandmark();
    }
    const result = await w.finish();
    await out.close();
    const digest = `sha256:${hash.digest('hex')}`;
    await o.tc.pushBlob(o.dst.registry, o.dst.repository, digest, result.size, () => createReadStream(outPath));
    const desc: Descriptor = {
      mediaType: MediaType.OCI_LAYER_GZIP,
      digest,
      size: result.size,
      annotations: {
        [EstargzAnnotation.TOC_DIGEST]: result.tocDigest,
        [EstargzAnnotation.UNCOMPRESSED_SIZE]: String(result.uncompressedSize),
        [NydusAnnotation.UNCOMPRESSED]: result.diffId,
      },
    };
    return { desc, diffId: result.diffId, tarBytes, missed: ord.missed, result };
  } finally {
    await bodies.close().catch(() => undefined);
    await out.close().catch(() => undefined);
  }
}
