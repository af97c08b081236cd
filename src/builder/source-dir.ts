/**
 * @module builder/source-dir
 * Builds a tree from a directory: lstat walk (no symlinks followed), hardlinks grouped by
 * (dev, ino), device numbers, nanosecond mtimes, and extended attributes read with `getfattr`
 * (Debian package `attr`; Node has no xattr API) in one recursive call.
 */
import { closeSync, lstatSync, openSync, readdirSync, readlinkSync, readSync, type BigIntStats, type Stats } from 'node:fs';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { FerryError, typeOfMode } from '../core/index.js';
import { newDir, storableXattrs, walkTree, type ChunkRef, type Inode } from './tree.js';
import { resolvePrefetch } from './prefetch.js';
import type { BlobWriter } from './blob-writer.js';

/** Decodes getfattr's escaping of file names (`\ooo` octal bytes, `\\`). */
function unescapeName(s: string): string {
  const bytes: number[] = [];
  const raw = Buffer.from(s, 'utf8');
  for (let i = 0; i < raw.length; i++) {
    if (raw[i] === 0x5c && i + 3 < raw.length && /^[0-7]{3}$/.test(raw.toString('latin1', i + 1, i + 4))) {
      bytes.push(parseInt(raw.toString('latin1', i + 1, i + 4), 8));
      i += 3;
    } else if (raw[i] === 0x5c && raw[i + 1] === 0x5c) {
      bytes.push(0x5c);
      i++;
    } else bytes.push(raw[i]!);
  }
  return Buffer.from(bytes).toString('utf8');
}

/** All xattrs under `dir`, keyed by absolute path. */
export async function readXattrs(dir: string): Promise<Map<string, Map<string, Buffer>>> {
  const out = new Map<string, Map<string, Buffer>>();
  const text = await new Promise<string>((resolve, reject) => {
    execFile(
      'getfattr',
      ['-R', '-P', '-h', '-d', '-m', '-', '-e', 'hex', '--absolute-names', dir],
      { maxBuffer: 1 << 30 },
      (err, stdout, stderr) => {
        if (err && (err as NodeJS.ErrnoException).code === 'ENOENT') {
          reject(
            new FerryError(
              'FAILED_PRECONDITION',
              'reading xattrs of a directory source needs getfattr (Debian package attr, see scripts/install-deps.sh)',
            ),
          );
        } else if (err && !stdout) reject(new FerryError('UNAVAILABLE', `getfattr failed: ${stderr || err.message}`));
        else resolve(stdout);
      },
    );
  });
  let cur: Map<string, Buffer> | undefined;
  for (const line of text.split('\n')) {
    if (line.startsWith('# file: ')) {
      cur = new Map();
      out.set(unescapeName(line.slice(8)), cur);
    } else if (cur && line.includes('=')) {
      const eq = line.indexOf('=');
      const name = line.slice(0, eq);
      const v = line.slice(eq + 1);
      let value: Buffer;
      if (v.startsWith('0x')) value = Buffer.from(v.slice(2), 'hex');
      else if (v.startsWith('0s')) value = Buffer.from(v.slice(2), 'base64');
      else value = Buffer.from(v.replace(/^"|"$/g, ''), 'utf8');
      cur.set(name, value);
    }
  }
  return out;
}

export interface DirSourceOptions {
  writer: BlobWriter;
  chunkSize: number;
  onBytes?: ((n: number) => void) | undefined;
  /** read xattrs with getfattr (default true) */
  xattrs?: boolean;
  /** prefetch patterns: the data of matching files is stored first in the blob (as nydus-image does) */
  prefetchPatterns?: string[] | undefined;
}

