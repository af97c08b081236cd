/**
 * Read workload of bench/daemon/read.ts, run as its own process (as a container would be):
 *   node dist/bench/daemon/reader.js ROOT LISTFILE seq|rand [COUNT] [SEED]
 * seq: every file of the list read front to back in 128 KiB reads; rand: COUNT 4 KiB reads at
 * random 4 KiB-aligned offsets of the listed files (deterministic seed). Prints {bytes, seconds}.
 */
import { openSync, readSync, closeSync, readFileSync, fstatSync } from 'node:fs';
import { join } from 'node:path';

const [root, listFile, mode, countArg, seedArg] = process.argv.slice(2);
const files = readFileSync(listFile!, 'utf8').split('\n').filter(Boolean);
const buf = Buffer.allocUnsafe(128 * 1024);
let bytes = 0;
const t0 = process.hrtime.bigint();
if (mode === 'seq') {
  for (const f of files) {
    const fd = openSync(join(root!, f), 'r');
    for (;;) {
      const n = readSync(fd, buf, 0, buf.length, null);
      if (n === 0) break;
      bytes += n;
    }
    closeSync(fd);
  }
} else {
  let s = Number(seedArg ?? 42) >>> 0;
  const rnd = (): number => {
    s = (s * 1664525 + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
  const fds = files.map((f) => openSync(join(root!, f), 'r'));
  const sizes = fds.map((fd) => fstatSync(fd).size);
  const total = sizes.reduce((a, b) => a + b, 0);
  const count = Number(countArg ?? 20000);
  for (let i = 0; i < count; i++) {
    // pick a file weighted by size, then an aligned offset in it
    let x = rnd() * total;
    let k = 0;
    while (k < sizes.length - 1 && x >= sizes[k]!) {
      x -= sizes[k]!;
      k++;
    }
    const off = Math.floor(x / 4096) * 4096;
    bytes += readSync(fds[k]!, buf, 0, 4096, off);
  }
  for (const fd of fds) closeSync(fd);
}
const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
process.stdout.write(`${JSON.stringify({ bytes, seconds })}\n`);
