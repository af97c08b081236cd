/**
 * Conversion throughput: MB/s of uncompressed layer data for a debootstrap (bookworm minbase) image,
 * end to end through the registry (pull gzip layer → gunzip → RAFS build → push blob + bootstrap +
 * config + manifest), against the `rafs create` figure measured in the same run on the same layer
 * (uncompressed tar from a local file straight into the builder: no registry, no gunzip, no push).
 * Also: the same conversion a second time (every layer from the conversion cache), the eStargz
 * conversion of the same image (acceld's estargz driver: gzip 9, 4 MiB chunks, no cache), and the latency
 * from a `skopeo copy` push to the `-nydus` tag appearing through ferry registry webhook + ferry accel.
 *
 * Run: `npx tsc -p . && node dist/bench/convert/run.js [--json FILE]`
 */
import { createReadStream, writeFileSync } from 'node:fs';
import { mkdtemp, rm, stat } from 'node:fs/promises';
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { tmpdir, cpus } from 'node:os';
import { debootstrapRootfs, buildOciImage, pushImage } from '../../src/bench/env/index.js';
import { buildLayer } from '../../src/builder/index.js';
import { startRegistry } from '../../src/registry/index.js';
import { startAccel } from '../../src/accel/index.js';
import { RegistryClient, parseReference } from '../../src/remote/index.js';
import { convertImage, convertImageToEstargz, SqliteLayerCache } from '../../src/convert/index.js';

interface Row {
  name: string;
  inputMB: number;
  wallS: number;
  cpuS: number;
  mbPerWallS: number;
  mbPerCpuS: number;
}

function row(name: string, bytes: number, wallS: number, cpuS: number): Row {
  const mb = bytes / 1e6;
  return {
    name,
    inputMB: +mb.toFixed(1),
    wallS: +wallS.toFixed(2),
    cpuS: +cpuS.toFixed(2),
    mbPerWallS: +(mb / wallS).toFixed(1),
    mbPerCpuS: +(mb / cpuS).toFixed(1),
  };
}

async function measure<T>(fn: () => Promise<T>): Promise<{ v: T; wallS: number; cpuS: number }> {
  const c0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  const v = await fn();
  const c = process.cpuUsage(c0);
  return { v, wallS: Number(process.hrtime.bigint() - t0) / 1e9, cpuS: (c.user + c.system) / 1e6 };
}

