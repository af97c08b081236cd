/**
 * Paths used by tests: the project root (found from this file, which lives at
 * `<root>/test/support/` in the source and `<root>/dist/test/support/` when compiled) and fixtures.
 */
import { existsSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

function findRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    if (existsSync(join(dir, 'package.json')) && existsSync(join(dir, 'test', 'fixtures'))) return dir;
    const up = dirname(dir);
    if (up === dir) throw new Error('test/support/paths: project root not found');
    dir = up;
  }
}

/** The project root directory. */
export const ROOT = findRoot();

/** Absolute path of a file under test/fixtures. */
export function fixture(...parts: string[]): string {
  return resolve(ROOT, 'test', 'fixtures', ...parts);
}

/** The `ferry` executable (bin/ferry.js, running the compiled CLI). */
export const FERRY_BIN = join(ROOT, 'bin', 'ferry.js');
