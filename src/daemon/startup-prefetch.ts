/**
 * @module daemon/startup-prefetch
 * What a container's first process will certainly read, known before it runs: its executable
 * (Entrypoint/Cmd resolved through PATH and symlinks inside the image, `#!` interpreters
 * followed), the ELF dynamic loader, and the shared libraries it needs (DT_NEEDED through
 * RUNPATH/RPATH and the Debian multiarch directories, transitively). Of each ELF file the loader
 * reads its headers and dynamic tables and touches every page of its writable segments while
 * relocating; those ranges — a third to a half of what a cold python start reads — are fetched in
 * a few merged requests while containerd and runc still set the container up, instead of page
 * fault by page fault afterwards. Which code and read-only pages a program touches cannot be known
 * here, but they are scattered all over the file (a cold python start faults ~90 of them in, one
 * round trip each): dynamically linked ELF files up to a size (`ferry.whole_elf`, default
 * 8 MiB) are then fetched whole, after every file's loader reads.
 *
 * Every step is best effort: a missing file, a non-ELF, an unreadable header ends that branch.
 */
import { S_IFLNK, S_IFMT, S_IFREG } from '../core/index.js';
import type { Logger } from '../observe/index.js';
import type { RafsBootstrap } from '../format/rafs/index.js';
import {
  cString,
  elfHeadersLength,
  interpSegment,
  loaderRanges,
  multiarchTriple,
  parseDynamic,
  parseElfHeaders,
  PT_DYNAMIC,
} from '../format/elf/index.js';

/** The container's command as the image config gives it. */
export interface StartupHint {
  /** Entrypoint followed by Cmd */
  argv: string[];
  /** the config's Env (`PATH=…` is used) */
  env?: string[];
  workingDir?: string;
}

export interface FileRange {
  path: string;
  ino: number;
  offset: number;
  length: number;
}

const DEFAULT_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

const MAX_FILES = 64;
const MAX_SCRIPT = 256 * 1024;

/** Reads `length` bytes at `offset` of a file of the image (through the lazy device). */
export type ReadFile = (ino: number, offset: number, length: number) => Promise<Buffer>;

/** Resolves `path` in the image, following symlinks in every component; undefined if absent. */
export function resolveInImage(bs: RafsBootstrap, path: string, cwd = '/'): { ino: number; path: string } | undefined {
  let todo = (path.startsWith('/') ? path : `${cwd}/${path}`).split('/').filter((p) => p && p !== '.');
  const names: string[] = [];
  const inos: number[] = [bs.rootIno];
  let hops = 0;
  while (todo.length) {
    const name = todo.shift()!;
    if (name === '..') {
      if (names.length) {
        names.pop();
        inos.pop();
      }
      continue;
    }
    const ino = bs.lookupChild(inos[inos.length - 1]!, name);
    if (ino === undefined) return undefined;
    if ((bs.stat(ino).mode & S_IFMT) === S_IFLNK) {
      if (++hops > 40) return undefined;
      const target = bs.readlink(ino);
      const parts = target.split('/').filter((p) => p && p !== '.');
      if (target.startsWith('/')) {
        names.length = 0;
        inos.length = 1;
      }
      todo = [...parts, ...todo];
      continue;
    }
    names.push(name);
    inos.push(ino);
  }
  return { ino: inos[inos.length - 1]!, path: `/${names.join('/')}` };
}

function searchPath(bs: RafsBootstrap, name: string, hint: StartupHint): { ino: number; path: string } | undefined {
  if (name.includes('/')) return resolveInImage(bs, name, hint.workingDir || '/');
  const pathVar = hint.env?.find((e) => e.startsWith('PATH='))?.slice(5) || DEFAULT_PATH;
  for (const dir of pathVar.split(':')) {
    if (!dir.startsWith('/')) continue;
    const r = resolveInImage(bs, `${dir}/${name}`);
    if (r && (bs.stat(r.ino).mode & S_IFMT) === S_IFREG) return r;
  }
  return undefined;
}

function dirname(p: string): string {
  const i = p.lastIndexOf('/');
  return i <= 0 ? '/' : p.slice(0, i);
}

/**
 * The file ranges the start of `hint`'s command will read, file by file as they are found; then,
 * once every file is known, each dynamically linked ELF file (with a PT_DYNAMIC segment: not a
 * static binary) of at most `wholeElfMax` bytes whole (its own `onFile`
 * call, in the order found), so that the loader's reads of all files are queued before any whole
 * file.
 */
