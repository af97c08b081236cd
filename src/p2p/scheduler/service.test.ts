import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { createMetricsRegistry } from '../../observe/index.js';
import { parseSchedulerConfig } from '../../config/scheduler.js';
import { taskId, type HostInfo, type RegisterRequest } from '../common/index.js';
import { filterReason, idcAffinity, isBadParent, locationAffinity, score } from './evaluator.js';
import { SchedulerService } from './service.js';

const MiB = 1024 * 1024;
const host = (name: string, type: 'normal' | 'super' = 'normal', extra: Partial<HostInfo> = {}): HostInfo => ({
  id: `10.0.0.1-${name}`,
  ip: '10.0.0.1',
  hostname: name,
  type,
  uploadUrl: `http://10.0.0.1:1/${name}`,
  maxTxBps: 10e9,
  ...extra,
});
const reg = (peer: string, hostName: string, task = 'a'.repeat(64)): RegisterRequest => ({
  peerId: peer,
  hostId: `10.0.0.1-${hostName}`,
  taskId: task,
  download: { url: 'http://r/v2/x/blobs/sha256:00', contentLength: 64 * MiB, actualPieceLength: 4 * MiB },
});

function svc(over: Record<string, unknown> = {}): SchedulerService {
  return new SchedulerService(parseSchedulerConfig({ scheduling: { retryInterval: 5, ...over } }), createMetricsRegistry());
}

test('first peer without a seed goes back to source; the next gets it as parent; DAG has no cycles', async () => {
  const s = svc();
  for (const h of ['a', 'b', 'c']) s.announceHost(host(h));
  assert.equal((await s.register(reg('pa', 'a'))).kind, 'needBackToSource');
  const rb = await s.register(reg('pb', 'b'));
  assert.equal(rb.kind, 'normal');
  assert.deepEqual(rb.kind === 'normal' && rb.parents.map((p) => p.peerId), ['pa']);
  const rc = await s.register(reg('pc', 'c'));
  assert.ok(rc.kind === 'normal' && rc.parents.length === 2);
  // b may not take c as a parent: c descends from b? (only if b is c's parent) — check the cycle rule directly.
  const st = s.state;
  const pb = st.peers.get('pb')!;
  const pc = st.peers.get('pc')!;
  if (pc.parents.has('pb'))
    assert.equal(
      filterReason(pc, pb, (x, y) => st.reaches(x, y)),
      'cycle',
    );
  assert.equal(st.addEdge(pc, pb), !pc.parents.has('pb'));
});

test('filter: same host, blocked, no source yet, bad parent; reschedule blocks used parents', async () => {
  const s = svc({ retryBackToSourceLimit: 2, retryLimit: 3 });
  s.announceHost(host('a'));
  s.announceHost(host('b'));
  await s.register(reg('pa', 'a'));
  const pa = s.state.peers.get('pa')!;
  // A second peer on host a: same host as pa, no parent possible → back to source after 2 tries.
  assert.equal((await s.register(reg('pa2', 'a'))).kind, 'needBackToSource');
  const r = await s.register(reg('pb', 'b'));
  assert.equal(r.kind, 'normal');
  const pb = s.state.peers.get('pb')!;
  assert.equal(
    filterReason(pa, pb, () => false),
    undefined,
  );
  pb.blocklist.add('pa');
  assert.equal(
    filterReason(pa, pb, () => false),
    'blocked',
  );
  pb.blocklist.clear();
  pa.costs = [10, 10, 10, 500];
  assert.equal(isBadParent(pa), true);
  assert.equal(
    filterReason(pa, pb, () => false),
    'bad-parent',
  );
  pa.costs = [];
  const again = await s.reschedule('pb', ['pa', 'pa2']);
  assert.equal(again.kind, 'needBackToSource');
});

