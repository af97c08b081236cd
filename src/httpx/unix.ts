/**
 * @module httpx/unix
 * Owner-only unix sockets for the node-local APIs (daemon, snapshotter gRPC, pull API, metrics).
 * Whoever can connect to such a socket can mount anything anywhere, so the socket is the access
 * control: it is created mode 0600 (whatever the umask) without a moment at a looser mode — bound in
 * a private 0700 directory beside its path, restricted, then renamed into place. A stale socket file
 * (left by a killed process) is replaced; a socket another process still serves, or a path that is
 * not a socket, is refused.
 */
import { connect } from 'node:net';
import type { Server } from 'node:net';
import { chmod, lstat, mkdir, mkdtemp, rename, rm } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { FerryError } from '../core/index.js';

/** Longest unix socket path (sun_path is 108 bytes with its NUL). */
const SUN_PATH_MAX = 107;

/**
 * Refuses `sockPath` when it is not free for a new socket: another process answers on it
 * (FAILED_PRECONDITION), or it is something else than a socket. Nothing there, or a socket nobody
 * answers on, is free. `what` names the option that chose the path, for the error message.
 */
export async function assertSocketFree(sockPath: string, what = 'the socket path'): Promise<void> {
  const st = await lstat(sockPath).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return undefined;
    throw err;
  });
  if (!st) return;
  if (!st.isSocket())
    throw new FerryError('FAILED_PRECONDITION', `${sockPath} exists and is not a socket: remove it or choose another ${what}`);
  const live = await new Promise<boolean>((resolve) => {
    const c = connect(sockPath);
    c.once('connect', () => {
      c.destroy();
      resolve(true);
    });
    c.once('error', () => resolve(false));
  });
  if (live) throw new FerryError('FAILED_PRECONDITION', `another process serves ${sockPath}: stop it or choose another ${what}`);
}

/**
 * Binds a socket at `sockPath` with mode 0600 from the first moment, through `bind(path)` (which
 * listens on the path it is given). Refuses a path that is not free (see `assertSocketFree`).
 */
export async function bindPrivate(sockPath: string, bind: (path: string) => Promise<void>, what?: string): Promise<void> {
  await assertSocketFree(sockPath, what);
  const dir = dirname(sockPath);
  await mkdir(dir, { recursive: true });
  const priv = await mkdtemp(join(dir, '.ferry-sock-')); // mode 0700: nobody else reaches what is inside
  try {
    const tmp = join(priv, 's');
    // A path that fits only without the detour is bound in place and restricted at once (a window
    // at umask mode, as other daemons have).
    if (Buffer.byteLength(tmp) > SUN_PATH_MAX) {
      await rm(sockPath, { force: true });
      await bind(sockPath);
      await chmod(sockPath, 0o600);
      return;
    }
    await bind(tmp);
    await chmod(tmp, 0o600);
    await rename(tmp, sockPath); // replaces a stale socket file atomically
  } finally {
    await rm(priv, { recursive: true, force: true });
  }
}

/** `bindPrivate` for a node:net / node:http server. */
export async function listenPrivate(server: Server, sockPath: string, what?: string): Promise<void> {
  try {
    await bindPrivate(
      sockPath,
      (path) =>
        new Promise<void>((resolve, reject) => {
          server.once('error', reject);
          server.listen(path, () => {
            server.off('error', reject);
            resolve();
          });
        }),
      what,
    );
  } catch (err) {
    if (server.listening) server.close();
    throw err;
  }
}
