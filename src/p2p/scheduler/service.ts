/**
 * @module p2p/scheduler/service
 * Scheduling logic: host announce, peer registration (seed triggering for cold tasks, back-to-source
 * quota), ScheduleCandidateParents (filter → evaluate → top N, retry with jitter), piece/peer
 * reports, reschedule with block lists, GC. Transport-free: server.ts adapts it to HTTP.
 */
import { setMaxListeners } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';
import { FerryError } from '../../core/index.js';
import { type Logger, type MetricsRegistry, silentLogger } from '../../observe/index.js';
import type { SchedulerConfig } from '../../config/scheduler.js';
import { HashRing, objectTaskId, parseTaskRange, redactUrl, taskId, type SchedulerOverview } from '../common/index.js';
import { jsonRequest } from '../common/index.js';
import type {
  ClusterAuth,
  DownloadTaskRequest,
  HostInfo,
  ParentRef,
  PeerEvent,
  RegisterRequest,
  ScheduleResponse,
} from '../common/index.js';
import { filterReason, score } from './evaluator.js';
import { COST_WINDOW, SchedulerState, transition, type Host, type Peer, type PeerEventName, type Task } from './state.js';

import { makeMetrics, type SchedulerMetrics } from './metrics.js';

export class SchedulerService {
  readonly state = new SchedulerState();
  readonly metrics: SchedulerMetrics;
  /** Bytes peers reported downloading, by where from (the overview's totals; the metrics have labels). */
  readonly #traffic = { fromPeers: 0, fromSource: 0 };
  private readonly log: Logger;
  private closed = false;
  private readonly aborter = new AbortController();

  /** `auth`: cluster credentials for the seed triggers sent to peers. */
  constructor(
    readonly config: SchedulerConfig,
    registry: MetricsRegistry,
    log: Logger = silentLogger(),
    private readonly auth?: ClusterAuth,
  ) {
    this.metrics = makeMetrics(registry);
    this.log = log;
    // every scheduling loop waiting for a parent listens on it (many at once with range tasks)
    setMaxListeners(0, this.aborter.signal);
  }

  close(): void {
    this.closed = true;
    this.aborter.abort();
  }

  announceHost(info: HostInfo): void {
    if (!info.id || !info.ip || !info.uploadUrl) throw new FerryError('INVALID_ARGUMENT', 'host needs id, ip and uploadUrl');
    const h = this.state.hosts.get(info.id);
    if (h) {
      h.info = info;
      h.lastSeen = Date.now();
    } else {
      this.state.hosts.set(info.id, {
        info,
        lastSeen: Date.now(),
        txBps: 0,
        uploadContentLength: 0,
        concurrentUploadPieces: 0,
        uploadCount: 0,
        uploadFailedCount: 0,
      });
      this.log.info({ hostId: info.id, type: info.type, uploadUrl: info.uploadUrl }, 'host announced');
    }
    this.updateHostGauge();
  }

  leaveHost(id: string): void {
    const h = this.state.hosts.get(id);
    if (!h) return;
    for (const p of [...this.state.peers.values()]) if (p.host === h) this.state.deletePeer(p);
    this.state.hosts.delete(id);
    this.updateHostGauge();
  }

  private updateHostGauge(): void {
    const seeds = this.state.seedHosts().length;
    this.metrics.hosts.set({ type: 'super' }, seeds);
    this.metrics.hosts.set({ type: 'normal' }, this.state.hosts.size - seeds);
  }

  /** Registers a peer and answers its first scheduling decision (may wait for parents). */
  async register(req: RegisterRequest): Promise<ScheduleResponse> {
    const end = this.metrics.scheduleDuration.startTimer();
    try {
      return await this.registerInner(req);
    } catch (err) {
      this.metrics.registerFailure.inc();
      throw err;
    } finally {
      end();
    }
  }

  /** Registrations in flight per host (thundering-herd backoff). */
  private readonly registering = new Map<string, number>();

