/**
 * @module cli/rafs/inspect
 * `ferry rafs inspect BOOTSTRAP [--json]` — superblock, blobs, prefetch table, counts and the tree.
 */
import { readFile } from 'node:fs/promises';
import { Command } from 'commander';
import { FerryError } from '../../core/index.js';
import { openBootstrap, type RafsBootstrap, type WalkEntry } from '../../format/rafs/index.js';
import { S_IFMT, S_IFREG, S_IFLNK, S_IFDIR, S_IFCHR, S_IFBLK, S_IFIFO, S_IFSOCK, decodeRdev } from '../../format/erofs/index.js';

/** `ls -l`-style mode string. */
export function modeString(mode: number): string {
  const t = mode & S_IFMT;
  const c = t === S_IFDIR ? 'd' : t === S_IFLNK ? 'l' : t === S_IFCHR ? 'c' : t === S_IFBLK ? 'b' : t === S_IFIFO ? 'p' : t === S_IFSOCK ? 's' : '-';
  const rwx = (v: number, s: boolean, sc: string): string =>
    `${v & 4 ? 'r' : '-'}${v & 2 ? 'w' : '-'}${s ? (v & 1 ? sc : sc.toUpperCase()) : v & 1 ? 'x' : '-'}`;
  return c + rwx((mode >> 6) & 7, (mode & 0o4000) !== 0, 's') + rwx((mode >> 3) & 7, (mode & 0o2000) !== 0, 's') + rwx(mode & 7, (mode & 0o1000) !== 0, 't');
}

export interface InspectEntry {
  path: string;
  ino: number;
  mode: string;
  uid: number;
  gid: number;
  size: number;
  mtime: number;
  nlink: number;
  rdev?: { major: number; minor: number };
  target?: string;
  chunks?: number;
  xattrs?: Record<string, string>;
}

export function describeEntry(bs: RafsBootstrap, e: WalkEntry): InspectEntry {
  const t = e.stat.mode & S_IFMT;
  const out: InspectEntry = {
    path: `/${e.path}`, ino: e.ino, mode: modeString(e.stat.mode), uid: e.stat.uid, gid: e.stat.gid, size: e.stat.size,
    mtime: e.stat.mtime, nlink: e.stat.nlink,
  };
  if (t === S_IFCHR || t === S_IFBLK) out.rdev = decodeRdev(e.stat.rdev);
  if (t === S_IFLNK) out.target = bs.readlink(e.ino);
  // v6 files are chunk-based: one chunk index per chunk-size piece (no chunk table needed)
  if (t === S_IFREG) out.chunks = bs.version === 6 ? Math.ceil(e.stat.size / bs.chunkSize) : bs.chunks(e.ino).length;
  const x = bs.xattrs(e.ino);
  if (x.size > 0) out.xattrs = Object.fromEntries([...x].map(([k, v]) => [k, /^[\x20-\x7e]*$/.test(v.toString('latin1')) ? v.toString() : `0x${v.toString('hex')}`]));
  return out;
}

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
      else if (t === S_IFREG) { counts.files++; counts.chunks += d.chunks ?? 0; counts.bytes += e.stat.size; }
      else if (t === S_IFLNK) counts.symlinks++;
      else counts.other++;
      if (opts.tree) entries.push(d);
    }
    const blobs = bs.blobs.map((b) => ({ ...b, blobTocDigest: b.blobTocDigest.toString('hex'), features: `0x${b.features.toString(16)}` }));
    if (opts.json) {
      process.stdout.write(`${JSON.stringify({ summary, blobs, prefetch: bs.prefetchInodes, counts, entries: opts.tree ? entries : undefined }, null, 2)}\n`);
      return 0;
    }
    const w = (s: string): boolean => process.stdout.write(`${s}\n`);
    w(`RAFS v${summary.version} bootstrap ${file} (${summary.size} bytes)`);
    w(`  compressor ${summary.compressor}, digester ${summary.digester}, chunk size 0x${summary.chunkSize.toString(16)}, flags 0x${summary.flags.toString(16)}`);
    w(`  inodes ${summary.inodeCount}, root ${summary.rootIno}${summary.version === 6 ? `, chunk table ${summary.chunkTableEntries} entries` : ''}`);
    w('superblock:');
    for (const [k, v] of Object.entries(summary.superblock)) w(`  ${k.padEnd(26)} ${v}`);
    w(`blobs (${bs.blobs.length}):`);
    for (const b of blobs) {
      w(`  [${b.index}] ${b.blobId} ${b.compressor}/${b.digester} chunks ${b.chunkCount} compressed ${b.compressedSize} uncompressed ${b.uncompressedSize} features ${b.features}`);
    }
    const pathOf = new Map<number, string>();
    if (bs.prefetchInodes.length) for (const e of bs.walk()) if (!pathOf.has(e.ino)) pathOf.set(e.ino, `/${e.path}`);
    w(`prefetch table: ${bs.prefetchInodes.length ? bs.prefetchInodes.map((i) => `${i} (${pathOf.get(i) ?? 'not in the tree'})`).join(' ') : '(none)'}`);
    w(`counts: ${counts.dirs} dirs, ${counts.files} files (${counts.bytes} bytes, ${counts.chunks} chunk refs), ${counts.symlinks} symlinks, ${counts.other} other`);
    if (opts.tree) {
      w('tree:');
      for (const d of entries) {
        const extra = d.target !== undefined ? ` -> ${d.target}` : d.rdev ? ` [${d.rdev.major},${d.rdev.minor}]` : d.chunks !== undefined ? ` (${d.chunks} chunks)` : '';
        w(`  ${d.mode} ${String(d.nlink).padStart(3)} ${`${d.uid}:${d.gid}`.padEnd(11)} ${String(d.size).padStart(10)} ${d.path}${extra}${d.xattrs ? ` xattrs=${Object.keys(d.xattrs).join(',')}` : ''}`);
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
