/**
 * Shared by the convert/accel end-to-end tests: a small multi-layer test image exercising what a
 * conversion must keep (modes, owners, symlinks, hardlinks, xattrs, whiteouts, opaque dirs, a file
 * spanning several chunks, an empty file, a device-less special file), built as an OCI layout.
 */
import { execFileSync } from 'node:child_process';
import { chmod, chown, link, mkdir, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { busyboxRootfs, buildOciImage, whiteout, opaqueDir, type BuiltImage } from '../../src/bench/env/index.js';

/** Deterministic pseudo-random bytes (so layers are reproducible between runs). */
export function pseudoRandom(n: number, seed: string): Buffer {
  const out = Buffer.alloc(n);
  let block = createHash('sha256').update(seed).digest();
  for (let off = 0; off < n; off += block.length) {
    block.copy(out, off, 0, Math.min(block.length, n - off));
    block = createHash('sha256').update(block).digest();
  }
  return out;
}

/** Builds the three-layer test image under `dir`; `variant` changes the content of the top layer. */
export async function makeTestImage(dir: string, variant = 'a'): Promise<BuiltImage> {
  const l1 = join(dir, 'l1');
  const l2 = join(dir, 'l2');
  const l3 = join(dir, 'l3');
  await busyboxRootfs(l1);
  await mkdir(join(l1, 'data/keep'), { recursive: true });
  await mkdir(join(l1, 'opq'), { recursive: true });
  await writeFile(join(l1, 'opq/old'), 'hidden by the opaque dir above\n');
  await writeFile(join(l1, 'data/gone'), 'deleted by a whiteout in layer 2\n');
  await writeFile(join(l1, 'data/keep/file'), 'kept\n');
  await writeFile(join(l1, 'data/big'), pseudoRandom(3 * 1024 * 1024 + 123, 'big'));

  await mkdir(join(l2, 'data'), { recursive: true });
  await mkdir(join(l2, 'srv/app'), { recursive: true });
  await whiteout(l2, 'data/gone');
  await writeFile(join(l2, 'srv/app/run.sh'), '#!/bin/sh\necho hello from ferry\n');
  await chmod(join(l2, 'srv/app/run.sh'), 0o4750);
  await chown(join(l2, 'srv/app/run.sh'), 1000, 100);
  await writeFile(join(l2, 'srv/app/empty'), '');
  await link(join(l2, 'srv/app/run.sh'), join(l2, 'srv/app/hardlink'));
  await symlink('../app/run.sh', join(l2, 'srv/app/link'));
  await writeFile(join(l2, 'srv/app/xattr'), 'with xattrs\n');
  execFileSync('setfattr', ['-n', 'user.ferry', '-v', 'value1', join(l2, 'srv/app/xattr')]);
  execFileSync('mkfifo', [join(l2, 'srv/app/fifo')]);
  await writeFile(join(l2, 'data/big'), pseudoRandom(1024 * 1024, 'big2')); // replaces the lower file

  await opaqueDir(l3, 'opq');
  await writeFile(join(l3, 'opq/new'), `only this survives (${variant})\n`);
  await mkdir(join(l3, 'etc'), { recursive: true });
  await writeFile(join(l3, 'etc/motd'), `variant ${variant}\n`);
  return buildOciImage({ layers: [l1, l2, l3], outDir: join(dir, 'layout'), config: { Cmd: ['/srv/app/run.sh'], Env: ['A=1'] } });
}
