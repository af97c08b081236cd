/**
 * @module observe/node-store
 * The node's disk as metrics: one set of names for every store that keeps bytes on a node, told
 * apart by a `store` label (`daemon`: the lazy chunk cache; the P2P peer's piece store is meant to
 * report as `store="peer"`), so that one query adds them up against the disk:
 *   ferry_node_cache_bytes · ferry_node_cache_quota_bytes · ferry_node_cache_evicted_bytes_total ·
 *   ferry_node_cache_refetched_bytes_total · ferry_node_cache_shared_bytes_total
 */
import { Gauge, type MetricsRegistry } from './metrics.js';

/** What a store on the node reports. */
export interface NodeStore {
  /** bytes on disk now */
  usedBytes(): number | Promise<number>;
  /** bytes (0: none) */
  readonly quota: number;
  /** bytes its GC/eviction dropped so far */
  readonly evictedBytes: number;
  /** bytes fetched again after their eviction (stores that know it) */
  refetchedBytes?(): number;
  /** bytes taken from another entry of the same store holding the same content instead of fetched (stores that share) */
  sharedBytes?(): number;
}

/** Registers the node store gauges for one store. */
export function nodeStoreMetrics(registry: MetricsRegistry, store: string, s: NodeStore): void {
  const gauge = (name: string, help: string, value: () => number | Promise<number>): void => {
    new Gauge({
      name,
      help,
      labelNames: ['store'],
      registers: [registry],
      async collect() {
        this.set({ store }, await value());
      },
    });
  };
  gauge('ferry_node_cache_bytes', 'Bytes on disk of a store on this node', () => s.usedBytes());
  gauge('ferry_node_cache_quota_bytes', 'Quota of a store on this node (0: none)', () => s.quota);
  gauge('ferry_node_cache_evicted_bytes_total', 'Bytes evicted from a store on this node', () => s.evictedBytes);
  gauge('ferry_node_cache_refetched_bytes_total', 'Bytes fetched again after their eviction', () => s.refetchedBytes?.() ?? 0);
  gauge(
    'ferry_node_cache_shared_bytes_total',
    'Bytes copied from cached content of another blob or image (same chunk digest) instead of fetched',
    () => s.sharedBytes?.() ?? 0,
  );
}