test('seed trigger: a cold task with a seed host is not sent to the source; quota bounds back-to-source peers', async () => {
  const s = svc({ backToSourceCount: 1, retryBackToSourceLimit: 1, retryLimit: 2 });
  s.announceHost(host('seed', 'super', { uploadUrl: 'http://127.0.0.1:9' }));
  s.announceHost(host('a'));
  s.announceHost(host('b'));
  // With a seed announced, the first normal peer is not told to go to the source at once; the
  // (unreachable) seed never registers, so after the retry it goes back to source, using the quota.
  assert.equal((await s.register(reg('pa', 'a'))).kind, 'needBackToSource');
  const task = s.state.tasks.get('a'.repeat(64))!;
  assert.ok(task.seedTriggeredAt !== undefined);
  // quota used up: the next peer gets pa as parent (pa is back-to-source) rather than the source
  const rb = await s.register(reg('pb', 'b'));
  assert.equal(rb.kind, 'normal');
  s.report('pa', [{ kind: 'failed' }]);
  s.report('pb', [{ kind: 'failed' }]);
  s.announceHost(host('c'));
  await assert.rejects(s.register(reg('pc', 'c')), /no candidate parents/);
});

test('evaluator: load, IDC, location and host type weights', () => {
  assert.equal(idcAffinity('IDC1', 'idc1'), 1);
  assert.equal(idcAffinity('', ''), 0);
  assert.equal(locationAffinity('cn|zj|hz', 'cn|zj|hz'), 1);
  assert.equal(locationAffinity('cn|zj|hz|a', 'cn|zj|sh|a'), 0.4);
  const s = svc();
  s.announceHost(host('p1', 'normal', { idc: 'x', location: 'eu|de|fra' }));
  s.announceHost(host('p2', 'normal', { idc: 'y', location: 'us|ny' }));
  s.announceHost(host('c', 'normal', { idc: 'x', location: 'eu|de|ber' }));
  const mk = (id: string, h: string): void => {
    const hh = s.state.hosts.get(`10.0.0.1-${h}`)!;
    const task = {
      id: 't',
      url: 'u',
      idOptions: {},
      objectId: 'o',
      span: undefined,
      headers: {},
      contentLength: 64 * MiB,
      pieceLength: 4 * MiB,
      peers: new Map(),
      backToSourcePeers: new Set<string>(),
      state: 'running' as const,
      seedFailed: false,
      updatedAt: 0,
    };
    s.state.peers.set(id, {
      id,
      host: hh,
      task,
      state: 'succeeded',
      parents: new Set(),
      children: new Set(),
      finished: new Set(),
      costs: [],
      blocklist: new Set(),
      needBackToSource: false,
      concurrentPieceCount: 8,
      updatedAt: 0,
      download: { url: 'u', contentLength: 1, actualPieceLength: 1 },
    });
  };
  mk('p1', 'p1');
  mk('p2', 'p2');
  mk('c', 'c');
  const [p1, p2, c] = ['p1', 'p2', 'c'].map((id) => s.state.peers.get(id)!) as [never, never, never];
  const s1 = score(p1, c);
  const s2 = score(p2, c);
  assert.ok(s1 > s2, `same IDC/location scores higher (${s1} vs ${s2})`);
  assert.ok(Math.abs(s1 - s2 - (0.2 + 0.1 * 0.4)) < 1e-9);
});

test('herd delay: a registration waiting for a parent no longer counts as in flight for its host', async () => {
  // A seed host exists (its trigger goes nowhere), so a cold task's first normal peer waits for a parent.
  const s = svc({ retryInterval: 1000, retryBackToSourceLimit: 5, retryLimit: 6 });
  s.announceHost(host('n'));
  s.announceHost(host('seed', 'super'));
  const inflight = (): number | undefined => (s as unknown as { registering: Map<string, number> }).registering.get('10.0.0.1-n');
  const waiting = s.register(reg('p1', 'n', '1'.repeat(64)));
  waiting.catch(() => undefined);
  // its first scheduling attempt releases the host's slot (bounded wait for that, not a fixed sleep)
  for (let i = 0; i < 200 && inflight() !== undefined; i++) await new Promise((r) => setTimeout(r, 5));
  assert.equal(inflight(), undefined, 'the waiting registration released its slot');
  assert.equal(s.state.peers.get('p1')?.state, 'pending', 'p1 waits for a parent');
  // So the next cold registration from the same host is not delayed: its peer exists at once
  // (registration runs synchronously up to the first wait; a herd delay would come before it).
  const second = s.register(reg('p2', 'n', '2'.repeat(64)));
  second.catch(() => undefined);
  assert.ok(s.state.peers.has('p2'), 'second registration not delayed');
  s.close();
  await assert.rejects(waiting, /closing/);
});

