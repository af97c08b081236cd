/**
 * @module format/tar/writer
 * Writes a POSIX (ustar + PAX) tar stream: PAX records for long names/link targets, large sizes or
 * ids, fractional mtimes and `SCHILY.xattr.*` (raw byte values).
 */
import { Readable } from 'node:stream';
import { FerryError } from '../../core/index.js';
import type { TarEntry } from './reader.js';

const BLOCK = 512;
const ZERO = Buffer.alloc(BLOCK);

function octal(h: Buffer, off: number, len: number, v: number): boolean {
  const s = Math.floor(v).toString(8);
  if (v < 0 || s.length > len - 1) return false;
  h.write(`${s.padStart(len - 1, '0')}\0`, off, len, 'latin1');
  return true;
}

function paxRecord(key: string, value: Buffer): Buffer {
  const kv = Buffer.concat([Buffer.from(` ${key}=`, 'utf8'), value, Buffer.from('\n')]);
  let len = kv.length + 1;
  while (String(len).length + kv.length !== len) len = String(len).length + kv.length;
  return Buffer.concat([Buffer.from(String(len)), kv]);
}

const TYPEFLAG: Record<TarEntry['type'], string> = { file: '0', hardlink: '1', symlink: '2', char: '3', block: '4', dir: '5', fifo: '6' };

function header(
  name: string,
  e: Pick<TarEntry, 'mode' | 'uid' | 'gid' | 'mtime' | 'uname' | 'gname' | 'devmajor' | 'devminor'>,
  size: number,
  typeflag: string,
  linkname: string,
): { block: Buffer; overflow: Map<string, Buffer> } {
  const h = Buffer.alloc(BLOCK);
  const overflow = new Map<string, Buffer>();
  const nameBuf = Buffer.from(name, 'utf8');
  let placed = false;
  if (nameBuf.length <= 100 && /^[\x20-\x7e]*$/.test(name)) {
    nameBuf.copy(h, 0);
    placed = true;
  } else if (nameBuf.length <= 255 && /^[\x20-\x7e]*$/.test(name)) {
    // ustar prefix split at a '/'
    for (let i = name.length - 1; i > 0; i--) {
      if (name[i] === '/' && i <= 155 && name.length - i - 1 <= 100 && name.length - i - 1 > 0) {
        h.write(name.slice(i + 1), 0, 100, 'latin1');
        h.write(name.slice(0, i), 345, 155, 'latin1');
        placed = true;
        break;
      }
    }
  }
  if (!placed) {
    overflow.set('path', nameBuf);
    h.write(
      Buffer.from(name.slice(-100), 'utf8')
        .toString('latin1')
        .slice(-100)
        .replace(/[^\x20-\x7e]/g, '_'),
      0,
      100,
      'latin1',
    );
  }
  octal(h, 100, 8, e.mode & 0o7777);
  if (!octal(h, 108, 8, e.uid)) {
    overflow.set('uid', Buffer.from(String(e.uid)));
    octal(h, 108, 8, 0);
  }
  if (!octal(h, 116, 8, e.gid)) {
    overflow.set('gid', Buffer.from(String(e.gid)));
    octal(h, 116, 8, 0);
  }
  if (!octal(h, 124, 12, size)) {
    overflow.set('size', Buffer.from(String(size)));
    octal(h, 124, 12, 0);
  }
  if (!Number.isInteger(e.mtime) || !octal(h, 136, 12, e.mtime)) {
    overflow.set('mtime', Buffer.from(String(e.mtime)));
    octal(h, 136, 12, Math.max(0, Math.floor(e.mtime)));
  }
  h.write(typeflag, 156, 1, 'latin1');
  const linkBuf = Buffer.from(linkname, 'utf8');
  if (linkBuf.length <= 100 && /^[\x20-\x7e]*$/.test(linkname)) linkBuf.copy(h, 157);
  else overflow.set('linkpath', linkBuf);
  h.write('ustar\x0000', 257, 8, 'latin1');
  if (e.uname) h.write(e.uname.slice(0, 31), 265, 32, 'utf8');
  if (e.gname) h.write(e.gname.slice(0, 31), 297, 32, 'utf8');
  if (e.devmajor !== undefined) octal(h, 329, 8, e.devmajor);
  if (e.devminor !== undefined) octal(h, 337, 8, e.devminor);
  return { block: h, overflow };
}

function finishChecksum(h: Buffer): Buffer {
  h.fill(0x20, 148, 156);
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += h[i]!;
  h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148, 8, 'latin1');
  return h;
}

/** The header block(s) of one entry (PAX extended header first when needed). */
export function encodeTarHeaders(entry: TarEntry): Buffer {
  let name = entry.path === '' ? './' : entry.path;
  if (entry.type === 'dir' && !name.endsWith('/')) name += '/';
  const size = entry.type === 'file' ? entry.size : 0;
  const { block, overflow } = header(name, entry, size, TYPEFLAG[entry.type], entry.linkname ?? '');
  for (const [k, v] of Object.entries(entry.xattrs ?? {}).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    overflow.set(`SCHILY.xattr.${k}`, Buffer.from(v));
  }
  const parts: Buffer[] = [];
  if (overflow.size > 0) {
    const data = Buffer.concat([...overflow].map(([k, v]) => paxRecord(k, v)));
    const base = name.replace(/\/$/, '').split('/').pop() ?? 'x';
    const paxName = `PaxHeaders.0/${base}`.slice(0, 99);
    const ph = header(paxName, { mode: 0o644, uid: 0, gid: 0, mtime: 0 }, data.length, 'x', '').block;
    parts.push(finishChecksum(ph), data, Buffer.alloc((BLOCK - (data.length % BLOCK)) % BLOCK));
  }
  parts.push(finishChecksum(block));
  return Buffer.concat(parts);
}

/** Writes entries as a tar stream (two zero blocks at the end). */
export function writeTar(
  entries: AsyncIterable<{ entry: TarEntry; body?: Readable | Buffer }> | Iterable<{ entry: TarEntry; body?: Readable | Buffer }>,
): Readable {
  async function* gen(): AsyncGenerator<Buffer> {
    for await (const { entry, body } of entries as AsyncIterable<{ entry: TarEntry; body?: Readable | Buffer }>) {
      yield encodeTarHeaders(entry);
      const size = entry.type === 'file' ? entry.size : 0;
      let written = 0;
      if (size > 0) {
        if (body === undefined) throw new FerryError('INVALID_ARGUMENT', `tar writer: ${entry.path} has no body`);
        if (Buffer.isBuffer(body)) {
          written = body.length;
          if (written === size) yield body;
        } else {
          for await (const chunk of body) {
            const b = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk as Uint8Array);
            written += b.length;
            if (written > size) break;
            yield b;
          }
        }
        if (written !== size)
          throw new FerryError('INVALID_ARGUMENT', `tar writer: ${entry.path}: body has ${written} bytes, header says ${size}`);
        const pad = (BLOCK - (size % BLOCK)) % BLOCK;
        if (pad) yield ZERO.subarray(0, pad);
      } else if (body !== undefined && !Buffer.isBuffer(body)) {
        body.resume();
      }
    }
    yield ZERO;
    yield ZERO;
  }
  return Readable.from(gen(), { objectMode: false });
}
