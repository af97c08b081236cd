/**
 * @module p2p/peer/metrics
 * Peer metrics: traffic by source (BACK_TO_SOURCE, REMOTE_PEER, LOCAL_PEER), upload traffic,
 * proxy requests vs the ones served through P2P, piece failures by reason, scheduler fallbacks.
 */
import { Counter, Gauge, type MetricsRegistry } from '../../observe/index.js';

export function makePeerMetrics(reg: MetricsRegistry) {
  const r = [reg];
  return {
    traffic: new Counter({
      name: 'ferry_peer_download_traffic_bytes_total',
      help: 'bytes obtained, by source (BACK_TO_SOURCE, REMOTE_PEER, LOCAL_PEER = served from the local store)',
      labelNames: ['type'],
      registers: r,
    }),
    upload: new Counter({ name: 'ferry_peer_upload_traffic_bytes_total', help: 'piece bytes served to other peers', registers: r }),
    served: new Counter({
      name: 'ferry_peer_proxy_served_bytes_total',
      help: 'body bytes sent to proxy/dfget clients from P2P tasks',
      registers: r,
    }),
    proxyRequests: new Counter({ name: 'ferry_peer_proxy_request_total', help: 'proxy requests', labelNames: ['method'], registers: r }),
    proxyViaP2P: new Counter({ name: 'ferry_peer_proxy_request_via_p2p_total', help: 'proxy requests served through P2P', registers: r }),
    proxyDenied: new Counter({
      name: 'ferry_peer_proxy_request_denied_total',
      help: 'proxy requests refused because the upstream is not an allowed registry',
      labelNames: ['method'],
      registers: r,
    }),
    proxyFailures: new Counter({
      name: 'ferry_peer_proxy_request_failure_total',
      help: 'proxy requests that failed',
      labelNames: ['type'],
      registers: r,
    }),
    pieceFailures: new Counter({
      name: 'ferry_peer_piece_failure_total',
      help: 'failed pieces, by reason (crc: from a parent, network, source, digest: whole blob, disk: altered in the store)',
      labelNames: ['reason'],
      registers: r,
    }),
    schedulerFallback: new Counter({
      name: 'ferry_peer_scheduler_fallback_total',
      help: 'downloads that went to the origin because scheduling failed',
      registers: r,
    }),
    speculative: new Counter({
      name: 'ferry_peer_speculative_source_total',
      help: 'range tasks of objects this host read alone that went to the origin at once and registered with their outcome',
      registers: r,
    }),
    tasks: new Counter({ name: 'ferry_peer_download_task_total', help: 'task downloads', labelNames: ['result'], registers: r }),
    evictions: new Counter({ name: 'ferry_peer_evicted_task_total', help: 'tasks evicted from the store', registers: r }),
    diskUsage: new Gauge({ name: 'ferry_peer_disk_usage_bytes', help: 'bytes of task data in the store', registers: r }),
  };
}
export type PeerMetrics = ReturnType<typeof makePeerMetrics>;
