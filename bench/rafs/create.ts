/**
 * `rafs create` throughput: MB/s of uncompressed input per CPU-second, for each compressor, on a
 * debootstrap minbase rootfs packed as an uncompressed layer tar (the conversion pipeline's input).
 * Baselines measured in the same run: reading + sha256 of the same tar (the floor any builder pays)
 * and erofs-utils' `mkfs.erofs` on the same tree (uncompressed, and lz4).
 *
 * Run: `npx tsc -p . && node dist/bench/rafs/create.js [--json FILE]`
 */
import { createReadStream, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { tmpdir, cpus, loadavg } from 'node:os';
import { debootstrapRootfs } from '../../src/bench/env/index.js';
import { buildLayer } from '../../src/builder/index.js';
import { COMPRESSORS, type CompressorName } from '../../src/format/compress/index.js';
import { parseLayer, readLayer } from '../../src/format/tar/index.js';

interface Row {
  name: string;
  inputMB: number;
  wallS: number;
  cpuS: number;
  mbPerCpuS: number;
  mbPerWallS: number;
  outMB: number;
}

function cpuSeconds(u: NodeJS.CpuUsage): number {
  return (u.user + u.system) / 1e6;
}

async function timed(name: string, inputBytes: number, fn: () => Promise<number>): Promise<Row> {
  const c0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  const out = await fn();
  const wallS = Number(process.hrtime.bigint() - t0) / 1e9;
  const cpuS = cpuSeconds(process.cpuUsage(c0));
  const mb = inputBytes / 1e6;
  return {
    name,
    inputMB: +mb.toFixed(1),
    wallS: +wallS.toFixed(2),
    cpuS: +cpuS.toFixed(2),
    mbPerCpuS: +(mb / cpuS).toFixed(1),
    mbPerWallS: +(mb / wallS).toFixed(1),
    outMB: +(out / 1e6).toFixed(1),
  };
}

function timedChild(name: string, inputBytes: number, cmd: string, args: string[], outFile: string): Row {
  const t0 = process.hrtime.bigint();
  // children's CPU time comes from /usr/bin/time-free accounting: wrap in sh with `times`
  const r = execFileSync('bash', ['-c', `${cmd} ${args.map((a) => `'${a}'`).join(' ')} >/dev/null 2>&1; times`], { encoding: 'utf8' });
  const wallS = Number(process.hrtime.bigint() - t0) / 1e9;
  const lines = r.trim().split('\n');
  const child = lines[lines.length - 1]!.split(/\s+/).map((s) => {
    const m = /(\d+)m([\d.]+)s/.exec(s);
    return m ? Number(m[1]) * 60 + Number(m[2]) : 0;
  });
  const cpuS = child[0]! + child[1]!;
  const mb = inputBytes / 1e6;
  return {
    name,
    inputMB: +mb.toFixed(1),
    wallS: +wallS.toFixed(2),
    cpuS: +cpuS.toFixed(2),
    mbPerCpuS: +(mb / cpuS).toFixed(1),
    mbPerWallS: +(mb / wallS).toFixed(1),
    outMB: +(statSync(outFile).size / 1e6).toFixed(1),
  };
}

async function main(): Promise<void> {
  const jsonOut = process.argv.includes('--json') ? process.argv[process.argv.indexOf('--json') + 1] : undefined;
  const rootfs = await debootstrapRootfs();
  const work = mkdtempSync(join(tmpdir(), 'ferry-bench-rafs-'));
  try {
    const tar = join(work, 'layer.tar');
    execFileSync('tar', ['-C', rootfs, '--xattrs', '--numeric-owner', '-cf', tar, '.']);
    const tarBytes = statSync(tar).size;
    const rows: Row[] = [];
    let fileBytes = 0;
    rows.push(
      await timed('baseline: read tar + sha256', tarBytes, async () => {
        const h = createHash('sha256');
        for await (const c of createReadStream(tar, { highWaterMark: 1 << 20 })) h.update(c as Buffer);
        h.digest();
        return 0;
      }),
    );
    rows.push(
      await timed('baseline: readLayer only (tar parsing)', tarBytes, async () => {
        for await (const { body } of readLayer(createReadStream(tar, { highWaterMark: 1 << 20 })))
          for await (const _ of body) {
            /* drain */
          }
        return 0;
      }),
    );
    rows.push(
      await timed('baseline: parseLayer only (sync tar parsing, what the builder uses)', tarBytes, async () => {
        await parseLayer(createReadStream(tar, { highWaterMark: 1 << 20 }), { entry() {}, data() {}, end() {} });
        return 0;
      }),
    );
    for (const compressor of COMPRESSORS) {
      const blobDir = join(work, `blobs-${compressor}`);
      let input = 0;
      const row = await timed(`ferry rafs create (tar, ${compressor})`, tarBytes, async () => {
        const r = await buildLayer({ source: createReadStream(tar, { highWaterMark: 1 << 20 }), blobDir, compressor, digester: 'sha256' });
        input = r.stats.inputBytes;
        return r.blobSize + r.bootstrap.length;
      });
      fileBytes = input;
      // throughput counted on file data (uncompressed input), not tar framing
      row.mbPerCpuS = +(input / 1e6 / row.cpuS).toFixed(1);
      row.mbPerWallS = +(input / 1e6 / row.wallS).toFixed(1);
      row.inputMB = +(input / 1e6).toFixed(1);
      rows.push(row);
      rmSync(blobDir, { recursive: true, force: true });
    }
    const variants: [string, 'tar' | 'dir', CompressorName, 'sha256' | 'blake3'][] = [
      ['ferry rafs create (tar, lz4_block, blake3)', 'tar', 'lz4_block', 'blake3'],
      ['ferry rafs create (dir, lz4_block)', 'dir', 'lz4_block', 'sha256'],
      ['ferry rafs create (dir, zstd)', 'dir', 'zstd', 'sha256'],
    ];
    for (const [name, kind, compressor, digester] of variants) {
      const blobDir = join(work, `blobs-${kind}-${compressor}-${digester}`);
      rows.push(
        await timed(name, fileBytes, async () => {
          const r = await buildLayer({
            source: kind === 'dir' ? { dir: rootfs } : createReadStream(tar, { highWaterMark: 1 << 20 }),
            blobDir,
            compressor,
            digester,
          });
          return r.blobSize + r.bootstrap.length;
        }),
      );
      rmSync(blobDir, { recursive: true, force: true });
    }
    rows.push(
      timedChild('mkfs.erofs (uncompressed)', fileBytes, 'mkfs.erofs', [join(work, 'plain.erofs'), rootfs], join(work, 'plain.erofs')),
    );
    rows.push(timedChild('mkfs.erofs -zlz4', fileBytes, 'mkfs.erofs', ['-zlz4', join(work, 'lz4.erofs'), rootfs], join(work, 'lz4.erofs')));
    const meta = {
      date: new Date().toISOString(),
      node: process.version,
      cpu: cpus()[0]?.model,
      cores: cpus().length,
      loadavg: loadavg().map((x) => +x.toFixed(1)),
      rootfs,
      tarMB: +(tarBytes / 1e6).toFixed(1),
    };
    console.log(JSON.stringify(meta));
    console.log('| run | input MB | wall s | CPU s | MB/s per core | MB/s wall | output MB |');
    console.log('|---|---:|---:|---:|---:|---:|---:|');
    for (const r of rows)
      console.log(`| ${r.name} | ${r.inputMB} | ${r.wallS} | ${r.cpuS} | ${r.mbPerCpuS} | ${r.mbPerWallS} | ${r.outMB} |`);
    if (jsonOut) writeFileSync(jsonOut, JSON.stringify({ meta, rows }, null, 2));
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}

await main();
