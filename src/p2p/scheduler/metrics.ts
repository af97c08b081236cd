/**
 * @module p2p/scheduler/metrics
 * The scheduler's Prometheus metrics (Dragonfly's scheduler names, `ferry_scheduler_` prefix).
 */
import { type MetricsRegistry, Counter, Gauge, Histogram } from '../../observe/index.js';

export interface SchedulerMetrics {
  registerTotal: InstanceType<typeof Counter>;
  registerFailure: InstanceType<typeof Counter>;
  traffic: InstanceType<typeof Counter>;
  pieceFinished: InstanceType<typeof Counter>;
  pieceFailed: InstanceType<typeof Counter>;
  peerFinished: InstanceType<typeof Counter>;
  peerFailed: InstanceType<typeof Counter>;
  backToSource: InstanceType<typeof Counter>;
  seedTriggered: InstanceType<typeof Counter>;
  scheduleDuration: InstanceType<typeof Histogram>;
  hosts: InstanceType<typeof Gauge>;
  /** Report requests (one peer's or several peers' events each). */
  reportRequests: InstanceType<typeof Counter>;
}

export function makeMetrics(reg: MetricsRegistry): SchedulerMetrics {
  const r = [reg];
  return {
    registerTotal: new Counter({
      name: 'ferry_scheduler_register_peer_total',
      help: 'peer registrations',
      labelNames: ['host_type'],
      registers: r,
    }),
    registerFailure: new Counter({ name: 'ferry_scheduler_register_peer_failure_total', help: 'failed registrations', registers: r }),
    traffic: new Counter({
      name: 'ferry_scheduler_traffic_bytes_total',
      help: 'bytes reported downloaded by peers, by source',
      labelNames: ['type', 'host_type'],
      registers: r,
    }),
    pieceFinished: new Counter({
      name: 'ferry_scheduler_download_piece_finished_total',
      help: 'pieces reported finished',
      labelNames: ['traffic_type'],
      registers: r,
    }),
    pieceFailed: new Counter({ name: 'ferry_scheduler_download_piece_failure_total', help: 'pieces reported failed', registers: r }),
    peerFinished: new Counter({ name: 'ferry_scheduler_download_peer_finished_total', help: 'peers finished', registers: r }),
    peerFailed: new Counter({ name: 'ferry_scheduler_download_peer_failure_total', help: 'peers failed', registers: r }),
    backToSource: new Counter({
      name: 'ferry_scheduler_download_peer_back_to_source_started_total',
      help: 'peers told to go back to source',
      registers: r,
    }),
    seedTriggered: new Counter({
      name: 'ferry_scheduler_seed_peer_triggered_total',
      help: 'seed peer downloads triggered',
      labelNames: ['result'],
      registers: r,
    }),
    scheduleDuration: new Histogram({
      name: 'ferry_scheduler_schedule_duration_seconds',
      help: 'time to answer a scheduling request',
      buckets: [0.001, 0.01, 0.1, 0.5, 1, 2, 5],
      registers: r,
    }),
    hosts: new Gauge({ name: 'ferry_scheduler_hosts', help: 'announced hosts', labelNames: ['type'], registers: r }),
    reportRequests: new Counter({
      name: 'ferry_scheduler_report_requests_total',
      help: 'report requests received (each carries the events of one or several peers)',
      registers: r,
    }),
  };
}
