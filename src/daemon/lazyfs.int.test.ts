/**
 * The LazyFs contract (daemon/testsuite.ts) against both implementations the snapshotter mounts
 * through: the in-process Daemon, and DaemonClient talking to a daemon's API socket.
 */
import { before, describe } from 'node:test';
import { join } from 'node:path';
import { requirePrereqs } from '../../test/support/prereq.js';
import { silentLogger } from '../observe/index.js';
import { Daemon, DaemonClient, startApi } from './index.js';
import { lazyFsSuite } from './testsuite.js';

before(() => requirePrereqs({ root: true, devices: ['/dev/fuse'], commands: ['mount', 'umount'] }));

describe('LazyFs: in-process Daemon', () => {
  lazyFsSuite('Daemon', async (dataDir) => {
    const daemon = new Daemon({ log: silentLogger(), dataDir, prewarm: false });
    return { fs: daemon, cleanup: () => daemon.close() };
  });
});

describe('LazyFs: DaemonClient over the API socket', () => {
  lazyFsSuite('DaemonClient', async (dataDir) => {
    const daemon = new Daemon({ log: silentLogger(), dataDir, prewarm: false });
    const sock = join(dataDir, 'api.sock');
    const api = await startApi(daemon, sock, silentLogger());
    const client = new DaemonClient(sock);
    return {
      fs: client,
      cleanup: async () => {
        await client.close();
        await api.close();
        await daemon.close();
      },
    };
  });
});
