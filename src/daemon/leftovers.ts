/**
 * @module daemon/leftovers
 * What a killed daemon leaves of an EROFS-mode mount, and taking it over. The kernel's EROFS
 * mount and its loop devices outlive the process; only the blob-view FUSE mount the loop devices
 * read from dies with it (its files answer ENOTCONN, the container's reads of missing pages EIO).
 * A new daemon either removes all of it (`cleanupMountLeftovers`) or — when the EROFS mount is
 * still there, e.g. under a running container's overlay — mounts a fresh blob view and swaps each
 * loop device's backing file to the new view file (`LOOP_CHANGE_FD`, allowed on read-only loop
 * devices when the size is the same), so the same EROFS mount reads through the new process.
 */
import { basename } from 'node:path';
import { FerryError } from '../core/index.js';
import { clearStaleMounts, mountsAt, run } from '../fuse/index.js';
import type { Logger } from '../observe/index.js';

/** `LOOP_CHANGE_FD` from linux/loop.h. */
const LOOP_CHANGE_FD = 0x4c06;

/**
 * Node has no ioctl(2): the one call is made by perl (Debian's perl-base is Essential, always
 * installed), with both paths opened read-only and the new file's descriptor passed as an integer.
 */
const CHANGE_FD_SCRIPT = [
  'open(my $l, "<", $ARGV[0]) or die "open $ARGV[0]: $!\\n";',
  'open(my $f, "<", $ARGV[1]) or die "open $ARGV[1]: $!\\n";',
  `ioctl($l, ${LOOP_CHANGE_FD}, fileno($f)) or die "LOOP_CHANGE_FD $ARGV[0]: $!\\n";`,
].join(' ');

/** Loop devices whose backing file lies under `dir` (also those of a dead FUSE mount): device → backing file. */
export async function loopsUnder(dir: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  const r = await run('losetup', ['-J', '-l']);
  if (r.code !== 0 || !r.stdout.trim()) return out;
  const j = JSON.parse(r.stdout) as { loopdevices?: Array<{ name: string; 'back-file'?: string }> };
  for (const l of j.loopdevices ?? []) {
    const file = (l['back-file'] ?? '').replace(/ \(deleted\)$/, '');
    if (file.startsWith(`${dir}/`)) out.set(l.name, file);
  }
  return out;
}

/** Removes what a killed daemon left for a mount: the image mount, loop devices, the view mount. */
export async function cleanupMountLeftovers(mountpoint: string, viewDir: string, log: Logger): Promise<void> {
  const a = await clearStaleMounts(mountpoint);
  const loops = await loopsUnder(viewDir);
  for (const l of loops.keys()) await run('losetup', ['-d', l]);
  const b = await clearStaleMounts(viewDir);
  if (a || b || loops.size) log.warn({ mountpoint, mounts: a + b, loops: loops.size }, 'cleaned up a stale mount');
}

/**
 * The loop device of each blob (blob id → device) when a dead daemon's EROFS mount at
 * `mountpoint` can be taken over: the EROFS mount is there and every blob has a loop device over
 * its view file under `viewDir`. Undefined otherwise (nothing to take over: clean up instead).
 */
export async function reattachableLoops(
  mountpoint: string,
  viewDir: string,
  blobIds: readonly string[],
): Promise<Map<string, string> | undefined> {
  if (mountsAt(mountpoint).at(-1)?.fsType !== 'erofs') return undefined;
  const byBlob = new Map<string, string>();
  for (const [dev, file] of await loopsUnder(viewDir)) byBlob.set(basename(file), dev);
  const out = new Map<string, string>();
  for (const id of blobIds) {
    const dev = byBlob.get(id);
    if (!dev) return undefined;
    out.set(id, dev);
  }
  return out;
}

/** Points a read-only loop device at another file of the same size (the kernel refuses anything else). */
export async function changeLoopFile(device: string, file: string): Promise<void> {
  const r = await run('perl', ['-e', CHANGE_FD_SCRIPT, device, file], { timeoutMs: 30_000 });
  if (r.code !== 0) throw new FerryError('INTERNAL', r.stderr.trim() || `perl exited ${r.code}`);
}