  private async registerInner(req: RegisterRequest): Promise<ScheduleResponse> {
    const host = this.state.hosts.get(req.hostId);
    if (!host) throw new FerryError('NOT_FOUND', `host ${req.hostId} not announced`);
    // Thundering herd: a normal host registering many tasks at once is slowed down exponentially
    // (30 ms base, 1 s cap, jitter); seed peers are exempt. A registration counts as in flight
    // until its first scheduling attempt: one then waiting for a parent (a triggered seed) costs
    // the scheduler nothing, and counting it made every concurrent cold read of a lazy loader
    // (one range task each) wait up to a second (8 concurrent 16 KiB range tasks: ~100 ms per
    // read instead of ~6 ms).
    // Range tasks (a lazy loader's reads: small, many at once by nature) neither wait nor count.
    if (req.download?.range !== undefined) return this.registerPeer(req, host);
    const inflight = (this.registering.get(host.info.id) ?? 0) + 1;
    this.registering.set(host.info.id, inflight);
    let released = false;
    const release = (): void => {
      if (released) return;
      released = true;
      const n = (this.registering.get(host.info.id) ?? 1) - 1;
      if (n <= 0) this.registering.delete(host.info.id);
      else this.registering.set(host.info.id, n);
    };
    try {
      if (host.info.type !== 'super' && inflight > 1) {
        const delay = Math.min(1000, 30 * 2 ** Math.min(10, inflight - 2)) * (0.5 + Math.random() / 2);
        try {
          await sleep(delay, undefined, { signal: this.aborter.signal });
        } catch {
          /* closing */
        }
      }
      return await this.registerPeer(req, host, release);
    } finally {
      release();
    }
  }

  /**
   * A peer that went to the origin before registering (its host reads the object alone) and
   * reports the outcome now: added as a back-to-source peer of the task, so others find it as a
   * parent. Returns whether its host is the only one with peers of the object.
   */
  registerDone(req: RegisterRequest): boolean {
    const host = this.state.hosts.get(req.hostId);
    if (!host) throw new FerryError('NOT_FOUND', `host ${req.hostId} not announced`);
    const peer = this.admit(req, host);
    this.move(peer, 'downloadBackToSource');
    peer.task.backToSourcePeers.add(peer.id);
    if (peer.task.state === 'pending') peer.task.state = 'running';
    this.metrics.backToSource.inc();
    this.wake(peer.task);
    return !this.state.otherHostOnObject(peer.task, host);
  }

  private async registerPeer(req: RegisterRequest, host: Host, onWait?: () => void): Promise<ScheduleResponse> {
    const peer = this.admit(req, host);
    const task = peer.task;
    const isSeed = host.info.type === 'super';
    if (task.contentLength === 0) {
      this.move(peer, 'downloadSucceeded');
      return { kind: 'empty' };
    }
    if (!this.hasUsableParent(task, peer)) {
      const seedIt = task.idOptions.range === undefined || this.config.scheduling.seedRangeTasks || this.seedHoldsWhole(task);
      if (!isSeed && seedIt && this.state.seedHosts().length > 0 && !task.seedFailed) {
        this.triggerSeed(task);
      } else {
        peer.needBackToSource = true;
      }
    }
    if (task.state === 'pending') task.state = 'running';
    const r = await this.scheduleCandidateParents(peer, onWait);
    // a range task's first peer learns whether it is the only host reading this object now
    if (r.kind === 'needBackToSource' && task.span) r.objectAlone = !this.state.otherHostOnObject(task, host);
    return r;
  }

