/**
 * @module p2p/scheduler/state
 * In-memory resources of one scheduler: hosts, tasks, peers and the per-task peer DAG
 * (edges parent → child, cycle-checked), plus the per-host load counters the evaluator reads.
 */
import { rangeContains, type DownloadSpec, type HostInfo, type RangeSpec, type TaskIdOptions } from '../common/index.js';

export type PeerStateName = 'pending' | 'running' | 'backToSource' | 'succeeded' | 'failed' | 'leave';

/** What happens to a peer (Dragonfly's peer FSM events, without its Received* size classes). */
export type PeerEventName = 'download' | 'downloadBackToSource' | 'downloadSucceeded' | 'downloadFailed' | 'leave';

const ALL_STATES: readonly PeerStateName[] = ['pending', 'running', 'backToSource', 'succeeded', 'failed', 'leave'];

/**
 * The one table of peer state changes: each event, the states it may happen in, and the state it
 * leads to. As in Dragonfly's scheduler: a failed or departed peer never succeeds without going back
 * to the source first, a succeeded one may still fail (its copy went bad) or leave, and leaving is
 * possible from anywhere.
 */
export const PEER_TRANSITIONS: Readonly<Record<PeerEventName, { from: readonly PeerStateName[]; to: PeerStateName }>> = {
  download: { from: ['pending', 'running'], to: 'running' },
  // from failed too: a peer the scheduler gave up on (no parents after retryLimit) falls back to the
  // source by itself and reports it; its copy then makes it a parent like any other.
  downloadBackToSource: { from: ['pending', 'running', 'backToSource', 'failed'], to: 'backToSource' },
  downloadSucceeded: { from: ['pending', 'running', 'backToSource'], to: 'succeeded' },
  downloadFailed: { from: ['pending', 'running', 'backToSource', 'succeeded'], to: 'failed' },
  leave: { from: ALL_STATES, to: 'leave' },
};

/** Applies `event` to `peer` if the table allows it in the peer's state; returns whether it did. */
export function transition(peer: { state: PeerStateName }, event: PeerEventName): boolean {
  const t = PEER_TRANSITIONS[event];
  if (!t.from.includes(peer.state)) return false;
  peer.state = t.to;
  return true;
}

export interface Host {
  info: HostInfo;
  lastSeen: number;
  /** Scheduler-estimated upload bandwidth in use (bps): + concurrentPieces × pieceLength × 8 per edge. */
  txBps: number;
  /** Bytes of content promised through current edges. */
  uploadContentLength: number;
  concurrentUploadPieces: number;
  uploadCount: number;
  uploadFailedCount: number;
}

export interface Task {
  id: string;
  url: string;
  idOptions: TaskIdOptions;
  /** The whole-object task id (`objectTaskId`): every range task of the object shares it. */
  objectId: string;
  /** A range task's byte range of the object; undefined for a whole-object task. */
  span: RangeSpec | undefined;
  headers: Record<string, string>;
  contentLength: number;
  pieceLength: number;
  peers: Map<string, Peer>;
  backToSourcePeers: Set<string>;
  state: 'pending' | 'running' | 'succeeded' | 'failed';
  seedTriggeredAt?: number;
  seedFailed: boolean;
  updatedAt: number;
  /** Wakes scheduling loops waiting for a parent to appear (set by the service). */
  waiters?: Set<() => void>;
}

export interface Peer {
  id: string;
  host: Host;
  task: Task;
  state: PeerStateName;
  parents: Set<string>;
  children: Set<string>;
  finished: Set<number>;
  /** Piece download costs in ms per MiB (pieces differ in length: a blob's last one is short), rolling window of 2000. */
  costs: number[];
  blocklist: Set<string>;
  needBackToSource: boolean;
  concurrentPieceCount: number;
  updatedAt: number;
  download: DownloadSpec;
}

export const COST_WINDOW = 2000;

export class SchedulerState {
  readonly hosts = new Map<string, Host>();
  readonly tasks = new Map<string, Task>();
  readonly peers = new Map<string, Peer>();
  /** Tasks by object (`Task.objectId`): the whole-object task and the range tasks of one object. */
  private readonly objects = new Map<string, Set<Task>>();

