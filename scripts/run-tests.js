#!/usr/bin/env node
// Runs the compiled test files (dist/**/*.test.js) with Node's built-in test runner.
// `node scripts/run-tests.js registry rafs` runs only files whose path contains one of the words.
// Unit tests (*.test.js) and integration/e2e tests (*.int.test.js, test/e2e) run in one `node --test`
// invocation so CI reads one summary.
import { readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { spawnSync } from 'node:child_process';

const root = new URL('..', import.meta.url).pathname;
const dist = join(root, 'dist');
const filters = process.argv.slice(2).filter((a) => !a.startsWith('-'));
const passthrough = process.argv.slice(2).filter((a) => a.startsWith('-'));

function walk(dir, out) {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) walk(p, out);
    else if (name.endsWith('.test.js')) out.push(p);
  }
  return out;
}

const files = walk(dist, [])
  .map((p) => relative(root, p))
  .filter((p) => filters.length === 0 || filters.some((f) => p.includes(f)))
  .sort();
if (files.length === 0) {
  console.error('run-tests: no test files matched');
  process.exit(1);
}
const concurrency = process.env.FERRY_TEST_CONCURRENCY ?? '2';
const res = spawnSync(
  process.execPath,
  ['--test', `--test-concurrency=${concurrency}`, '--test-timeout=900000', '--test-reporter=spec', ...passthrough, ...files],
  { stdio: 'inherit', cwd: root, env: { ...process.env, UV_THREADPOOL_SIZE: process.env.UV_THREADPOOL_SIZE ?? '16' } },
);
process.exit(res.status ?? 1);
