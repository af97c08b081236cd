/**
 * Helpers of the daemon e2e tests: a full-tree description (content digests, modes, owners,
 * links, devices, xattrs) made with async I/O only — the tests read FUSE mounts served by their
 * own process, so a synchronous call on the mount would deadlock it.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { lstat, readdir, readlink } from 'node:fs/promises';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { join } from 'node:path';

const pexec = promisify(execFile);

async function fileDigest(p: string): Promise<string> {
  const h = createHash('sha256');
  for await (const c of createReadStream(p)) h.update(c as Buffer);
  return h.digest('hex');
}

/** xattrs of every entry under dir (getfattr -R, not following symlinks), keyed by relative path. */
async function allXattrs(dir: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  // No `cwd: dir`: the child's chdir into a FUSE mount served by this very process would happen
  // while the parent is suspended in vfork, and deadlock it.
  const { stdout } = await pexec('getfattr', ['-R', '-d', '-m', '-', '-h', '-e', 'hex', '--absolute-names', dir], { maxBuffer: 256 * 1024 * 1024 }).catch((e: { stdout?: string }) => ({ stdout: e.stdout ?? '' }));
  const prefix = dir.replace(/\/+$/, '');
  let cur = '';
  let acc: string[] = [];
  const flush = (): void => { if (cur && acc.length) out.set(cur, acc.sort().join(',')); acc = []; };
  for (const line of stdout.split('\n')) {
    if (line.startsWith('# file: ')) { flush(); cur = line.slice(8).slice(prefix.length).replace(/^\//, ''); continue; }
    if (line.includes('=')) acc.push(line.trim());
  }
  flush();
  return out;
}

/** One line per entry, sorted: path, type+mode, uid:gid, size/digest or link target or rdev, hardlink group, xattrs. */
export async function describeTree(dir: string, opts: { xattrs?: boolean; mtime?: boolean } = {}): Promise<string[]> {
  const lines: string[] = [];
  const firstPath = new Map<string, string>();
  const xa = opts.xattrs === false ? new Map<string, string>() : await allXattrs(dir);
  async function walk(rel: string): Promise<void> {
    const names = (await readdir(join(dir, rel))).sort();
    for (const n of names) {
      const r = rel ? `${rel}/${n}` : n;
      const p = join(dir, r);
      const st = await lstat(p);
      let what: string;
      if (st.isFile()) {
        const key = String(st.ino);
        const prev = st.nlink > 1 ? firstPath.get(key) : undefined;
        if (prev) what = `hardlink:${prev}`;
        else { if (st.nlink > 1) firstPath.set(key, r); what = `${st.size}:${await fileDigest(p)}`; }
      } else if (st.isSymbolicLink()) what = `-> ${await readlink(p)}`;
      else if (st.isCharacterDevice() || st.isBlockDevice()) what = `dev ${st.rdev}`;
      else what = '';
      lines.push(`${r} ${st.mode.toString(8)} ${st.uid}:${st.gid} ${what}${opts.mtime ? ` m${Math.floor(st.mtimeMs / 1000)}` : ''} ${xa.get(r) ?? ''}`.trimEnd());
      if (st.isDirectory()) await walk(r);
    }
  }
  await walk('');
  return lines;
}

export async function sh(cmd: string, args: string[]): Promise<{ stdout: string; stderr: string }> {
  return pexec(cmd, args, { maxBuffer: 64 * 1024 * 1024 });
}
