/**
 * @module observe/metrics
 * Prometheus metrics. Each server owns one `Registry` (never the global default, so several
 * servers in one process — `ferry up`, tests — do not collide) and exposes it on `GET /metrics`
 * through `metricsHandler`.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import client from 'prom-client';

export type MetricsRegistry = client.Registry;
export const { Counter, Gauge, Histogram, Summary } = client;

/** A fresh registry; with `processMetrics`, Node's default process metrics are collected into it. */
export function createMetricsRegistry(opts: { prefix?: string; processMetrics?: boolean } = {}): MetricsRegistry {
  const registry = new client.Registry();
  if (opts.processMetrics) {
    client.collectDefaultMetrics({ register: registry, ...(opts.prefix ? { prefix: opts.prefix } : {}) });
  }
  return registry;
}

/** Serves the registry's metrics in the Prometheus text format. */
export async function metricsHandler(registry: MetricsRegistry, _req: IncomingMessage, res: ServerResponse): Promise<void> {
  const body = await registry.metrics();
  res.writeHead(200, { 'content-type': registry.contentType, 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

/** Reads one sample value back (tests, bench): the sum over all label sets matching `labels`. */
export async function metricValue(registry: MetricsRegistry, name: string, labels: Record<string, string> = {}): Promise<number> {
  const m = registry.getSingleMetric(name);
  if (!m) return 0;
  const data = await m.get();
  let sum = 0;
  for (const v of data.values) {
    const sampleName = (v as { metricName?: string }).metricName;
    if (sampleName !== undefined && sampleName !== name && !sampleName.endsWith('_sum')) continue;
    const ok = Object.entries(labels).every(([k, want]) => String((v.labels as Record<string, unknown>)[k]) === want);
    if (ok) sum += v.value;
  }
  return sum;
}
