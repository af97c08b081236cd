/**
 * @module daemon/rafs-fs
 * The FUSE filesystem of FUSE mode: a RAFS tree (v5 or v6 bootstrap) whose file data is read
 * through the storage device. Node ids are the bootstrap's inode numbers (v6: nids), except that
 * the root is FUSE_ROOT_ID.
 */
import { FUSE_ROOT_ID, FuseErrno, ERRNO, type FuseAttr, type FuseFilesystem, type FuseDirEntry, type StatfsInfo } from '../fuse/index.js';
import { FileReadPlan, HOLE, PLAN_STRIDE, planFileRead, type RafsBootstrap } from '../format/rafs/index.js';
import type { StorageDevice } from '../storage/index.js';
import { fuseAttrOf } from './fuse-attr.js';

import { S_IFMT, S_IFREG, S_IFLNK } from '../core/index.js';

export class RafsFs implements FuseFilesystem {
  constructor(
    private readonly bs: RafsBootstrap,
    private readonly dev: StorageDevice,
  ) {}

  private ino(nodeid: number): number {
    return nodeid === FUSE_ROOT_ID ? this.bs.rootIno : nodeid;
  }
  private node(ino: number): number {
    return ino === this.bs.rootIno ? FUSE_ROOT_ID : ino;
  }

  private attr(ino: number): FuseAttr {
    let st: ReturnType<RafsBootstrap['stat']>;
    try {
      st = this.bs.stat(ino);
    } catch {
      throw new FuseErrno(ERRNO.ENOENT);
    }
    return fuseAttrOf(st);
  }

  async lookup(parent: number, name: string): Promise<{ nodeid: number; attr: FuseAttr } | null> {
    const ino = this.bs.lookupChild(this.ino(parent), name);
    if (ino === undefined) return null;
    return { nodeid: this.node(ino), attr: this.attr(ino) };
  }

  async getattr(nodeid: number): Promise<FuseAttr> {
    return this.attr(this.ino(nodeid));
  }

  async readdir(nodeid: number): Promise<FuseDirEntry[]> {
    const ino = this.ino(nodeid);
    if ((this.attr(ino).mode & S_IFMT) !== 0o040000) throw new FuseErrno(ERRNO.ENOTDIR);
    return this.bs.readdir(ino).map((e) => ({ name: e.name, nodeid: this.node(e.ino), mode: this.bs.stat(e.ino).mode }));
  }

  async open(nodeid: number): Promise<{ keepCache: boolean }> {
    const a = this.attr(this.ino(nodeid));
    if ((a.mode & S_IFMT) !== S_IFREG) throw new FuseErrno(ERRNO.EISDIR);
    return { keepCache: true };
  }

  async read(nodeid: number, _fh: number, offset: number, size: number): Promise<Buffer[]> {
    return readFileRange(this.bs, this.dev, this.ino(nodeid), offset, size);
  }

  async readlink(nodeid: number): Promise<Buffer> {
    const ino = this.ino(nodeid);
    if ((this.attr(ino).mode & S_IFMT) !== S_IFLNK) throw new FuseErrno(ERRNO.EINVAL);
    return Buffer.from(this.bs.readlink(ino));
  }

  async getxattr(nodeid: number, name: string): Promise<Buffer | null> {
    return this.bs.xattrs(this.ino(nodeid)).get(name) ?? null;
  }

  async listxattr(nodeid: number): Promise<string[]> {
    return [...this.bs.xattrs(this.ino(nodeid)).keys()];
  }

  async statfs(): Promise<StatfsInfo> {
    const blocks = this.bs.blobs.reduce((n, b) => n + Math.ceil(b.uncompressedSize / 4096), 0);
    const s = this.bs.summary();
    return { blocks, bfree: 0, bavail: 0, files: s.inodeCount, ffree: 0, bsize: 4096, namelen: 255, frsize: 4096 };
  }
}

/** The plan of every `readFileRange` (used up before it returns: no two are in progress at once). */
const plan = new FileReadPlan();

/** Bytes [offset, offset+size) of a regular file of the image (clamped to its size; holes as zeros). */
export function readFileRange(bs: RafsBootstrap, dev: StorageDevice, ino: number, offset: number, size: number): Promise<Buffer[]> {
  const fileSize = bs.stat(ino).size;
  if (Math.min(fileSize, offset + size) <= offset) return Promise.resolve([]);
  const refs = bs.mapRead(ino, offset, size);
  planFileRead(refs, fileSize, offset, size, plan);
  const seg = plan.segments;
  const parts: Array<Promise<Buffer>> = [];
  for (let p = 0; p < plan.count * PLAN_STRIDE; p += PLAN_STRIDE) {
    const i = seg[p]!;
    if (i === HOLE) {
      parts.push(Promise.resolve(Buffer.alloc(seg[p + 2]!)));
    } else {
      const r = refs[i]!;
      parts.push(dev.read(r.blobId, r.uncompressedOffset + seg[p + 1]!, seg[p + 2]!));
    }
  }
  return Promise.all(parts);
}

/** The small FUSE filesystem of EROFS mode: one read-only file per blob, its uncompressed view. */
export class BlobViewFs implements FuseFilesystem {
  private readonly ids: string[];
  private readonly mtime = Math.floor(Date.now() / 1000);
  constructor(private readonly dev: StorageDevice) {
    this.ids = dev.blobIds();
  }

  private attr(nodeid: number): FuseAttr {
    if (nodeid === FUSE_ROOT_ID)
      return { ino: 1, mode: 0o040555, size: 0, blocks: 0, mtime: this.mtime, nlink: 2, uid: 0, gid: 0, rdev: 0 };
    const id = this.ids[nodeid - 2];
    if (!id) throw new FuseErrno(ERRNO.ENOENT);
    const size = this.dev.blobSize(id);
    return { ino: nodeid, mode: 0o100444, size, blocks: Math.ceil(size / 512), mtime: this.mtime, nlink: 1, uid: 0, gid: 0, rdev: 0 };
  }

  async lookup(parent: number, name: string): Promise<{ nodeid: number; attr: FuseAttr } | null> {
    if (parent !== FUSE_ROOT_ID) return null;
    const i = this.ids.indexOf(name);
    return i < 0 ? null : { nodeid: i + 2, attr: this.attr(i + 2) };
  }

  async getattr(nodeid: number): Promise<FuseAttr> {
    return this.attr(nodeid);
  }
  async readdir(): Promise<FuseDirEntry[]> {
    return this.ids.map((name, i) => ({ name, nodeid: i + 2, mode: 0o100444 }));
  }

  async read(nodeid: number, _fh: number, offset: number, size: number): Promise<Buffer> {
    const id = this.ids[nodeid - 2];
    if (!id) throw new FuseErrno(ERRNO.ENOENT);
    return this.dev.read(id, offset, size);
  }
}