async function main(): Promise<void> {
  const jsonOut = process.argv.includes('--json') ? process.argv[process.argv.indexOf('--json') + 1] : undefined;
  const rootfs = await debootstrapRootfs();
  const work = await mkdtemp(join(tmpdir(), 'ferry-bench-convert-'));
  const PASSWORD = 'BenchAdmin1';
  const reg = await startRegistry({
    listen: '127.0.0.1:0',
    dataDir: join(work, 'registry'),
    adminPassword: PASSWORD,
    config: { fsync: false, webhook: { settleDelay: 100, pollInterval: 50 } },
  });
  try {
    const image = await buildOciImage({ layers: [rootfs], outDir: join(work, 'layout') });
    await pushImage(image.layoutDir, `${reg.host}/library/debian:bookworm`, { creds: `admin:${PASSWORD}` });
    const tarBytes = image.uncompressedSize;
    const rows: Row[] = [];

    // Baseline: rafs create on the same layer as an uncompressed local tar (same options).
    const tar = join(work, 'layer.tar');
    execFileSync('tar', ['-C', rootfs, '--xattrs', '--numeric-owner', '-cf', tar, '.']);
    const tarSize = (await stat(tar)).size;
    const base = await measure(() =>
      buildLayer({
        source: createReadStream(tar, { highWaterMark: 1 << 20 }),
        blobDir: join(work, 'blobs'),
        compressor: 'zstd',
        digester: 'blake3',
      }),
    );
    rows.push(row('rafs create (local tar, zstd, blake3)', tarSize, base.wallS, base.cpuS));
    await rm(join(work, 'blobs'), { recursive: true, force: true });

    const client = new RegistryClient({ credentials: () => ({ username: 'admin', password: PASSWORD }) });
    let sizes: { nydusMB: number; estargzMB: number } | undefined;
    const cache = new SqliteLayerCache(join(work, 'cache.db'));
    try {
      const conv = await measure(() =>
        convertImage({
          source: `${reg.host}/library/debian:bookworm`,
          target: `${reg.host}/library/debian:bookworm-nydus`,
          sourceClient: client,
          compressor: 'zstd',
          digester: 'blake3',
          cache,
        }),
      );
      rows.push(row('ferry convert, registry → registry (zstd, blake3)', conv.v.uncompressedBytes, conv.wallS, conv.cpuS));
      const again = await measure(() =>
        convertImage({
          source: `${reg.host}/library/debian:bookworm`,
          target: `${reg.host}/library/debian:again-nydus`,
          sourceClient: client,
          compressor: 'zstd',
          digester: 'blake3',
          cache,
        }),
      );
      rows.push(row('ferry convert again (layer from the conversion cache)', tarBytes, again.wallS, again.cpuS));
      const esgz = await measure(() =>
        convertImageToEstargz({
          source: `${reg.host}/library/debian:bookworm`,
          target: `${reg.host}/library/debian:bookworm-estargz`,
          sourceClient: client,
          prefetchFromTrace: false,
        }),
      );
      rows.push(row('ferry convert --format estargz, registry → registry (gzip 9)', esgz.v.uncompressedBytes, esgz.wallS, esgz.cpuS));
      sizes = { nydusMB: +(conv.v.targetSize / 1e6).toFixed(1), estargzMB: +(esgz.v.targetSize / 1e6).toFixed(1) };
    } finally {
      cache.close();
    }

    // Push → -nydus tag through the webhook and the accel service.
    const accel = await startAccel({
      listen: '127.0.0.1:0',
      workDir: join(work, 'accel'),
      config: {
        provider: {
          source: { [reg.host]: { auth: Buffer.from(`admin:${PASSWORD}`).toString('base64'), webhook: { auth_header: 'bench' } } },
        },
        converter: { worker: 1, driver: { type: 'nydus', config: { compressor: 'zstd' } }, rules: [{ tag_suffix: '-nydus' }] },
      },
    });
    let pushToTag = 0;
    try {
      const res = await fetch(`${reg.url}/api/v2.0/projects/library/webhook/policies`, {
        method: 'POST',
        headers: { authorization: `Basic ${Buffer.from(`admin:${PASSWORD}`).toString('base64')}`, 'content-type': 'application/json' },
        body: JSON.stringify({
          name: 'accel',
          event_types: ['PUSH_ARTIFACT'],
          targets: [{ type: 'http', address: `${accel.url}/api/v1/conversions`, auth_header: 'bench' }],
        }),
      });
      if (res.status !== 201) throw new Error(`policy: ${res.status}`);
      const t0 = Date.now();
      await pushImage(image.layoutDir, `${reg.host}/library/debian2:bookworm`, { creds: `admin:${PASSWORD}` });
      const ref = parseReference(`${reg.host}/library/debian2:bookworm-nydus`);
      for (let i = 0; i < 3000 && !(await client.headManifest(ref)); i++) await new Promise((r) => setTimeout(r, 100));
      pushToTag = (Date.now() - t0) / 1000;
    } finally {
      await accel.close();
    }

    const meta = {
      date: new Date().toISOString(),
      node: process.version,
      cpu: cpus()[0]?.model,
      cores: cpus().length,
      layerTarMB: +(tarBytes / 1e6).toFixed(1),
      layerGzipMB: +(image.compressedSize / 1e6).toFixed(1),
      convertVsRafsCreate: +(rows[1]!.mbPerWallS / rows[0]!.mbPerWallS).toFixed(2),
      pushToNydusTagS: +pushToTag.toFixed(1),
      estargzVsNydusConvert: +(rows[3]!.mbPerWallS / rows[1]!.mbPerWallS).toFixed(2),
      ...sizes,
    };
    console.log(JSON.stringify(meta));
    console.log('| run | uncompressed MB | wall s | CPU s (this process) | MB/s wall | MB/s per CPU-s |');
    console.log('|---|---:|---:|---:|---:|---:|');
    for (const r of rows) console.log(`| ${r.name} | ${r.inputMB} | ${r.wallS} | ${r.cpuS} | ${r.mbPerWallS} | ${r.mbPerCpuS} |`);
    if (jsonOut) writeFileSync(jsonOut, JSON.stringify({ meta, rows }, null, 2));
  } finally {
    await reg.close();
    await rm(work, { recursive: true, force: true });
  }
}

await main();
