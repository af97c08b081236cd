/**
 * @module bench/workloads
 * HelloBench-style workloads (each a command plus a readiness signal) and their images, built
 * from Debian packages with debootstrap (cached) or busybox, packaged as OCI layouts (cached under
 * $FERRY_CACHE_DIR/bench-images): layer 1 = the root filesystem, layer 2 = the application layer.
 */
import { createCipheriv, createHash } from 'node:crypto';
import { createWriteStream, existsSync } from 'node:fs';
import { mkdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { once } from 'node:events';
import { FerryError } from '../core/index.js';
import type { Logger } from '../observe/index.js';
import { buildOciImage, busyboxRootfs, cacheDir, debootstrapRootfs, withDirLock, type BuiltImage } from './env/index.js';
import type { ReadySignal } from './types.js';

export interface Workload {
  id: string;
  title: string;
  rootfs: { kind: 'busybox' } | { kind: 'debootstrap'; include: string[] };
  /** Files of the application layer: path → content; `bigFileBytes` adds an unused incompressible file. */
  appFiles?: Record<string, string>;
  bigFileBytes?: number;
  command: string[];
  ready: ReadySignal;
  /** Part of the --quick subset. */
  quick?: boolean;
  /** Paths the prefetch variant lists in its prefetch table (what start-up reads first). */
  prefetch: string[];
}

export const WORKLOADS: Workload[] = [
  {
    id: 'hello',
    title: 'busybox echo hello (tiny)',
    quick: true,
    rootfs: { kind: 'busybox' },
    appFiles: { 'etc/motd': 'ferry bench\n' },
    command: ['/bin/echo', 'hello'],
    ready: { kind: 'exit', stdout: 'hello' },
    prefetch: ['/bin/busybox'],
  },
  {
    id: 'echo',
    title: 'Debian minbase: echo hello',
    rootfs: { kind: 'debootstrap', include: [] },
    command: ['/bin/echo', 'hello'],
    ready: { kind: 'exit', stdout: 'hello' },
    prefetch: ['/usr/bin/echo', '/usr/lib/x86_64-linux-gnu/libc.so.6', '/usr/lib64'],
  },
  {
    id: 'python',
    title: 'python3 -c print("hello")',
    rootfs: { kind: 'debootstrap', include: ['python3'] },
    command: ['/usr/bin/python3', '-c', 'print("hello")'],
    ready: { kind: 'exit', stdout: 'hello' },
    prefetch: ['/usr/bin/python3.11', '/usr/lib/python3.11', '/usr/lib/x86_64-linux-gnu', '/usr/lib64'],
  },
  {
    id: 'http',
    title: 'python3 http.server, polled every 10 ms',
    rootfs: { kind: 'debootstrap', include: ['python3'] },
    appFiles: { 'srv/index.html': '<h1>hello</h1>\n' },
    command: ['/usr/bin/python3', '-m', 'http.server', '8080', '--bind', '127.0.0.1', '--directory', '/srv'],
    ready: { kind: 'http', port: 8080, path: '/' },
    prefetch: ['/usr/bin/python3.11', '/usr/lib/python3.11', '/usr/lib/x86_64-linux-gnu', '/usr/lib64'],
  },
  {
    id: 'redis',
    title: 'redis-server until "Ready to accept connections"',
    rootfs: { kind: 'debootstrap', include: ['redis-server'] },
    command: ['/usr/bin/redis-server', '--port', '6380', '--save', '', '--appendonly', 'no', '--bind', '127.0.0.1'],
    ready: { kind: 'line', pattern: 'Ready to accept connections' },
    prefetch: ['/usr/bin/redis-server', '/usr/bin/redis-check-rdb', '/usr/lib/x86_64-linux-gnu', '/usr/lib64'],
  },
  {
    id: 'large',
    title: 'python3 hello + 512 MiB unused incompressible file',
    rootfs: { kind: 'debootstrap', include: ['python3'] },
    bigFileBytes: 512 * 1024 * 1024,
    command: ['/usr/bin/python3', '-c', 'print("hello")'],
    ready: { kind: 'exit', stdout: 'hello' },
    prefetch: ['/usr/bin/python3.11', '/usr/lib/python3.11', '/usr/lib/x86_64-linux-gnu', '/usr/lib64'],
  },
];

export function findWorkload(id: string): Workload {
  const w = WORKLOADS.find((x) => x.id === id);
  if (!w)
    throw new FerryError('INVALID_ARGUMENT', `unknown workload ${JSON.stringify(id)} (known: ${WORKLOADS.map((x) => x.id).join(', ')})`);
  return w;
}

/** Writes `bytes` of deterministic incompressible data (AES-CTR keystream of a fixed key). */
export async function writeIncompressible(path: string, bytes: number, seed = 'ferry-bench'): Promise<void> {
  const key = createHash('sha256').update(seed).digest().subarray(0, 16);
  const cipher = createCipheriv('aes-128-ctr', key, Buffer.alloc(16));
  const out = createWriteStream(path);
  const zero = Buffer.alloc(1024 * 1024);
  let left = bytes;
  while (left > 0) {
    const n = Math.min(left, zero.length);
    if (!out.write(cipher.update(zero.subarray(0, n)))) await once(out, 'drain');
    left -= n;
  }
  out.end();
  await once(out, 'finish');
}

function workloadKey(w: Workload): string {
  const desc = JSON.stringify({ v: 1, rootfs: w.rootfs, appFiles: w.appFiles ?? {}, big: w.bigFileBytes ?? 0, cmd: w.command });
  return `${w.id}-${createHash('sha256').update(desc).digest('hex').slice(0, 12)}`;
}

/** Builds (once, cached) the OCI layout of a workload's image. */
export async function prepareWorkloadImage(w: Workload, log?: Logger): Promise<BuiltImage> {
  const base = join(cacheDir(), 'bench-images', workloadKey(w));
  const meta = join(base, 'image.json');
  if (existsSync(meta)) return JSON.parse(await readFile(meta, 'utf8')) as BuiltImage;
  return withDirLock(`${base}.lock`, 30 * 60_000, async () => {
    if (existsSync(meta)) return JSON.parse(await readFile(meta, 'utf8')) as BuiltImage;
    await rm(base, { recursive: true, force: true });
    await mkdir(base, { recursive: true });
    log?.info({ workload: w.id }, 'building workload image');
    let rootfs: string;
    if (w.rootfs.kind === 'busybox') rootfs = await busyboxRootfs(join(base, 'rootfs'));
    else rootfs = await debootstrapRootfs({ include: w.rootfs.include, ...(log ? { log } : {}) });
    const app = join(base, 'app');
    await mkdir(app, { recursive: true });
    for (const [rel, text] of Object.entries(w.appFiles ?? {})) {
      await mkdir(join(app, rel, '..'), { recursive: true });
      await writeFile(join(app, rel), text);
    }
    if (w.bigFileBytes) {
      await mkdir(join(app, 'opt/data'), { recursive: true });
      await writeIncompressible(join(app, 'opt/data/unused.bin'), w.bigFileBytes);
    }
    const built = await buildOciImage({
      layers: [rootfs, app],
      outDir: join(base, 'layout'),
      config: { Cmd: w.command },
      tag: w.id,
      gzipLevel: w.bigFileBytes ? 1 : 6,
    });
    // the app layer's source is no longer needed (the big file is inside the blob)
    await rm(app, { recursive: true, force: true });
    await writeFile(`${meta}.tmp`, JSON.stringify(built));
    await rename(`${meta}.tmp`, meta);
    return built;
  });
}
