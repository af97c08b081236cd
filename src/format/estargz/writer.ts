/**
 * @module format/estargz/writer
 * Writes an eStargz layer: a gzip stream made of many gzip members whose concatenated content is an
 * ordinary tar. Each regular file's payload starts a new member (a file bigger than the chunk size
 * gets one member per chunk), so a reader can fetch and decompress one file from its offset without
 * the rest; tar headers, padding and payload-less entries share the member before. Closed by the
 * TOC member (`stargz.index.json` + the end-of-archive blocks) and the 51-byte footer.
 *
 * Pure: bytes go out through a `sink` callback, payload bytes come in through a `read` callback.
 */
import { createHash, type Hash } from 'node:crypto';
import { promisify } from 'node:util';
import { gzip as gzipCb } from 'node:zlib';
import { FerryError } from '../../core/index.js';
import { encodeTarHeaders, type TarEntry } from '../tar/index.js';
import { encodeFooter } from './footer.js';
import {
  DEFAULT_ESTARGZ_CHUNK_SIZE,
  LANDMARK_CONTENTS,
  NO_PREFETCH_LANDMARK,
  PREFETCH_LANDMARK,
  TOC_TAR_NAME,
  encodeToc,
  tocModtime,
  type Toc,
  type TocEntry,
  type TocEntryType,
} from './toc.js';

const gzip = promisify(gzipCb);
const BLOCK = 512;

export interface EstargzWriterOptions {
  /** largest payload per gzip member (default 4 MiB, as upstream) */
  chunkSize?: number;
  /** gzip level (default 9, upstream's gzip.BestCompression) */
  level?: number;
}

export interface EstargzResult {
  /** sha256 of the TOC JSON: the `containerd.io/snapshot/stargz/toc.digest` annotation */
  tocDigest: string;
  /** sha256 of the uncompressed tar: the config's diff_id */
  diffId: string;
  /** bytes of the uncompressed tar: the `io.containers.estargz.uncompressed-size` annotation */
  uncompressedSize: number;
  /** bytes of the eStargz blob */
  size: number;
  /** offset of the TOC gzip member */
  tocOffset: number;
  toc: Toc;
}

/** Reads `len` payload bytes of the entry being appended, from byte `off` of its body. */
export type BodyReader = (off: number, len: number) => Promise<Buffer>;

const TYPE: Record<TarEntry['type'], TocEntryType> = {
  file: 'reg',
  dir: 'dir',
  symlink: 'symlink',
  hardlink: 'hardlink',
  char: 'char',
  block: 'block',
  fifo: 'fifo',
};

/** The landmark entry that follows the prioritized files (or opens a layer without any). */
export function landmarkEntry(prefetch: boolean): { entry: TarEntry; body: Buffer } {
  const entry: TarEntry = {
    path: prefetch ? PREFETCH_LANDMARK : NO_PREFETCH_LANDMARK,
    type: 'file',
    mode: 0,
    uid: 0,
    gid: 0,
    mtime: 0,
    size: 1,
    xattrs: {},
  };
  return { entry, body: Buffer.from([LANDMARK_CONTENTS]) };
}

/** Names an eStargz layer reserves: a source entry of that name is left out (it is written anew). */
export function isReservedEstargzName(path: string): boolean {
  return path === TOC_TAR_NAME || path === PREFETCH_LANDMARK || path === NO_PREFETCH_LANDMARK;
}

export class EstargzWriter {
  private readonly chunkSize: number;
  private readonly level: number;
  private readonly diff: Hash = createHash('sha256');
  private readonly entries: TocEntry[] = [];
  private readonly lastUser = new Map<number, string>();
  private readonly lastGroup = new Map<number, string>();
  /** uncompressed bytes of the open gzip member */
  private member: Buffer[] = [];
  private memberBytes = 0;
  private open = false;
  private written = 0;
  private uncompressed = 0;
  private finished = false;

  constructor(
    private readonly sink: (b: Buffer) => Promise<void>,
    o: EstargzWriterOptions = {},
  ) {
    this.chunkSize = o.chunkSize ?? DEFAULT_ESTARGZ_CHUNK_SIZE;
    this.level = o.level ?? 9;
    if (!(Number.isSafeInteger(this.chunkSize) && this.chunkSize >= BLOCK))
      throw new FerryError('INVALID_ARGUMENT', `eStargz chunk size ${this.chunkSize}: must be at least ${BLOCK}`);
    if (!(Number.isInteger(this.level) && this.level >= 0 && this.level <= 9))
      throw new FerryError('INVALID_ARGUMENT', `eStargz gzip level ${this.level}: must be 0..9`);
  }

  /** Bytes of the blob written so far (the offset the next member starts at). */
  get offset(): number {
    return this.written;
  }

  private put(b: Buffer): void {
    if (b.length === 0) return;
    this.diff.update(b);
    this.uncompressed += b.length;
    this.member.push(b);
    this.memberBytes += b.length;
    this.open = true;
  }