export async function startupRanges(
  bs: RafsBootstrap,
  read: ReadFile,
  hint: StartupHint,
  onFile: (ranges: FileRange[]) => void,
  log?: Logger,
  wholeElfMax = 0,
): Promise<number> {
  const first = hint.argv[0];
  if (!first) return 0;
  const queue: Array<{ ino: number; path: string }> = [];
  const seen = new Set<number>();
  const push = (r: { ino: number; path: string } | undefined): void => {
    if (!r || seen.has(r.ino) || seen.size >= MAX_FILES) return;
    if ((bs.stat(r.ino).mode & S_IFMT) !== S_IFREG) return;
    seen.add(r.ino);
    queue.push(r);
  };
  push(searchPath(bs, first, hint));
  let files = 0;
  const elves: Array<{ ino: number; path: string; size: number }> = [];
  while (queue.length) {
    const f = queue.shift()!;
    const size = bs.stat(f.ino).size;
    if (size < 4) continue;
    try {
      const head = await read(f.ino, 0, Math.min(size, 4096));
      if (head[0] === 0x23 && head[1] === 0x21) {
        // #!: the interpreter reads the script, then runs
        onFile([{ path: f.path, ino: f.ino, offset: 0, length: Math.min(size, MAX_SCRIPT) }]);
        files++;
        const line = head
          .toString('utf8', 2, Math.max(2, head.indexOf(0x0a) < 0 ? head.length : head.indexOf(0x0a)))
          .trim()
          .split(/\s+/);
        const interp = line[0];
        if (interp) {
          push(resolveInImage(bs, interp));
          if (/(^|\/)env$/.test(interp) && line[1] && !line[1].startsWith('-')) push(searchPath(bs, line[1], hint));
        }
        continue;
      }
      const hlen = elfHeadersLength(head);
      if (hlen === null) continue;
      const full = hlen <= head.length ? head : await read(f.ino, 0, Math.min(size, hlen));
      const h = parseElfHeaders(full);
      if (!h) continue;
      const ranges = loaderRanges(h, hlen)
        .map((r) => ({ path: f.path, ino: f.ino, offset: r.offset, length: Math.min(r.length, size - r.offset) }))
        .filter((r) => r.length > 0);
      onFile(ranges);
      files++;
      // a static binary is left out: a multi-call one (busybox) runs one applet of hundreds
      if (size <= wholeElfMax && h.segments.some((s) => s.type === PT_DYNAMIC)) elves.push({ ...f, size });
      const interp = interpSegment(h);
      if (interp) push(resolveInImage(bs, cString(await read(f.ino, interp.offset, interp.filesz), 0)));
      const dynSeg = h.segments.find((s) => s.type === PT_DYNAMIC && s.filesz > 0 && s.filesz < 1 << 20);
      if (!dynSeg) continue;
      const dyn = parseDynamic(h, await read(f.ino, dynSeg.offset, dynSeg.filesz));
      if (!dyn.strtab || dyn.needed.length === 0) continue;
      const strtab = await read(f.ino, dyn.strtab.offset, Math.min(dyn.strtab.size, size - dyn.strtab.offset));
      const origin = dirname(f.path);
      const extra = [...dyn.runpath, ...(dyn.runpath.length ? [] : dyn.rpath)]
        .flatMap((o) => cString(strtab, o).split(':'))
        .filter(Boolean)
        .map((d) => d.replace(/\$\{?ORIGIN\}?/g, origin));
      const triple = multiarchTriple(h.machine);
      const dirs = [
        ...extra,
        ...(triple ? [`/lib/${triple}`, `/usr/lib/${triple}`] : []),
        '/lib64',
        '/usr/lib64',
        '/lib',
        '/usr/lib',
        '/usr/local/lib',
      ];
      for (const off of dyn.needed) {
        const name = cString(strtab, off);
        if (!name) continue;
        if (name.includes('/')) {
          push(resolveInImage(bs, name, origin));
          continue;
        }
        for (const d of dirs) {
          const r = resolveInImage(bs, `${d}/${name}`, origin);
          if (r && (bs.stat(r.ino).mode & S_IFMT) === S_IFREG) {
            push(r);
            break;
          }
        }
      }
    } catch (err) {
      log?.debug({ err: (err as Error).message, path: f.path }, 'startup prefetch: skipping a file');
    }
  }
  for (const e of elves) onFile([{ path: e.path, ino: e.ino, offset: 0, length: e.size }]);
  return files;
}
