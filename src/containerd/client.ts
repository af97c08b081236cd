/**
 * @module containerd/client
 * Promise clients for containerd's gRPC services over a unix socket: the snapshots service
 * (ours, or containerd's own which forwards to a named snapshotter), and the content, images,
 * diff and leases services `ferry pull` uses. containerd's namespace and lease travel as gRPC
 * metadata (`containerd-namespace`, `containerd-lease`). Errors come back as FerryErrors through
 * the reverse of the status table.
 */
import * as grpc from '@grpc/grpc-js';
import { fromGrpcError } from './grpc-status.js';
import { fromTimestamp, serviceConstructor, SERVICE_NAMES, type PbDescriptor, type PbInfo, type PbMount } from './proto.js';
import type { Kind, Mount, SnapshotInfo } from './types.js';

export interface CallContext {
  /** containerd namespace (metadata `containerd-namespace`). */
  namespace?: string;
  /** containerd lease id (metadata `containerd-lease`). */
  lease?: string;
  /** Per-call deadline in ms (default 5 min). */
  timeoutMs?: number;
}

type AnyClient = grpc.Client & Record<string, (...args: unknown[]) => unknown>;

/** Largest gRPC message either way (containerd's own limit is 16 MiB). */
const MAX_MESSAGE_BYTES = 16 * 1024 * 1024;
/** Deadline of a call when the context sets none. */
const DEFAULT_TIMEOUT_MS = 300_000;

/** One connection to a unix socket shared by all service clients made from it. */
export class GrpcConnection {
  readonly address: string;
  private readonly clients: Map<string, AnyClient>;
  private readonly ctx: CallContext;

  constructor(address: string, ctx: CallContext = {}, shared?: Map<string, AnyClient>) {
    this.address = address;
    this.ctx = ctx;
    this.clients = shared ?? new Map();
  }

  /** A connection over the same channels with some context fields replaced. */
  with(ctx: CallContext): GrpcConnection {
    return new GrpcConnection(this.address, { ...this.ctx, ...ctx }, this.clients);
  }

  client(name: keyof typeof SERVICE_NAMES): AnyClient {
    let c = this.clients.get(name);
    if (!c) {
      const Ctor = serviceConstructor(name);
      c = new Ctor(`unix://${this.address}`, grpc.credentials.createInsecure(), {
        'grpc.max_receive_message_length': MAX_MESSAGE_BYTES,
        'grpc.max_send_message_length': MAX_MESSAGE_BYTES,
        // containerd's server answers pings sparingly; no keepalive needed on a unix socket
      }) as unknown as AnyClient;
      this.clients.set(name, c);
    }
    return c;
  }

  metadata(): grpc.Metadata {
    const md = new grpc.Metadata();
    if (this.ctx.namespace) md.set('containerd-namespace', this.ctx.namespace);
    if (this.ctx.lease) md.set('containerd-lease', this.ctx.lease);
    return md;
  }

  options(): grpc.CallOptions {
    return { deadline: Date.now() + (this.ctx.timeoutMs ?? DEFAULT_TIMEOUT_MS) };
  }

  unary<Res>(service: keyof typeof SERVICE_NAMES, method: string, req: unknown): Promise<Res> {
    const c = this.client(service);
    return new Promise<Res>((resolve, reject) => {
      const fn = c[method];
      if (typeof fn !== 'function') {
        reject(new Error(`no method ${method} on ${SERVICE_NAMES[service]}`));
        return;
      }
      fn.call(c, req, this.metadata(), this.options(), (err: grpc.ServiceError | null, res: Res) => {
        if (err) reject(fromGrpcError(err, `${SERVICE_NAMES[service]}/${method}`));
        else resolve(res);
      });
    });
  }

  serverStream<Res>(service: keyof typeof SERVICE_NAMES, method: string, req: unknown): Promise<Res[]> {
    const c = this.client(service);
    return new Promise<Res[]>((resolve, reject) => {
      const call = (c[method] as (...a: unknown[]) => grpc.ClientReadableStream<Res>).call(c, req, this.metadata(), this.options());
      const out: Res[] = [];
      call.on('data', (m: Res) => out.push(m));
      call.on('error', (err: grpc.ServiceError) => reject(fromGrpcError(err, `${SERVICE_NAMES[service]}/${method}`)));
      call.on('end', () => resolve(out));
    });
  }

  close(): void {
    for (const c of this.clients.values()) c.close();
    this.clients.clear();
  }
}

function info(i: PbInfo): SnapshotInfo {
  return {
    name: i.name,
    parent: i.parent,
    kind: i.kind as Kind,
    labels: i.labels ?? {},
    created: fromTimestamp(i.created_at),
    updated: fromTimestamp(i.updated_at),
  };
}

/** The snapshots service: Ferry's own socket, or containerd's with `snapshotter` naming the plugin. */
export class SnapshotsClient {
  constructor(
    readonly conn: GrpcConnection,
    readonly snapshotter = '',
  ) {}

  async prepare(key: string, parent = '', labels: Record<string, string> = {}): Promise<Mount[]> {
    const r = await this.conn.unary<{ mounts: PbMount[] }>('snapshots', 'Prepare', { snapshotter: this.snapshotter, key, parent, labels });
    return r.mounts;
  }
  async view(key: string, parent = '', labels: Record<string, string> = {}): Promise<Mount[]> {
    const r = await this.conn.unary<{ mounts: PbMount[] }>('snapshots', 'View', { snapshotter: this.snapshotter, key, parent, labels });
    return r.mounts;
  }
  async mounts(key: string): Promise<Mount[]> {
    const r = await this.conn.unary<{ mounts: PbMount[] }>('snapshots', 'Mounts', { snapshotter: this.snapshotter, key });
    return r.mounts;
  }
  async commit(name: string, key: string, labels: Record<string, string> = {}): Promise<void> {
    await this.conn.unary('snapshots', 'Commit', { snapshotter: this.snapshotter, name, key, labels });
  }
  async remove(key: string): Promise<void> {
    await this.conn.unary('snapshots', 'Remove', { snapshotter: this.snapshotter, key });
  }
  async stat(key: string): Promise<SnapshotInfo> {
    const r = await this.conn.unary<{ info: PbInfo }>('snapshots', 'Stat', { snapshotter: this.snapshotter, key });
    return info(r.info);
  }
  async update(name: string, labels: Record<string, string>, paths: string[] = []): Promise<SnapshotInfo> {
    const r = await this.conn.unary<{ info: PbInfo }>('snapshots', 'Update', {
      snapshotter: this.snapshotter,
      info: { name, labels },
      update_mask: { paths },
    });
    return info(r.info);
  }
  async list(filters: string[] = []): Promise<SnapshotInfo[]> {
    const rs = await this.conn.serverStream<{ info: PbInfo[] }>('snapshots', 'List', { snapshotter: this.snapshotter, filters });
    return rs.flatMap((r) => r.info.map(info));
  }
  async usage(key: string): Promise<{ size: number; inodes: number }> {
    return this.conn.unary('snapshots', 'Usage', { snapshotter: this.snapshotter, key });
  }
  async cleanup(): Promise<void> {
    await this.conn.unary('snapshots', 'Cleanup', { snapshotter: this.snapshotter });
  }
}

export type { PbDescriptor, PbMount };