  /** The peer of a registration, added to its task (created if new). */
  private admit(req: RegisterRequest, host: Host): Peer {
    if (!req.peerId || !req.taskId || !req.download?.url)
      throw new FerryError('INVALID_ARGUMENT', 'peerId, taskId and download.url are required');
    if (this.state.peers.has(req.peerId)) throw new FerryError('ALREADY_EXISTS', `peer ${req.peerId} already registered`);
    host.lastSeen = Date.now();
    const d = req.download;
    let task = this.state.tasks.get(req.taskId);
    if (!task) {
      task = {
        id: req.taskId,
        url: d.url,
        // range is kept so a triggered seed peer creates the same range task (same id, same bytes)
        idOptions: {
          tag: d.tag,
          application: d.application,
          pieceLength: d.pieceLength,
          filteredQueryParams: d.filteredQueryParams,
          blobDigest: d.blobDigest,
          range: d.range,
        },
        objectId: objectTaskId(d),
        span: d.range === undefined ? undefined : parseTaskRange(d.range),
        headers: d.headers ?? {},
        contentLength: d.contentLength,
        pieceLength: d.actualPieceLength,
        peers: new Map(),
        backToSourcePeers: new Set(),
        state: 'pending',
        seedFailed: false,
        updatedAt: Date.now(),
      };
      this.state.addTask(task);
    }
    if (d.contentLength >= 0) task.contentLength = d.contentLength;
    if (d.actualPieceLength > 0) task.pieceLength = d.actualPieceLength;
    // The URL with the headers that go with it: a task keyed by blob digest is reached through
    // several repositories, and a seed trigger must ask the origin with a matching pair.
    if (d.headers && Object.keys(d.headers).length) {
      task.headers = d.headers;
      task.url = d.url;
    }
    task.updatedAt = Date.now();
    const peer: Peer = {
      id: req.peerId,
      host,
      task,
      state: 'pending',
      parents: new Set(),
      children: new Set(),
      finished: new Set(),
      costs: [],
      blocklist: new Set(),
      needBackToSource: !!d.needBackToSource,
      concurrentPieceCount: d.concurrentPieceCount ?? 8,
      updatedAt: Date.now(),
      download: d,
    };
    task.peers.set(peer.id, peer);
    this.state.peers.set(peer.id, peer);
    this.metrics.registerTotal.inc({ host_type: host.info.type });
    this.log.debug({ peerId: peer.id, taskId: task.id, seed: host.info.type === 'super' }, 'peer registered');
    return peer;
  }

  /** A peer of the task, or of a task holding all of its bytes, that has or gets the data. */
  private hasUsableParent(task: Task, child: Peer): boolean {
    for (const p of this.candidatesOf(task)) {
      if (p === child || p.host === child.host) continue;
      if (p.state === 'running' || p.state === 'backToSource' || p.state === 'succeeded') return true;
    }
    return false;
  }

  /**
   * Possible parents for a peer of `task`: its own peers, then (a range task) the peers of the
   * tasks that contain its range — the whole object, a larger range. Such a parent serves the
   * range from its own task as soon as the pieces covering it are there (p2p/peer/contain).
   */
  private *candidatesOf(task: Task): Iterable<Peer> {
    yield* task.peers.values();
    for (const t of this.state.containersOf(task)) yield* t.peers.values();
  }

  /** A seed peer holds the whole object of range task `task` (preheated): it serves the range from it. */
  private seedHoldsWhole(task: Task): boolean {
    const whole = this.state.tasks.get(taskId({ url: task.url, ...task.idOptions, range: undefined }));
    if (!whole) return false;
    for (const p of whole.peers.values()) if (p.host.info.type === 'super' && p.state === 'succeeded') return true;
    return false;
  }

