/**
 * Filesystem tree snapshots for round-trip tests: every entry's type, permissions, owner, mtime,
 * content digest, symlink target, device numbers, xattrs and hardlink group, read with lstat and
 * getfattr (never through Ferry code), plus a readable diff of two snapshots.
 */
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { lstatSync, readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { join } from 'node:path';

export interface FsEntry {
  type: string;
  perm: string;
  uid: number;
  gid: number;
  mtime?: number;
  size?: number;
  sha256?: string;
  target?: string;
  rdev?: string;
  xattrs?: Record<string, string>;
  links?: string[];
}

export interface SnapshotOptions {
  mtime?: boolean;
  xattrs?: boolean;
  hardlinks?: boolean;
  /** include the root directory's own attributes */
  root?: boolean;
  /** permission bits compared (default 0o7777) */
  permMask?: number;
}

function typeOf(mode: number): string {
  switch (mode & 0o170000) {
    case 0o100000:
      return 'file';
    case 0o040000:
      return 'dir';
    case 0o120000:
      return 'symlink';
    case 0o020000:
      return 'char';
    case 0o060000:
      return 'block';
    case 0o010000:
      return 'fifo';
    case 0o140000:
      return 'socket';
    default:
      return 'unknown';
  }
}

/** Every xattr under `dir` (one recursive getfattr call), keyed by getfattr's escaped absolute path. */
function allXattrs(dir: string): Map<string, Record<string, string>> {
  let out = '';
  try {
    out = execFileSync('getfattr', ['-R', '-P', '-h', '-d', '-m', '-', '-e', 'hex', '--absolute-names', dir], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
      maxBuffer: 1 << 28,
    });
  } catch (err) {
    out = (err as { stdout?: string }).stdout ?? '';
  }
  const map = new Map<string, Record<string, string>>();
  let cur: Record<string, string> | undefined;
  for (const line of out.split('\n')) {
    if (line.startsWith('# file: ')) {
      cur = {};
      map.set(line.slice(8), cur);
      continue;
    }
    const eq = line.indexOf('=');
    if (!cur || eq < 0) continue;
    cur[line.slice(0, eq)] = line.slice(eq + 1);
  }
  return map;
}

/** getfattr's escaping of a path (octal for control bytes, doubled backslash). */
function escapePath(p: string): string {
  const out: number[] = [];
  for (const b of Buffer.from(p, 'utf8')) {
    if (b === 0x5c) out.push(0x5c, 0x5c);
    else if (b < 0x20 || b === 0x7f) out.push(...Buffer.from(`\\${b.toString(8).padStart(3, '0')}`, 'latin1'));
    else out.push(b);
  }
  return Buffer.from(out).toString('utf8');
}

export function snapshot(dir: string, opts: SnapshotOptions = {}): Record<string, FsEntry> {
  const o = { mtime: true, xattrs: true, hardlinks: true, root: false, permMask: 0o7777, ...opts };
  const out: Record<string, FsEntry> = {};
  const inodes = new Map<string, string[]>();
  const xmap = o.xattrs ? allXattrs(dir) : new Map<string, Record<string, string>>();
  const xattrsOf = (abs: string): Record<string, string> => xmap.get(escapePath(abs)) ?? xmap.get(abs) ?? {};
  const walk = (abs: string, rel: string): void => {
    const st = lstatSync(abs, { bigint: true });
    const mode = Number(st.mode);
    const type = typeOf(mode);
    const e: FsEntry = { type, perm: (mode & o.permMask).toString(8), uid: Number(st.uid), gid: Number(st.gid) };
    if (o.mtime && type !== 'symlink') e.mtime = Number(st.mtimeMs / 1000n);
    if (type === 'file') {
      e.size = Number(st.size);
      e.sha256 = createHash('sha256').update(readFileSync(abs)).digest('hex');
    } else if (type === 'symlink') {
      e.target = readlinkSync(abs);
    } else if (type === 'char' || type === 'block') {
      const r = Number(st.rdev);
      e.rdev = `${(r >>> 8) & 0xfff}:${(r & 0xff) | ((r >>> 12) & ~0xff)}`;
    }
    if (o.xattrs) {
      const x = xattrsOf(abs);
      if (Object.keys(x).length) e.xattrs = x;
    }
    if (o.hardlinks && type !== 'dir' && st.nlink > 1n) {
      const key = `${st.dev}:${st.ino}`;
      inodes.set(key, [...(inodes.get(key) ?? []), rel]);
      (e as { _key?: string })._key = key;
    }
    if (rel !== '/' || o.root) out[rel] = e;
    if (type === 'dir') {
      for (const name of readdirSync(abs).sort()) walk(join(abs, name), rel === '/' ? `/${name}` : `${rel}/${name}`);
    }
  };
  walk(dir, '/');
  for (const e of Object.values(out)) {
    const k = (e as { _key?: string })._key;
    if (k) {
      delete (e as { _key?: string })._key;
      const group = inodes.get(k)!;
      if (group.length > 1) e.links = [...group].sort();
    }
  }
  return out;
}

/** Lines describing every difference (empty when equal). */
export function diffSnapshots(a: Record<string, FsEntry>, b: Record<string, FsEntry>): string[] {
  const out: string[] = [];
  for (const k of new Set([...Object.keys(a), ...Object.keys(b)])) {
    const x = a[k];
    const y = b[k];
    if (!x) out.push(`+ ${k}`);
    else if (!y) out.push(`- ${k}`);
    else if (JSON.stringify(x) !== JSON.stringify(y)) out.push(`~ ${k}: ${JSON.stringify(x)} != ${JSON.stringify(y)}`);
  }
  return out;
}
