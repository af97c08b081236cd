/**
 * Enforces the import direction of docs/architecture.md on the source tree, the benchmarks and the
 * tests: cli → services → libraries → foundations, format code free of I/O, no deep imports across
 * folders, services reaching each other only through a client.ts / protocol.ts, and bench/ and
 * test/ using src/ only through public surfaces (never src/cli from a benchmark).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative, dirname, resolve, sep } from 'node:path';
import { ROOT } from '../support/paths.js';

const SRC = join(ROOT, 'src');

/** Tier of each top-level folder; an import may only go to a lower or equal tier (equal only within
 * the same folder, or to a sibling service's public surface). */
const TIER: Record<string, number> = {
  core: 0,
  oci: 1,
  format: 1,
  observe: 1,
  config: 2,
  httpx: 2,
  db: 2,
  content: 3,
  remote: 3,
  builder: 3,
  storage: 3,
  fuse: 3,
  convert: 3,
  build: 3,
  containerd: 3,
  console: 3,
  registry: 4,
  accel: 4,
  daemon: 4,
  snapshotter: 4,
  p2p: 4,
  bench: 5,
  cli: 6,
};
/**
 * The services (units): each reaches another only through that one's client.ts or protocol.ts.
 * `p2p` is p2p's index (all of it); p2p/common is the library its scheduler and peer share.
 */
const SERVICES = new Set(['registry', 'accel', 'daemon', 'snapshotter', 'p2p', 'p2p/scheduler', 'p2p/peer']);
const NO_IO = /^node:(fs|net|http|https|http2|child_process|dgram|tls|worker_threads)(\/promises)?$/;
const SURFACES = ['index.js', 'client.js', 'protocol.js'];

/** The .ts files under `dir` (tests included only when `tests`). */
function walk(dir: string, tests: boolean, out: string[] = []): string[] {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) {
      if (name !== 'node_modules' && name !== 'fixtures' && name !== 'out') walk(p, tests, out);
    } else if (name.endsWith('.ts') && !name.endsWith('.d.ts') && (tests || !name.endsWith('.test.ts'))) out.push(p);
  }
  return out;
}

export function importsOf(text: string): string[] {
  const out: string[] = [];
  const re = /(?:^|\n)\s*(?:import|export)\s[^'";]*?from\s+['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)/g;
  for (let m = re.exec(text); m; m = re.exec(text)) out.push((m[1] ?? m[2])!);
  return out;
}

/** `src/<top>/<sub?>/…` → the top folder and the unit (public-surface owner), with its directory. */
function folderOf(abs: string): { top: string; unit: string } {
  const parts = relative(SRC, abs).split(sep);
  const top = parts[0]!;
  // format/* and p2p/* are folders of sub-units, each with its own index.ts; config/<server>.ts are
  // independent schemas, one per server, each its own public unit.
  const unit =
    (top === 'format' || top === 'p2p') && parts.length > 2 ? `${top}/${parts[1]}` : top === 'config' ? `config/${parts[1]}` : top;
  return { top, unit };
}

/**
 * Problems of one file's imports. `from` is the file; `kind`: `src` (the source tree), `bench` or
 * `test` (benchmarks and tests: they may use src/ only through public surfaces and testing/ helpers).
 */
export function problemsOf(file: string, specs: string[], kind: 'src' | 'bench' | 'test'): string[] {
  const problems: string[] = [];
  const rel = relative(ROOT, file);
  const from = kind === 'src' ? folderOf(file) : undefined;
  for (const spec of specs) {
    if (from?.top === 'format' && NO_IO.test(spec)) problems.push(`${rel}: format code imports ${spec}`);
    if (!spec.startsWith('.')) continue;
    const target = resolve(dirname(file), spec);
    if (!target.startsWith(SRC + sep)) continue;
    const to = folderOf(target);
    const base = target.slice(target.lastIndexOf(sep) + 1);
    const targetRel = relative(SRC, target).split(sep).join('/');
    if (!from) {
      // bench/ and test/: public surfaces of src (index/client/protocol) and testing/ helpers only
      if (to.top === 'cli') problems.push(`${rel}: ${kind} imports src/cli (${spec}): use the library it calls, or run the CLI`);
      else if (!SURFACES.includes(base) && to.top !== 'config' && !targetRel.split('/').includes('testing')) {
        const how = 'src/ only through an index.ts, client.ts, protocol.ts, config/<server>.ts or a testing/ helper';
        problems.push(`${rel}: deep import ${spec} (${how})`);
      }
      continue;
    }
    if (to.top === 'cli' && from.top !== 'cli') problems.push(`${rel}: imports cli (${spec})`);
    const ft = TIER[from.top];
    const tt = TIER[to.top];
    if (ft === undefined) {
      problems.push(`${rel}: folder src/${from.top} has no tier in docs/architecture.md`);
      continue;
    }
    if (tt === undefined) continue;
    if (from.unit === to.unit) continue;
    if (tt > ft) problems.push(`${rel}: ${from.top} (tier ${ft}) imports upward into ${to.top} (tier ${tt}) via ${spec}`);
    // (src/p2p/index.ts gathers its own sub-units through their index.ts)
    const gathers = from.unit === from.top && to.top === from.top;
    if (SERVICES.has(from.unit) && SERVICES.has(to.unit) && !gathers) {
      // another service: only its client.ts or protocol.ts, at the root of its unit
      if (targetRel !== `${to.unit}/client.js` && targetRel !== `${to.unit}/protocol.js`) {
        problems.push(`${rel}: service ${from.top} imports ${spec} (another service only through its client.ts or protocol.ts)`);
      }
      continue;
    }
    if (from.top !== 'cli' && to.top !== 'config' && !SURFACES.includes(base)) {
      problems.push(`${rel}: deep import ${spec} (import another folder through its index.ts, client.ts or protocol.ts)`);
    }
  }
  return problems;
}

