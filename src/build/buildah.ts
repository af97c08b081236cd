/**
 * @module build/buildah
 * Running Debian's `buildah` (daemonless, as root): its global storage options, the child process
 * with its output handed over line by line, and errors that say why buildah could not run and point
 * to `ferry convert` as the way around it.
 */
import { spawn } from 'node:child_process';
import { FerryError } from '../core/index.js';

/** Where buildah keeps its images and layer cache (default: its system store, /var/lib/containers/storage). */
export interface BuildahStorage {
  root?: string;
  runroot?: string;
  /** `overlay` (default; works on this kernel) or `vfs` (a full copy per layer, works everywhere). */
  driver?: string;
}

export interface BuildahRun {
  storage?: BuildahStorage;
  /** Extra environment (REGISTRY_AUTH_FILE, BUILDAH_ISOLATION…). */
  env?: Record<string, string>;
  /** Each line buildah writes (stdout and stderr). */
  onLine?: (line: string) => void;
  signal?: AbortSignal;
}

const FALLBACK = 'build the image with another tool, push it, and accelerate it with `ferry convert`';
/** Lines of buildah's output kept for an error message. */
const TAIL_LINES = 20;

export function storageArgs(s: BuildahStorage = {}): string[] {
  const out: string[] = [];
  if (s.root) out.push('--root', s.root);
  if (s.runroot) out.push('--runroot', s.runroot);
  out.push('--storage-driver', s.driver ?? 'overlay');
  return out;
}

/** Why buildah cannot run here, or undefined when it should: it needs root (no rootless set-up here). */
export function buildahPrecondition(uid = process.getuid?.() ?? 0): string | undefined {
  if (uid !== 0) return `buildah runs as root here (rootless builds need newuidmap and /etc/subuid ranges); ${FALLBACK}`;
  return undefined;
}

/** A reason for a failed buildah run, read from its last output lines. */
export function diagnose(tail: string): string | undefined {
  if (/overlay.*(not supported|unsupported|invalid argument)|driver not supported|kernel does not support overlay/i.test(tail))
    return 'the overlay storage driver does not work on this kernel: pass --storage-driver vfs (slower, a full copy per layer)';
  if (/operation not permitted|permission denied/i.test(tail) && /mount|unshare|namespace/i.test(tail))
    return 'buildah could not create its mount/user namespaces (it needs root with CAP_SYS_ADMIN)';
  if (/http: server gave HTTP response to HTTPS client/i.test(tail)) return 'the registry speaks plain HTTP: pass --plain-http';
  if (/unauthorized|authentication required/i.test(tail))
    return 'the registry refused buildah: credentials for the FROM image or the target (--user with FERRY_REGISTRY_PASSWORD, or ~/.docker/config.json)';
  return undefined;
}

/** Runs `buildah [storage] ARGS…`; resolves with stdout, rejects with a FerryError carrying the reason. */
export function runBuildah(args: string[], opts: BuildahRun = {}): Promise<string> {
  const why = buildahPrecondition();
  if (why) return Promise.reject(new FerryError('FAILED_PRECONDITION', why));
  const full = [...storageArgs(opts.storage), ...args];
  return new Promise((resolve, reject) => {
    const p = spawn('buildah', full, { env: { ...process.env, ...opts.env }, stdio: ['ignore', 'pipe', 'pipe'], signal: opts.signal });
    let stdout = '';
    const tail: string[] = [];
    const lines = (chunk: Buffer, keep: boolean, rest: { s: string }): void => {
      rest.s += chunk.toString();
      const parts = rest.s.split('\n');
      rest.s = parts.pop() ?? '';
      for (const l of parts) {
        tail.push(l);
        if (tail.length > TAIL_LINES) tail.shift();
        opts.onLine?.(l);
      }
      if (keep) stdout += chunk.toString();
    };
    const out = { s: '' };
    const err = { s: '' };
    p.stdout.on('data', (c: Buffer) => lines(c, true, out));
    p.stderr.on('data', (c: Buffer) => lines(c, false, err));
    p.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'ENOENT')
        reject(new FerryError('FAILED_PRECONDITION', `buildah is not installed (Debian: apt-get install buildah); ${FALLBACK}`));
      else if (e.name === 'AbortError') reject(new FerryError('CANCELED', 'build canceled'));
      else reject(new FerryError('INTERNAL', `buildah: ${e.message}`, { cause: e }));
    });
    p.on('close', (code) => {
      if (code === 0) return resolve(stdout);
      const text = [...tail, out.s, err.s].filter(Boolean).join('\n');
      const reason = diagnose(text);
      reject(
        new FerryError(
          'FAILED_PRECONDITION',
          `buildah ${args[0]} failed (exit ${code})${reason ? `: ${reason}` : ''}\n${text.trim()}${reason ? '' : `\n(if buildah cannot work here, ${FALLBACK})`}`,
        ),
      );
    });
  });
}
