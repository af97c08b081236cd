/**
 * @module builder/prefetch
 * Resolves prefetch patterns (one per line in `--prefetch-patterns`) to tree nodes: an absolute or
 * relative path names that entry (`/` = the whole image); `*`, `?` and `[...]` glob within one path
 * component and `**` across components. Unmatched patterns are ignored, as nydus-image does.
 */
import { lookupPath, walkTree, type Inode } from './tree.js';

function globToRegExp(glob: string): RegExp {
  let re = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (c === '*' && glob[i + 1] === '*') {
      re += '.*';
      i++;
    } else if (c === '*') re += '[^/]*';
    else if (c === '?') re += '[^/]';
    else if (c === '[') {
      const end = glob.indexOf(']', i + 1);
      if (end < 0) re += '\\[';
      else {
        re += `[${glob
          .slice(i + 1, end)
          .replace(/^!/, '^')
          .replace(/\\/g, '\\\\')}]`;
        i = end;
      }
    } else re += c.replace(/[.+^${}()|\\]/g, '\\$&');
  }
  return new RegExp(`^${re}$`);
}

export function resolvePrefetch(root: Inode, patterns: readonly string[] | undefined): Inode[] {
  const out: Inode[] = [];
  const seen = new Set<Inode>();
  const add = (n: Inode | undefined): void => {
    if (n && !seen.has(n)) {
      seen.add(n);
      out.push(n);
    }
  };
  for (const raw of patterns ?? []) {
    const p = raw.trim();
    if (!p || p.startsWith('#')) continue;
    const abs = `/${p.replace(/^\/+/, '').replace(/\/+$/, '')}`;
    if (/[*?[]/.test(abs)) {
      const re = globToRegExp(abs);
      for (const { path, node } of walkTree(root)) if (re.test(path)) add(node);
    } else {
      add(abs === '/' ? root : lookupPath(root, abs.slice(1)));
    }
  }
  return out;
}
