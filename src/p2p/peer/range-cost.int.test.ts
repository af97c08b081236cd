/**
 * What a lazy loader's small range read costs the peer, on loopback with real servers (origin,
 * scheduler, peers): origin connections are reused across range tasks, one report request per
 * one-piece range task, and the range task touches no file until it is complete — yet it is on
 * disk (and shared with another node) afterwards.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { metricValue } from '../../observe/index.js';
import { readAll } from '../common/index.js';
import type { PeerEvent } from '../common/index.js';
import { PeerClient, startPeer, startScheduler, taskId, type PeerHandle, type SchedulerHandle } from '../index.js';
import { randomBlob, startOrigin, type Origin } from '../testing/origin.js';

const SECRET = 'range-cost-int-test-cluster-secret';
const KiB = 1024;

describe('range reads through the peer: cost per range task', () => {
  let origin: Origin;
  let scheduler: SchedulerHandle;
  const peers: PeerHandle[] = [];
  const dirs: string[] = [];
  /** Every report request the scheduler got: the events of one request each. */
  const reports: PeerEvent[][] = [];

  before(async () => {
    origin = await startOrigin();
    scheduler = await startScheduler({ listen: '127.0.0.1:0', config: { cluster: { token: SECRET } } });
    const service = scheduler.service;
    const real = service.report.bind(service);
    service.report = (peerId: string, events: PeerEvent[]): void => {
      reports.push(events);
      real(peerId, events);
    };
    for (let i = 0; i < 2; i++) {
      const dir = mkdtempSync(join(tmpdir(), `ferry-range-cost-${i}-`));
      dirs.push(dir);
      peers.push(
        await startPeer({
          dataDir: dir,
          schedulers: [scheduler.url],
          proxyListen: '127.0.0.1:0',
          uploadListen: '127.0.0.1:0',
          config: {
            cluster: { token: SECRET },
            host: { hostname: `range-cost-${i}` },
            download: { directBelow: 0, sourceWhileRegistering: true },
            proxy: { allowedHosts: [origin.host] },
          },
        }),
      );
    }
    // both hosts announced before a test registers a task (bounded)
    for (let i = 0; i < 500 && scheduler.service.hostsOf().length < 2; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(scheduler.service.hostsOf().length, 2, 'hosts announced');
  });

  after(async () => {
    for (const p of peers) await p.close().catch(() => undefined);
    await scheduler?.close();
    await origin?.close();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  const read = async (p: PeerHandle, url: string, s: number, e: number): Promise<Buffer> => {
    const res = await new PeerClient(p.proxyUrl).download(url, { range: [s, e] });
    assert.equal(res.statusCode, 206);
    return readAll(res, 1 << 20);
  };

  test('cold range reads: one origin connection reused, one report request per range task, no file until complete', async () => {
    const blob = origin.addBlob('library/rangecost', randomBlob(4 * 1024 * KiB));
    const ranges = Array.from({ length: 20 }, (_, i): [number, number] => [i * 20 * KiB, i * 20 * KiB + 16 * KiB - 1]);
    const conns0 = origin.connections();
    reports.length = 0;
    const requests0 = await metricValue(scheduler.metrics, 'ferry_scheduler_report_requests_total');
    const peer = peers[0]!;
    for (const [s, e] of ranges) {
      const body = await read(peer, blob.url, s, e);
      assert.ok(body.equals(blob.data.subarray(s, e + 1)), `bytes ${s}-${e}`);
    }
    // the HEAD and 20 range GETs, one after the other: keep-alive, not a connection per range
    const conns = origin.connections() - conns0;
    assert.ok(conns <= 2, `origin connections for 20 sequential range tasks: ${conns}`);

    // Each range task's completion: written to disk in the background, then its last report.
    const entries = ranges.map(([s, e]) => peer.store.get(taskId({ blobDigest: true, url: blob.url, range: `${s}-${e}` }))!);
    for (const t of entries) {
      assert.ok(t, 'range task held');
      await t.flushing;
    }
    for (let i = 0; i < 500 && reports.length < ranges.length; i++) await new Promise((r) => setTimeout(r, 10));
    assert.equal(reports.length, ranges.length, "one report per range task (the peer's events in one batch)");
    const requests = (await metricValue(scheduler.metrics, 'ferry_scheduler_report_requests_total')) - requests0;
    assert.ok(requests <= ranges.length, `report requests: ${requests} for ${ranges.length} range tasks`);
    for (const evs of reports)
      assert.deepEqual(
        evs.map((e) => e.kind),
        ['pieceBackToSourceFinished', 'backToSourceFinished'],
        'the piece and the end of a back-to-source one-piece task in one request, no separate start',
      );
    for (const [i, t] of entries.entries()) {
      const [s, e] = ranges[i]!;
      assert.equal(t.mem, undefined, 'written out');
      assert.ok(readFileSync(t.dataPath).equals(blob.data.subarray(s, e + 1)), 'data file holds the range');
      assert.equal(JSON.parse(readFileSync(t.metaPath, 'utf8')).done, true, 'metadata says complete');
    }
  });

  test('a memory range task is served to another node while unflushed, and its files appear only once it is complete', async () => {
    const blob = origin.addBlob('library/rangecost2', randomBlob(1024 * KiB));
    origin.setRate(64 * KiB); // the 32 KiB range takes ~0.5 s to arrive: the task is caught mid-download
    try {
      const [s, e] = [100 * KiB, 132 * KiB - 1];
      const tid = taskId({ blobDigest: true, url: blob.url, range: `${s}-${e}` });
      const first = read(peers[0]!, blob.url, s, e);
      let t = peers[0]!.store.get(tid);
      for (let i = 0; i < 500 && !t; i++) {
        await new Promise((r) => setTimeout(r, 5));
        t = peers[0]!.store.get(tid);
      }
      assert.ok(t, 'task created');
      assert.ok(t.mem, 'a memory task');
      assert.equal(existsSync(t.dataPath), false, 'no data file while it downloads');
      assert.equal(existsSync(t.metaPath), false, 'no metadata file while it downloads');
      assert.ok((await first).equals(blob.data.subarray(s, e + 1)));
      origin.setRate(0);
      // node 1 reads the same range: from node 0, nothing more from the origin
      const before = origin.blobBytes();
      const again = await read(peers[1]!, blob.url, s, e);
      assert.ok(again.equals(blob.data.subarray(s, e + 1)));
      assert.equal(origin.blobBytes() - before, 0, 'node 1 got the range from node 0');
      await t.flushing;
      assert.ok(readFileSync(t.dataPath).equals(blob.data.subarray(s, e + 1)));
    } finally {
      origin.setRate(0);
    }
  });

  test('an object read alone: its next range tasks go to the origin at once and register with their outcome; another host reading it ends that', async () => {
    const blob = origin.addBlob('library/rangecost3', randomBlob(4 * 1024 * KiB));
    const early = (p: PeerHandle): Promise<number> => metricValue(p.metrics, 'ferry_peer_speculative_source_total');
    const early0 = await early(peers[0]!);
    const bytes0 = origin.blobBytes();
    const ranges = Array.from({ length: 20 }, (_, i): [number, number] => [i * 40 * KiB, i * 40 * KiB + 16 * KiB - 1]);
    for (const [s, e] of ranges) assert.ok((await read(peers[0]!, blob.url, s, e)).equals(blob.data.subarray(s, e + 1)));
    const started = (await early(peers[0]!)) - early0;
    // the first registration answers "alone"; the following reads (each answer renewing the note) go straight to the origin
    assert.ok(started >= 10 && started <= ranges.length - 1, `range tasks that went to the origin before registering: ${started}`);
    assert.equal(origin.blobBytes() - bytes0, ranges.length * 16 * KiB, 'the origin served each range once');
    // registered with their outcome: the scheduler knows node 0 holds every one of them
    for (const [s, e] of ranges) {
      const tid = taskId({ blobDigest: true, url: blob.url, range: `${s}-${e}` });
      for (let i = 0; i < 500 && !scheduler.service.state.tasks.get(tid); i++) await new Promise((r) => setTimeout(r, 10));
      const peersOfTask = [...(scheduler.service.state.tasks.get(tid)?.peers.values() ?? [])];
      assert.deepEqual(
        peersOfTask.map((p) => [p.host.info.hostname, p.state]),
        [['range-cost-0', 'succeeded']],
        `range ${s}-${e} known to the scheduler`,
      );
    }
    // node 1 reads one of them: from node 0, not the origin
    const b1 = origin.blobBytes();
    const [sr, er] = ranges[7]!;
    assert.ok((await read(peers[1]!, blob.url, sr, er)).equals(blob.data.subarray(sr, er + 1)));
    assert.equal(origin.blobBytes() - b1, 0, 'a range registered late is shared like any other');

    // node 1 reads a range of the object: node 0 is no longer alone on it
    const [s1, e1] = [3000 * KiB, 3016 * KiB - 1];
    assert.ok((await read(peers[1]!, blob.url, s1, e1)).equals(blob.data.subarray(s1, e1 + 1)));
    // node 0's next read still goes straight to the origin (its note predates node 1); the answer to its registration clears the note
    const before = await early(peers[0]!);
    const [s2, e2] = [3100 * KiB, 3116 * KiB - 1];
    assert.ok((await read(peers[0]!, blob.url, s2, e2)).equals(blob.data.subarray(s2, e2 + 1)));
    // (the read is answered as soon as its bytes are here; the registration's answer comes after)
    const t2 = peers[0]!.store.get(taskId({ blobDigest: true, url: blob.url, range: `${s2}-${e2}` }));
    for (let i = 0; i < 500 && t2?.downloading; i++) await new Promise((r) => setTimeout(r, 10));
    const [s3, e3] = [3200 * KiB, 3216 * KiB - 1];
    assert.ok((await read(peers[0]!, blob.url, s3, e3)).equals(blob.data.subarray(s3, e3 + 1)));
    assert.ok((await early(peers[0]!)) - before <= 1, 'after an answer naming another host, range tasks register first again');
  });
});
