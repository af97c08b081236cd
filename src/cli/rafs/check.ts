/**
 * @module cli/rafs/check
 * `ferry rafs check BOOTSTRAP [--blob-dir DIR] [--json]` — validates every structure of a bootstrap
 * and, with blobs, each blob's CI table and every chunk digest. Exit 0 when valid, 1 naming the
 * first problem.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { Command } from 'commander';
import cliProgress from 'cli-progress';
import { FerryError } from '../../core/index.js';
import { checkBootstrap, openBootstrap } from '../../format/rafs/index.js';
import { BlobFiles } from '../../convert/blob-files.js';

export async function run(argv: string[]): Promise<number> {
  const cmd = new Command('ferry rafs check')
    .description('validate a RAFS bootstrap; with --blob-dir also every blob CI table and chunk digest')
    .argument('<bootstrap>', 'bootstrap file (v5 or v6)')
    .option('-D, --blob-dir <dir>', 'directory holding the data blobs, named by blob id')
    .option('-b, --blob <file>', 'the data blob of a single-blob bootstrap (whatever its file name)')
    .option('--json', 'print the report as JSON')
    .exitOverride();
  cmd.parse(argv, { from: 'user' });
  const opts = cmd.opts<{ blobDir?: string; blob?: string; json?: boolean }>();
  const file = cmd.args[0]!;
  let files: BlobFiles | undefined;
  let bar: cliProgress.SingleBar | undefined;
  try {
    const bs = openBootstrap(await readFile(file));
    files = opts.blobDir || opts.blob ? new BlobFiles(bs, opts.blobDir, opts.blob) : undefined;
    await files?.attachTables();
    const f = files;
    if (f && process.stderr.isTTY) {
      bar = new cliProgress.SingleBar(
        { format: 'verifying chunks [{bar}] {value}/{total}', stream: process.stderr },
        cliProgress.Presets.shades_classic,
      );
    }
    let started = false;
    const report = checkBootstrap(
      bs,
      f
        ? {
            readBlob: (blob, off, len) => f.read(blob, off, len),
            onChunk: (done, total) => {
              if (!bar) return;
              if (!started) {
                bar.start(total, 0);
                started = true;
              }
              bar.update(done);
            },
          }
        : {},
    );
    bar?.stop();
    if (f) {
      // registry-hosted blobs are named by the sha256 of the whole file (Nydus: blob id = layer digest)
      for (const blob of bs.blobs) {
        const h = createHash('sha256');
        const size = f.size(blob);
        for (let off = 0; off < size; off += 1 << 20) h.update(f.read(blob, off, Math.min(1 << 20, size - off)));
        const hex = h.digest('hex');
        if (hex !== blob.blobId)
          report.warnings.push(
            `blob ${blob.blobId}: sha256 of the file is ${hex} (fine for local use; a registry would serve it under that digest)`,
          );
      }
    }
    if (opts.json) {
      process.stdout.write(`${JSON.stringify({ ok: true, ...report }, null, 2)}\n`);
    } else {
      for (const w of report.warnings) process.stderr.write(`warning: ${w}\n`);
      process.stdout.write(
        `ok: RAFS v${report.version}, ${report.entries} entries (${report.dirs} dirs, ${report.files} files, ` +
          `${report.symlinks} symlinks, ${report.others} other), ${report.chunkRefs} chunk refs, ${report.uniqueChunks} unique chunks` +
          (f ? `, ${report.chunksVerified} chunks verified (${report.bytesVerified} bytes)` : ', chunk data not checked (no --blob-dir)') +
          '\n',
      );
    }
    return 0;
  } catch (err) {
    bar?.stop();
    if (FerryError.is(err)) {
      if (opts.json) process.stdout.write(`${JSON.stringify({ ok: false, code: err.code, error: err.message })}\n`);
      process.stderr.write(`ferry rafs check: ${file}: ${err.message}\n`);
      return 1;
    }
    throw err;
  } finally {
    files?.close();
  }
}
