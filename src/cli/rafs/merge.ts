/**
 * @module cli/rafs/merge
 * `ferry rafs merge --bootstrap OUT LAYER…` — the role of `nydus-image merge`: layer bootstraps
 * (lowest first) → one image bootstrap with OCI whiteouts and opaque directories applied.
 */
import { readFile, writeFile, mkdir } from 'node:fs/promises';
import { dirname, basename } from 'node:path';
import { Command, InvalidArgumentError } from 'commander';
import { FerryError } from '../../core/index.js';
import { mergeBootstraps } from '../../builder/index.js';

export async function run(argv: string[]): Promise<number> {
  const cmd = new Command('ferry rafs merge')
    .description('merge layer bootstraps (lowest layer first) into one image bootstrap')
    .argument('<layers...>', 'layer bootstraps')
    .requiredOption('-B, --bootstrap <file>', 'merged bootstrap to write')
    .option(
      '-v, --fs-version <n>',
      'RAFS version of the output',
      (v) => {
        const n = Number(v);
        if (n !== 5 && n !== 6) throw new InvalidArgumentError('expected 5 or 6');
        return n;
      },
      6,
    )
    .option('--prefetch-patterns <file>', 'file with one path or glob per line for the prefetch table')
    .option('--blob-digests <list>', "comma-separated blob ids, one per layer, replacing each layer's (single) blob id")
    .option('--blob-ids-from-names', "take each layer's blob id from its file name (nydusify names layer bootstraps by digest)")
    .option('-J, --output-json <file>', 'write a JSON summary')
    .exitOverride()
    .configureOutput({ writeErr: (s) => process.stderr.write(s) });
  try {
    cmd.parse(argv, { from: 'user' });
  } catch (err) {
    return (err as { exitCode?: number }).exitCode === 0 ? 0 : 2;
  }
  const o = cmd.opts<{
    bootstrap: string;
    fsVersion: number;
    prefetchPatterns?: string;
    blobDigests?: string;
    blobIdsFromNames?: boolean;
    outputJson?: string;
  }>();
  const files = cmd.args;
  try {
    const layers = await Promise.all(files.map((f) => readFile(f)));
    let blobIds: (string[] | undefined)[] | undefined;
    if (o.blobDigests) {
      const ids = o.blobDigests.split(',').map((s) => s.trim().replace(/^sha256:/, ''));
      if (ids.length !== files.length)
        throw new FerryError('INVALID_ARGUMENT', `--blob-digests has ${ids.length} ids for ${files.length} layers`);
      blobIds = ids.map((id) => (id ? [id] : undefined));
    } else if (o.blobIdsFromNames) {
      blobIds = files.map((f) => {
        const m = /([0-9a-f]{64})/.exec(basename(f));
        return m ? [m[1]!] : undefined;
      });
    }
    const prefetchPatterns = o.prefetchPatterns
      ? (await readFile(o.prefetchPatterns, 'utf8'))
          .split('\n')
          .map((l) => l.trim())
          .filter(Boolean)
      : undefined;
    const out = mergeBootstraps(layers, {
      fsVersion: o.fsVersion as 5 | 6,
      ...(prefetchPatterns ? { prefetchPatterns } : {}),
      ...(blobIds ? { blobIds } : {}),
    });
    await mkdir(dirname(o.bootstrap), { recursive: true });
    await writeFile(o.bootstrap, out);
    const summary = { bootstrap: o.bootstrap, layers: files.length, size: out.length };
    if (o.outputJson) await writeFile(o.outputJson, `${JSON.stringify(summary, null, 2)}\n`);
    process.stdout.write(`${JSON.stringify(summary)}\n`);
    return 0;
  } catch (err) {
    const msg = FerryError.is(err) ? err.message : (err as Error).message;
    process.stderr.write(`ferry rafs merge: ${msg}\n`);
    return FerryError.hasCode(err, 'INVALID_ARGUMENT') ? 2 : 1;
  }
}
