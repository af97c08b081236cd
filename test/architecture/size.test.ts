/**
 * Long files say why: a non-test source file over 600 lines carries, at the top of its module
 * comment, a line `(Over 600 lines: <reason>)`.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { ROOT } from '../support/paths.js';

const MAX_LINES = 600;
const REASON = /^ \* \(Over 600 lines: .{10,}\)$/m;

function sources(dir: string, out: string[] = []): string[] {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) sources(p, out);
    else if (name.endsWith('.ts') && !name.endsWith('.test.ts') && !name.endsWith('.d.ts')) out.push(p);
  }
  return out;
}

test(`source files over ${MAX_LINES} lines say why at their top`, () => {
  const unexplained: string[] = [];
  for (const top of ['src', 'bench', 'test']) {
    for (const file of sources(join(ROOT, top))) {
      const text = readFileSync(file, 'utf8');
      const lines = text.split('\n').length;
      const head = text.split('\n').slice(0, 8).join('\n');
      if (lines > MAX_LINES && !REASON.test(head)) unexplained.push(`${relative(ROOT, file)} (${lines} lines)`);
    }
  }
  assert.deepEqual(unexplained, []);
});
