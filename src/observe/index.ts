/**
 * @module observe
 * Logging (pino JSON lines, one root logger passed down) and Prometheus metrics (one registry per
 * server, served on `/metrics`). Hot paths publish `diagnostics_channel` events named in
 * `channels.ts` rather than logging.
 */
export { createLogger, silentLogger, type Logger, type LoggerOptions } from './logger.js';
export {
  createMetricsRegistry,
  metricsHandler,
  metricValue,
  Counter,
  Gauge,
  Histogram,
  Summary,
  type MetricsRegistry,
} from './metrics.js';
export { nodeStoreMetrics, type NodeStore } from './node-store.js';
