/**
 * @module p2p/common/hashring
 * Consistent-hash ring (virtual nodes, sha256 points) used to shard tasks over several schedulers
 * and to pick the seed peer for a task, so every peer of one task reaches the same scheduler.
 */
import { createHash } from 'node:crypto';

export class HashRing<T extends string = string> {
  private points: { h: bigint; node: T }[] = [];

  constructor(
    nodes: readonly T[] = [],
    private readonly replicas = 100,
  ) {
    for (const n of nodes) this.add(n);
  }

  private static hash(s: string): bigint {
    return createHash('sha256').update(s).digest().readBigUInt64BE(0);
  }

  add(node: T): void {
    if (this.points.some((p) => p.node === node)) return;
    for (let i = 0; i < this.replicas; i++) this.points.push({ h: HashRing.hash(`${node}#${i}`), node });
    this.points.sort((a, b) => (a.h < b.h ? -1 : a.h > b.h ? 1 : 0));
  }

  remove(node: T): void {
    this.points = this.points.filter((p) => p.node !== node);
  }

  get size(): number {
    return new Set(this.points.map((p) => p.node)).size;
  }

  /** The node owning `key`, or undefined for an empty ring. */
  get(key: string): T | undefined {
    return this.walk(key)[0];
  }

  /** Distinct nodes in ring order starting at `key` (the owner first, then fail-over order). */
  walk(key: string): T[] {
    if (this.points.length === 0) return [];
    const h = HashRing.hash(key);
    let lo = 0;
    let hi = this.points.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (this.points[mid]!.h < h) lo = mid + 1;
      else hi = mid;
    }
    const out: T[] = [];
    for (let i = 0; i < this.points.length; i++) {
      const node = this.points[(lo + i) % this.points.length]!.node;
      if (!out.includes(node)) out.push(node);
    }
    return out;
  }
}
