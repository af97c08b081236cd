/**
 * @module format/erofs/device
 * EROFS device slots (`erofs_deviceslot`, 128 bytes each, table at `devt_slotoff × 128`):
 * `@0 64 tag` (nydus: the 64-hex blob id, no NUL), `@64 u32 blocks`, `@68 u32 mapped_blkaddr`,
 * `@72 56 reserved`.
 */
import { fixedString, need, putFixedString, putUint } from './binary.js';
import { EROFS_DEVT_SLOT_SIZE } from './constants.js';

export interface ErofsDeviceSlot {
  tag: string;
  blocks: number;
  mappedBlkaddr: number;
}

export function decodeErofsDeviceSlot(buf: Buffer, off: number): ErofsDeviceSlot {
  need(buf, off, EROFS_DEVT_SLOT_SIZE, 'erofs device slot');
  return { tag: fixedString(buf, off, 64), blocks: buf.readUInt32LE(off + 64), mappedBlkaddr: buf.readUInt32LE(off + 68) };
}

export function writeErofsDeviceSlot(buf: Buffer, off: number, rec: ErofsDeviceSlot): void {
  need(buf, off, EROFS_DEVT_SLOT_SIZE, 'erofs device slot (write)');
  buf.fill(0, off, off + EROFS_DEVT_SLOT_SIZE);
  putFixedString(buf, off, 64, rec.tag, 'device tag');
  putUint(buf, off + 64, rec.blocks, 4, 'device blocks');
  putUint(buf, off + 68, rec.mappedBlkaddr, 4, 'device mapped_blkaddr');
}

export function encodeErofsDeviceSlot(rec: ErofsDeviceSlot): Buffer {
  const b = Buffer.alloc(EROFS_DEVT_SLOT_SIZE);
  writeErofsDeviceSlot(b, 0, rec);
  return b;
}