  /** Seed trigger: the seed chosen by consistent hash of the task id downloads it back-to-source. */
  private triggerSeed(task: Task): void {
    const now = Date.now();
    if (task.seedTriggeredAt !== undefined && now - task.seedTriggeredAt < 60_000) return;
    const seeds = this.state.seedHosts();
    const ring = new HashRing(seeds.map((s) => s.info.id));
    const seedId = ring.get(task.id);
    const seed = seeds.find((s) => s.info.id === seedId);
    if (!seed) return;
    task.seedTriggeredAt = now;
    const body: DownloadTaskRequest = { url: task.url, headers: task.headers, ...task.idOptions };
    this.log.info({ taskId: task.id, seed: seed.info.id }, 'triggering seed peer');
    jsonRequest(`${seed.info.uploadUrl}/api/v1/tasks`, {
      method: 'POST',
      json: body,
      timeoutMs: 10_000,
      signal: this.aborter.signal,
      auth: this.auth,
    })
      .then(() => this.metrics.seedTriggered.inc({ result: 'ok' }))
      .catch((err: unknown) => {
        this.metrics.seedTriggered.inc({ result: 'error' });
        task.seedFailed = true;
        this.log.warn({ taskId: task.id, seed: seed.info.id, err: (err as Error).message }, 'seed trigger failed');
      });
  }

  /** Dragonfly's ScheduleCandidateParents loop. */
  /** `onWait` runs before the loop first waits for a parent to appear. */
  private async scheduleCandidateParents(peer: Peer, onWait?: () => void): Promise<ScheduleResponse> {
    const c = this.config.scheduling;
    const task = peer.task;
    for (let n = 0; ; n++) {
      if (this.closed) throw new FerryError('UNAVAILABLE', 'scheduler closing');
      if (peer.state === 'leave') throw new FerryError('NOT_FOUND', `peer ${peer.id} left`);
      const canBackToSource = task.backToSourcePeers.size < c.backToSourceCount;
      if (canBackToSource && (peer.needBackToSource || n >= c.retryBackToSourceLimit)) {
        this.state.removeInEdges(peer);
        this.move(peer, 'downloadBackToSource');
        task.backToSourcePeers.add(peer.id);
        this.metrics.backToSource.inc();
        this.wake(task);
        this.log.debug({ peerId: peer.id, taskId: task.id, tries: n }, 'peer goes back to source');
        return { kind: 'needBackToSource', description: peer.needBackToSource ? 'first peer of task' : `no parents after ${n} tries` };
      }
      if (n >= c.retryLimit) {
        this.move(peer, 'downloadFailed');
        throw new FerryError('FAILED_PRECONDITION', `no candidate parents for task ${task.id} after ${n} tries`);
      }
      this.state.removeInEdges(peer);
      const parents = this.findCandidateParents(peer);
      const chosen: Peer[] = [];
      for (const p of parents) {
        if (chosen.length >= c.candidateParentLimit) break;
        if (this.state.addEdge(p, peer)) chosen.push(p);
      }
      if (chosen.length > 0) {
        this.move(peer, 'download');
        this.wake(task);
        return { kind: 'normal', parents: chosen.map((p) => toRef(p, task)) };
      }
      // Wait for the retry interval (with jitter), or less when a peer of the task becomes a possible parent.
      const jitter = c.retryInterval * (0.5 + Math.random());
      onWait?.();
      await this.waitForParent(task, jitter);
    }
  }

  private waitForParent(task: Task, ms: number): Promise<void> {
    return new Promise((resolve) => {
      const waiters = (task.waiters ??= new Set());
      const done = (): void => {
        clearTimeout(t);
        waiters.delete(done);
        this.aborter.signal.removeEventListener('abort', done);
        resolve();
      };
      const t = setTimeout(done, ms);
      waiters.add(done);
      this.aborter.signal.addEventListener('abort', done, { once: true });
    });
  }

  /** A peer of the task may now be a parent: wake waiting scheduling loops (after a tick). */
  private wake(task: Task): void {
    const ws = [...(task.waiters ?? [])];
    // its peers are possible parents of the range tasks it contains too
    for (const t of this.state.containedIn(task)) ws.push(...(t.waiters ?? []));
    if (ws.length === 0) return;
    setImmediate(() => {
      for (const w of ws) w();
    });
  }