test('range tasks: the first peer fetches from the origin itself (no seed trigger) unless seedRangeTasks; no herd delay', async () => {
  const ranged = (peer: string, hostName: string, task: string): RegisterRequest => {
    const r = reg(peer, hostName, task);
    return { ...r, download: { ...r.download, range: '0-16383', contentLength: 16384 } };
  };
  for (const seedRangeTasks of [false, true]) {
    const s = svc({ retryBackToSourceLimit: 1, retryLimit: 2, seedRangeTasks });
    s.announceHost(host('seed', 'super', { uploadUrl: 'http://127.0.0.1:9' }));
    s.announceHost(host('a'));
    assert.equal((await s.register(ranged('pa', 'a', '3'.repeat(64)))).kind, 'needBackToSource');
    const task = s.state.tasks.get('3'.repeat(64))!;
    assert.equal(task.seedTriggeredAt !== undefined, seedRangeTasks, `seed triggered with seedRangeTasks=${seedRangeTasks}`);
    s.close();
  }
  // A seed holding the whole object (preheated) is named as the parent of its range tasks (through
  // the whole-object task, which contains them): no trigger, no origin request.
  {
    const s = svc({ retryBackToSourceLimit: 1, retryLimit: 2 });
    s.announceHost(host('seed', 'super', { uploadUrl: 'http://127.0.0.1:9' }));
    s.announceHost(host('a'));
    const url = 'http://r/v2/x/blobs/sha256:00';
    const wholeId = taskId({ url });
    assert.equal(
      (await s.register({ ...reg('ps', 'seed', wholeId), download: { ...reg('ps', 'seed').download, url } })).kind,
      'needBackToSource',
    );
    s.report('ps', [{ kind: 'backToSourceFinished' }]);
    const rid = taskId({ url, range: '0-16383' });
    const r = await s.register(ranged('pa', 'a', rid));
    assert.deepEqual(r.kind === 'normal' && r.parents.map((p) => [p.peerId, p.taskId]), [['ps', wholeId]]);
    assert.equal(s.state.tasks.get(rid)!.seedTriggeredAt, undefined, 'no seed trigger needed');
    s.close();
  }
  // A host with registrations in flight: a whole-object registration is delayed, a range one is not.
  const s = svc();
  s.announceHost(host('n'));
  (s as unknown as { registering: Map<string, number> }).registering.set('10.0.0.1-n', 4);
  const whole = s.register(reg('pw', 'n', '4'.repeat(64)));
  const range = s.register(ranged('pr', 'n', '5'.repeat(64)));
  assert.ok(s.state.peers.has('pr'), 'range registration not delayed');
  assert.ok(!s.state.peers.has('pw'), 'whole-object registration delayed (herd)');
  assert.equal((await range).kind, 'needBackToSource');
  s.close();
  await whole.catch(() => undefined);
});

