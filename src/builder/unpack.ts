/**
 * @module builder/unpack
 * The inverse of the builder (the library side of `ferry rafs unpack`, nydus-image unpack's role):
 * rebuilds a RAFS image's tree — as a directory or as tar entries — from its bootstrap and a source
 * of file data (`FileData`, e.g. the blob files with every chunk digest verified): content, mode,
 * uid/gid, mtime, symlinks, hardlinks, xattrs (one `setfattr --restore` run), device nodes and
 * fifos (`mknod`). Sockets are skipped (reported through `warn`). Never follows a symlink while
 * writing: every path is created fresh inside an empty output dir. All or nothing: the tree (or tar
 * file) is written beside the output under a hidden temporary name and renamed into place when
 * complete; a failure removes it, so a rerun finds the output as it was.
 */
import { spawnSync } from 'node:child_process';
import { createWriteStream, existsSync } from 'node:fs';
import {
  chmod,
  chown,
  lchown,
  link,
  lutimes,
  mkdir,
  mkdtemp,
  open,
  readdir,
  rename,
  rm,
  symlink,
  utimes,
  writeFile,
} from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { basename, dirname, join, resolve } from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { FerryError, S_IFBLK, S_IFCHR, S_IFDIR, S_IFIFO, S_IFLNK, S_IFMT, S_IFREG, S_IPERM } from '../core/index.js';
import { decodeRdev } from '../format/erofs/index.js';
import type { RafsBootstrap, WalkEntry } from '../format/rafs/index.js';
import { writeTar, type TarEntry } from '../format/tar/index.js';

/** Where a regular file's bytes come from, in order (e.g. the blob files, chunk digests verified). */
export interface FileData {
  fileData(ino: number): Iterable<Buffer>;
}

export interface UnpackOptions {
  /** Called with the file bytes written so far. */
  progress?: (bytes: number) => void;
  /** Called for each entry left out (sockets). */
  warn?: (message: string) => void;
}

/** What an unpack did: entries created, file bytes written. */
export interface UnpackCounts {
  entries: number;
  bytes: number;
}
/** A tar entry of the tree, with its body for a regular file. */
export type TreeTarEntry = { entry: TarEntry; body?: Buffer | Readable };

/** Modes of what is being written: private until complete (dirs get theirs last), the tar file as a user's file. */
const WORK_DIR_MODE = 0o700;
const WORK_FILE_MODE = 0o600;
const TAR_FILE_MODE = 0o644;
/** Permission bits `mknod -m` takes (no setuid/setgid/sticky). */
const MKNOD_PERM = 0o777;
/** Bytes setfattr's dump escapes: `\`, `=` and everything outside printable ASCII. */
const BACKSLASH = 0x5c;
const EQUALS = 0x3d;
const PRINTABLE_FIRST = 0x21;
const PRINTABLE_LAST = 0x7e;

function mtimeOf(e: WalkEntry): number {
  return e.stat.mtimeNsec ? e.stat.mtime + e.stat.mtimeNsec / 1e9 : e.stat.mtime;
}

async function ignoreEperm(p: Promise<void>): Promise<void> {
  try {
    await p;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EPERM') throw err;
  }
}

function escapeDumpName(s: string): string {
  return Buffer.from(s, 'utf8').reduce(
    (acc, b) =>
      acc +
      (b === BACKSLASH
        ? '\\\\'
        : b < PRINTABLE_FIRST || b > PRINTABLE_LAST || b === EQUALS
          ? `\\${b.toString(8).padStart(3, '0')}`
          : String.fromCharCode(b)),
    '',
  );
}

/** A hidden name beside `target` for writing it before it is complete. */
function besideTarget(target: string): string {
  const t = resolve(target);
  return join(dirname(t), `.${basename(t)}.ferry-unpack-`);
}

/**
 * Unpacks into `out` (created if missing, must be empty), all or nothing: the tree is built in a
 * temporary directory beside `out` (mode 0700 until the root's own mode is applied last) and
 * renamed to `out` when complete; on failure it is removed and `out` is left as it was. Returns counts.
 */