  /** Random sample of filterParentLimit peers → filter → sort by score, best first. */
  findCandidateParents(child: Peer): Peer[] {
    const task = child.task;
    const all = [...this.candidatesOf(task)].filter((p) => p !== child);
    for (let i = all.length - 1; i > 0; i--) {
      const j = Math.floor(Math.random() * (i + 1));
      [all[i], all[j]] = [all[j]!, all[i]!];
    }
    const sample = all.slice(0, this.config.scheduling.filterParentLimit);
    const ok = sample.filter((p) => filterReason(p, child, (a, b) => this.state.reaches(a, b)) === undefined);
    return ok
      .map((p) => ({ p, s: score(p, child) }))
      .sort((a, b) => b.s - a.s)
      .map((x) => x.p);
  }

  async reschedule(peerId: string, blocked: string[]): Promise<ScheduleResponse> {
    const peer = this.mustPeer(peerId);
    for (const b of blocked) peer.blocklist.add(b);
    peer.needBackToSource = false;
    return this.scheduleCandidateParents(peer);
  }

  report(peerId: string, events: PeerEvent[]): void {
    const peer = this.mustPeer(peerId);
    const task = peer.task;
    const now = Date.now();
    peer.updatedAt = now;
    task.updatedAt = now;
    peer.host.lastSeen = now;
    const hostType = peer.host.info.type;
    for (const ev of events) {
      switch (ev.kind) {
        case 'started':
          this.move(peer, 'download');
          break;
        case 'backToSourceStarted':
          if (this.move(peer, 'downloadBackToSource')) task.backToSourcePeers.add(peer.id);
          break;
        case 'pieceFinished':
        case 'pieceBackToSourceFinished': {
          const p = ev.piece;
          peer.finished.add(p.number);
          // per MiB: a blob's short last piece is not "fast", nor the full piece after it "slow"
          peer.costs.push((Math.max(0, p.costMs) * 1048576) / Math.max(1, p.length));
          if (peer.costs.length > COST_WINDOW) peer.costs.shift();
          const type = ev.kind === 'pieceFinished' ? 'REMOTE_PEER' : 'BACK_TO_SOURCE';
          this.metrics.traffic.inc({ type, host_type: hostType }, p.length);
          if (type === 'REMOTE_PEER') this.#traffic.fromPeers += p.length;
          else this.#traffic.fromSource += p.length;
          this.metrics.pieceFinished.inc({ traffic_type: type });
          if (p.parentId) {
            const parent = this.state.peers.get(p.parentId);
            if (parent) parent.updatedAt = now;
          }
          break;
        }
        case 'pieceFailed': {
          this.metrics.pieceFailed.inc();
          peer.blocklist.add(ev.parentId);
          const parent = this.state.peers.get(ev.parentId);
          if (parent) {
            parent.host.uploadFailedCount++;
            this.state.removeEdge(parent, peer);
          }
          break;
        }
        case 'pieceBackToSourceFailed':
          this.metrics.pieceFailed.inc();
          break;
        case 'finished':
        case 'backToSourceFinished':
          if (!this.move(peer, 'downloadSucceeded')) break;
          task.state = 'succeeded';
          this.state.removeInEdges(peer);
          this.metrics.peerFinished.inc();
          this.wake(task);
          break;
        case 'failed':
        case 'backToSourceFailed':
          if (!this.move(peer, 'downloadFailed')) break;
          this.state.removeInEdges(peer);
          if (ev.kind === 'backToSourceFailed' && hostType === 'super') task.seedFailed = true;
          if (![...task.peers.values()].some((p) => p.state === 'succeeded')) task.state = 'failed';
          this.metrics.peerFailed.inc();
          break;
        default:
          throw new FerryError('INVALID_ARGUMENT', `unknown event ${(ev as { kind: string }).kind}`);
      }
    }
  }

  leavePeer(peerId: string): void {
    const p = this.state.peers.get(peerId);
    if (p) this.state.deletePeer(p);
  }

