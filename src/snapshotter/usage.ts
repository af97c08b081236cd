/**
 * @module snapshotter/usage
 * Disk usage of a snapshot directory the way containerd's `fs.DiskUsage` counts it: allocated
 * blocks (st_blocks × 512) and the number of distinct inodes, hard links counted once, not
 * crossing into other mounts.
 */
import { lstat, opendir } from 'node:fs/promises';
import { join } from 'node:path';

export interface Usage {
  size: number;
  inodes: number;
}

export async function diskUsage(root: string): Promise<Usage> {
  const seen = new Set<string>();
  let size = 0;
  const top = await lstat(root, { bigint: true }).catch(() => undefined);
  if (!top) return { size: 0, inodes: 0 };
  const dev = top.dev;
  const stack: string[] = [root];
  let visited = 0;
  while (stack.length) {
    const p = stack.pop()!;
    const st = await lstat(p, { bigint: true }).catch(() => undefined);
    if (!st || st.dev !== dev) continue;
    const id = `${st.ino}`;
    if (!seen.has(id)) {
      seen.add(id);
      size += Number(st.blocks) * 512;
    }
    if (st.isDirectory()) {
      const d = await opendir(p).catch(() => undefined);
      if (!d) continue;
      for await (const ent of d) stack.push(join(p, ent.name));
    }
    if (++visited % 1000 === 0) await new Promise((r) => setImmediate(r));
  }
  return { size, inodes: seen.size };
}
