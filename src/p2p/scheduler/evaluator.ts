/**
 * @module p2p/scheduler/evaluator
 * Candidate-parent filtering and scoring (Dragonfly's default evaluator, v2.3.4+):
 * total = 0.6·load + 0.2·IDC + 0.1·location + 0.1·host type, load = 0.5·peak bandwidth +
 * 0.3·bandwidth duration + 0.2·concurrency; bad parents by 20× mean / mean + 3σ piece cost.
 */
import { COST_WINDOW, type Peer } from './state.js';

const PIECE_16MIB_BITS = 16 * 1024 * 1024 * 8;

export function isBadParent(p: Peer): boolean {
  if (p.state === 'failed' || p.state === 'leave' || p.state === 'pending') return true;
  const costs = p.costs;
  if (costs.length < 2) return false;
  const last = costs[costs.length - 1]!;
  const prev = costs.slice(0, -1);
  const mean = prev.reduce((a, b) => a + b, 0) / prev.length;
  if (costs.length < COST_WINDOW) return last > 20 * mean;
  const all = costs.reduce((a, b) => a + b, 0) / costs.length;
  const sd = Math.sqrt(costs.reduce((a, b) => a + (b - all) ** 2, 0) / costs.length);
  return last > all + 3 * sd;
}

export function loadQuality(p: Peer): number {
  const h = p.host;
  const maxTx = h.info.maxTxBps ?? 0;
  const peak = maxTx > 0 ? Math.max(0, 1 - h.txBps / maxTx) : 0;
  const duration = h.uploadContentLength === 0 ? 1 : maxTx > 0 ? Math.max(0, 1 - (h.uploadContentLength * 8) / maxTx / 60) : 0;
  let concurrency: number;
  const needed = maxTx / PIECE_16MIB_BITS;
  if (needed <= 1) concurrency = 0;
  else if (h.concurrentUploadPieces === 0 || h.concurrentUploadPieces / needed <= 1) concurrency = 1;
  else concurrency = needed / h.concurrentUploadPieces;
  return 0.5 * peak + 0.3 * duration + 0.2 * concurrency;
}

export function idcAffinity(a?: string, b?: string): number {
  return a && b && a.toLowerCase() === b.toLowerCase() ? 1 : 0;
}

export function locationAffinity(a?: string, b?: string): number {
  if (!a || !b) return 0;
  if (a.toLowerCase() === b.toLowerCase()) return 1;
  const x = a.toLowerCase().split('|');
  const y = b.toLowerCase().split('|');
  let n = 0;
  while (n < 5 && n < x.length && n < y.length && x[n] === y[n]) n++;
  return n / 5;
}

export function hostTypeScore(p: Peer): number {
  if (p.host.info.type === 'super') return p.state === 'running' || p.state === 'backToSource' || p.state === 'succeeded' ? 1 : 0;
  return 0.5;
}

export function score(parent: Peer, child: Peer): number {
  return (
    0.6 * loadQuality(parent) +
    0.2 * idcAffinity(parent.host.info.idc, child.host.info.idc) +
    0.1 * locationAffinity(parent.host.info.location, child.host.info.location) +
    0.1 * hostTypeScore(parent)
  );
}

/** Why a candidate was dropped, or undefined if it may be a parent of `child`. */
export function filterReason(parent: Peer, child: Peer, reaches: (from: string, to: string) => boolean): string | undefined {
  if (parent.id === child.id) return 'self';
  if (child.blocklist.has(parent.id)) return 'blocked';
  if (parent.host.info.disableShared) return 'disable-shared';
  if (parent.host.info.id === child.host.info.id) return 'same-host';
  const isSeed = parent.host.info.type === 'super';
  if (!isSeed && parent.parents.size === 0 && parent.state !== 'backToSource' && parent.state !== 'succeeded') return 'no-source';
  if (isBadParent(parent)) return 'bad-parent';
  if (reaches(child.id, parent.id)) return 'cycle';
  return undefined;
}
