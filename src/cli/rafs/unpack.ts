/**
 * @module cli/rafs/unpack
 * `ferry rafs unpack --bootstrap F --blob-dir D --output DIR|FILE.tar|-` — rebuilds the tree of a
 * RAFS image from its bootstrap and blob files (every chunk digest verified), all or nothing; see
 * builder/unpack for what is restored.
 */
import { readFile } from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';
import { Command } from 'commander';
import cliProgress from 'cli-progress';
import { FerryError, S_IFMT, S_IFREG } from '../../core/index.js';
import { openBootstrap } from '../../format/rafs/index.js';
import { writeTar } from '../../format/tar/index.js';
import { tarEntries, unpackToDir, writeTarFile, type UnpackOptions } from '../../builder/index.js';
import { BlobFiles } from '../../convert/index.js';

export async function run(argv: string[]): Promise<number> {
  const cmd = new Command('ferry rafs unpack')
    .description('rebuild the file tree of a RAFS image as a directory or a tar file (every chunk digest verified)')
    .requiredOption('-B, --bootstrap <file>', 'bootstrap file (v5 or v6)')
    .option('-D, --blob-dir <dir>', 'directory holding the data blobs, named by blob id')
    .option('-b, --blob <file>', 'the data blob of a single-blob bootstrap (whatever its file name)')
    .requiredOption('-o, --output <path>', 'output directory (created, must be empty), FILE.tar, or - for a tar on stdout')
    .exitOverride();
  cmd.parse(argv, { from: 'user' });
  const opts = cmd.opts<{ bootstrap: string; blobDir?: string; blob?: string; output: string }>();
  let files: BlobFiles | undefined;
  let bar: cliProgress.SingleBar | undefined;
  try {
    const bs = openBootstrap(await readFile(opts.bootstrap));
    files = new BlobFiles(bs, opts.blobDir, opts.blob);
    await files.attachTables();
    let total = 0;
    if (process.stderr.isTTY && opts.output !== '-') {
      for (const e of bs.walk()) if ((e.stat.mode & S_IFMT) === S_IFREG) total += e.stat.size;
      bar = new cliProgress.SingleBar(
        { format: 'unpacking [{bar}] {percentage}% {value}/{total} bytes', stream: process.stderr },
        cliProgress.Presets.shades_classic,
      );
      bar.start(total, 0);
    }
    const how: UnpackOptions = { warn: (m) => process.stderr.write(`warning: ${m}\n`) };
    if (bar) how.progress = (b) => bar!.update(b);
    if (opts.output === '-') {
      await pipeline(writeTar(tarEntries(bs, files, how)), process.stdout);
    } else if (opts.output.endsWith('.tar')) {
      await writeTarFile(opts.output, tarEntries(bs, files, how));
    } else {
      const r = await unpackToDir(bs, files, opts.output, how);
      bar?.stop();
      bar = undefined;
      process.stderr.write(`unpacked ${r.entries} entries, ${r.bytes} bytes of file data into ${opts.output}\n`);
    }
    bar?.stop();
    return 0;
  } catch (err) {
    bar?.stop();
    if (FerryError.is(err)) {
      process.stderr.write(`ferry rafs unpack: ${err.message}\n`);
      return 1;
    }
    throw err;
  } finally {
    files?.close();
  }
}
