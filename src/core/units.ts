/**
 * @module core/units
 * Human-friendly durations ("30s", "500ms", "2m") and sizes ("512MiB", "100mbit") in configs and flags.
 */
import { FerryError } from './errors.js';

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** Parses "250ms" | "30s" | "2m" | "1h" | a number of milliseconds into milliseconds. */
export function parseDuration(v: string | number): number {
  if (typeof v === 'number' && Number.isFinite(v) && v >= 0) return v;
  const m = /^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$/.exec(String(v));
  if (!m) throw new FerryError('INVALID_ARGUMENT', `invalid duration ${JSON.stringify(v)}`);
  return Math.round(Number(m[1]) * DURATION_UNITS[m[2] ?? 'ms']!);
}

const SIZE_UNITS: Record<string, number> = {
  '': 1,
  b: 1,
  k: 1e3,
  kb: 1e3,
  m: 1e6,
  mb: 1e6,
  g: 1e9,
  gb: 1e9,
  t: 1e12,
  tb: 1e12,
  kib: 1024,
  mib: 1024 ** 2,
  gib: 1024 ** 3,
  tib: 1024 ** 4,
};

/** Parses "4096" | "0x100000" | "512MiB" | "1GB" into bytes. */
export function parseSize(v: string | number): number {
  if (typeof v === 'number' && Number.isInteger(v) && v >= 0) return v;
  const s = String(v).trim().toLowerCase();
  if (/^0x[0-9a-f]+$/.test(s)) return Number.parseInt(s.slice(2), 16);
  const m = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/.exec(s);
  const unit = m ? SIZE_UNITS[m[2] ?? ''] : undefined;
  if (!m || unit === undefined) throw new FerryError('INVALID_ARGUMENT', `invalid size ${JSON.stringify(v)}`);
  return Math.round(Number(m[1]) * unit);
}

/** 1536 → "1.5 KiB". */
export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  let x = n;
  while (Math.abs(x) >= 1024 && i < units.length - 1) {
    x /= 1024;
    i++;
  }
  return `${i === 0 ? x : x.toFixed(1)} ${units[i]}`;
}