export async function unpackToDir(bs: RafsBootstrap, files: FileData, out: string, opts: UnpackOptions = {}): Promise<UnpackCounts> {
  const existing = await readdir(out).catch((err: NodeJS.ErrnoException) => {
    if (err.code === 'ENOENT') return undefined;
    const why = err.code === 'ENOTDIR' ? 'not a directory' : err.message;
    throw new FerryError('FAILED_PRECONDITION', `output ${out}: ${why}`, { cause: err });
  });
  if (existing && existing.length > 0) throw new FerryError('FAILED_PRECONDITION', `output directory ${out} is not empty`);
  await mkdir(dirname(resolve(out)), { recursive: true });
  const work = await mkdtemp(besideTarget(out));
  let r: UnpackCounts;
  try {
    r = await unpackInto(bs, files, work, opts);
    // rename(2) replaces an empty directory at `out`, not one someone wrote into meanwhile (ENOTEMPTY)
    await rename(work, out);
  } catch (err) {
    await rm(work, { recursive: true, force: true });
    if (FerryError.is(err)) throw err;
    const e = err as NodeJS.ErrnoException;
    const code = e.code === 'ENOTEMPTY' || e.code === 'EEXIST' ? 'FAILED_PRECONDITION' : 'INTERNAL';
    throw new FerryError(code, `unpack into ${out}: ${e.message}`, { cause: err });
  }
  return r;
}

/** Writes the tree into the empty directory `out`. */
async function unpackInto(bs: RafsBootstrap, files: FileData, out: string, opts: UnpackOptions): Promise<UnpackCounts> {
  const seen = new Set<string>();
  const firstLink = new Map<number, string>();
  const dirs: WalkEntry[] = [];
  const xattrDump: string[] = [];
  let entries = 0;
  let bytes = 0;
  for (const e of bs.walk()) {
    if (seen.has(e.path)) throw new FerryError('DATA_LOSS', `duplicate entry /${e.path}`);
    seen.add(e.path);
    entries++;
    const p = e.path === '' ? out : join(out, e.path);
    const t = e.stat.mode & S_IFMT;
    const perm = e.stat.mode & S_IPERM;
    if (t === S_IFDIR) {
      if (e.path !== '') await mkdir(p, { mode: WORK_DIR_MODE });
      dirs.push(e);
    } else if (t === S_IFREG) {
      const first = firstLink.get(e.stat.ino);
      if (first !== undefined) {
        await link(first, p);
        continue;
      }
      if (e.stat.nlink > 1) firstLink.set(e.stat.ino, p);
      const fh = await open(p, 'wx', WORK_FILE_MODE);
      try {
        for (const chunk of files.fileData(e.ino)) {
          await fh.write(chunk);
          bytes += chunk.length;
          opts.progress?.(bytes);
        }
      } finally {
        await fh.close();
      }
      await ignoreEperm(chown(p, e.stat.uid, e.stat.gid));
      await chmod(p, perm);
      await utimes(p, mtimeOf(e), mtimeOf(e));
    } else if (t === S_IFLNK) {
      await symlink(bs.readlink(e.ino), p);
      await ignoreEperm(lchown(p, e.stat.uid, e.stat.gid));
      await lutimes(p, mtimeOf(e), mtimeOf(e));
    } else if (t === S_IFCHR || t === S_IFBLK || t === S_IFIFO) {
      const { major, minor } = decodeRdev(e.stat.rdev);
      const args = t === S_IFIFO ? [p, 'p'] : [p, t === S_IFCHR ? 'c' : 'b', String(major), String(minor)];
      const r = spawnSync('mknod', ['-m', (perm & MKNOD_PERM).toString(8), ...args], { encoding: 'utf8' });
      if (r.status !== 0) throw new FerryError('FAILED_PRECONDITION', `mknod ${e.path}: ${r.stderr || r.error?.message || 'failed'}`);
      await ignoreEperm(chown(p, e.stat.uid, e.stat.gid));
      await chmod(p, perm);
      await utimes(p, mtimeOf(e), mtimeOf(e));
    } else {
      opts.warn?.(`skipping /${e.path} (sockets are not unpacked)`);
      continue;
    }
    const x = bs.xattrs(e.ino);
    if (x.size > 0) {
      xattrDump.push(`# file: ${escapeDumpName(e.path === '' ? '.' : `./${e.path}`)}`);
      for (const [k, v] of x) xattrDump.push(`${k}=0x${v.toString('hex')}`);
      xattrDump.push('');
    }
  }
  // xattrs after ownership (chown clears security.capability), before directory times
  if (xattrDump.length > 0) {
    const dumpFile = join(tmpdir(), `ferry-xattrs-${process.pid}-${Date.now()}`);
    await writeFile(dumpFile, `${xattrDump.join('\n')}\n`);
    try {
      const r = spawnSync('setfattr', ['-h', `--restore=${dumpFile}`], { cwd: out, encoding: 'utf8' });
      if (r.error) throw new FerryError('FAILED_PRECONDITION', `setfattr (package attr) is needed to restore xattrs: ${r.error.message}`);
      if (r.status !== 0) throw new FerryError('FAILED_PRECONDITION', `setfattr --restore failed: ${r.stderr.trim()}`);
    } finally {
      await rm(dumpFile, { force: true });
    }
  }
  for (let i = dirs.length - 1; i >= 0; i--) {
    const e = dirs[i]!;
    const p = e.path === '' ? out : join(out, e.path);
    await ignoreEperm(chown(p, e.stat.uid, e.stat.gid));
    await chmod(p, e.stat.mode & S_IPERM);
    await utimes(p, mtimeOf(e), mtimeOf(e));
  }
  return { entries, bytes };
}

