/**
 * @module format/estargz/order
 * The order of a layer's entries in an eStargz blob: the prioritized files first, in the order
 * given, each preceded by whatever must come before it for the tar to extract (its parent
 * directories, and a hardlink's target), then everything else in the source order. Upstream's
 * rule; the snapshotter prefetches the prioritized part, up to the `.prefetch.landmark` entry.
 */
import { normalizeTarPath } from '../tar/index.js';

export interface EntryOrder {
  /** indexes into the source entries: prioritized (with their prerequisites), then the rest */
  order: number[];
  /** how many of `order` are prioritized (the landmark goes after them) */
  prioritized: number;
  /** prioritized paths the layer does not have */
  missed: string[];
}

function clean(p: string): string {
  const s = p.replace(/^\/+/, '');
  try {
    return normalizeTarPath(s);
  } catch {
    return s;
  }
}

function parentOf(p: string): string {
  const i = p.lastIndexOf('/');
  return i < 0 ? '' : p.slice(0, i);
}

/**
 * Orders `entries` (their normalised paths, '' for the root, `link` for hardlinks' targets) with
 * the `prioritized` paths first. A path present several times moves with all its occurrences, in
 * source order, so the last one still wins at extraction.
 */
export function orderEntries(entries: ReadonlyArray<{ path: string; hardlink?: string }>, prioritized: readonly string[]): EntryOrder {
  const byPath = new Map<string, number[]>();
  entries.forEach((e, i) => {
    const l = byPath.get(e.path);
    if (l) l.push(i);
    else byPath.set(e.path, [i]);
  });
  const moved = new Set<number>();
  const order: number[] = [];
  const missed: string[] = [];
  const move = (path: string, depth: number): void => {
    if (depth > 4096) return; // bounded: a path has at most this many components / link hops
    if (path !== '') move(parentOf(path), depth + 1);
    for (const i of byPath.get(path) ?? []) {
      if (moved.has(i)) continue;
      moved.add(i);
      const link = entries[i]!.hardlink;
      if (link !== undefined && link !== path) move(link, depth + 1);
      order.push(i);
    }
  };
  for (const raw of prioritized) {
    const p = clean(raw);
    if (p === '' || !byPath.has(p)) {
      if (p !== '') missed.push(raw);
      continue;
    }
    move(p, 0);
  }
  const prioritizedCount = order.length;
  entries.forEach((_, i) => {
    if (!moved.has(i)) order.push(i);
  });
  return { order, prioritized: prioritizedCount, missed };
}
