/**
 * What a background fill costs the reads it must not delay (issue 17): on-demand cold reads of
 * scattered files through a lazy EROFS mount, with no fill (the baseline), with the fill at its
 * default idle rate (4 MiB/s) and with the fill unlimited — the same image, the same files, in one
 * run, against `ferry registry` on loopback. Each pass mounts afresh on an empty cache (a new
 * mount has its own page cache: nothing is dropped machine-wide). Reported: median seconds to read
 * the files one after another, as ratios fill/none, and how long the unlimited fill took to cache
 * the whole image.
 *
 * Run (root): `npx tsc -p . && flock /tmp/ferry-bench.lock node dist/bench/daemon/fill.js [--reps 3] [--files 40] [--json FILE]`
 */
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildLayer } from '../../src/builder/index.js';
import { DEFAULT_CONVERT_CHUNK_SIZE } from '../../src/config/accel.js';
import { Daemon } from '../../src/daemon/index.js';
import { createLogger } from '../../src/observe/index.js';
import { startRegistry } from '../../src/registry/index.js';
import { RegistryClient } from '../../src/remote/index.js';

const PASSWORD = 'Bench-fill-1';
const FILES = 400;
const FILE_BYTES = 128 * 1024;

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

const MODES: Array<{ name: string; ferry: Record<string, unknown> }> = [
  { name: 'none', ferry: {} },
  { name: 'fill-4MiBps', ferry: { fill_deadline: 3600 } },
  { name: 'fill-unlimited', ferry: { fill_deadline: 3600, fill_rate: 0 } },
];

async function main(): Promise<void> {
  const arg = (k: string): string | undefined => (process.argv.includes(k) ? process.argv[process.argv.indexOf(k) + 1] : undefined);
  const reps = Number(arg('--reps') ?? 3);
  const nRead = Number(arg('--files') ?? 40);
  const jsonOut = arg('--json');
  const log = createLogger({ level: 'warn' });
  const dir = await mkdtemp(join(tmpdir(), 'ferry-bench-fill-'));
  const reg = await startRegistry({ listen: '127.0.0.1:0', dataDir: join(dir, 'reg'), adminPassword: PASSWORD, log });
  try {
    const src = join(dir, 'src');
    await mkdir(src);
    const sums = new Map<string, string>();
    for (let i = 0; i < FILES; i++) {
      const b = randomBytes(FILE_BYTES);
      await writeFile(join(src, `f${i}.bin`), b);
      sums.set(`f${i}.bin`, createHash('sha256').update(b).digest('hex'));
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
    const blobPath = join(blobDir, built.blobId);
    const c = new RegistryClient({ credentials: () => ({ username: 'admin', password: PASSWORD }) });
    await c.pushBlob(reg.host, 'bench/fill', `sha256:${built.blobId}`, (await stat(blobPath)).size, () => createReadStream(blobPath));
    // scattered: every (FILES / nRead)-th file, so the fill has data to fetch between them
    const picks = Array.from({ length: nRead }, (_, i) => `f${Math.floor((i * FILES) / nRead)}.bin`);
    const samples: Record<string, number[]> = {};
    const note = (k: string, v: number): void => {
      (samples[k] ??= []).push(v);
    };
    let n = 0;
    for (let rep = 0; rep < reps; rep++) {
      const order = rep % 2 ? [...MODES].reverse() : MODES;
      for (const mode of order) {
        n++;
        const daemon = new Daemon({ log, dataDir: join(dir, `data-${n}`), config: { ferry: mode.ferry } });
        const mnt = join(dir, `mnt-${n}`);
        try {
          const t0 = performance.now();
          await daemon.mount({
            id: 'fill',
            mountpoint: mnt,
            bootstrapPath: boot,
            mode: 'erofs',
            cacheDir: join(dir, `cache-${n}`),
            backend: {
              type: 'registry',
              host: reg.host,
              repo: 'bench/fill',
              insecure: true,
              auth: Buffer.from(`admin:${PASSWORD}`).toString('base64'),
            },
          });
          const t1 = performance.now();
          for (const f of picks) {
            const got = createHash('sha256')
              .update(await readFile(join(mnt, f)))
              .digest('hex');
            if (got !== sums.get(f)) throw new Error(`${mode.name}: ${f} differs`);
          }
          note(`${mode.name}/read-s`, (performance.now() - t1) / 1000);
          if (mode.name === 'fill-unlimited') {
            for (let i = 0; i < 6000 && (await daemon.get('fill')).fill?.state !== 'done'; i++) await new Promise((r) => setTimeout(r, 50));
            const info = await daemon.get('fill');
            if (info.fill?.state !== 'done') throw new Error(`fill not done: ${JSON.stringify(info.fill)}`);
            note('fill-unlimited/fill-s', (performance.now() - t0) / 1000);
            note('fill-unlimited/fill-MB', info.fill.totalBytes / 1e6);
          }
          await daemon.umount('fill');
        } finally {
          await daemon.close();
        }
        process.stderr.write(`rep ${rep + 1}/${reps} ${mode.name} done\n`);
      }
    }
    const base = median(samples['none/read-s']!);
    const rows = MODES.map((m) => {
      const v = median(samples[`${m.name}/read-s`]!);
      return { mode: m.name, 'read-s (median)': +v.toFixed(3), 'ratio to none': +(v / base).toFixed(2) };
    });
    console.table(rows);
    const fillS = median(samples['fill-unlimited/fill-s']!);
    const fillMB = median(samples['fill-unlimited/fill-MB']!);
    console.log(
      `unlimited fill: ${fillMB.toFixed(1)} MB cached in ${fillS.toFixed(2)} s after the mount (${(fillMB / fillS).toFixed(1)} MB/s)`,
    );
    if (jsonOut) await writeFile(jsonOut, JSON.stringify({ date: new Date().toISOString(), reps, nRead, rows, samples }, null, 1));
  } finally {
    await reg.close();
    await rm(dir, { recursive: true, force: true }).catch(() => undefined);
  }
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