/** The tree as tar entries (hardlinks after their first path, sockets skipped). */
export async function* tarEntries(bs: RafsBootstrap, files: FileData, opts: UnpackOptions = {}): AsyncGenerator<TreeTarEntry> {
  const firstLink = new Map<number, string>();
  let bytes = 0;
  for (const e of bs.walk()) {
    const t = e.stat.mode & S_IFMT;
    const base = {
      path: e.path,
      mode: e.stat.mode & S_IPERM,
      uid: e.stat.uid,
      gid: e.stat.gid,
      mtime: mtimeOf(e),
      size: 0,
      xattrs: Object.fromEntries(bs.xattrs(e.ino)),
    };
    if (t === S_IFDIR) yield { entry: { ...base, type: 'dir' } };
    else if (t === S_IFREG) {
      const first = firstLink.get(e.stat.ino);
      if (first !== undefined) {
        yield { entry: { ...base, type: 'hardlink', linkname: first } };
        continue;
      }
      if (e.stat.nlink > 1) firstLink.set(e.stat.ino, e.path);
      const gen = files.fileData(e.ino);
      const counted = (function* () {
        for (const b of gen) {
          bytes += b.length;
          opts.progress?.(bytes);
          yield b;
        }
      })();
      yield { entry: { ...base, type: 'file', size: e.stat.size }, body: Readable.from(counted, { objectMode: false }) };
    } else if (t === S_IFLNK) yield { entry: { ...base, type: 'symlink', linkname: bs.readlink(e.ino) } };
    else if (t === S_IFCHR || t === S_IFBLK) {
      const { major, minor } = decodeRdev(e.stat.rdev);
      yield { entry: { ...base, type: t === S_IFCHR ? 'char' : 'block', devmajor: major, devminor: minor } };
    } else if (t === S_IFIFO) yield { entry: { ...base, type: 'fifo' } };
    else opts.warn?.(`skipping /${e.path} (sockets cannot be stored in tar)`);
  }
}

/**
 * Writes the tar to `file` (which must not exist) all or nothing: to a temporary file beside it,
 * linked to `file` when complete (link(2) fails if `file` appeared meanwhile), removed on failure.
 */
export async function writeTarFile(file: string, entries: ReturnType<typeof tarEntries>): Promise<void> {
  if (existsSync(file)) throw new FerryError('ALREADY_EXISTS', `output ${file} exists`);
  const tmp = `${besideTarget(file)}${process.pid}-${Date.now()}`;
  try {
    await pipeline(writeTar(entries), createWriteStream(tmp, { flags: 'wx', mode: TAR_FILE_MODE }));
    await link(tmp, file).catch((err: NodeJS.ErrnoException) => {
      throw err.code === 'EEXIST' ? new FerryError('ALREADY_EXISTS', `output ${file} exists`, { cause: err }) : err;
    });
  } finally {
    await rm(tmp, { force: true });
  }
}
