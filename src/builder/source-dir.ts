/**
 * @module builder/source-dir
 * Builds a tree from a directory: lstat walk (no symlinks followed), hardlinks grouped by
 * (dev, ino), device numbers, nanosecond mtimes, and extended attributes read with `getfattr`
 * (Debian package `attr`; Node has no xattr API) in one recursive call.
 */
import { lstat, open, readdir, readlink } from 'node:fs/promises';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { FerryError } from '../core/index.js';
import { newDir, storableXattrs, type Inode, type NodeType } from './tree.js';
import { chunkFile } from './chunker.js';
import type { BlobWriter } from './blob-writer.js';

const S_IFMT = 0o170000;
const TYPES: Record<number, NodeType> = {
  0o100000: 'file', 0o040000: 'dir', 0o120000: 'symlink', 0o020000: 'char', 0o060000: 'block', 0o010000: 'fifo', 0o140000: 'socket',
};

/** Decodes getfattr's escaping of file names (`\ooo` octal bytes, `\\`). */
function unescapeName(s: string): string {
  const bytes: number[] = [];
  const raw = Buffer.from(s, 'utf8');
  for (let i = 0; i < raw.length; i++) {
    if (raw[i] === 0x5c && i + 3 < raw.length + 0 && /^[0-7]{3}$/.test(raw.toString('latin1', i + 1, i + 4))) {
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
    execFile('getfattr', ['-R', '-P', '-h', '-d', '-m', '-', '-e', 'hex', '--absolute-names', dir], { maxBuffer: 1 << 30 }, (err, stdout, stderr) => {
      if (err && (err as NodeJS.ErrnoException).code === 'ENOENT') {
        reject(new FerryError('FAILED_PRECONDITION', 'reading xattrs of a directory source needs getfattr (Debian package attr, see scripts/install-deps.sh)'));
      } else if (err && !stdout) reject(new FerryError('UNAVAILABLE', `getfattr failed: ${stderr || err.message}`));
      else resolve(stdout);
    });
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
}

export async function treeFromDir(dir: string, opts: DirSourceOptions): Promise<Inode> {
  const st0 = await lstat(dir).catch((err: NodeJS.ErrnoException) => {
    throw new FerryError('NOT_FOUND', `source directory ${dir}: ${err.code ?? err.message}`, { cause: err });
  });
  if (!st0.isDirectory()) throw new FerryError('INVALID_ARGUMENT', `source ${dir} is not a directory`);
  const xattrs = opts.xattrs === false ? new Map<string, Map<string, Buffer>>() : await readXattrs(dir);
  const links = new Map<string, Inode>();
  const root = newDir();

  const fill = async (abs: string, node: Inode): Promise<void> => {
    const st = await lstat(abs, { bigint: true });
    node.perm = Number(st.mode) & 0o7777;
    node.uid = Number(st.uid);
    node.gid = Number(st.gid);
    node.mtime = Number(st.mtimeNs / 1_000_000_000n);
    node.mtimeNsec = Number(st.mtimeNs % 1_000_000_000n);
    node.xattrs = xattrs.get(abs) ?? new Map();
    opts.writer.stats.xattrsDropped += storableXattrs(node.xattrs).dropped.length;
  };

  const walk = async (absDir: string, node: Inode): Promise<void> => {
    await fill(absDir, node);
    const names = (await readdir(absDir)).sort();
    for (const name of names) {
      const abs = join(absDir, name);
      const st = await lstat(abs, { bigint: true });
      const type = TYPES[Number(st.mode) & S_IFMT];
      if (!type) throw new FerryError('INVALID_ARGUMENT', `${abs}: unsupported file type`);
      if (type !== 'dir' && st.nlink > 1n) {
        const key = `${st.dev}:${st.ino}`;
        const first = links.get(key);
        if (first) { node.children!.set(name, first); continue; }
      }
      let child: Inode;
      if (type === 'dir') {
        child = newDir();
        await walk(abs, child);
      } else {
        child = { type, perm: 0, uid: 0, gid: 0, mtime: 0, mtimeNsec: 0, size: 0, xattrs: new Map() };
        await fill(abs, child);
        if (type === 'file') {
          child.size = Number(st.size);
          const fh = await open(abs, 'r');
          try { child.chunks = await chunkFile(fh, child.size, opts.writer, opts.chunkSize, opts.onBytes); } finally { await fh.close(); }
        } else if (type === 'symlink') {
          child.target = await readlink(abs, { encoding: 'buffer' });
          child.size = child.target.length;
        } else if (type === 'char' || type === 'block') {
          const rdev = Number(st.rdev);
          child.rdevMajor = ((rdev >>> 8) & 0xfff) | (Math.floor(rdev / 2 ** 32) & ~0xfff);
          child.rdevMinor = (rdev & 0xff) | ((rdev >>> 12) & ~0xff);
        }
        if (st.nlink > 1n) links.set(`${st.dev}:${st.ino}`, child);
      }
      node.children!.set(name, child);
    }
  };
  await walk(dir, root);
  return root;
}
