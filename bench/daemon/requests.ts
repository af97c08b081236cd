/**
 * Where a cold start's backend requests come from (issue 15): the device's debug log of every
 * backend request (`fetch`: offset, length, chunks, kind = read / read-ahead / prefetch), for one
 * cold start of a bench workload (python, pyimport, …) chrooted into a lazy mount served by an
 * in-process `ferry registry` on loopback. The layer is built from the workload's rootfs as
 * `ferry convert` builds it (zstd, blake3, 32 KiB chunks); the mount is told the command, as the
 * snapshotter tells it, so the loader's reads are prefetched.
 *
 * Run (root): `npx tsc -p . && node dist/bench/daemon/requests.js [--workload python] [--whole-elf BYTES]
 * [--ferry KEY=BYTES …] [--count-ahead] [--list] [--json FILE]` (`--ferry miss_window_max=0`: any numeric `ferry.*` daemon key).
 * Prints requests and bytes per kind, what was fetched ahead and then read (of every kind with `--count-ahead`, which costs time), and the requests in the order they went out.
 */
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { promisify } from 'node:util';
import pino from 'pino';
import { debootstrapRootfs } from '../../src/bench/env/index.js';
import { findWorkload } from '../../src/bench/index.js';
import { buildLayer } from '../../src/builder/index.js';
import { DEFAULT_CONVERT_CHUNK_SIZE } from '../../src/config/accel.js';
import { Daemon } from '../../src/daemon/index.js';
import { openBootstrap } from '../../src/format/rafs/index.js';
import { startRegistry } from '../../src/registry/index.js';
import { RegistryClient } from '../../src/remote/index.js';

const pexec = promisify(execFile);
const PASSWORD = 'Bench-requests-1';

interface FetchLine {
  offset: number;
  length: number;
  chunks: number;
  kind: string;
  time: number;
  first: number;
}

/** The file (path) each chunk index belongs to, for the request list. */
function filesByChunk(bootstrap: Buffer): Map<number, string> {
  const bs = openBootstrap(bootstrap);
  const out = new Map<number, string>();
  for (const e of bs.walk()) {
    if ((e.stat.mode & 0o170000) !== 0o100000) continue;
    for (const c of bs.chunks(e.ino)) if (!out.has(c.chunkIndex)) out.set(c.chunkIndex, `/${e.path}@${c.fileOffset}`);
  }
  return out;
}

async function main(): Promise<void> {
  const arg = (k: string): string | undefined => (process.argv.includes(k) ? process.argv[process.argv.indexOf(k) + 1] : undefined);
  const w = findWorkload(arg('--workload') ?? 'python');
  if (w.rootfs.kind !== 'debootstrap') throw new Error(`workload ${w.id}: only debootstrap workloads`);
  const lines: FetchLine[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString('utf8').split('\n')) {
        if (!l) continue;
        const o = JSON.parse(l) as FetchLine & { msg: string };
        if (o.msg === 'fetch') lines.push(o);
      }
      cb();
    },
  });
  const log = pino({ level: 'debug' }, sink);
  const quiet = pino({ level: 'warn' });
  const dir = await mkdtemp(join(tmpdir(), 'ferry-bench-requests-'));
  const reg = await startRegistry({ listen: '127.0.0.1:0', dataDir: join(dir, 'reg'), adminPassword: PASSWORD, log: quiet });
  const whole = arg('--whole-elf');
  const ferry: Record<string, number> = whole !== undefined ? { whole_elf: Number(whole) } : {};
  process.argv.forEach((a, i) => {
    const kv = a === '--ferry' ? process.argv[i + 1]?.split('=') : undefined;
    if (kv?.length === 2) ferry[kv[0]!] = Number(kv[1]);
  });
  const daemon = new Daemon({
    log,
    dataDir: join(dir, 'data'),
    config: { ferry: { ...ferry, count_ahead: process.argv.includes('--count-ahead') } },
  });
  try {
    const src = join(dir, 'src');
    await pexec('cp', ['-a', await debootstrapRootfs({ include: w.rootfs.include }), src]);
    for (const [rel, text] of Object.entries(w.appFiles ?? {})) {
      await mkdir(join(src, rel, '..'), { recursive: true });
      await writeFile(join(src, rel), text);
    }
    const blobDir = join(dir, 'blobs');
    await mkdir(blobDir);
    const built = await buildLayer({
      source: { dir: src },
      blobDir,
      fsVersion: 6,
      compressor: 'zstd',
      chunkSize: DEFAULT_CONVERT_CHUNK_SIZE,
      digester: 'blake3',
    });
    const boot = join(dir, 'image.boot');
    await writeFile(boot, built.bootstrap);
    const c = new RegistryClient({ credentials: () => ({ username: 'admin', password: PASSWORD }) });
    const { createReadStream } = await import('node:fs');
    await c.pushBlob(reg.host, 'bench/w', `sha256:${built.blobId}`, built.blobSize, () => createReadStream(built.blobPath));
    await pexec('sh', ['-c', 'sync; echo 3 > /proc/sys/vm/drop_caches']);
    const mnt = join(dir, 'mnt');
    const t0 = Date.now();
    await daemon.mount({
      id: 'w',
      mountpoint: mnt,
      bootstrapPath: boot,
      cacheDir: join(dir, 'cache'),
      backend: {
        type: 'registry',
        host: reg.host,
        repo: 'bench/w',
        insecure: true,
        auth: Buffer.from(`admin:${PASSWORD}`).toString('base64'),
      },
      startup: { argv: w.command },
    });
    const out = await pexec('chroot', [mnt, ...w.command], { maxBuffer: 1 << 20 });
    const secs = (Date.now() - t0) / 1000;
    const st = await daemon.get('w');
    await daemon.umount('w');
    const byKind = new Map<string, { n: number; bytes: number }>();
    for (const l of lines) {
      const k = byKind.get(l.kind) ?? { n: 0, bytes: 0 };
      k.n++;
      k.bytes += l.length;
      byKind.set(l.kind, k);
    }
    console.log(
      `${w.id}: ${secs.toFixed(2)} s, ${st.stats?.requests} requests, ${(st.metrics.bytesFetched / 2 ** 20).toFixed(2)} MiB, stdout ${JSON.stringify(out.stdout.trim().slice(-40))}`,
    );
    console.table([...byKind].map(([kind, k]) => ({ kind, requests: k.n, KiB: Math.round(k.bytes / 1024) })));
    const ahead = Object.entries(st.stats?.ahead ?? {});
    console.table(
      ahead.map(([why, a]) => ({ 'fetched ahead': why, KiB: Math.round(a.fetched / 1024), 'read KiB': Math.round(a.read / 1024) })),
    );
    if (process.argv.includes('--list')) {
      const fileOf = filesByChunk(built.bootstrap);
      for (const l of lines)
        console.log(`${l.time - t0} ms\t${l.kind}\t${l.offset}\t${l.length}\t${l.chunks}\t${fileOf.get(l.first) ?? '?'}`);
    }
    const json = arg('--json');
    if (json) await writeFile(json, JSON.stringify({ workload: w.id, secs, stats: st.stats, lines }, null, 1));
  } finally {
    await daemon.close();
    await reg.close();
    await rm(dir, { recursive: true, force: true }).catch(() => undefined);
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
