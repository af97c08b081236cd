/**
 * Enforces the import direction of docs/architecture.md on the source tree:
 * cli → services → libraries → foundations, format code free of I/O, no deep imports across folders.
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
  core: 0, oci: 1, format: 1, observe: 1, config: 2, httpx: 2,
  content: 3, remote: 3, builder: 3, storage: 3, fuse: 3, convert: 3, containerd: 3,
  registry: 4, accel: 4, daemon: 4, snapshotter: 4, p2p: 4,
  bench: 5, cli: 6,
};
const NO_IO = /^node:(fs|net|http|https|http2|child_process|dgram|tls|worker_threads)(\/promises)?$/;

function walk(dir: string, out: string[] = []): string[] {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) walk(p, out);
    else if (name.endsWith('.ts') && !name.endsWith('.test.ts') && !name.endsWith('.d.ts')) out.push(p);
  }
  return out;
}

function importsOf(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  const out: string[] = [];
  const re = /(?:^|\n)\s*(?:import|export)\s[^'";]*?from\s+['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)/g;
  for (let m = re.exec(text); m; m = re.exec(text)) out.push((m[1] ?? m[2])!);
  return out;
}

/** `src/<top>/<sub?>/…` → ['top', 'top/sub'] keys used for the public-surface rule. */
function folderOf(abs: string): { top: string; unit: string } {
  const parts = relative(SRC, abs).split(sep);
  const top = parts[0]!;
  // format/* and p2p/* are folders of sub-units, each with its own index.ts; config/<server>.ts are
  // independent schemas, one per server, each its own public unit.
  const unit = (top === 'format' || top === 'p2p') && parts.length > 2 ? `${top}/${parts[1]}`
    : top === 'config' ? `config/${parts[1]}` : top;
  return { top, unit };
}

test('source imports follow the architecture: downward only, format pure, public surfaces only', () => {
  const problems: string[] = [];
  for (const file of walk(SRC)) {
    const from = folderOf(file);
    for (const spec of importsOf(file)) {
      if (from.top === 'format' && NO_IO.test(spec)) problems.push(`${relative(ROOT, file)}: format code imports ${spec}`);
      if (!spec.startsWith('.')) continue;
      const target = resolve(dirname(file), spec);
      if (!target.startsWith(SRC + sep)) continue;
      const to = folderOf(target);
      const rel = relative(ROOT, file);
      if (to.top === 'cli' && from.top !== 'cli') problems.push(`${rel}: imports cli (${spec})`);
      const ft = TIER[from.top];
      const tt = TIER[to.top];
      if (ft === undefined) { problems.push(`${rel}: folder src/${from.top} has no tier in docs/architecture.md`); continue; }
      if (tt === undefined) continue;
      if (from.unit === to.unit) continue;
      if (tt > ft) problems.push(`${rel}: ${from.top} (tier ${ft}) imports upward into ${to.top} (tier ${tt}) via ${spec}`);
      const base = target.slice(target.lastIndexOf(sep) + 1);
      if (from.top !== 'cli' && to.top !== 'config' && !['index.js', 'client.js', 'protocol.js'].includes(base)) {
        problems.push(`${rel}: deep import ${spec} (import another folder through its index.ts, client.ts or protocol.ts)`);
      }
    }
  }
  assert.deepEqual(problems, []);
});
