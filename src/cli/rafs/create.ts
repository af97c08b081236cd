/**
 * @module cli/rafs/create
 * `ferry rafs create SOURCE --bootstrap FILE --blob-dir DIR …` — the role of `nydus-image create`:
 * a layer tar (plain, .gz, .zst) or a directory → one data blob `DIR/<blob id>` + a bootstrap.
 */
import { createReadStream } from 'node:fs';
import { lstat, readFile, readdir, writeFile, mkdir } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { Command, InvalidArgumentError } from 'commander';
import cliProgress from 'cli-progress';
import { FerryError } from '../../core/index.js';
import { buildLayer, checkBuildOptions } from '../../builder/index.js';

function parseNumber(v: string): number {
  const n = /^0x[0-9a-f]+$/i.test(v) ? parseInt(v, 16) : Number(v);
  if (!Number.isSafeInteger(n)) throw new InvalidArgumentError(`not a number: ${v}`);
  return n;
}

async function dirBytes(dir: string): Promise<number> {
  let total = 0;
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  for (const e of entries) {
    if (e.isFile()) total += (await lstat(join(e.parentPath ?? e.path, e.name))).size;
  }
  return total;
}

export async function run(argv: string[]): Promise<number> {
  const cmd = new Command('ferry rafs create')
    .description('build a Nydus RAFS data blob and bootstrap from a layer tar (plain, gzip, zstd) or a directory')
    .argument('<source>', 'layer tar file, directory, or - for a tar on stdin')
    .requiredOption('-B, --bootstrap <file>', 'bootstrap to write')
    .requiredOption('-D, --blob-dir <dir>', 'directory receiving the blob, named by its id')
    .option('-v, --fs-version <n>', 'RAFS version (5 or 6)', parseNumber, 6)
    .option('--compressor <name>', 'none | lz4_block | zstd | gzip', 'zstd')
    .option('--chunk-size <size>', 'chunk size, a power of two from 0x1000 to 0x1000000', parseNumber, 0x100000)
    .option('--digester <name>', 'sha256 | blake3', 'sha256')
    .option('--chunk-dict <file>', 'bootstrap whose chunks are referenced instead of stored (accepts bootstrap=FILE)')
    .option('--parent-bootstrap <file>', 'bootstrap of the lower layers; the output is the merged tree')
    .option('--prefetch-patterns <file>', 'file with one path or glob per line ("-" = stdin)')
    .option('--work-dir <dir>', 'where the blob is assembled (default: the blob dir)')
    .option('--blob-inline-meta', 'also store the bootstrap inside the blob (image.boot section), as nydusify does')
    .option('--threads <n>', 'compression worker threads (0 = on the main thread)', parseNumber, 0)
    .option('-J, --output-json <file>', 'write the result as JSON')
    .option('--no-progress', 'no progress bar even on a terminal')
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) });
  try {
    cmd.parse(argv, { from: 'user' });
  } catch (err) {
    const code = (err as { exitCode?: number }).exitCode;
    return code === 0 ? 0 : 2;
  }
  const o = cmd.opts<{
    bootstrap: string;
    blobDir: string;
    fsVersion: number;
    compressor: string;
    chunkSize: number;
    digester: string;
    chunkDict?: string;
    parentBootstrap?: string;
    prefetchPatterns?: string;
    workDir?: string;
    outputJson?: string;
    progress: boolean;
    threads: number;
    blobInlineMeta?: boolean;
  }>();
  const source = cmd.args[0]!;
  let bar: cliProgress.SingleBar | undefined;
  try {
    const checked = checkBuildOptions(o);
    const fromStdin = source === '-';
    const st = fromStdin
      ? undefined
      : await lstat(source).catch(() => {
          throw new FerryError('NOT_FOUND', `source ${source} does not exist`);
        });
    const isDir = st?.isDirectory() ?? false;
    const readOpt = async (f?: string): Promise<Buffer | undefined> => (f ? readFile(f.replace(/^bootstrap=/, '')) : undefined);
    const chunkDict = await readOpt(o.chunkDict);
    const parentBootstrap = await readOpt(o.parentBootstrap);
    let prefetchPatterns: string[] | undefined;
    if (o.prefetchPatterns) {
      const text = o.prefetchPatterns === '-' ? await readStdin() : await readFile(o.prefetchPatterns, 'utf8');
      prefetchPatterns = text
        .split('\n')
        .map((l) => l.trim())
        .filter(Boolean);
    }
    let progressBytes = 0;
    if (o.progress && process.stderr.isTTY && st) {
      const total = isDir ? await dirBytes(source) : st.size;
      bar = new cliProgress.SingleBar(
        {
          format: 'rafs create |{bar}| {percentage}% {value}/{total} MB {speed} MB/s',
          stream: process.stderr,
        },
        cliProgress.Presets.shades_classic,
      );
      bar.start(Math.max(1, Math.round(total / 1e6)), 0, { speed: '0' });
    }
    const started = Date.now();
    const tick = (n: number): void => {
      progressBytes += n;
      if (bar)
        bar.update(Math.round(progressBytes / 1e6), {
          speed: (progressBytes / 1e6 / Math.max(0.001, (Date.now() - started) / 1000)).toFixed(1),
        });
    };
    let input: (NodeJS.ReadableStream & import('node:stream').Readable) | undefined;
    if (fromStdin) {
      input = process.stdin;
    } else if (!isDir) {
      input = createReadStream(source, { highWaterMark: 1 << 20 });
      if (bar) {
        // tar sources: the bar follows the bytes read from the (possibly compressed) file
        let read = 0;
        input.on('data', (c) => {
          read += (c as Buffer).length;
          bar!.update(Math.round(read / 1e6), { speed: (read / 1e6 / Math.max(0.001, (Date.now() - started) / 1000)).toFixed(1) });
        });
      }
    }
    const r = await buildLayer({
      source: isDir ? { dir: source } : input!,
      blobDir: o.blobDir,
      ...(o.workDir ? { workDir: o.workDir } : {}),
      threads: o.threads,
      ...(o.blobInlineMeta ? { inlineBootstrap: true } : {}),
      fsVersion: checked.fsVersion,
      compressor: checked.compressor,
      chunkSize: checked.chunkSize,
      digester: checked.digester,
      ...(chunkDict ? { chunkDict } : {}),
      ...(parentBootstrap ? { parentBootstrap } : {}),
      ...(prefetchPatterns ? { prefetchPatterns } : {}),
      ...(isDir ? { onProgress: tick } : {}),
    });
    bar?.stop();
    bar = undefined;
    await mkdir(dirname(o.bootstrap), { recursive: true });
    await writeFile(o.bootstrap, r.bootstrap);
    const seconds = (Date.now() - started) / 1000;
    const out = {
      bootstrap: o.bootstrap,
      blobs: r.blobId ? [r.blobId] : [],
      blobId: r.blobId,
      blobPath: r.blobPath,
      blobSize: r.blobSize,
      uncompressedSize: r.uncompressedSize,
      chunkCount: r.chunkCount,
      inputBytes: r.stats.inputBytes,
      chunks: {
        total: r.stats.chunksIn,
        stored: r.stats.chunksStored,
        deduplicated: r.stats.chunksDeduped,
        fromDict: r.stats.chunksFromDict,
      },
      fsVersion: checked.fsVersion,
      compressor: checked.compressor,
      digester: checked.digester,
      chunkSize: checked.chunkSize,
      seconds,
    };
    if (r.stats.xattrsDropped)
      process.stderr.write(
        `ferry rafs create: warning: dropped ${r.stats.xattrsDropped} xattrs EROFS cannot store (only user., trusted., security. and POSIX ACLs)\n`,
      );
    if (o.outputJson) await writeFile(o.outputJson, `${JSON.stringify(out, null, 2)}\n`);
    process.stdout.write(`${JSON.stringify(out)}\n`);
    return 0;
  } catch (err) {
    bar?.stop();
    const msg = FerryError.is(err) ? err.message : (err as Error).message;
    process.stderr.write(`ferry rafs create: ${msg}\n`);
    return FerryError.hasCode(err, 'INVALID_ARGUMENT') ? 2 : 1;
  }
}

async function readStdin(): Promise<string> {
  const parts: Buffer[] = [];
  for await (const c of process.stdin) parts.push(c as Buffer);
  return Buffer.concat(parts).toString('utf8');
}
