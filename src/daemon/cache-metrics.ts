/**
 * @module daemon/cache-metrics
 * The node's disk as metrics: one set of names for every store that keeps bytes on the node
 * (`store="daemon"`: the lazy chunk cache), so that dashboards add them up.
 *   ferry_node_cache_bytes · ferry_node_cache_quota_bytes · ferry_node_cache_evicted_bytes_total ·
 *   ferry_node_cache_refetched_bytes_total
 */
import { Gauge, type MetricsRegistry } from '../observe/index.js';
import type { NodeCache } from '../storage/index.js';

export function nodeCacheMetrics(registry: MetricsRegistry, store: string, cache: NodeCache): void {
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
  gauge('ferry_node_cache_bytes', 'Bytes on disk of a node store', () => cache.usedBytes());
  gauge('ferry_node_cache_quota_bytes', 'Quota of a node store (0: none)', () => cache.quota);
  gauge('ferry_node_cache_evicted_bytes_total', 'Bytes evicted from a node store by its GC', () => cache.evictedBytes);
  gauge('ferry_node_cache_refetched_bytes_total', 'Bytes fetched again after their eviction', () => cache.refetchedBytes());
}