  addTask(task: Task): void {
    this.tasks.set(task.id, task);
    let set = this.objects.get(task.objectId);
    if (!set) this.objects.set(task.objectId, (set = new Set()));
    set.add(task);
  }

  deleteTask(task: Task): void {
    this.tasks.delete(task.id);
    const set = this.objects.get(task.objectId);
    set?.delete(task);
    if (set?.size === 0) this.objects.delete(task.objectId);
  }

  /**
   * The other tasks of a range task's object that hold all of its bytes: the whole-object task
   * and larger ranges around it. Empty for a whole-object task.
   */
  containersOf(task: Task): Task[] {
    const span = task.span;
    if (!span) return [];
    const out: Task[] = [];
    for (const t of this.objects.get(task.objectId) ?? []) if (t !== task && rangeContains(t.span, span)) out.push(t);
    return out;
  }

  /**
   * Whether a host other than `host` has a live peer (not failed, not gone) of any task of `task`'s
   * object — the whole object or any range of it.
   */
  otherHostOnObject(task: Task, host: Host): boolean {
    for (const t of this.objects.get(task.objectId) ?? [])
      for (const p of t.peers.values()) if (p.host !== host && p.state !== 'failed' && p.state !== 'leave') return true;
    return false;
  }

  /** The range tasks of the same object that `task` holds all the bytes of (it is their container). */
  containedIn(task: Task): Task[] {
    const out: Task[] = [];
    for (const t of this.objects.get(task.objectId) ?? []) if (t !== task && t.span && rangeContains(task.span, t.span)) out.push(t);
    return out;
  }

  seedHosts(): Host[] {
    return [...this.hosts.values()].filter((h) => h.info.type === 'super');
  }

  /** True when `descendant` is reachable from `ancestor` along parent → child edges (across tasks: a range task's parent may be a peer of a task containing it). */
  reaches(ancestor: string, descendant: string): boolean {
    const seen = new Set<string>();
    const stack = [ancestor];
    while (stack.length) {
      const id = stack.pop()!;
      if (id === descendant) return true;
      if (seen.has(id)) continue;
      seen.add(id);
      const p = this.peers.get(id);
      if (p) for (const c of p.children) stack.push(c);
    }
    return false;
  }

  /** Adds edge parent → child unless it would close a cycle; returns whether it was added. */
  addEdge(parent: Peer, child: Peer): boolean {
    if (parent.id === child.id || this.reaches(child.id, parent.id)) return false;
    parent.children.add(child.id);
    child.parents.add(parent.id);
    const h = parent.host;
    h.txBps += child.concurrentPieceCount * child.task.pieceLength * 8;
    h.uploadContentLength += child.task.contentLength;
    h.concurrentUploadPieces += child.concurrentPieceCount;
    h.uploadCount++;
    return true;
  }

  removeEdge(parent: Peer, child: Peer): void {
    if (!parent.children.delete(child.id)) return;
    child.parents.delete(parent.id);
    const h = parent.host;
    h.txBps = Math.max(0, h.txBps - child.concurrentPieceCount * child.task.pieceLength * 8);
    h.uploadContentLength = Math.max(0, h.uploadContentLength - child.task.contentLength);
    h.concurrentUploadPieces = Math.max(0, h.concurrentUploadPieces - child.concurrentPieceCount);
  }

  removeInEdges(child: Peer): void {
    for (const pid of [...child.parents]) {
      const p = this.peers.get(pid);
      if (p) this.removeEdge(p, child);
      else child.parents.delete(pid);
    }
  }

  deletePeer(peer: Peer): void {
    this.removeInEdges(peer);
    for (const cid of [...peer.children]) {
      const c = this.peers.get(cid);
      if (c) this.removeEdge(peer, c);
    }
    transition(peer, 'leave');
    peer.task.peers.delete(peer.id);
    peer.task.backToSourcePeers.delete(peer.id);
    this.peers.delete(peer.id);
  }
}
