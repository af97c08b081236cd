/**
 * @module bench/report/chromium
 * Headless Chromium for the report: PNG screenshots of pages and charts, and the rendered DOM
 * (to check the page really shows its charts). No network: only file:// URLs, background
 * networking, updates and sync disabled, a throw-away profile.
 */
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { FerryError } from '../../core/index.js';
import { exec } from '../env/index.js';

export function chromiumBinary(): string | undefined {
  return ['/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome'].find((p) => existsSync(p));
}

async function runChromium(args: string[], timeoutMs: number): Promise<{ stdout: string; stderr: string }> {
  const bin = chromiumBinary();
  if (!bin) throw new FerryError('FAILED_PRECONDITION', 'chromium not found (install the chromium package)');
  const profile = await mkdtemp(join(tmpdir(), 'ferry-chromium-'));
  try {
    const r = await exec(
      bin,
      [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        '--disable-dev-shm-usage',
        '--hide-scrollbars',
        '--mute-audio',
        `--user-data-dir=${profile}`,
        ...args,
      ],
      { timeoutMs },
    );
    if (r.code !== 0) throw new FerryError('INTERNAL', `chromium exited ${r.code}: ${r.stderr.trim().split('\n').slice(-3).join(' ')}`);
    return r;
  } finally {
    await rm(profile, { recursive: true, force: true });
  }
}

/** Screenshots a local file (HTML or SVG) into a PNG of the given viewport size. */
export async function screenshot(file: string, png: string, size: { width: number; height: number }, timeoutMs = 90_000): Promise<void> {
  await runChromium(
    [`--window-size=${size.width},${size.height}`, `--screenshot=${resolve(png)}`, pathToFileURL(resolve(file)).href],
    timeoutMs,
  );
  if (!existsSync(png)) throw new FerryError('INTERNAL', `chromium wrote no screenshot to ${png}`);
}

/** The DOM of a local page after Chromium rendered it. */
export async function dumpDom(file: string, timeoutMs = 90_000): Promise<string> {
  return (await runChromium(['--dump-dom', pathToFileURL(resolve(file)).href], timeoutMs)).stdout;
}