  private async closeMember(): Promise<void> {
    if (!this.open) return;
    const z = await gzip(Buffer.concat(this.member), { level: this.level });
    this.member = [];
    this.memberBytes = 0;
    this.open = false;
    await this.sink(z);
    this.written += z.length;
  }

  private nameIfChanged(m: Map<number, string>, id: number, name: string | undefined): string | undefined {
    if (!name || m.get(id) === name) return undefined;
    m.set(id, name);
    return name;
  }

  private tocEntryOf(e: TarEntry): TocEntry {
    const t: TocEntry = { name: e.path === '' ? './' : e.path, type: TYPE[e.type] };
    if (e.type === 'file') t.size = e.size;
    const mtime = tocModtime(e.mtime);
    if (mtime) t.modtime = mtime;
    if (e.linkname && (e.type === 'symlink' || e.type === 'hardlink')) t.linkName = e.linkname;
    if (e.mode) t.mode = e.mode;
    if (e.uid) t.uid = e.uid;
    if (e.gid) t.gid = e.gid;
    const user = this.nameIfChanged(this.lastUser, e.uid, e.uname);
    if (user) t.userName = user;
    const group = this.nameIfChanged(this.lastGroup, e.gid, e.gname);
    if (group) t.groupName = group;
    if (e.type === 'char' || e.type === 'block') {
      if (e.devmajor) t.devMajor = e.devmajor;
      if (e.devminor) t.devMinor = e.devminor;
    }
    const xattrs = Object.entries(e.xattrs ?? {});
    if (xattrs.length) t.xattrs = Object.fromEntries(xattrs.map(([k, v]) => [k, Buffer.from(v).toString('base64')]));
    return t;
  }

  /**
   * Appends one tar entry. A regular file's payload is read through `read` chunk by chunk, each
   * chunk in a gzip member of its own whose offset goes in the TOC.
   */
  async append(e: TarEntry, read?: BodyReader): Promise<void> {
    if (this.finished) throw new FerryError('FAILED_PRECONDITION', 'eStargz writer: append after finish');
    // a landmark starts its own member, so the prefetched range ends exactly there; headers of
    // payload-less entries share a member, but no more than a chunk's worth (memory stays bounded)
    if (e.path === PREFETCH_LANDMARK || e.path === NO_PREFETCH_LANDMARK || this.memberBytes >= this.chunkSize) await this.closeMember();
    this.put(encodeTarHeaders(e));
    const first = this.tocEntryOf(e);
    if (e.type !== 'file' || e.size === 0) {
      if (e.type === 'file') first.digest = `sha256:${createHash('sha256').digest('hex')}`;
      this.entries.push(first);
      return;
    }
    if (!read) throw new FerryError('INVALID_ARGUMENT', `eStargz writer: ${e.path} has no body`);
    const whole = createHash('sha256');
    let ent = first;
    for (let done = 0; done < e.size; ) {
      await this.closeMember();
      const n = Math.min(this.chunkSize, e.size - done);
      if (n === this.chunkSize && e.size > this.chunkSize) ent.chunkSize = n;
      ent.offset = this.written;
      if (done > 0) ent.chunkOffset = done;
      const payload = await read(done, n);
      if (payload.length !== n)
        throw new FerryError('DATA_LOSS', `eStargz writer: ${e.path}: read ${payload.length} of ${n} bytes at ${done}`);
      whole.update(payload);
      ent.chunkDigest = `sha256:${createHash('sha256').update(payload).digest('hex')}`;
      this.put(payload);
      this.entries.push(ent);
      done += n;
      ent = { name: first.name, type: 'chunk' };
    }
    first.digest = `sha256:${whole.digest('hex')}`;
    const pad = (BLOCK - (e.size % BLOCK)) % BLOCK;
    if (pad) this.put(Buffer.alloc(pad));
  }

  /** Writes the TOC member and the footer; the layer is complete. */
  async finish(): Promise<EstargzResult> {
    if (this.finished) throw new FerryError('FAILED_PRECONDITION', 'eStargz writer: finished twice');
    await this.closeMember();
    this.finished = true;
    const toc: Toc = { version: 1, entries: this.entries };
    const json = encodeToc(toc);
    const tocOffset = this.written;
    const header = encodeTarHeaders({ path: TOC_TAR_NAME, type: 'file', mode: 0, uid: 0, gid: 0, mtime: 0, size: json.length, xattrs: {} });
    this.put(header);
    this.put(json);
    this.put(Buffer.alloc((BLOCK - (json.length % BLOCK)) % BLOCK));
    this.put(Buffer.alloc(2 * BLOCK)); // end of archive
    await this.closeMember();
    const footer = encodeFooter(tocOffset);
    await this.sink(footer);
    this.written += footer.length;
    return {
      tocDigest: `sha256:${createHash('sha256').update(json).digest('hex')}`,
      diffId: `sha256:${this.diff.digest('hex')}`,
      uncompressedSize: this.uncompressed,
      size: this.written,
      tocOffset,
      toc,
    };
  }
}
