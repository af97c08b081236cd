/**
 * @module bench/report/png
 * A minimal PNG decoder (8-bit greyscale/RGB/RGBA, non-interlaced — what Chromium writes) used to
 * check that a screenshot is not blank and shows the chart colours.
 */
import { inflateSync } from 'node:zlib';
import { FerryError } from '../../core/index.js';

export interface Image {
  width: number;
  height: number;
  /** RGBA, 4 bytes per pixel. */
  rgba: Buffer;
}

const SIG = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

export function decodePng(buf: Buffer): Image {
  if (buf.length < 33 || !buf.subarray(0, 8).equals(SIG)) throw new FerryError('INVALID_ARGUMENT', 'not a PNG file');
  let off = 8;
  let width = 0;
  let height = 0;
  let colorType = -1;
  const idat: Buffer[] = [];
  while (off + 8 <= buf.length) {
    const len = buf.readUInt32BE(off);
    const type = buf.toString('latin1', off + 4, off + 8);
    if (off + 12 + len > buf.length) throw new FerryError('INVALID_ARGUMENT', 'truncated PNG chunk');
    const data = buf.subarray(off + 8, off + 8 + len);
    if (type === 'IHDR') {
      width = data.readUInt32BE(0);
      height = data.readUInt32BE(4);
      const depth = data[8];
      colorType = data[9] ?? -1;
      if (depth !== 8 || data[12] !== 0) throw new FerryError('NOT_IMPLEMENTED', 'only 8-bit non-interlaced PNGs are supported');
    } else if (type === 'IDAT') idat.push(data);
    else if (type === 'IEND') break;
    off += 12 + len;
  }
  const channels = { 0: 1, 2: 3, 6: 4, 4: 2 }[colorType as 0 | 2 | 6 | 4];
  if (!channels || width === 0 || height === 0) throw new FerryError('NOT_IMPLEMENTED', `unsupported PNG colour type ${colorType}`);
  if (width * height > 50_000_000) throw new FerryError('INVALID_ARGUMENT', 'PNG too large');
  const raw = inflateSync(Buffer.concat(idat));
  const stride = width * channels;
  if (raw.length < height * (stride + 1)) throw new FerryError('INVALID_ARGUMENT', 'PNG data too short');
  const out = Buffer.alloc(width * height * 4);
  let prev = Buffer.alloc(stride);
  for (let y = 0; y < height; y++) {
    const f = raw[y * (stride + 1)]!;
    const line = Buffer.from(raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1)));
    for (let i = 0; i < stride; i++) {
      const a = i >= channels ? line[i - channels]! : 0;
      const b = prev[i]!;
      const c = i >= channels ? prev[i - channels]! : 0;
      let v = line[i]!;
      if (f === 1) v += a;
      else if (f === 2) v += b;
      else if (f === 3) v += (a + b) >> 1;
      else if (f === 4) {
        const p = a + b - c;
        const pa = Math.abs(p - a);
        const pb = Math.abs(p - b);
        const pc = Math.abs(p - c);
        v += pa <= pb && pa <= pc ? a : pb <= pc ? b : c;
      } else if (f !== 0) throw new FerryError('INVALID_ARGUMENT', `bad PNG filter ${f}`);
      line[i] = v & 0xff;
    }
    for (let x = 0; x < width; x++) {
      const o = (y * width + x) * 4;
      const s = x * channels;
      if (channels === 1 || channels === 2) {
        out[o] = out[o + 1] = out[o + 2] = line[s]!;
        out[o + 3] = channels === 2 ? line[s + 1]! : 255;
      } else {
        out[o] = line[s]!;
        out[o + 1] = line[s + 1]!;
        out[o + 2] = line[s + 2]!;
        out[o + 3] = channels === 4 ? line[s + 3]! : 255;
      }
    }
    prev = line;
  }
  return { width, height, rgba: out };
}

/** Share of pixels that differ from the top-left pixel (the background). */
export function nonBackgroundShare(img: Image): number {
  const bg = img.rgba.readUInt32BE(0);
  let n = 0;
  for (let i = 0; i < img.rgba.length; i += 4) if (img.rgba.readUInt32BE(i) !== bg) n++;
  return n / (img.width * img.height);
}

/** Number of pixels within `tol` (per channel) of an #rrggbb colour. */
export function countColor(img: Image, hex: string, tol = 6): number {
  const r = parseInt(hex.slice(1, 3), 16);
  const g = parseInt(hex.slice(3, 5), 16);
  const b = parseInt(hex.slice(5, 7), 16);
  let n = 0;
  for (let i = 0; i < img.rgba.length; i += 4) {
    if (Math.abs(img.rgba[i]! - r) <= tol && Math.abs(img.rgba[i + 1]! - g) <= tol && Math.abs(img.rgba[i + 2]! - b) <= tol) n++;
  }
  return n;
}
