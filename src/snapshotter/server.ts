/**
 * @module snapshotter/server
 * Serves a `Snapshotter` as containerd's `containerd.services.snapshots.v1.Snapshots` gRPC
 * service over a unix socket (@grpc/grpc-js), with Prometheus metrics per RPC. Errors leave
 * through the one FerryError → gRPC status table.
 */
import { rm } from 'node:fs/promises';
import { bindPrivate } from '../httpx/index.js';

import * as grpc from '@grpc/grpc-js';
import { FerryError } from '../core/index.js';
import { Counter, Histogram, silentLogger, type Logger, type MetricsRegistry } from '../observe/index.js';
import { serviceConstructor, toGrpcError, toTimestamp, type Mount, type PbInfo, type SnapshotInfo } from '../containerd/index.js';
import type { Snapshotter } from './snapshotter.js';

const LIST_BATCH = 100;

function pbInfo(i: SnapshotInfo): PbInfo {
  return {
    name: i.name,
    parent: i.parent,
    kind: i.kind,
    created_at: toTimestamp(i.created),
    updated_at: toTimestamp(i.updated),
    labels: i.labels,
  };
}

function pbMounts(m: Mount[]): { mounts: Mount[] } {
  return { mounts: m };
}

export interface SnapshotServerOptions {
  snapshotter: Snapshotter;
  /** Unix socket path. */
  address: string;
  log?: Logger;
  metrics?: MetricsRegistry;
}

export interface SnapshotServer {
  address: string;
  close(): Promise<void>;
}

/** Starts the gRPC server on `address` (a stale socket file is replaced). */
export async function serveSnapshots(opts: SnapshotServerOptions): Promise<SnapshotServer> {
  const log = opts.log ?? silentLogger();
  const sn = opts.snapshotter;
  const registers = opts.metrics ? [opts.metrics] : [];
  const calls = new Counter({
    name: 'ferry_snapshotter_rpc_total',
    help: 'Snapshot RPCs by method and gRPC status code',
    labelNames: ['method', 'code'],
    registers,
  });
  const latency = new Histogram({
    name: 'ferry_snapshotter_rpc_seconds',
    help: 'Snapshot RPC latency',
    labelNames: ['method'],
    buckets: [0.001, 0.005, 0.02, 0.1, 0.5, 2, 10, 60],
    registers,
  });

  type Unary<Req, Res> = (req: Req) => Promise<Res> | Res;
  function unary<Req, Res>(method: string, fn: Unary<Req, Res>): grpc.handleUnaryCall<Req, Res> {
    return (call, cb) => {
      const t0 = process.hrtime.bigint();
      Promise.resolve()
        .then(() => fn(call.request))
        .then(
          (res) => {
            calls.inc({ method, code: 'OK' });
            cb(null, res);
          },
          (err: unknown) => {
            const e = toGrpcError(err);
            calls.inc({ method, code: grpc.status[e.code!] });
            const expected = FerryError.hasCode(err, 'NOT_FOUND') || FerryError.hasCode(err, 'ALREADY_EXISTS');
            log[expected ? 'debug' : 'warn']({ method, err, key: (call.request as { key?: string }).key }, 'rpc failed');
            cb(e, null);
          },
        )
        .finally(() => {
          const s = Number(process.hrtime.bigint() - t0) / 1e9;
          latency.observe({ method }, s);
          log.debug({ method, key: (call.request as { key?: string }).key, ms: Math.round(s * 1e4) / 10 }, 'rpc');
        });
    };
  }

  interface KeyReq {
    key: string;
  }
  interface PrepReq {
    key: string;
    parent: string;
    labels: Record<string, string>;
  }
  const impl: grpc.UntypedServiceImplementation = {
    Prepare: unary<PrepReq, unknown>('Prepare', async (r) => pbMounts(await sn.prepare(r.key, r.parent, r.labels ?? {}))),
    View: unary<PrepReq, unknown>('View', async (r) => pbMounts(await sn.view(r.key, r.parent, r.labels ?? {}))),
    Mounts: unary<KeyReq, unknown>('Mounts', async (r) => pbMounts(await sn.mounts(r.key))),
    Commit: unary<{ name: string; key: string; labels: Record<string, string> }, unknown>('Commit', async (r) => {
      await sn.commit(r.name, r.key, r.labels ?? {});
      return {};
    }),
    Remove: unary<KeyReq, unknown>('Remove', async (r) => {
      await sn.remove(r.key);
      return {};
    }),
    Stat: unary<KeyReq, unknown>('Stat', (r) => ({ info: pbInfo(sn.stat(r.key)) })),
    Update: unary<{ info: PbInfo | null; update_mask: { paths: string[] } | null }, unknown>('Update', (r) => {
      if (!r.info?.name) throw new FerryError('INVALID_ARGUMENT', 'update: info.name is required');
      return { info: pbInfo(sn.update({ name: r.info.name, labels: r.info.labels ?? {} }, r.update_mask?.paths ?? [])) };
    }),
    List: (call: grpc.ServerWritableStream<{ filters: string[] }, unknown>) => {
      const t0 = process.hrtime.bigint();
      try {
        const infos = sn.list(call.request.filters ?? []);
        for (let i = 0; i < infos.length; i += LIST_BATCH) {
          call.write({ info: infos.slice(i, i + LIST_BATCH).map(pbInfo) });
        }
        calls.inc({ method: 'List', code: 'OK' });
        call.end();
      } catch (err) {
        const e = toGrpcError(err);
        calls.inc({ method: 'List', code: grpc.status[e.code!] });
        log.warn({ method: 'List', err }, 'rpc failed');
        call.emit('error', e);
      } finally {
        latency.observe({ method: 'List' }, Number(process.hrtime.bigint() - t0) / 1e9);
      }
    },
    Usage: unary<KeyReq, unknown>('Usage', async (r) => sn.usage(r.key)),
    Cleanup: unary<unknown, unknown>('Cleanup', async () => {
      const res = await sn.cleanup();
      log.info(res, 'cleanup');
      return {};
    }),
  };

  const server = new grpc.Server({
    'grpc.max_receive_message_length': 16 * 1024 * 1024,
    'grpc.max_send_message_length': 16 * 1024 * 1024,
  });
  server.addService(serviceConstructor('snapshots').service, impl);
  // containerd (root) is the only client: owner-only, a live socket of another snapshotter refused.
  await bindPrivate(
    opts.address,
    (path) =>
      new Promise<void>((resolve, reject) => {
        server.bindAsync(`unix://${path}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve()));
      }),
    '--address',
  );
  log.info({ address: opts.address }, 'snapshots gRPC service listening');
  return {
    address: opts.address,
    close: () =>
      new Promise<void>((resolve) => {
        const timer = setTimeout(() => server.forceShutdown(), 5000);
        server.tryShutdown(() => {
          clearTimeout(timer);
          rm(opts.address, { force: true }).finally(resolve);
        });
      }),
  };
}