  /** A host evicted a task from its store: its peers of that task leave. */
  leaveTaskOnHost(taskId: string, hostId: string): number {
    const task = this.state.tasks.get(taskId);
    if (!task) return 0;
    let n = 0;
    for (const p of [...task.peers.values()])
      if (p.host.info.id === hostId) {
        this.state.deletePeer(p);
        n++;
      }
    return n;
  }

  /** A peer state change through the one table (`PEER_TRANSITIONS`); one not allowed is logged and ignored. */
  private move(peer: Peer, event: PeerEventName): boolean {
    const from = peer.state;
    if (transition(peer, event)) return true;
    this.log.debug({ peerId: peer.id, taskId: peer.task.id, state: from, event }, 'peer event ignored in this state');
    return false;
  }

  private mustPeer(id: string): Peer {
    const p = this.state.peers.get(id);
    if (!p) throw new FerryError('NOT_FOUND', `peer ${id} not registered`);
    return p;
  }

  /** Expires hosts, peers and empty tasks past their TTL. */
  gc(now = Date.now()): void {
    const g = this.config.gc;
    for (const p of [...this.state.peers.values()]) if (now - p.updatedAt > g.peerTTL) this.state.deletePeer(p);
    for (const h of [...this.state.hosts.values()]) if (now - h.lastSeen > g.hostTTL) this.leaveHost(h.info.id);
    for (const t of [...this.state.tasks.values()]) if (t.peers.size === 0 && now - t.updatedAt > g.peerTTL) this.state.deleteTask(t);
  }

  /** Debug view of a task. */
  describeTask(id: string): unknown {
    const t = this.state.tasks.get(id);
    if (!t) throw new FerryError('NOT_FOUND', `task ${id} unknown`);
    return {
      id: t.id,
      url: t.url,
      state: t.state,
      contentLength: t.contentLength,
      pieceLength: t.pieceLength,
      backToSourcePeers: [...t.backToSourcePeers],
      peers: [...t.peers.values()].map((p) => ({
        id: p.id,
        hostId: p.host.info.id,
        state: p.state,
        parents: [...p.parents],
        finishedPieces: p.finished.size,
      })),
    };
  }

  /** What the scheduler knows now (OVERVIEW_PATH). */
  overview(): SchedulerOverview {
    const peersOf = new Map<string, number>();
    for (const p of this.state.peers.values()) peersOf.set(p.host.info.id, (peersOf.get(p.host.info.id) ?? 0) + 1);
    return {
      hosts: this.hostsOf().map((h) => ({
        id: h.info.id,
        hostname: h.info.hostname,
        ip: h.info.ip,
        type: h.info.type,
        peers: peersOf.get(h.info.id) ?? 0,
      })),
      tasks: [...this.state.tasks.values()].map((t) => ({
        id: t.id,
        url: redactUrl(t.url),
        state: t.state,
        contentLength: t.contentLength,
        peers: t.peers.size,
        succeededPeers: [...t.peers.values()].filter((p) => p.state === 'succeeded').length,
        backToSourcePeers: t.backToSourcePeers.size,
      })),
      traffic: { ...this.#traffic },
    };
  }

  hostsOf(type?: 'normal' | 'super'): Host[] {
    return [...this.state.hosts.values()].filter((h) => !type || h.info.type === type);
  }
}

/** `p` as a parent for a peer of `task`; `taskId` names p's own task when it is another (a container). */
function toRef(p: Peer, task: Task): ParentRef {
  return {
    ...(p.task === task ? {} : { taskId: p.task.id }),
    peerId: p.id,
    hostId: p.host.info.id,
    ip: p.host.info.ip,
    uploadUrl: p.host.info.uploadUrl,
    isSeed: p.host.info.type === 'super',
    idc: p.host.info.idc,
    location: p.host.info.location,
  };
}
