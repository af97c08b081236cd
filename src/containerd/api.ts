/**
 * @module containerd/api
 * The containerd calls `ferry pull` makes, over containerd's own gRPC socket: leases, content
 * writes (streamed, with commit labels), content label updates, image records, and layer
 * application through the diff service. Namespace and lease ride as gRPC metadata.
 */
import { randomBytes } from 'node:crypto';
import type { Readable } from 'node:stream';
import type * as grpc from '@grpc/grpc-js';
import { FerryError } from '../core/index.js';
import { fromGrpcError } from './grpc-status.js';
import { toTimestamp, type PbDescriptor, type PbMount } from './proto.js';
import type { GrpcConnection } from './client.js';

export interface ContentDescriptor {
  mediaType: string;
  digest: string;
  size: number;
  annotations?: Record<string, string>;
}

function pbDesc(d: ContentDescriptor): PbDescriptor {
  return { media_type: d.mediaType, digest: d.digest, size: d.size, annotations: d.annotations ?? {} };
}

/** A pull's lease expires by itself this long after it was taken, should the puller die holding it. */
const LEASE_TTL_MS = 3600_000;
/** Bytes per content Write message. */
const WRITE_CHUNK = 1 << 20;

export class ContainerdApi {
  constructor(readonly conn: GrpcConnection) {}

  /** A lease that expires by itself after `ttlMs` if we die before deleting it. */
  async createLease(ttlMs = LEASE_TTL_MS): Promise<string> {
    const id = `ferry-pull-${Date.now()}-${randomBytes(4).toString('hex')}`;
    const expire = new Date(Date.now() + ttlMs).toISOString();
    const r = await this.conn.unary<{ lease: { id: string } }>('leases', 'Create', { id, labels: { 'containerd.io/gc.expire': expire } });
    return r.lease.id;
  }

  async deleteLease(id: string): Promise<void> {
    await this.conn.unary('leases', 'Delete', { id, sync: false });
  }

  /** Content info, or undefined when absent. */
  async contentInfo(digest: string): Promise<{ size: number; labels: Record<string, string> } | undefined> {
    try {
      const r = await this.conn.unary<{ info: { size: number; labels: Record<string, string> } }>('content', 'Info', { digest });
      return r.info;
    } catch (err) {
      if (FerryError.hasCode(err, 'NOT_FOUND')) return undefined;
      throw err;
    }
  }

  /** Sets labels on existing content (only the given keys change). */
  async setContentLabels(digest: string, labels: Record<string, string>): Promise<void> {
    await this.conn.unary('content', 'Update', {
      info: { digest, labels },
      update_mask: { paths: Object.keys(labels).map((k) => `labels.${k}`) },
    });
  }

  /**
   * Writes a blob into the content store, verified by containerd against size and digest;
   * `false` when it was already there (containerd answers ALREADY_EXISTS).
   */
  async writeContent(desc: ContentDescriptor, body: Buffer | Readable, labels: Record<string, string> = {}): Promise<boolean> {
    const ref = `ferry-${desc.digest}`;
    const client = this.conn.client('content');
    const call = (
      client.Write as (
        md: grpc.Metadata,
        o: grpc.CallOptions,
      ) => grpc.ClientDuplexStream<unknown, { offset: number; digest: string; action: string }>
    ).call(client, this.conn.metadata(), this.conn.options());
    const done = new Promise<{ digest: string; offset: number }>((resolve, reject) => {
      let last: { digest: string; offset: number } | undefined;
      call.on('data', (m: { digest: string; offset: number; action: string }) => {
        last = m;
      });
      call.on('error', (err: grpc.ServiceError) => reject(fromGrpcError(err, `content write ${desc.digest}`)));
      call.on('end', () => (last ? resolve(last) : reject(new FerryError('UNAVAILABLE', `content write ${desc.digest}: no response`))));
    });
    done.catch(() => {});
    const send = (msg: unknown): Promise<void> =>
      new Promise((resolve) => {
        if (call.write(msg)) resolve();
        else call.once('drain', () => resolve());
      });
    let offset = 0;
    try {
      // The first message opens the ref (STAT: containerd reports an ingest left by an earlier try).
      await send({ action: 'STAT', ref, total: desc.size, expected: desc.digest });
      const chunks: AsyncIterable<Buffer> | Buffer[] = Buffer.isBuffer(body) ? [body] : (body as AsyncIterable<Buffer>);
      for await (const chunk of chunks) {
        for (let i = 0; i < chunk.length; i += WRITE_CHUNK) {
          const part = chunk.subarray(i, Math.min(chunk.length, i + WRITE_CHUNK));
          await send({ action: 'WRITE', ref, offset, data: part, total: desc.size, expected: desc.digest });
          offset += part.length;
        }
      }
      await send({ action: 'COMMIT', ref, offset, total: desc.size, expected: desc.digest, labels });
      call.end();
      const res = await done;
      if (res.digest && res.digest !== desc.digest)
        throw new FerryError('DATA_LOSS', `containerd committed ${res.digest}, expected ${desc.digest}`);
      return true;
    } catch (err) {
      call.end();
      const e = FerryError.is(err)
        ? err
        : await done.then(
            () => err,
            (e2: unknown) => e2,
          );
      if (FerryError.hasCode(e, 'ALREADY_EXISTS')) {
        if (!Buffer.isBuffer(body)) (body as Readable).destroy();
        if (Object.keys(labels).length) await this.setContentLabels(desc.digest, labels);
        return false;
      }
      await this.conn.unary('content', 'Abort', { ref }).catch(() => {});
      throw e;
    }
  }

  /** Creates the image record, or points an existing one at the new target. */
  async putImage(name: string, target: ContentDescriptor, labels: Record<string, string> = {}): Promise<void> {
    const now = toTimestamp(Date.now());
    const image = { name, labels, target: pbDesc(target), created_at: now, updated_at: now };
    try {
      await this.conn.unary('images', 'Create', { image });
    } catch (err) {
      if (!FerryError.hasCode(err, 'ALREADY_EXISTS')) throw err;
      await this.conn.unary('images', 'Update', { image, update_mask: { paths: ['target', 'labels'] } });
    }
  }

  /** Extracts a layer blob from the content store onto mounts; returns the applied (uncompressed) digest. */
  async applyLayer(desc: ContentDescriptor, mounts: PbMount[]): Promise<string> {
    const r = await this.conn.unary<{ applied: PbDescriptor }>('diff', 'Apply', { diff: pbDesc(desc), mounts, payloads: {} });
    return r.applied.digest;
  }
}
