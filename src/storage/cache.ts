/**
 * @module storage/cache
 * The local chunk cache of one blob, in nydusd's blobcache layout:
 * `<blob_id>.blob.data` holds the uncompressed chunks at their uncompressed offsets (a sparse file
 * of the blob's uncompressed size — exactly the "uncompressed view" the EROFS kernel driver reads),
 * and `<blob_id>.chunk_map` persists which chunks are ready: a 4096-byte header (magic 0x424D4150,
 * version 1, magic2 0x434D4150, all_ready) then one bit per chunk (chunk i = bit 7-(i%8) of byte i/8,
 * see storage/protocol.ts).
 * A chunk's bit is written only after its data write completed, so a killed daemon never trusts
 * data it did not finish writing; a restarted one fetches nothing it already has.
 */
import { readSync, writeSync } from 'node:fs';
import { open, mkdir, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { FerryError } from '../core/index.js';
import { chunkReady, clearChunk, markChunkReady } from './protocol.js';

const MAP_MAGIC = 0x424d4150;
const MAP_MAGIC2 = 0x434d4150;
const MAP_HEADER = 4096;
/**
 * Reads and writes up to this size use positioned synchronous calls: they hit the page cache (a
 * chunk just written, or read back right after its fetch) and cost microseconds, where a trip
 * through libuv's thread pool cost ~0.1 ms per read — per 4 KiB page fault of a lazy start.
 */
const SYNC_IO_MAX = 1024 * 1024;

export class BlobCache {
  readonly blobId: string;
  readonly size: number;
  readonly chunkCount: number;
  private bitmap: Buffer;
  private ready = 0;
  private mapWrites: Promise<void> = Promise.resolve();
  /**
   * Bumped (before any bit is cleared) each time the cache is emptied in place: a reader in another
   * thread that saw its chunks ready trusts the bytes it read only if this did not change meanwhile.
   */
  private readonly gen = new Int32Array(new SharedArrayBuffer(4));
  /** chunks that were ready when the cache was last emptied: fetching one again is a refetch */
  private evicted: Uint8Array | undefined;
  /** bytes of chunks fetched again after an eviction */
  refetchedBytes = 0;

  /** path of `<blob_id>.blob.data` */
  readonly dataPath: string;

  private constructor(
    blobId: string,
    size: number,
    chunkCount: number,
    private readonly data: FileHandle,
    private readonly map: FileHandle,
    bitmap: Buffer,
    dataPath: string,
  ) {
    this.dataPath = dataPath;
    this.blobId = blobId;
    this.size = size;
    this.chunkCount = chunkCount;
    this.bitmap = bitmap;
    for (let i = 0; i < chunkCount; i++) if (this.isReady(i)) this.ready++;
  }

  /** Opens (creating when absent) the cache files of a blob in `dir`. */
  static async open(dir: string, blobId: string, uncompressedSize: number, chunkCount: number): Promise<BlobCache> {
    if (!/^[0-9a-f]{64}$/.test(blobId)) throw new FerryError('INVALID_ARGUMENT', `invalid blob id ${JSON.stringify(blobId)}`);
    await mkdir(dir, { recursive: true });
    const data = await open(join(dir, `${blobId}.blob.data`), 'a+').then(async (h) => {
      await h.close();
      return open(join(dir, `${blobId}.blob.data`), 'r+');
    });
    const st = await data.stat();
    if (st.size !== uncompressedSize) await data.truncate(uncompressedSize);
    const mapPath = join(dir, `${blobId}.chunk_map`);
    const map = await open(mapPath, 'a+').then(async (h) => {
      await h.close();
      return open(mapPath, 'r+');
    });
    const bytes = Math.ceil(chunkCount / 8);
    const want = MAP_HEADER + bytes;
    const cur = await map.readFile();
    // In shared memory: FUSE reader threads check readiness themselves (see fuse fast paths).
    const bitmap = Buffer.from(new SharedArrayBuffer(Math.max(1, bytes))).subarray(0, bytes);
    const valid =
      cur.length === want &&
      cur.readUInt32LE(0) === MAP_MAGIC &&
      cur.readUInt32LE(4) === 1 &&
      cur.readUInt32LE(8) === MAP_MAGIC2 &&
      st.size === uncompressedSize;
    if (valid) {
      cur.copy(bitmap, 0, MAP_HEADER);
    } else {
      // New, or does not match this blob (size changed): start empty.
      const hdr = Buffer.alloc(MAP_HEADER);
      hdr.writeUInt32LE(MAP_MAGIC, 0);
      hdr.writeUInt32LE(1, 4);
      hdr.writeUInt32LE(MAP_MAGIC2, 8);
      await map.truncate(0);
      await map.write(Buffer.concat([hdr, bitmap]), 0, want, 0);
    }
    return new BlobCache(blobId, uncompressedSize, chunkCount, data, map, bitmap, join(dir, `${blobId}.blob.data`));
  }

  isReady(i: number): boolean {
    return chunkReady(this.bitmap, i);
  }

  get readyCount(): number {
    return this.ready;
  }
  /** The ready bitmap's shared memory (bit order: storage/protocol.ts). */
  get sharedBitmap(): SharedArrayBuffer {
    return this.bitmap.buffer as SharedArrayBuffer;
  }
  /** The eviction generation's shared memory (one Int32, see `emptied`). */
  get sharedGeneration(): SharedArrayBuffer {
    return this.gen.buffer as SharedArrayBuffer;
  }
  get generation(): number {
    return Atomics.load(this.gen, 0);
  }

  /**
   * Empties the cache in place: the generation is bumped, every ready bit cleared and the cleared
   * map persisted, and only then the data file's blocks released (truncated to 0 and back to its
   * size: a sparse file of holes). The caller makes sure no fetch of this blob runs meanwhile.
   */
  async empty(): Promise<void> {
    Atomics.add(this.gen, 0, 1);
    this.evicted = Uint8Array.from(this.bitmap);
    this.bitmap.fill(0);
    this.ready = 0;
    await this.mapWrites;
    const map = Buffer.alloc(this.bitmap.length + 4);
    await this.map.write(map, 0, 4, 12); // all_ready = 0
    await this.map.write(map, 0, this.bitmap.length, MAP_HEADER);
    await this.map.datasync();
    await this.data.truncate(0);
    await this.data.truncate(this.size);
  }

  get allReady(): boolean {
    return this.ready === this.chunkCount;
  }

  /** Bytes of the uncompressed view; holes read as zeros. */
  async read(offset: number, length: number): Promise<Buffer> {
    const end = Math.min(this.size, offset + length);
    if (end <= offset) return Buffer.alloc(0);
    const buf = Buffer.allocUnsafe(end - offset);
    let n = 0;
    if (buf.length <= SYNC_IO_MAX) {
      while (n < buf.length) {
        const k = readSync(this.data.fd, buf, n, buf.length - n, offset + n);
        if (k === 0) {
          buf.fill(0, n);
          break;
        }
        n += k;
      }
      return buf;
    }
    while (n < buf.length) {
      const { bytesRead } = await this.data.read(buf, n, buf.length - n, offset + n);
      if (bytesRead === 0) {
        buf.fill(0, n);
        break;
      }
      n += bytesRead;
    }
    return buf;
  }

  /** Stores one decoded chunk and marks it ready (data first, then the persisted bit). */
  async put(index: number, uncompressedOffset: number, data: Buffer): Promise<void> {
    if (index < 0 || index >= this.chunkCount) throw new FerryError('INVALID_ARGUMENT', `chunk ${index} out of range`);
    if (uncompressedOffset + data.length > this.size)
      throw new FerryError('DATA_LOSS', `chunk ${index} of blob ${this.blobId} ends beyond the blob`);
    let n = 0;
    if (data.length <= SYNC_IO_MAX) while (n < data.length) n += writeSync(this.data.fd, data, n, data.length - n, uncompressedOffset + n);
    while (n < data.length) n += (await this.data.write(data, n, data.length - n, uncompressedOffset + n)).bytesWritten;
    if (this.isReady(index)) return;
    if (this.evicted && chunkReady(this.evicted, index)) {
      clearChunk(this.evicted, index);
      this.refetchedBytes += data.length;
    }
    markChunkReady(this.bitmap, index);
    this.ready++;
    const byte = index >> 3;
    // Serialised so that an older value of a byte never lands after a newer one.
    this.mapWrites = this.mapWrites
      .then(async () => {
        await this.map.write(this.bitmap, byte, 1, MAP_HEADER + byte);
        if (this.ready === this.chunkCount) {
          const one = Buffer.alloc(4);
          one.writeUInt32LE(1, 0);
          await this.map.write(one, 0, 4, 12);
        }
      })
      .catch(() => undefined);
    await this.mapWrites;
  }

  async close(): Promise<void> {
    await this.mapWrites;
    await this.data.close().catch(() => undefined);
    await this.map.close().catch(() => undefined);
  }
}
