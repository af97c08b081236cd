/**
 * @module format/tar/reader
 * (Over 600 lines: the streaming reader and the push parser share one header decoder and its checks.)
 * Streaming reader for OCI layer tars: plain, gzip or zstd (detected from the first bytes), ustar /
 * GNU / PAX headers (long names, `SCHILY.xattr.*` and `LIBARCHIVE.xattr.*`, sizes > 8 GiB, base-256
 * numbers), hardlinks, symlinks, devices, fifos. Names are normalised lexically against the layer
 * root (`a//b/./c/../d` is `a/b/d`; `/etc/passwd` is `etc/passwd`, as tar strips the leading `/`).
 * Entries that would escape the root (a `..` above it, hardlink targets outside, paths through a
 * symlink of the same layer) are refused with INVALID_ARGUMENT; malformed headers give DATA_LOSS.
 * Sparse files are refused.
 *
 * The header parser is our own rather than tar-stream's because tar-stream decodes PAX values as
 * UTF-8, which corrupts binary xattr values such as `security.capability`.
 */
import { Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { DecompressStream } from 'zstd-napi';
import { FerryError } from '../../core/index.js';

export type TarEntryType = 'file' | 'dir' | 'symlink' | 'hardlink' | 'char' | 'block' | 'fifo';

/** One layer entry. */
export interface TarEntry {
  /** Normalised, relative, no `./`, no trailing `/`; '' for the layer root (`./`). */
  path: string;
  type: TarEntryType;
  /** Permission bits incl. setuid/setgid/sticky (0o7777). */
  mode: number;
  uid: number;
  gid: number;
  /** Seconds since the epoch; PAX mtimes may carry a fraction. */
  mtime: number;
  /** Body size (0 for everything but regular files). */
  size: number;
  /** Symlink target (verbatim) or hardlink target (normalised path). */
  linkname?: string;
  devmajor?: number;
  devminor?: number;
  xattrs: Record<string, Buffer>;
  uname?: string;
  gname?: string;
}

export interface ReadLayerOptions {
  /** Largest PAX / GNU long-name header accepted (default 1 MiB). */
  maxHeaderBytes?: number;
}

const BLOCK = 512;
const BODY_SLICE = 256 * 1024;
const PARSE_SLICE = 4 << 20;

/** The magic-detected compression of a layer stream. */
export type LayerCompression = 'gzip' | 'zstd' | 'none';

/** Detects gzip (1f 8b) / zstd (28 b5 2f fd) from the first bytes. */
export function detectCompression(head: Buffer): LayerCompression {
  if (head.length >= 2 && head[0] === 0x1f && head[1] === 0x8b) return 'gzip';
  if (head.length >= 4 && head.readUInt32LE(0) === 0xfd2fb528) return 'zstd';
  return 'none';
}

/** Pull-based byte source over an async iterator of chunks. */
class Source {
  private bufs: Buffer[] = [];
  private len = 0;
  private done = false;
  /** Bytes consumed so far (for error messages). */
  offset = 0;

  constructor(private readonly it: AsyncIterator<unknown>) {}

  private async fill(n: number): Promise<boolean> {
    while (this.len < n && !this.done) {
      const r = await this.it.next();
      if (r.done) {
        this.done = true;
        break;
      }
      const v = r.value;
      const b = Buffer.isBuffer(v) ? v : typeof v === 'string' ? Buffer.from(v) : Buffer.from(v as Uint8Array);
      if (b.length > 0) {
        this.bufs.push(b);
        this.len += b.length;
      }
    }
    return this.len >= n;
  }

  private take(n: number): Buffer {
    let out: Buffer;
    const first = this.bufs[0]!;
    if (first.length >= n) {
      out = first.subarray(0, n);
      if (first.length === n) this.bufs.shift();
      else this.bufs[0] = first.subarray(n);
    } else {
      out = Buffer.allocUnsafe(n);
      let p = 0;
      while (p < n) {
        const b = this.bufs[0]!;
        const k = Math.min(b.length, n - p);
        b.copy(out, p, 0, k);
        p += k;
        if (k === b.length) this.bufs.shift();
        else this.bufs[0] = b.subarray(k);
      }
    }
    this.len -= n;
    this.offset += n;
    return out;
  }

  /** Exactly n bytes; null at a clean end (no bytes left); DATA_LOSS when truncated mid-way. */
  async exact(n: number, what: string): Promise<Buffer | null> {
    if (n === 0) return Buffer.alloc(0);
    const ok = await this.fill(n);
    if (!ok) {
      if (this.len === 0) return null;
      throw new FerryError('DATA_LOSS', `tar: truncated ${what} at offset ${this.offset} (${this.len} of ${n} bytes)`);
    }
    return this.take(n);
  }

  /** Up to `max` bytes (at least 1), or null at the end of input. */
  async some(max: number): Promise<Buffer | null> {
    if (!(await this.fill(1))) return null;
    return this.take(Math.min(max, this.bufs[0]!.length));
  }

  async skip(n: number, what: string): Promise<void> {
    while (n > 0) {
      const b = await this.some(Math.min(n, BODY_SLICE));
      if (!b) throw new FerryError('DATA_LOSS', `tar: truncated ${what} at offset ${this.offset}`);
      n -= b.length;
    }
  }

  async drain(): Promise<void> {
    this.bufs = [];
    this.len = 0;
    while (!this.done) {
      const r = await this.it.next();
      if (r.done) this.done = true;
    }
  }
}

async function openDecompressed(input: Readable): Promise<AsyncIterator<unknown>> {
  const it = input[Symbol.asyncIterator]() as AsyncIterator<unknown>;
  const pre: Buffer[] = [];
  let have = 0;
  let ended = false;
  while (have < 4) {
    const r = await it.next();
    if (r.done) {
      ended = true;
      break;
    }
    const b = Buffer.isBuffer(r.value) ? r.value : Buffer.from(r.value as Uint8Array);
    pre.push(b);
    have += b.length;
  }
  const head = Buffer.concat(pre);
  async function* replay(): AsyncGenerator<Buffer> {
    if (head.length) yield head;
    if (ended) return;
    for (;;) {
      const r = await it.next();
      if (r.done) return;
      yield Buffer.isBuffer(r.value) ? r.value : Buffer.from(r.value as Uint8Array);
    }
  }
  const kind = detectCompression(head);
  if (kind === 'none') return replay();
  const raw = Readable.from(replay(), { objectMode: false });
  const dec =
    kind === 'gzip' ? createGunzip({ chunkSize: 256 << 10 }) : (new DecompressStream() as unknown as NodeJS.ReadWriteStream & Readable);
  let inputError: unknown;
  raw.on('error', (e) => {
    inputError = e;
    dec.destroy(e);
  });
  raw.pipe(dec);
  const decIt = (dec as Readable)[Symbol.asyncIterator]();
  return {
    async next() {
      try {
        return await decIt.next();
      } catch (err) {
        // errors of the input itself (I/O) pass through unchanged; decoder errors mean corrupt data
        if (FerryError.is(err) || err === inputError) throw err;
        throw new FerryError('DATA_LOSS', `tar: ${kind} stream: ${(err as Error).message}`, { cause: err });
      }
    },
    async return(v?: unknown) {
      raw.destroy();
      return (await decIt.return?.(v)) ?? { done: true, value: undefined };
    },
  };
}

function parseNumeric(h: Buffer, off: number, len: number, what: string): number {
  const first = h[off]!;
  if (!(first & 0x80)) {
    // fast path: [spaces] octal digits [spaces] (NUL | end); anything else takes the checked path below
    const end = off + len;
    let i = off;
    while (i < end && h[i] === 0x20) i++;
    let v = 0;
    while (i < end) {
      const c = h[i]!;
      if (c < 0x30 || c > 0x37) break;
      v = v * 8 + (c - 0x30);
      i++;
    }
    while (i < end && h[i] === 0x20) i++;
    if ((i === end || h[i] === 0) && len <= 16) return v;
  }
  if (first & 0x80) {
    if (first === 0xff) throw new FerryError('DATA_LOSS', `tar: negative ${what}`);
    let v = BigInt(first & 0x7f);
    for (let i = 1; i < len; i++) v = (v << 8n) | BigInt(h[off + i]!);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw new FerryError('DATA_LOSS', `tar: ${what} too large`);
    return Number(v);
  }
  let s = h.toString('latin1', off, off + len);
  const nul = s.indexOf('\0');
  if (nul >= 0) s = s.slice(0, nul);
  s = s.trim();
  if (s === '') return 0;
  if (!/^[0-7]+$/.test(s)) throw new FerryError('DATA_LOSS', `tar: invalid octal ${what} ${JSON.stringify(s)}`);
  const v = parseInt(s, 8);
  if (!Number.isSafeInteger(v)) throw new FerryError('DATA_LOSS', `tar: ${what} too large`);
  return v;
}

function cString(h: Buffer, off: number, len: number): Buffer {
  const end = h.subarray(off, off + len).indexOf(0);
  return h.subarray(off, end < 0 ? off + len : off + end);
}

function checksumOk(h: Buffer): boolean {
  const stored = parseNumeric(h, 148, 8, 'checksum');
  let unsigned = 0;
  let signed = 0;
  for (let i = 0; i < BLOCK; i++) {
    const b = i >= 148 && i < 156 ? 0x20 : h[i]!;
    unsigned += b;
    signed += b > 127 ? b - 256 : b;
  }
  return stored === unsigned || stored === signed;
}

/** PAX records with raw byte values. */
export function parsePax(buf: Buffer): Map<string, Buffer> {
  const out = new Map<string, Buffer>();
  let p = 0;
  while (p < buf.length) {
    if (buf[p] === 0) break;
    const sp = buf.indexOf(0x20, p);
    if (sp < 0 || sp - p > 20) throw new FerryError('DATA_LOSS', 'tar: malformed PAX record length');
    const len = parseInt(buf.toString('latin1', p, sp), 10);
    if (!Number.isSafeInteger(len) || len <= sp - p + 1 || p + len > buf.length)
      throw new FerryError('DATA_LOSS', 'tar: malformed PAX record');
    const rec = buf.subarray(sp + 1, p + len);
    if (rec[rec.length - 1] !== 0x0a) throw new FerryError('DATA_LOSS', 'tar: PAX record not newline-terminated');
    const eq = rec.indexOf(0x3d);
    if (eq <= 0) throw new FerryError('DATA_LOSS', 'tar: PAX record without key');
    out.set(rec.toString('utf8', 0, eq), Buffer.from(rec.subarray(eq + 1, rec.length - 1)));
    p += len;
  }
  return out;
}

/**
 * Normalises a tar member name lexically, the layer root being `/`: leading `/`s go (an absolute
 * name is taken relative to the root, as tar does), so do empty and `.` components and the
 * trailing `/`; a `..` removes the component before it. Refuses (INVALID_ARGUMENT) a `..` that
 * would leave the root, a NUL, and — given this layer's `symlinks` — a `..` that steps back out of
 * one of them (on disk that `..` would apply to the link's target, not lexically).
 */
export function normalizeTarPath(name: string, symlinks?: ReadonlySet<string>): string {
  if (name.includes('\0')) throw new FerryError('INVALID_ARGUMENT', `tar entry ${JSON.stringify(name)}: NUL in name`);
  const parts: string[] = [];
  for (const p of name.split('/')) {
    if (p === '' || p === '.') continue;
    if (p === '..') {
      if (parts.length === 0) throw new FerryError('INVALID_ARGUMENT', `tar entry ${JSON.stringify(name)}: '..' escapes the layer root`);
      const up = parts.join('/');
      if (symlinks?.has(up))
        throw new FerryError('INVALID_ARGUMENT', `tar entry ${JSON.stringify(name)}: '..' after symlink ${JSON.stringify(up)}`);
      parts.pop();
      continue;
    }
    parts.push(p);
  }
  return parts.join('/');
}

function typeOf(flag: string): TarEntryType | 'pax' | 'paxg' | 'longname' | 'longlink' | 'sparse' | 'skip' {
  switch (flag) {
    case '0':
    case '\0':
    case '7':
      return 'file';
    case '1':
      return 'hardlink';
    case '2':
      return 'symlink';
    case '3':
      return 'char';
    case '4':
      return 'block';
    case '5':
      return 'dir';
    case '6':
      return 'fifo';
    case 'x':
      return 'pax';
    case 'g':
      return 'paxg';
    case 'L':
      return 'longname';
    case 'K':
      return 'longlink';
    case 'S':
      return 'sparse';
    default:
      return 'skip';
  }
}

type HeaderType = ReturnType<typeof typeOf>;

/**
 * Turns a member header (plus the PAX records and GNU long names that preceded it) into an entry,
 * applying every path check; `skip` = bytes to pass over for member types that carry no entry.
 * `symlinks` tracks this layer's symlinks across calls.
 */
function decodeEntry(
  h: Buffer,
  type: HeaderType,
  size: number,
  pax: Map<string, Buffer>,
  globalPax: Map<string, Buffer>,
  longName: Buffer | undefined,
  longLink: Buffer | undefined,
  symlinks: Set<string>,
): { entry: TarEntry; name: string; dataSize: number } | { skip: number } {
  pax = globalPax.size ? new Map([...globalPax, ...pax]) : pax;
  if (type === 'sparse') throw new FerryError('NOT_IMPLEMENTED', 'tar: sparse files (GNU type S) are not supported');
  const ustar = h.toString('latin1', 257, 263);
  let name: string;
  if (pax.has('path')) name = pax.get('path')!.toString('utf8');
  else if (longName) name = longName.toString('utf8');
  else {
    const base = cString(h, 0, 100).toString('utf8');
    const prefix = ustar === 'ustar\0' ? cString(h, 345, 155).toString('utf8') : '';
    name = prefix ? `${prefix}/${base}` : base;
  }
  let linkname: string | undefined;
  if (pax.has('linkpath')) linkname = pax.get('linkpath')!.toString('utf8');
  else if (longLink) linkname = longLink.toString('utf8');
  else linkname = cString(h, 157, 100).toString('utf8');
  if (pax.has('size')) {
    const s = Number(pax.get('size')!.toString('latin1'));
    if (!Number.isSafeInteger(s) || s < 0) throw new FerryError('DATA_LOSS', 'tar: invalid PAX size');
    size = s;
  }
  const num = (key: string, fallback: number): number => {
    const v = pax.get(key);
    if (!v) return fallback;
    const n = Number(v.toString('latin1'));
    if (!Number.isFinite(n) || n < 0) throw new FerryError('DATA_LOSS', `tar: invalid PAX ${key}`);
    return n;
  };
  if (type === 'skip') return { skip: size + ((BLOCK - (size % BLOCK)) % BLOCK) };
  const path = normalizeTarPath(name, symlinks);
  // old (v7) tars mark directories only by a trailing slash
  const entryType = (type === 'file' && name.endsWith('/') && size === 0 ? 'dir' : type) as TarEntryType;
  const xattrs: Record<string, Buffer> = {};
  for (const [k, v] of pax) {
    if (k.startsWith('SCHILY.xattr.')) xattrs[k.slice('SCHILY.xattr.'.length)] = v;
    else if (k.startsWith('LIBARCHIVE.xattr.')) {
      xattrs[decodeURIComponent(k.slice('LIBARCHIVE.xattr.'.length))] = Buffer.from(v.toString('latin1'), 'base64');
    }
  }
  const entry: TarEntry = {
    path,
    type: entryType,
    mode: parseNumeric(h, 100, 8, 'mode') & 0o7777,
    uid: num('uid', parseNumeric(h, 108, 8, 'uid')),
    gid: num('gid', parseNumeric(h, 116, 8, 'gid')),
    mtime: num('mtime', parseNumeric(h, 136, 12, 'mtime')),
    size: entryType === 'file' ? size : 0,
    xattrs,
  };
  const uname = pax.get('uname')?.toString('utf8') ?? cString(h, 265, 32).toString('utf8');
  const gname = pax.get('gname')?.toString('utf8') ?? cString(h, 297, 32).toString('utf8');
  if (uname) entry.uname = uname;
  if (gname) entry.gname = gname;
  if (entryType === 'symlink') {
    if (linkname === '') throw new FerryError('INVALID_ARGUMENT', `tar entry ${JSON.stringify(name)}: symlink with an empty target`);
    entry.linkname = linkname;
  } else if (entryType === 'hardlink') {
    entry.linkname = normalizeTarPath(linkname, symlinks);
    if (entry.linkname === '') throw new FerryError('INVALID_ARGUMENT', `tar entry ${JSON.stringify(name)}: hardlink to the layer root`);
  }
  if (entryType === 'char' || entryType === 'block') {
    entry.devmajor = num('SCHILY.devmajor', parseNumeric(h, 329, 8, 'devmajor'));
    entry.devminor = num('SCHILY.devminor', parseNumeric(h, 337, 8, 'devminor'));
  }
  // a path that goes through a symlink of this layer would escape on extraction (paths are
  // normalised: every '/' ends a proper prefix)
  if (symlinks.size > 0) {
    for (let i = path.indexOf('/'); i >= 0; i = path.indexOf('/', i + 1)) {
      const pre = path.slice(0, i);
      if (symlinks.has(pre)) {
        throw new FerryError('INVALID_ARGUMENT', `tar entry ${JSON.stringify(name)}: path goes through symlink ${JSON.stringify(pre)}`);
      }
    }
    if (entryType === 'hardlink' && entry.linkname !== undefined) {
      const lp = entry.linkname;
      for (let i = lp.indexOf('/'); i >= 0; i = lp.indexOf('/', i + 1)) {
        if (symlinks.has(lp.slice(0, i))) {
          throw new FerryError('INVALID_ARGUMENT', `tar entry ${JSON.stringify(name)}: hardlink target goes through a symlink`);
        }
      }
    }
  }
  if (entryType === 'symlink') symlinks.add(path);
  else symlinks.delete(path);

  // like Go's archive/tar: only regular files carry data, whatever the size field says
  return { entry, name, dataSize: entryType === 'file' ? size : 0 };
}

/**
 * Reads a layer tar. Each entry's body must be consumed (or resumed) before asking for the next
 * entry; whatever is left is discarded.
 */
export async function* readLayer(input: Readable, opts: ReadLayerOptions = {}): AsyncGenerator<{ entry: TarEntry; body: Readable }> {
  const maxHeader = opts.maxHeaderBytes ?? 1 << 20;
  const it = await openDecompressed(input);
  const src = new Source(it);
  let chain: Promise<unknown> = Promise.resolve();
  const locked = <T>(fn: () => Promise<T>): Promise<T> => {
    const p = chain.then(fn);
    chain = p.catch(() => undefined);
    return p;
  };
  let globalPax = new Map<string, Buffer>();
  const symlinks = new Set<string>();
  try {
    for (;;) {
      const pax = new Map<string, Buffer>();
      let longName: Buffer | undefined;
      let longLink: Buffer | undefined;
      let h: Buffer | null;
      let type: ReturnType<typeof typeOf>;
      let size: number;
      // meta headers loop
      for (;;) {
        const at = src.offset;
        h = await src.exact(BLOCK, 'header');
        if (h === null) return;
        if (h.every((b) => b === 0)) {
          await src.drain();
          return;
        }
        if (!checksumOk(h)) throw new FerryError('DATA_LOSS', `tar: invalid header checksum at offset ${at}`);
        type = typeOf(String.fromCharCode(h[156]!));
        size = parseNumeric(h, 124, 12, 'size');
        if (type === 'pax' || type === 'paxg' || type === 'longname' || type === 'longlink') {
          if (size > maxHeader) throw new FerryError('DATA_LOSS', `tar: ${type} header of ${size} bytes exceeds ${maxHeader}`);
          const data = (await src.exact(size, `${type} header`)) ?? Buffer.alloc(0);
          if (data.length !== size) throw new FerryError('DATA_LOSS', `tar: truncated ${type} header`);
          await src.skip((BLOCK - (size % BLOCK)) % BLOCK, 'padding');
          if (type === 'pax') for (const [k, v] of parsePax(data)) pax.set(k, v);
          else if (type === 'paxg') globalPax = new Map([...globalPax, ...parsePax(data)]);
          else if (type === 'longname') longName = cString(data, 0, data.length);
          else longLink = cString(data, 0, data.length);
          continue;
        }
        break;
      }
      const d = decodeEntry(h, type, size, pax, globalPax, longName, longLink, symlinks);
      if ('skip' in d) {
        await src.skip(d.skip, 'skipped entry');
        continue;
      }
      const { entry, name, dataSize } = d;
      // body
      let remaining = entry.size;
      const body = new Readable({
        highWaterMark: BODY_SLICE,
        read() {
          locked(async () => {
            if (remaining === 0) {
              body.push(null);
              return;
            }
            const b = await src.some(Math.min(remaining, BODY_SLICE));
            if (!b) {
              body.destroy(new FerryError('DATA_LOSS', `tar: truncated body of ${JSON.stringify(name)}`));
              return;
            }
            remaining -= b.length;
            body.push(b);
            if (remaining === 0) body.push(null);
          }).catch((err) => body.destroy(err as Error));
        },
      });
      yield { entry, body };
      await locked(async () => {
        if (remaining > 0) {
          const left = remaining;
          remaining = 0;
          await src.skip(left, `body of ${JSON.stringify(name)}`);
        }
        await src.skip((BLOCK - (dataSize % BLOCK)) % BLOCK, 'padding');
      });
      if (!body.readableEnded) body.destroy();
    }
  } finally {
    await it.return?.();
  }
}

/**
 * Receives a layer's members from {@link parseLayer} / {@link TarParser}, synchronously. For a
 * regular file, `entry` is followed by its body as `data` pieces (views into the input buffers —
 * no copy; they stay valid, the parser never reuses them) and then `end`; other entries get no
 * `data`/`end` calls.
 */
export interface TarVisitor {
  entry(entry: TarEntry): void;
  /** `offset`: where the piece starts in the tar stream (TarParser) */
  data(piece: Buffer, offset?: number): void;
  end(): void;
}

enum PState {
  Header,
  Meta,
  Body,
  Skip,
  Done,
}

/**
 * Push parser for an uncompressed layer tar: `push` each piece of the stream in order, then
 * `finish`. Same format support and the same checks and errors as {@link readLayer} (they share
 * the header decoding), but no stream or promise per member: a rootfs of thousands of small files
 * parses in one synchronous pass per input piece. Errors thrown by the visitor propagate out of
 * `push`.
 */
export class TarParser {
  private state = PState.Header;
  /** a header or meta member being assembled across pieces */
  private carry: Buffer | undefined;
  private carryLen = 0;
  /** bytes left in the current body / skip / meta data */
  private remaining = 0;
  /** padding after the current body */
  private padding = 0;
  private offset = 0;
  private headerAt = 0;
  private metaType: HeaderType = 'skip';
  private metaSize = 0;
  private bodyName = '';
  private pax = new Map<string, Buffer>();
  private globalPax = new Map<string, Buffer>();
  private longName: Buffer | undefined;
  private longLink: Buffer | undefined;
  private readonly symlinks = new Set<string>();
  private readonly maxHeader: number;

  constructor(
    private readonly visitor: TarVisitor,
    opts: ReadLayerOptions = {},
  ) {
    this.maxHeader = opts.maxHeaderBytes ?? 1 << 20;
  }

  /** True once the end-of-archive block was seen (the rest of the input is ignored). */
  get done(): boolean {
    return this.state === PState.Done;
  }

  push(buf: Buffer): void {
    let p = 0;
    const n = buf.length;
    const base = this.offset;
    this.offset += n;
    while (p < n) {
      switch (this.state) {
        case PState.Done:
          return;
        case PState.Header: {
          let h: Buffer;
          if (this.carryLen === 0 && n - p >= BLOCK) {
            h = buf.subarray(p, p + BLOCK);
            p += BLOCK;
          } else {
            this.carry ??= Buffer.allocUnsafe(BLOCK);
            const k = Math.min(BLOCK - this.carryLen, n - p);
            buf.copy(this.carry, this.carryLen, p, p + k);
            this.carryLen += k;
            p += k;
            if (this.carryLen < BLOCK) return;
            h = this.carry;
            this.carryLen = 0;
            this.carry = undefined;
          }
          this.headerAt = base + p - BLOCK;
          this.header(h);
          break;
        }
        case PState.Meta: {
          // metaSize bytes of data + padding, collected into carry (sized to data + padding)
          const k = Math.min(this.remaining, n - p);
          buf.copy(this.carry!, this.carryLen, p, p + k);
          this.carryLen += k;
          this.remaining -= k;
          p += k;
          if (this.remaining === 0) {
            const data = this.carry!.subarray(0, this.metaSize);
            this.carry = undefined;
            this.carryLen = 0;
            this.state = PState.Header;
            this.meta(data);
          }
          break;
        }
        case PState.Body: {
          const k = Math.min(this.remaining, n - p);
          this.visitor.data(buf.subarray(p, p + k), base + p);
          this.remaining -= k;
          p += k;
          if (this.remaining === 0) {
            this.visitor.end();
            this.remaining = this.padding;
            this.state = this.padding > 0 ? PState.Skip : PState.Header;
          }
          break;
        }
        case PState.Skip: {
          const k = Math.min(this.remaining, n - p);
          this.remaining -= k;
          p += k;
          if (this.remaining === 0) this.state = PState.Header;
          break;
        }
      }
    }
  }

  /** Ends the input: DATA_LOSS when it stopped inside a member. */
  finish(): void {
    switch (this.state) {
      case PState.Done:
        return;
      case PState.Header:
        if (this.carryLen > 0)
          throw new FerryError(
            'DATA_LOSS',
            `tar: truncated header at offset ${this.offset - this.carryLen} (${this.carryLen} of ${BLOCK} bytes)`,
          );
        return;
      case PState.Meta:
        throw new FerryError('DATA_LOSS', `tar: truncated ${this.metaType} header`);
      case PState.Body:
        throw new FerryError('DATA_LOSS', `tar: truncated body of ${JSON.stringify(this.bodyName)}`);
      case PState.Skip:
        throw new FerryError('DATA_LOSS', `tar: truncated entry at offset ${this.offset}`);
    }
  }

  private header(h: Buffer): void {
    let zero = true;
    for (let i = 0; i < BLOCK; i++)
      if (h[i] !== 0) {
        zero = false;
        break;
      }
    if (zero) {
      this.state = PState.Done;
      return;
    }
    if (!checksumOk(h)) throw new FerryError('DATA_LOSS', `tar: invalid header checksum at offset ${this.headerAt}`);
    const type = typeOf(String.fromCharCode(h[156]!));
    const size = parseNumeric(h, 124, 12, 'size');
    if (type === 'pax' || type === 'paxg' || type === 'longname' || type === 'longlink') {
      if (size > this.maxHeader) throw new FerryError('DATA_LOSS', `tar: ${type} header of ${size} bytes exceeds ${this.maxHeader}`);
      const padded = size + ((BLOCK - (size % BLOCK)) % BLOCK);
      this.metaType = type;
      this.metaSize = size;
      if (padded === 0) {
        this.meta(Buffer.alloc(0));
        return;
      }
      this.carry = Buffer.allocUnsafe(padded);
      this.carryLen = 0;
      this.remaining = padded;
      this.state = PState.Meta;
      return;
    }
    const d = decodeEntry(h, type, size, this.pax, this.globalPax, this.longName, this.longLink, this.symlinks);
    this.pax = new Map();
    this.longName = undefined;
    this.longLink = undefined;
    if ('skip' in d) {
      this.remaining = d.skip;
      this.state = d.skip > 0 ? PState.Skip : PState.Header;
      return;
    }
    this.visitor.entry(d.entry);
    if (d.entry.type !== 'file') return;
    const padding = (BLOCK - (d.dataSize % BLOCK)) % BLOCK;
    if (d.dataSize === 0) {
      this.visitor.end();
      return;
    }
    this.bodyName = d.name;
    this.remaining = d.dataSize;
    this.padding = padding;
    this.state = PState.Body;
  }

  private meta(data: Buffer): void {
    const type = this.metaType;
    if (type === 'pax') for (const [k, v] of parsePax(data)) this.pax.set(k, v);
    else if (type === 'paxg') this.globalPax = new Map([...this.globalPax, ...parsePax(data)]);
    else if (type === 'longname') this.longName = cString(data, 0, data.length);
    else this.longLink = cString(data, 0, data.length);
  }
}

/**
 * Reads a layer tar (plain, gzip or zstd) into `visitor` with a {@link TarParser}: the fast path
 * for consumers that handle bodies synchronously (the RAFS builder). After each input piece,
 * `afterPiece` (when given) is awaited if it returns a promise — the place for back-pressure.
 */
export async function parseLayer(
  input: Readable,
  visitor: TarVisitor,
  opts: ReadLayerOptions & { afterPiece?: () => Promise<void> | undefined } = {},
): Promise<void> {
  const it = await openDecompressed(input);
  const parser = new TarParser(visitor, opts);
  try {
    for (;;) {
      const r = await it.next();
      if (r.done) break;
      const v = r.value;
      const b = Buffer.isBuffer(v) ? v : typeof v === 'string' ? Buffer.from(v) : Buffer.from(v as Uint8Array);
      // a huge piece (a whole layer in one buffer) is fed in slices so afterPiece can apply back-pressure
      for (let p = 0; p < b.length && !parser.done; p += PARSE_SLICE) {
        parser.push(p === 0 && b.length <= PARSE_SLICE ? b : b.subarray(p, p + PARSE_SLICE));
        const w = opts.afterPiece?.();
        if (w) await w;
      }
      if (parser.done) {
        // drain the rest as readLayer does (the end-of-archive block may be followed by zero fill)
        while (!(await it.next()).done) {
          /* discard */
        }
        return;
      }
    }
    parser.finish();
  } finally {
    await it.return?.();
  }
}

/** OCI whiteout classification of a path: `.wh.NAME` removes NAME, `.wh..wh..opq` makes its directory opaque. */
export function whiteoutOf(path: string): { kind: 'whiteout'; target: string } | { kind: 'opaque'; dir: string } | null {
  const slash = path.lastIndexOf('/');
  const dir = slash < 0 ? '' : path.slice(0, slash);
  const base = path.slice(slash + 1);
  if (!base.startsWith('.wh.')) return null;
  if (base === '.wh..wh..opq') return { kind: 'opaque', dir };
  if (base.startsWith('.wh..wh.')) return null; // other AUFS metadata (.wh..wh.plnk etc.)
  const name = base.slice(4);
  if (name === '' || name === '.' || name === '..') return null;
  return { kind: 'whiteout', target: dir ? `${dir}/${name}` : name };
}

/**
 * overlayfs-style whiteouts: a char device 0:0 removes the entry at its path; a directory with
 * `trusted.overlay.opaque=y` is opaque.
 */
export function overlayWhiteoutOf(
  entry: Pick<TarEntry, 'path' | 'type' | 'devmajor' | 'devminor' | 'xattrs'>,
): { kind: 'whiteout'; target: string } | { kind: 'opaque'; dir: string } | null {
  if (entry.type === 'char' && (entry.devmajor ?? 0) === 0 && (entry.devminor ?? 0) === 0) return { kind: 'whiteout', target: entry.path };
  if (entry.type === 'dir' && entry.xattrs['trusted.overlay.opaque']?.toString() === 'y') return { kind: 'opaque', dir: entry.path };
  return null;
}

/** Whiteout classification for either convention. */
export function classifyWhiteout(
  entry: TarEntry,
  spec: 'oci' | 'overlayfs' | 'none' = 'oci',
): { kind: 'whiteout'; target: string } | { kind: 'opaque'; dir: string } | null {
  if (spec === 'none') return null;
  return spec === 'oci' ? whiteoutOf(entry.path) : overlayWhiteoutOf(entry);
}