test('containment: a range task gets parents from tasks holding all of its range, never from a partial overlap', async () => {
  const url = 'http://r/v2/x/blobs/sha256:00';
  const ranged = (peer: string, hostName: string, range: string): RegisterRequest => {
    const [a, b] = range.split('-').map(Number) as [number, number];
    return {
      peerId: peer,
      hostId: `10.0.0.1-${hostName}`,
      taskId: taskId({ url, range }),
      download: { url, range, contentLength: b - a + 1, actualPieceLength: b - a + 1 },
    };
  };
  const s = svc({ retryBackToSourceLimit: 1, retryLimit: 2 });
  for (const h of ['a', 'b', 'c', 'd']) s.announceHost(host(h));
  // a: the first peer of 0-99999 fetches it from the origin
  assert.equal((await s.register(ranged('pa', 'a', '0-99999'))).kind, 'needBackToSource');
  // b: 1000-1999 lies inside a's range, so a (through its task) is b's parent while it still downloads
  const rb = await s.register(ranged('pb', 'b', '1000-1999'));
  assert.deepEqual(rb.kind === 'normal' && rb.parents.map((p) => [p.peerId, p.taskId]), [['pa', taskId({ url, range: '0-99999' })]]);
  // c: 50000-150000 only overlaps a's range: no parent holds all of it, c goes to the origin
  assert.equal((await s.register(ranged('pc', 'c', '50000-150000'))).kind, 'needBackToSource');
  // d: 0-99999 itself → a is its parent within the same task (no taskId)
  const rd = await s.register(ranged('pd', 'd', '0-99999'));
  assert.ok(rd.kind === 'normal' && rd.parents.some((p) => p.peerId === 'pa' && p.taskId === undefined));
  // an edge across tasks is removed with the parent (host load counters back to zero)
  s.leavePeer('pa');
  assert.equal(s.state.peers.get('pb')!.parents.size, 0);
  s.close();
});

test('containment: a range peer waiting for a parent is woken when a containing task gets a source', async () => {
  const url = 'http://r/v2/x/blobs/sha256:00';
  const s = svc({ retryInterval: 60_000, retryBackToSourceLimit: 3, retryLimit: 4 });
  for (const h of ['a', 'b', 'c']) s.announceHost(host(h));
  const small = taskId({ url, range: '10-19' });
  const big = taskId({ url, range: '0-99' });
  const dl = (range: string, len: number) => ({ url, range, contentLength: len, actualPieceLength: len });
  // a fetches the small range from the origin; b gets a as parent, then blocks it: b waits (60 s retry)
  assert.equal(
    (await s.register({ peerId: 'pa', hostId: '10.0.0.1-a', taskId: small, download: dl('10-19', 10) })).kind,
    'needBackToSource',
  );
  assert.equal((await s.register({ peerId: 'pb', hostId: '10.0.0.1-b', taskId: small, download: dl('10-19', 10) })).kind, 'normal');
  const waiting = s.reschedule('pb', ['pa']);
  // c's peer of the big range goes back to source: b's loop wakes and takes it (through the big task)
  assert.equal((await s.register({ peerId: 'pc', hostId: '10.0.0.1-c', taskId: big, download: dl('0-99', 100) })).kind, 'needBackToSource');
  const r = await Promise.race([waiting, sleep(5_000).then(() => 'still waiting' as const)]);
  assert.notEqual(r, 'still waiting', 'the waiting range peer was not woken by the containing task');
  assert.deepEqual(r !== 'still waiting' && r.kind === 'normal' && r.parents.map((p) => [p.peerId, p.taskId]), [['pc', big]]);
  s.close();
});

test('bad parent: piece costs are compared per byte — a short last piece reported first does not make the full one look slow', async () => {
  const s = svc();
  s.announceHost(host('a'));
  await s.register(reg('pa', 'a'));
  const piece = (number: number, length: number, costMs: number) =>
    ({ kind: 'pieceBackToSourceFinished', piece: { number, length, digest: 'crc32:0', costMs } }) as const;
  // a 5 MiB blob: its 1 MiB last piece arrived in 3 ms, then the 4 MiB first one in 70 ms
  s.report('pa', [piece(1, 1 * MiB, 3), piece(0, 4 * MiB, 70)]);
  const pa = s.state.peers.get('pa')!;
  assert.equal(isBadParent(pa), false, 'the same rate per byte');
  // a piece of the same length 30× slower than the ones before still marks the parent bad
  s.report('pa', [piece(2, 4 * MiB, 2100)]);
  assert.equal(isBadParent(pa), true);
});
