/**
 * @module cli/rafs/inspect
 * `ferry rafs inspect BOOTSTRAP [--json]` — superblock, blobs, prefetch table, counts and the tree
 * (each entry described by builder/inspect).
 */
import { readFile } from 'node:fs/promises';
import { Command } from 'commander';
import { FerryError, S_IFMT, S_IFREG, S_IFLNK, S_IFDIR } from '../../core/index.js';
import { openBootstrap } from '../../format/rafs/index.js';
import { describeEntry, type InspectEntry } from '../../builder/index.js';

export async function run(argv: string[]): Promise<number> {
  const cmd = new Command('ferry rafs inspect')
    .description('print superblock, blobs, prefetch table, counts and the file tree of a RAFS bootstrap')
    .argument('<bootstrap>', 'bootstrap file (v5 or v6)')
    .option('--json', 'machine-readable output')
    .option('--no-tree', 'omit the file tree')
    .exitOverride();
  cmd.parse(argv, { from: 'user' });
  const opts = cmd.opts<{ json?: boolean; tree: boolean }>();
  const file = cmd.args[0]!;
  try {
    const bs = openBootstrap(await readFile(file));
    const summary = bs.summary();
    const entries: InspectEntry[] = [];
    const counts = { dirs: 0, files: 0, symlinks: 0, other: 0, chunks: 0, bytes: 0 };
    for (const e of bs.walk()) {
      const d = describeEntry(bs, e);
      const t = e.stat.mode & S_IFMT;
      if (t === S_IFDIR) counts.dirs++;
      else if (t === S_IFREG) {
        counts.files++;
        counts.chunks += d.chunks ?? 0;
        counts.bytes += e.stat.size;
      } else if (t === S_IFLNK) counts.symlinks++;
      else counts.other++;
      if (opts.tree) entries.push(d);
    }
    const blobs = bs.blobs.map((b) => ({ ...b, blobTocDigest: b.blobTocDigest.toString('hex'), features: `0x${b.features.toString(16)}` }));
    if (opts.json) {
      process.stdout.write(
        `${JSON.stringify({ summary, blobs, prefetch: bs.prefetchInodes, counts, entries: opts.tree ? entries : undefined }, null, 2)}\n`,
      );
      return 0;
    }
    const w = (s: string): boolean => process.stdout.write(`${s}\n`);
    w(`RAFS v${summary.version} bootstrap ${file} (${summary.size} bytes)`);
    w(
      `  compressor ${summary.compressor}, digester ${summary.digester}, chunk size 0x${summary.chunkSize.toString(16)}, flags 0x${summary.flags.toString(16)}`,
    );
    w(
      `  inodes ${summary.inodeCount}, root ${summary.rootIno}${summary.version === 6 ? `, chunk table ${summary.chunkTableEntries} entries` : ''}`,
    );
    w('superblock:');
    for (const [k, v] of Object.entries(summary.superblock)) w(`  ${k.padEnd(26)} ${v}`);
    w(`blobs (${bs.blobs.length}):`);
    for (const b of blobs) {
      w(
        `  [${b.index}] ${b.blobId} ${b.compressor}/${b.digester} chunks ${b.chunkCount} compressed ${b.compressedSize} uncompressed ${b.uncompressedSize} features ${b.features}`,
      );
    }
    const pathOf = new Map<number, string>();
    if (bs.prefetchInodes.length) for (const e of bs.walk()) if (!pathOf.has(e.ino)) pathOf.set(e.ino, `/${e.path}`);
    w(
      `prefetch table: ${bs.prefetchInodes.length ? bs.prefetchInodes.map((i) => `${i} (${pathOf.get(i) ?? 'not in the tree'})`).join(' ') : '(none)'}`,
    );
    w(
      `counts: ${counts.dirs} dirs, ${counts.files} files (${counts.bytes} bytes, ${counts.chunks} chunk refs), ${counts.symlinks} symlinks, ${counts.other} other`,
    );
    if (opts.tree) {
      w('tree:');
      for (const d of entries) {
        const extra =
          d.target !== undefined
            ? ` -> ${d.target}`
            : d.rdev
              ? ` [${d.rdev.major},${d.rdev.minor}]`
              : d.chunks !== undefined
                ? ` (${d.chunks} chunks)`
                : '';
        w(
          `  ${d.mode} ${String(d.nlink).padStart(3)} ${`${d.uid}:${d.gid}`.padEnd(11)} ${String(d.size).padStart(10)} ${d.path}${extra}${d.xattrs ? ` xattrs=${Object.keys(d.xattrs).join(',')}` : ''}`,
        );
      }
    }
    return 0;
  } catch (err) {
    if (FerryError.is(err)) {
      process.stderr.write(`ferry rafs inspect: ${err.message}\n`);
      return 1;
    }
    throw err;
  }
}
