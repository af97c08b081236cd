/**
 * Snapshotter benchmark: cold start-to-exit of `python3 -c 'print(…)'` in a debootstrap+python3
 * image, containerd's own full pull + overlayfs vs `ferry pull` + the ferry snapshotter (lazy
 * Nydus), the registry behind a `tc tbf` link (default 100 Mbit) in its own network namespace.
 * Runs on the project's benchmark harness (src/bench: fresh containerd root and snapshotter
 * state per run, page cache dropped, modes interleaved) and prints the speed-up and the share of
 * the image the registry served.
 *
 *   node dist/bench/snapshotter/run.js [--mode lazy-fuse|lazy-erofs|lazy-trace] [--repeat 2] [--rate 100mbit] [--out FILE.json]
 */
import { writeFileSync } from 'node:fs';
import { runBench, type ModeId } from '../../src/bench/index.js';
import { createLogger } from '../../src/observe/index.js';

function arg(name: string, def: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 && process.argv[i + 1] ? process.argv[i + 1]! : def;
}

const mode = arg('mode', 'lazy-fuse') as ModeId;
const repeat = Number(arg('repeat', '2'));
const rate = arg('rate', '100mbit');
const out = arg('out', '');
const log = createLogger({ name: 'bench-snapshotter', level: process.env.FERRY_LOG_LEVEL ?? 'warn' });

const res = await runBench({
  workloads: ['python'],
  modes: ['oci', mode],
  nodes: [1],
  bandwidths: [rate],
  registries: ['ferry'],
  repeat,
  log,
  onProgress: (done, total, label) => process.stderr.write(`[${done}/${total}] ${label}\n`),
});
for (const m of res.modes) if (m.status !== 'run') process.stdout.write(`mode ${m.id} not run: ${m.reason}\n`);
for (const n of res.notes) if (!n.startsWith('load average')) process.stdout.write(`note: ${n}\n`);
const w = res.workloads[0];
const oci = res.summary.find((s) => s.mode === 'oci');
const lazy = res.summary.find((s) => s.mode === mode);
const lines = [
  `date: ${res.startedAt}, machine: ${res.machine.cpuModel} ×${res.machine.cores}, ${res.machine.os}, kernel ${res.machine.kernel}`,
  `image: ${w?.title}; OCI ${w?.imageBytes} B compressed / ${w?.uncompressedBytes} B uncompressed; Nydus ${w?.nydusBytes ?? '?'} B`,
  `link: registry behind tbf ${rate}; ${repeat} cold run(s) per mode`,
];
for (const s of [oci, lazy]) {
  if (!s) continue;
  lines.push(
    `${s.mode.padEnd(10)} pull→exit median ${s.readyMs.median.toFixed(0)} ms (pull ${s.pullMs.median.toFixed(0)} ms, run ${s.runMs.median.toFixed(0)} ms), ` +
      `registry served ${s.registryBytes.median.toFixed(0)} B, failures ${s.failures}/${s.runs}`,
  );
}
if (oci && lazy && w) {
  const speedup = oci.readyMs.median / lazy.readyMs.median;
  const share = lazy.registryBytes.median / (w.nydusBytes ?? w.imageBytes);
  const shareOfOci = lazy.registryBytes.median / w.imageBytes;
  lines.push(
    `speed-up ${speedup.toFixed(1)}× (target ≥ 10×); lazy fetched ${(share * 100).toFixed(1)} % of the Nydus image, ` +
      `${(shareOfOci * 100).toFixed(1)} % of the OCI image's bytes (target ≤ 5 %)`,
  );
}
process.stdout.write(`${lines.join('\n')}\n`);
if (out) writeFileSync(out, JSON.stringify(res, null, 2));
