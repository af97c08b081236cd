/**
 * External readers of RAFS v6 bootstraps for tests: erofs-utils (`fsck.erofs`) and the Linux EROFS
 * driver over loop devices. Each blob is given as its uncompressed view (nydusd's blob cache file:
 * chunks at their uncompressed offsets).
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { tmpdir } from 'node:os';

function sh(cmd: string, args: string[]): string {
  try {
    return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    const e = err as { stderr?: string; stdout?: string; message: string };
    throw new Error(`${cmd} ${args.join(' ')} failed: ${e.stderr || e.stdout || e.message}`);
  }
}

/** `fsck.erofs` with one --device per blob view; throws with its output on failure. */
export function fsckErofs(boot: string, views: string[], extractTo?: string): string {
  const args = [...views.map((v) => `--device=${v}`), ...(extractTo ? [`--extract=${extractTo}`] : []), boot];
  return sh('fsck.erofs', args);
}

/** Mounts `boot` read-only with the kernel EROFS driver, each view on a loop device. */
export function kernelMount(boot: string, views: string[]): { dir: string; cleanup: () => void } {
  const loops: string[] = [];
  const dir = mkdtempSync(join(tmpdir(), 'ferry-erofs-mnt-'));
  let mounted = false;
  const cleanup = (): void => {
    if (mounted) {
      try {
        sh('umount', [dir]);
      } catch {
        /* already gone */
      }
      mounted = false;
    }
    for (const l of loops.splice(0)) {
      try {
        sh('losetup', ['-d', l]);
      } catch {
        /* ignore */
      }
    }
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    const bootLoop = sh('losetup', ['-f', '--show', '-r', boot]).trim();
    loops.push(bootLoop);
    for (const v of views) loops.push(sh('losetup', ['-f', '--show', '-r', v]).trim());
    const opts = ['ro', ...loops.slice(1).map((l) => `device=${l}`)].join(',');
    mkdirSync(dir, { recursive: true });
    sh('mount', ['-t', 'erofs', '-o', opts, bootLoop, dir]);
    mounted = true;
  } catch (err) {
    cleanup();
    throw err;
  }
  return { dir, cleanup };
}
