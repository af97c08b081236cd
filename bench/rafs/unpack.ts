/**
 * RAFS read-path throughput on a realistic image (debootstrap minbase → `rafs create`, lz4_block and
 * zstd):
 *  - "chunk reads from the cache": every file read in 128 KiB requests (FUSE-sized) through
 *    `mapRead` + the read planner + copies out of the decompressed blob cache file (nydusd's `<blob>.blob.data`, here a
 *    file read with positioned reads) — the data path of a lazy mount once chunks are cached.
 *    Baseline in the same run: the same 128 KiB positioned reads on the plain uncompressed tar.
 *  - "rafs unpack → tar": the whole image decompressed, every chunk digest verified, written as a tar
 *    to /dev/null. Baseline: GNU tar over the rootfs directory into a pipe.
 *
 * Run: `npx tsc -p . && node dist/bench/rafs/unpack.js [--json FILE]`
 */
import {
  closeSync,
  createReadStream,
  createWriteStream,
  mkdtempSync,
  openSync,
  readFileSync,
  readSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { tmpdir, cpus } from 'node:os';
import { pipeline } from 'node:stream/promises';
import { debootstrapRootfs } from '../../src/bench/env/index.js';
import { buildLayer } from '../../src/builder/index.js';
import { FileReadPlan, HOLE, PLAN_STRIDE, openBootstrap, planFileRead, type RafsBootstrap } from '../../src/format/rafs/index.js';
import { S_IFMT, S_IFREG } from '../../src/format/erofs/index.js';
import { writeTar } from '../../src/format/tar/index.js';
import { BlobFiles } from '../../src/convert/index.js';
import { tarEntries } from '../../src/builder/index.js';

interface Row {
  name: string;
  MB: number;
  wallS: number;
  cpuS: number;
  mbPerWallS: number;
  mbPerCpuS: number;
}
const REQ = 128 * 1024;

async function timed(name: string, fn: () => Promise<number> | number): Promise<Row> {
  const c0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  const bytes = await fn();
  const wallS = Number(process.hrtime.bigint() - t0) / 1e9;
  const u = process.cpuUsage(c0);
  const cpuS = (u.user + u.system) / 1e6;
  const mb = bytes / 1e6;
  return {
    name,
    MB: +mb.toFixed(1),
    wallS: +wallS.toFixed(3),
    cpuS: +cpuS.toFixed(3),
    mbPerWallS: +(mb / wallS).toFixed(0),
    mbPerCpuS: +(mb / cpuS).toFixed(0),
  };
}

/** Decompressed blob cache (uncompressed address space), as nydusd keeps it. */
function buildCache(bs: RafsBootstrap, files: BlobFiles, path: string): void {
  const blob = bs.blobs[0]!;
  const cache = Buffer.alloc(blob.uncompressedSize);
  for (const e of bs.walk()) {
    if ((e.stat.mode & S_IFMT) !== S_IFREG) continue;
    for (const c of bs.chunks(e.ino)) files.chunk(c).copy(cache, c.uncompressedOffset);
  }
  writeFileSync(path, cache);
}

function readAllThroughCache(bs: RafsBootstrap, cachePath: string, buf: Buffer): number {
  const fd = openSync(cachePath, 'r');
  const plan = new FileReadPlan();
  let total = 0;
  try {
    for (const e of bs.walk()) {
      if ((e.stat.mode & S_IFMT) !== S_IFREG) continue;
      const size = e.stat.size;
      for (let off = 0; off < size; off += REQ) {
        const len = Math.min(REQ, size - off);
        const refs = bs.mapRead(e.ino, off, len);
        planFileRead(refs, size, off, len, plan);
        const seg = plan.segments;
        let p = 0;
        for (let k = 0; k < plan.count * PLAN_STRIDE; k += PLAN_STRIDE) {
          const n = seg[k + 2]!;
          if (seg[k] === HOLE) buf.fill(0, p, p + n);
          else readSync(fd, buf, p, n, refs[seg[k]!]!.uncompressedOffset + seg[k + 1]!);
          p += n;
        }
        total += p;
      }
    }
  } finally {
    closeSync(fd);
  }
  return total;
}

function readFlat(path: string, bytes: number, buf: Buffer): number {
  const fd = openSync(path, 'r');
  let total = 0;
  try {
    for (let off = 0; off < bytes; off += REQ) total += readSync(fd, buf, 0, Math.min(REQ, bytes - off), off);
  } finally {
    closeSync(fd);
  }
  return total;
}

async function main(): Promise<void> {
  const jsonOut = process.argv.includes('--json') ? process.argv[process.argv.indexOf('--json') + 1] : undefined;
  const rootfs = await debootstrapRootfs();
  const work = mkdtempSync(join(tmpdir(), 'ferry-bench-unpack-'));
  const rows: Row[] = [];
  const buf = Buffer.alloc(REQ);
  try {
    const tar = join(work, 'layer.tar');
    execFileSync('tar', ['-C', rootfs, '--xattrs', '--numeric-owner', '-cf', tar, '.']);
    let fileBytes = 0;
    for (const compressor of ['lz4_block', 'zstd'] as const) {
      const blobDir = join(work, `blobs-${compressor}`);
      const r = await buildLayer({ source: createReadStream(tar, { highWaterMark: 1 << 20 }), blobDir, compressor, digester: 'sha256' });
      const bs = openBootstrap(r.bootstrap);
      const files = new BlobFiles(bs, blobDir);
      const cache = join(work, `cache-${compressor}`);
      buildCache(bs, files, cache);
      readFileSync(cache); // warm the page cache
      fileBytes = 0;
      for (const e of bs.walk()) if ((e.stat.mode & S_IFMT) === S_IFREG && e.stat.nlink >= 1) fileBytes += e.stat.size;
      if (compressor === 'lz4_block') {
        readFileSync(tar);
        rows.push(await timed('baseline: 128 KiB preads of the flat tar', () => readFlat(tar, statSync(tar).size, buf)));
      }
      rows.push(
        await timed(`chunk reads from the decompressed cache (mapRead + 128 KiB preads, ${compressor} image)`, () =>
          readAllThroughCache(bs, cache, buf),
        ),
      );
      rows.push(
        await timed(`rafs unpack → tar on /dev/null (${compressor}, digests verified)`, async () => {
          await pipeline(writeTar(tarEntries(bs, files)), createWriteStream('/dev/null'));
          return fileBytes;
        }),
      );
      files.close();
    }
    rows.push(
      await timed('baseline: GNU tar of the rootfs dir piped to /dev/null (CPU in the child)', () => {
        // a pipe, because GNU tar skips reading file data when its archive is /dev/null
        execFileSync('bash', ['-c', `tar -C '${rootfs}' -cf - . | cat > /dev/null`]);
        return fileBytes;
      }),
    );
    const meta = {
      date: new Date().toISOString(),
      node: process.version,
      cpu: cpus()[0]?.model,
      cores: cpus().length,
      rootfs,
      fileMB: +(fileBytes / 1e6).toFixed(1),
    };
    console.log(JSON.stringify(meta));
    console.log('| run | MB | wall s | CPU s (this process) | MB/s wall | MB/s per CPU-s |');
    console.log('|---|---:|---:|---:|---:|---:|');
    for (const r of rows) console.log(`| ${r.name} | ${r.MB} | ${r.wallS} | ${r.cpuS} | ${r.mbPerWallS} | ${r.mbPerCpuS} |`);
    if (jsonOut) writeFileSync(jsonOut, JSON.stringify({ meta, rows }, null, 2));
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

await main();
