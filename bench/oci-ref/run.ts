/**
 * OCI-ref (zran) against a full Nydus conversion and a plain OCI pull, on one machine in one run:
 * a busybox image with an app layer holding 12 MiB the container never reads (plus 2 MB of text)
 * on Debian's docker-registry (loopback, no shaping). Per mode, a fresh snapshotter + containerd:
 * `ferry pull` then `ctr run` of a command that reads one small file. Reported: registry bytes the
 * node read (lazy modes: the daemon's backend counters; OCI: the layer sizes, all downloaded),
 * time-to-ready (pull start → the container's output), and the bytes each mode stores in the
 * registry beside the OCI image. Figures are ratios within this run only.
 *
 * Run: `npx tsc -p . && flock /tmp/ferry-bench.lock node dist/bench/oci-ref/run.js [--repeat N]`
 */
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildOciImage, busyboxRootfs, pushImage, startContainerd, startDistributionRegistry } from '../../src/bench/env/index.js';
import { buildOciRef, convertImage } from '../../src/convert/index.js';
import { Daemon } from '../../src/daemon/index.js';
import { parseSnapshotterConfig } from '../../src/config/snapshotter.js';
import { silentLogger } from '../../src/observe/index.js';
import { RegistryClient, parseReference } from '../../src/remote/index.js';
import { pullImage, startSnapshotter } from '../../src/snapshotter/index.js';

const RUN = ['/bin/sh', '-c', 'cat /app/message.txt'];

async function runMode(dir: string, name: string, ref: string, snapshotter: 'ferry' | 'overlayfs'): Promise<{ ms: number; bytes: number }> {
  const config = parseSnapshotterConfig({ address: join(dir, `${name}.sock`), root: join(dir, `${name}-snap`), daemon: { ociRef: true } });
  const daemon = new Daemon({ log: silentLogger(), dataDir: join(dir, `${name}-daemon`), config: { amplify_io: config.daemon.amplifyIo } });
  const snap = await startSnapshotter({ config, log: silentLogger(), lazyFs: daemon });
  const cd = await startContainerd({ dir: join(dir, `${name}-cd`), snapshotters: { ferry: snap.address } });
  try {
    const t0 = performance.now();
    await pullImage({ address: cd.address, namespace: cd.namespace, snapshotter, ref, plainHttp: true });
    const run = await cd.ctr(['run', '--rm', '--snapshotter', snapshotter, ref, `${name}-c`, ...RUN]);
    const ms = performance.now() - t0;
    if (run.code !== 0 || run.stdout !== 'hello\n') throw new Error(`${name}: ${run.stderr}`);
    const mounts = await daemon.list();
    const bytes = mounts.reduce((n, m) => n + (m.stats?.layerBytes ?? m.metrics.bytesFetched), 0);
    return { ms, bytes };
  } finally {
    await cd.stop();
    await snap.close();
  }
}

async function main(): Promise<void> {
  const repeat = Number(process.argv[process.argv.indexOf('--repeat') + 1] || 2);
  const dir = await mkdtemp(join(tmpdir(), 'ferry-bench-ociref-'));
  const reg = await startDistributionRegistry({ dir: join(dir, 'registry') });
  try {
    const root = await busyboxRootfs(join(dir, 'rootfs'));
    const app = join(dir, 'app');
    await mkdir(join(app, 'app'), { recursive: true });
    await writeFile(join(app, 'app/message.txt'), 'hello\n');
    await writeFile(join(app, 'app/big.bin'), randomBytes(12 << 20));
    await writeFile(join(app, 'app/text.txt'), 'some words '.repeat(200_000));
    const img = await buildOciImage({ layers: [root, app], outDir: join(dir, 'oci'), config: { Cmd: RUN } });
    const oci = `${reg.host}/library/bench:v1`;
    const nydus = `${reg.host}/library/bench:v1-nydus`;
    await pushImage(img.layoutDir, oci);
    const client = new RegistryClient({});
    const { manifest } = await client.resolveImage(parseReference(oci));
    const ociBytes = manifest.layers.reduce((n, l) => n + l.size, 0);
    let t = performance.now();
    const ref = await buildOciRef({ source: oci, client });
    const ociRefBuildMs = performance.now() - t;
    t = performance.now();
    const conv = await convertImage({ source: oci, target: nydus, sourceClient: client });
    const nydusBuildMs = performance.now() - t;
    const rows: Record<string, Array<{ ms: number; bytes: number }>> = { oci: [], nydus: [], 'oci-ref': [] };
    for (let i = 0; i < repeat; i++) {
      rows.oci!.push({ ...(await runMode(dir, `oci-${i}`, oci, 'overlayfs')), bytes: ociBytes });
      rows.nydus!.push(await runMode(dir, `nydus-${i}`, nydus, 'ferry'));
      rows['oci-ref']!.push(await runMode(dir, `ociref-${i}`, oci, 'ferry'));
    }
    const med = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
    const base = med(rows.oci!.map((r) => r.ms));
    process.stdout.write(
      `image: ${ociBytes} B of gzip layers; stored beside it: nydus ${conv.targetSize} B, oci-ref ${ref.pushedBytes} B\n`,
    );
    process.stdout.write(`build: oci-ref ${ociRefBuildMs.toFixed(0)} ms, nydus conversion ${nydusBuildMs.toFixed(0)} ms\n`);
    for (const [mode, rs] of Object.entries(rows)) {
      const ms = med(rs.map((r) => r.ms));
      const bytes = med(rs.map((r) => r.bytes));
      process.stdout.write(
        `${mode.padEnd(8)} time-to-ready ${ms.toFixed(0)} ms (${(ms / base).toFixed(2)}× OCI)  fetched ${bytes} B (${((100 * bytes) / ociBytes).toFixed(1)} % of the image)\n`,
      );
    }
  } finally {
    await reg.close();
    await rm(dir, { recursive: true, force: true });
  }
}

await main();