export async function treeFromDir(dir: string, opts: DirSourceOptions): Promise<Inode> {
  let st0: Stats;
  try {
    st0 = lstatSync(dir);
  } catch (err) {
    throw new FerryError('NOT_FOUND', `source directory ${dir}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, {
      cause: err,
    });
  }
  if (!st0.isDirectory()) throw new FerryError('INVALID_ARGUMENT', `source ${dir} is not a directory`);
  const xattrs = opts.xattrs === false ? new Map<string, Map<string, Buffer>>() : await readXattrs(dir);
  const links = new Map<string, Inode>();
  let sinceYield = 0;
  // metadata and file reads are synchronous (no thread-pool round trip per file, ~3× less CPU on
  // a rootfs of small files); the event loop gets a turn every 256 entries and at every blob flush
  const maybeYield = async (): Promise<void> => {
    if (++sinceYield >= 256) {
      sinceYield = 0;
      await new Promise((r) => setImmediate(r));
    }
  };

  const attrs = (abs: string, st: BigIntStats, node: Inode): void => {
    node.perm = Number(st.mode) & 0o7777;
    node.uid = Number(st.uid);
    node.gid = Number(st.gid);
    node.mtime = st.mtimeNs > 0n ? Number(st.mtimeNs / 1_000_000_000n) : 0; // unsigned on disk
    node.mtimeNsec = st.mtimeNs > 0n ? Number(st.mtimeNs % 1_000_000_000n) : 0;
    node.xattrs = xattrs.get(abs) ?? new Map();
    opts.writer.stats.xattrsDropped += storableXattrs(node.xattrs).dropped.length;
  };

  const readFileChunks = async (abs: string, size: number): Promise<ChunkRef[]> => {
    const refs: ChunkRef[] = [];
    const fd = openSync(abs, 'r');
    try {
      let off = 0;
      while (off < size) {
        const want = Math.min(opts.chunkSize, size - off);
        const buf = Buffer.allocUnsafe(want); // kept by the blob writer until flushed
        let got = 0;
        while (got < want) {
          const n = readSync(fd, buf, got, want - got, off + got);
          if (n === 0) throw new FerryError('DATA_LOSS', `${abs}: file shrank while reading (${off + got} of ${size} bytes)`);
          got += n;
        }
        const ref = opts.writer.addSync(buf);
        if (opts.writer.needsFlush) await opts.writer.flush();
        refs.push({ ...ref, fileOffset: off });
        off += want;
        opts.onBytes?.(want);
      }
    } finally {
      closeSync(fd);
    }
    return refs;
  };

  const walk = async (absDir: string, node: Inode, st: BigIntStats): Promise<void> => {
    attrs(absDir, st, node);
    const names = readdirSync(absDir).sort();
    for (const name of names) {
      await maybeYield();
      const abs = join(absDir, name);
      const cst = lstatSync(abs, { bigint: true });
      const type = typeOfMode(Number(cst.mode));
      if (!type) throw new FerryError('INVALID_ARGUMENT', `${abs}: unsupported file type`);
      const key = `${cst.dev}:${cst.ino}`;
      if (type !== 'dir' && cst.nlink > 1n) {
        const first = links.get(key);
        if (first) {
          node.children!.set(name, first);
          continue;
        }
      }
      let child: Inode;
      if (type === 'dir') {
        child = newDir();
        await walk(abs, child, cst);
      } else {
        child = { type, perm: 0, uid: 0, gid: 0, mtime: 0, mtimeNsec: 0, size: 0, xattrs: new Map() };
        attrs(abs, cst, child);
        if (type === 'file') {
          child.size = Number(cst.size);
          files.set(child, abs);
        } else if (type === 'symlink') {
          child.target = readlinkSync(abs, { encoding: 'buffer' });
          child.size = child.target.length;
        } else if (type === 'char' || type === 'block') {
          const rdev = Number(cst.rdev);
          child.rdevMajor = ((rdev >>> 8) & 0xfff) | (Math.floor(rdev / 2 ** 32) & ~0xfff);
          child.rdevMinor = (rdev & 0xff) | ((rdev >>> 12) & ~0xff);
        }
        if (cst.nlink > 1n) links.set(key, child);
      }
      node.children!.set(name, child);
    }
  };
  // pass 1: the tree without data; pass 2: file data, prefetch-matched files first, then the rest in
  // tree order (depth-first, names sorted), so prefetched data is contiguous at the blob's start
  const files = new Map<Inode, string>();
  const root = newDir();
  await walk(dir, root, lstatSync(dir, { bigint: true }));
  const order: Inode[] = [];
  const queued = new Set<Inode>();
  const queue = (n: Inode): void => {
    if (n.type === 'file' && !queued.has(n)) {
      queued.add(n);
      order.push(n);
    } else if (n.type === 'dir')
      for (const { node } of walkTree(n))
        if (node.type === 'file' && !queued.has(node)) {
          queued.add(node);
          order.push(node);
        }
  };
  for (const n of resolvePrefetch(root, opts.prefetchPatterns)) queue(n);
  queue(root);
  for (const f of order) {
    await maybeYield();
    f.chunks = await readFileChunks(files.get(f)!, f.size);
  }
  return root;
}
