/**
 * The snapshotter contract (snapshotter/testsuite.ts) against the Snapshotter class in process and
 * over the snapshots gRPC service on a unix socket (a grpc-js client built from the same .proto
 * files); and what only the socket has: owner-only, one server per socket.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { requirePrereqs } from '../../test/support/prereq.js';
import { createMetricsRegistry } from '../observe/index.js';
import { GrpcConnection, SnapshotsClient } from '../containerd/index.js';
import { serveSnapshots, type SnapshotServer } from './server.js';
import { Snapshotter } from './snapshotter.js';
import { snapshotterOps, snapshotterSuite, type SnapshotterUnderTest } from './testsuite.js';

before(() => requirePrereqs({ root: true, commands: ['mount', 'umount'] }));

async function workDir(): Promise<string> {
  return mkdtemp(join(tmpdir(), 'ferry-snap-'));
}

describe('snapshotter contract: in process', () => {
  snapshotterSuite('Snapshotter', async (): Promise<SnapshotterUnderTest> => {
    const dir = await workDir();
    const root = join(dir, 'root');
    let sn = await Snapshotter.open({ root });
    return {
      ops: snapshotterOps(sn),
      root,
      reopen: async () => {
        await sn.close();
        sn = await Snapshotter.open({ root });
        return snapshotterOps(sn);
      },
      cleanup: async () => {
        await sn.close();
        await rm(dir, { recursive: true, force: true });
      },
    };
  });
});

describe('snapshotter contract: over gRPC', () => {
  snapshotterSuite('gRPC', async (): Promise<SnapshotterUnderTest> => {
    const dir = await workDir();
    const root = join(dir, 'root');
    let sn: Snapshotter;
    let server: SnapshotServer;
    let conn: GrpcConnection;
    const start = async (): Promise<SnapshotsClient> => {
      sn = await Snapshotter.open({ root });
      server = await serveSnapshots({ snapshotter: sn, address: join(dir, 'snap.sock'), metrics: createMetricsRegistry() });
      conn = new GrpcConnection(server.address);
      return new SnapshotsClient(conn, 'ferry');
    };
    const stop = async (): Promise<void> => {
      conn.close();
      await server.close();
      await sn.close();
    };
    const ops = await start();
    return {
      ops,
      root,
      reopen: async () => {
        await stop();
        return start();
      },
      cleanup: async () => {
        await stop();
        await rm(dir, { recursive: true, force: true });
      },
    };
  });
});

describe('snapshots gRPC socket', () => {
  let dir: string;
  let sn: Snapshotter;
  let server: SnapshotServer;

  before(async () => {
    dir = await workDir();
    sn = await Snapshotter.open({ root: join(dir, 'root') });
    const old = process.umask(0); // the socket must be owner-only whatever the umask
    try {
      server = await serveSnapshots({ snapshotter: sn, address: join(dir, 'snap.sock'), metrics: createMetricsRegistry() });
    } finally {
      process.umask(old);
    }
  });
  after(async () => {
    await server?.close();
    await sn?.close();
    await rm(dir, { recursive: true, force: true });
  });

  test('the gRPC socket is owner-only (containerd, root, is its one client); a second server on it is refused', async () => {
    assert.equal((await stat(server.address)).mode & 0o777, 0o600);
    await assert.rejects(serveSnapshots({ snapshotter: sn, address: server.address }), /another process serves/);
  });
});
