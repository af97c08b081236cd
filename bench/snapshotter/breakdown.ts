/**
 * Where a cold lazy start spends its time on the daemon side, without containerd or the network:
 * the debootstrap+python3 image of bench/snapshotter/run.ts built as Nydus (RAFS v6, zstd,
 * blake3, 1 MiB chunks) on local disk, mounted by an in-process `Daemon` (localfs backend, empty
 * chunk cache) in EROFS and FUSE mode, page cache dropped, then `chroot MNT python3 -c 'print(1)'`.
 * Prints the mount's step timings (ImageMount.timings), python's wall time, the bytes the daemon
 * fetched and the daemon process's CPU time during the run.
 *
 * With `--read FILE` it then also times a cold sequential `cat FILE` (read-ahead at work).
 *
 *   node dist/bench/snapshotter/breakdown.js [--mode erofs|fuse|both] [--amplify BYTES] [--chunk-size BYTES] [--read /usr/lib/…]
 */
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile, mkdir } from 'node:fs/promises';
import { promisify } from 'node:util';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { debootstrapRootfs } from '../../src/bench/env/index.js';
import { buildLayer } from '../../src/builder/index.js';
import { Daemon } from '../../src/daemon/index.js';
import { createLogger } from '../../src/observe/index.js';

const pexec = promisify(execFile);
function arg(name: string, def: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 && process.argv[i + 1] ? process.argv[i + 1]! : def;
}

async function main(): Promise<void> {
  const modes = arg('mode', 'both') === 'both' ? (['erofs', 'fuse'] as const) : [arg('mode', 'erofs') as 'erofs' | 'fuse'];
  const amplify = arg('amplify', '');
  const chunkSize = Number(arg('chunk-size', String(1024 * 1024)));
  const timings: Array<Record<string, unknown>> = [];
  const log = createLogger({
    level: 'info',
    name: 'breakdown',
    destination: {
      write(s: string) {
        const j = JSON.parse(s) as { msg?: string; timings?: Record<string, number> };
        if (j.msg === 'image mounted' && j.timings) timings.push(j.timings);
      },
    } as never,
  });
  const rootfs = await debootstrapRootfs({ include: ['python3'] });
  const dir = await mkdtemp(join(tmpdir(), 'ferry-bench-breakdown-'));
  try {
    const blobs = join(dir, 'blobs');
    await mkdir(blobs);
    let t = performance.now();
    const built = await buildLayer({
      source: { dir: rootfs },
      blobDir: blobs,
      fsVersion: 6,
      compressor: 'zstd',
      chunkSize,
      digester: 'blake3',
    });
    process.stdout.write(
      `build ${(performance.now() - t).toFixed(0)} ms; chunk size ${chunkSize} B; blob ${built.blobSize} B, bootstrap ${built.bootstrap.length} B\n`,
    );
    const boot = join(dir, 'image.boot');
    await writeFile(boot, built.bootstrap);
    for (const mode of modes) {
      const daemon = new Daemon({
        log,
        dataDir: join(dir, `data-${mode}`),
        ...(amplify ? { config: { amplify_io: Number(amplify) } } : {}),
      });
      const req = {
        id: `b-${mode}`,
        mountpoint: join(dir, `mnt-${mode}`),
        bootstrapPath: boot,
        mode,
        cacheDir: join(dir, `cache-${mode}`),
        backend: { type: 'localfs' as const, dir: blobs },
      };
      try {
        await pexec('sync');
        await writeFile('/proc/sys/vm/drop_caches', '3');
        t = performance.now();
        await daemon.mount(req);
        const mountMs = performance.now() - t;
        await writeFile('/proc/sys/vm/drop_caches', '3');
        const cpu0 = process.cpuUsage();
        t = performance.now();
        const r = await pexec('chroot', [req.mountpoint, '/usr/bin/python3', '-c', 'print(1)']);
        const runMs = performance.now() - t;
        const cpu = process.cpuUsage(cpu0);
        const info = await daemon.get(req.id);
        const file = arg('read', '');
        if (file) {
          const before = info.metrics.bytesFetched;
          const reqs0 = (await daemon.get(req.id)).stats?.requests ?? 0;
          t = performance.now();
          const c = await pexec('sh', ['-c', `cat '${join(req.mountpoint, file)}' | wc -c`]);
          const ms = performance.now() - t;
          const after = await daemon.get(req.id);
          process.stdout.write(
            `${mode}: cat ${file}: ${c.stdout.trim()} B in ${ms.toFixed(0)} ms, fetched ${after.metrics.bytesFetched - before} B in ${(after.stats?.requests ?? 0) - reqs0} requests\n`,
          );
        }
        process.stdout.write(
          `${mode}: mount ${mountMs.toFixed(0)} ms ${JSON.stringify(timings.at(-1) ?? {})}; ` +
            `python ${runMs.toFixed(0)} ms (out ${r.stdout.trim()}), fetched ${info.metrics.bytesFetched} B, daemon cpu ${((cpu.user + cpu.system) / 1000).toFixed(0)} ms\n`,
        );
      } finally {
        await daemon.close();
      }
    }
  } finally {
    await rm(dir, { recursive: true, force: true }).catch(() => undefined);
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