test('source imports follow the architecture: downward only, format pure, public surfaces only, services through client/protocol', () => {
  const problems = walk(SRC, false).flatMap((f) => problemsOf(f, importsOf(readFileSync(f, 'utf8')), 'src'));
  assert.deepEqual(problems, []);
});

test('benchmarks and tests use src/ only through public surfaces (index, client, protocol, testing/); benchmarks never src/cli', () => {
  const problems = [
    ...walk(join(ROOT, 'bench'), true).flatMap((f) => problemsOf(f, importsOf(readFileSync(f, 'utf8')), 'bench')),
    ...walk(join(ROOT, 'test'), true).flatMap((f) => problemsOf(f, importsOf(readFileSync(f, 'utf8')), 'test')),
  ];
  assert.deepEqual(problems, []);
});

test('the rules catch what they are for', () => {
  const check = (file: string, spec: string, kind: 'src' | 'bench' | 'test' = 'src'): string =>
    problemsOf(join(ROOT, file), [spec], kind).join('\n');
  const service = /another service only through its client\.ts or protocol\.ts/;
  // a service reaching into another service's index (its whole server) or its internals
  assert.match(check('src/snapshotter/lazy.ts', '../daemon/index.js'), service);
  assert.match(check('src/snapshotter/lazy.ts', '../daemon/daemon.js'), service);
  assert.match(check('src/registry/webhooks.ts', '../accel/server.js'), service);
  assert.match(check('src/accel/server.ts', '../registry/testing/client.js'), service);
  assert.equal(check('src/snapshotter/lazy.ts', '../daemon/protocol.js'), '');
  assert.equal(check('src/registry/webhooks.ts', '../accel/protocol.js'), '');
  assert.equal(check('src/snapshotter/service.ts', '../daemon/client.js'), '');
  // p2p's sub-units are services too; their shared library is reached through its index
  assert.match(check('src/p2p/peer/agent.ts', '../scheduler/service.js'), service);
  assert.equal(check('src/p2p/peer/agent.ts', '../common/index.js'), '');
  // upward, cli, format I/O, deep imports into libraries
  assert.match(check('src/httpx/router.ts', '../daemon/protocol.js'), /imports upward into daemon/);
  assert.match(check('src/daemon/api.ts', '../cli/main.js'), /imports cli/);
  assert.match(check('src/format/tar/reader.ts', 'node:fs'), /format code imports node:fs/);
  assert.match(check('src/daemon/api.ts', '../httpx/router.js'), /deep import/);
  // bench/ and test/
  assert.match(check('bench/rafs/unpack.ts', '../../src/cli/rafs/unpack.js', 'bench'), /bench imports src\/cli/);
  assert.match(check('bench/rafs/unpack.ts', '../../src/convert/unpack.js', 'bench'), /deep import/);
  assert.match(check('test/e2e/x.test.ts', '../../src/daemon/daemon.js', 'test'), /deep import/);
  assert.equal(check('bench/rafs/unpack.ts', '../../src/convert/index.js', 'bench'), '');
  assert.equal(check('test/e2e/x.test.ts', '../../src/p2p/testing/procs.js', 'test'), '');
  assert.equal(check('test/e2e/x.test.ts', '../../src/config/snapshotter.js', 'test'), '');
  assert.equal(check('test/e2e/x.test.ts', '../support/paths.js', 'test'), '');
});
