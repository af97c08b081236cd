/**
 * The README stays a short entrance and every link in the docs leads somewhere: relative links in
 * README.md and docs/**.md must name a file or directory of the repository (and an anchor in a
 * Markdown target must be one of its headings).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { ROOT } from '../support/paths.js';

const README_MAX_LINES = 250;

function markdownFiles(): string[] {
  const out = [join(ROOT, 'README.md')];
  const walk = (dir: string): void => {
    for (const name of readdirSync(dir)) {
      const p = join(dir, name);
      if (statSync(p).isDirectory()) walk(p);
      else if (name.endsWith('.md')) out.push(p);
    }
  };
  walk(join(ROOT, 'docs'));
  return out;
}

/** GitHub's anchor of a heading: lower case, punctuation dropped, spaces → dashes. */
export function anchorOf(heading: string): string {
  return heading
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N} _-]/gu, '')
    .replace(/ /g, '-');
}

function anchorsOf(file: string): Set<string> {
  const text = readFileSync(file, 'utf8').replace(/```[\s\S]*?```/g, '');
  return new Set([...text.matchAll(/^#{1,6} (.+)$/gm)].map((m) => anchorOf(m[1]!)));
}

/** Links `[text](target)` and images `![alt](target)` outside code blocks and code spans. */
function linksOf(text: string): string[] {
  const prose = text.replace(/```[\s\S]*?```/g, '').replace(/`[^`\n]*`/g, '');
  return [...prose.matchAll(/!?\[[^\]]*\]\(([^)\s]+)\)/g)].map((m) => m[1]!);
}

test("anchorOf follows GitHub's heading anchors", () => {
  assert.equal(anchorOf('A five-minute tour'), 'a-five-minute-tour');
  assert.equal(anchorOf('Registry: `ferry registry` (the role Harbor plays)'), 'registry-ferry-registry-the-role-harbor-plays');
});

test(`README.md has at most ${README_MAX_LINES} lines`, () => {
  const lines = readFileSync(join(ROOT, 'README.md'), 'utf8').split('\n').length;
  assert.ok(lines <= README_MAX_LINES, `README.md has ${lines} lines; move reference material to docs/`);
});

test('every relative link in README.md and docs/ resolves', () => {
  const broken: string[] = [];
  for (const file of markdownFiles()) {
    for (const link of linksOf(readFileSync(file, 'utf8'))) {
      if (/^[a-z][a-z0-9+.-]*:/i.test(link)) continue; // http:, https:, mailto:
      const [path, anchor] = link.split('#') as [string, string | undefined];
      const target = path === '' ? file : resolve(dirname(file), decodeURI(path));
      const where = `${relative(ROOT, file)} → ${link}`;
      if (!target.startsWith(ROOT) || !existsSync(target)) {
        broken.push(`${where} (no such file)`);
        continue;
      }
      if (anchor && target.endsWith('.md') && !anchorsOf(target).has(anchor)) broken.push(`${where} (no heading #${anchor})`);
    }
  }
  assert.deepEqual(broken, []);
});
