/**
 * Loopback integration tests: a real scheduler, a seed peer and peers (in-process, distinct host
 * names), a real HTTP origin counting the bytes it serves.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import http, { createServer, type IncomingMessage } from 'node:http';
import https from 'node:https';
import tls from 'node:tls';
import type { AddressInfo } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { metricValue } from '../observe/index.js';
import { readAll, jsonRequest, request } from './common/http.js';
import { ClusterAuth } from './common/cluster-auth.js';
import { pieceDigest, taskId } from './common/idgen.js';
import { createCa, LeafMinter, PeerClient, startPeer, startScheduler, type PeerHandle, type SchedulerHandle } from './index.js';
import { randomBlob, startOrigin, type Origin } from './testing/origin.js';

const MiB = 1024 * 1024;
/** The cluster secret of the test clusters (requests between members are signed with it). */
const SECRET = 'p2p-int-test-cluster-secret';
const auth = new ClusterAuth(SECRET);
const sha = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;

async function fetchAll(
  proxyUrl: string,
  url: string,
  headers: Record<string, string> = {},
  range?: [number, number],
): Promise<{ status: number; body: Buffer; headers: IncomingMessage['headers'] }> {
  const res = await new PeerClient(proxyUrl).download(url, { headers, ...(range ? { range } : {}) });
  return { status: res.statusCode ?? 0, body: await readAll(res, 512 * MiB), headers: res.headers };
}

/** Waits (bounded) until `cond` holds; fails naming `what` otherwise. */
async function until(what: string, cond: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  for (let i = 0; i * 20 < timeoutMs; i++) {
    if (await cond()) return;
    await sleep(20);
  }
  assert.fail(`timed out waiting for ${what}`);
}

interface Cluster {
  scheduler: SchedulerHandle;
  seed: PeerHandle | undefined;
  peers: PeerHandle[];
  dirs: string[];
  close(): Promise<void>;
}

/** `allow`: the registries the peers' proxies may reach (proxy.allowedHosts). */
async function cluster(
  n: number,
  opts: {
    seed?: boolean;
    peerConfig?: Record<string, unknown>;
    schedulerUrl?: string;
    scheduling?: Record<string, number | boolean>;
    allow: string[];
  },
): Promise<Cluster> {
  const scheduler = await startScheduler({
    listen: '127.0.0.1:0',
    config: { cluster: { token: SECRET }, scheduling: { retryInterval: 100, ...(opts.scheduling ?? {}) } },
  });
  const dirs: string[] = [];
  const mk = async (name: string, seed: boolean): Promise<PeerHandle> => {
    const dir = mkdtempSync(join(tmpdir(), `ferry-p2p-${name}-`));
    dirs.push(dir);
    return startPeer({
      dataDir: dir,
      schedulers: [opts.schedulerUrl ?? scheduler.url],
      seed,
      proxyListen: '127.0.0.1:0',
      uploadListen: '127.0.0.1:0',
      config: {
        cluster: { token: SECRET },
        host: { hostname: name },
        download: { directBelow: 0 },
        ...(opts.peerConfig ?? {}),
        proxy: { allowedHosts: opts.allow, ...((opts.peerConfig?.proxy ?? {}) as Record<string, unknown>) },
      },
    });
  };
  const seed = opts.seed === false ? undefined : await mk('seed', true);
  const peers: PeerHandle[] = [];
  for (let i = 0; i < n; i++) peers.push(await mk(`node${i}`, false));
  const c: Cluster = {
    scheduler,
    seed,
    peers,
    dirs,
    close: async () => {
      for (const p of [...peers, ...(seed ? [seed] : [])]) await p.close().catch(() => undefined);
      await scheduler.close();
      for (const d of dirs) rmSync(d, { recursive: true, force: true });
    },
  };
  // every host has announced itself before the test starts (bounded wait for the event)
  const hosts = n + (seed ? 1 : 0);
  if (!opts.schedulerUrl)
    await until(`${hosts} hosts announced`, () => scheduler.service.hostsOf().length >= hosts).catch(async (err: unknown) => {
      await c.close();
      throw err;
    });
  return c;
}

describe('p2p on loopback', () => {
  let origin: Origin;
  before(async () => {
    origin = await startOrigin();
  });
  after(async () => {
    await origin.close();
  });

  test('4 peers + seed fetch one blob at once: identical bytes, origin serves ~1 copy, pieces flow between peers', async () => {
    // Generous back-to-source patience: on a loaded machine the seed may take a while to register
    // (scheduling loops wake as soon as it does, so this costs nothing when it is quick).
    const c = await cluster(4, { allow: [origin.host], scheduling: { retryBackToSourceLimit: 100, retryLimit: 120 } });
    try {
      const blob = origin.addBlob('library/big', randomBlob(24 * MiB + 123));
      origin.setRate(40 * MiB);
      const before = origin.blobBytes();
      const results = await Promise.all(c.peers.map((p) => fetchAll(p.proxyUrl, blob.url)));
      origin.setRate(0);
      for (const r of results) {
        assert.equal(r.status, 200);
        assert.equal(sha(r.body), blob.digest);
      }
      const served = origin.blobBytes() - before;
      assert.ok(served <= 1.2 * blob.data.length, `origin served ${served} for a ${blob.data.length}-byte blob`);
      let remote = 0;
      for (const p of c.peers) remote += await metricValue(p.metrics, 'ferry_peer_download_traffic_bytes_total', { type: 'REMOTE_PEER' });
      assert.ok(remote >= 3 * blob.data.length, `peers got ${remote} bytes from other peers`);
      assert.ok((await metricValue(c.seed!.metrics, 'ferry_peer_download_traffic_bytes_total', { type: 'BACK_TO_SOURCE' })) > 0);
      // A second request is a local hit.
      const again = await fetchAll(c.peers[0]!.proxyUrl, blob.url);
      assert.equal(again.headers['x-dragonfly-task-download-finished'], 'true');
      assert.ok(
        (await metricValue(c.peers[0]!.metrics, 'ferry_peer_download_traffic_bytes_total', { type: 'LOCAL_PEER' })) >= blob.data.length,
      );
      // Peers report success to the scheduler after answering their clients: wait (bounded) for the reports.
      const succeeded = async (): Promise<number> => {
        const t = await jsonRequest<{ peers: { state: string }[] }>(
          `${c.scheduler.url}/api/v1/tasks/${taskId({ blobDigest: true, url: blob.url })}`,
          {
            auth,
          },
        );
        return t.peers.filter((p) => p.state === 'succeeded').length;
      };
      let n = await succeeded();
      for (let i = 0; i < 100 && n < 5; i++) {
        await new Promise((r) => setTimeout(r, 50));
        n = await succeeded();
      }
      assert.ok(n >= 5, `${n} of 5 peers reported success to the scheduler`);
    } finally {
      await c.close();
    }
  });

  test('range request: a range task of just the range (206, origin asked for the range only); the whole blob stays its own task', async () => {
    const c = await cluster(1, { allow: [origin.host], seed: false });
    try {
      const blob = origin.addBlob('library/range', randomBlob(20 * MiB));
      const peer = c.peers[0]!;
      let before = origin.blobBytes();
      const r = await fetchAll(peer.proxyUrl, blob.url, {}, [5 * MiB, 5 * MiB + 99]);
      assert.equal(r.status, 206);
      assert.equal(r.headers['content-range'], `bytes ${5 * MiB}-${5 * MiB + 99}/${20 * MiB}`);
      assert.deepEqual(r.body, blob.data.subarray(5 * MiB, 5 * MiB + 100));
      assert.equal(origin.blobBytes() - before, 100, 'only the range came from the origin');
      const rid = taskId({ blobDigest: true, url: blob.url, range: `${5 * MiB}-${5 * MiB + 99}` });
      assert.equal(r.headers['x-dragonfly-task-id'], rid);
      const rt = peer.store.get(rid)!;
      assert.deepEqual([rt.meta.contentLength, rt.meta.pieceLength, rt.meta.pieceCount], [100, 100, 1]);
      assert.deepEqual(rt.meta.range, { start: 5 * MiB, end: 5 * MiB + 99, total: 20 * MiB });
      assert.equal(c.scheduler.service.state.tasks.get(rid)?.contentLength, 100, 'the scheduler knows the range task by its range length');
      // A range over 4 MiB: pieces cut from the range length, back-to-source offset by the range start.
      before = origin.blobBytes();
      const big = await fetchAll(peer.proxyUrl, blob.url, {}, [1 * MiB + 7, 10 * MiB + 6]);
      assert.equal(big.status, 206);
      assert.deepEqual(big.body, blob.data.subarray(1 * MiB + 7, 10 * MiB + 7));
      assert.equal(origin.blobBytes() - before, 9 * MiB);
      const bt = peer.store.get(taskId({ blobDigest: true, url: blob.url, range: `${1 * MiB + 7}-${10 * MiB + 6}` }))!;
      assert.deepEqual([bt.meta.pieceLength, bt.meta.pieceCount], [4 * MiB, 3]);
      // The same range again is a local hit (suffix and open-ended forms normalize to the same task).
      before = origin.blobBytes();
      const again = await fetchAll(peer.proxyUrl, blob.url, {}, [5 * MiB, 5 * MiB + 99]);
      assert.equal(again.headers['x-dragonfly-task-download-finished'], 'true');
      assert.deepEqual(again.body, r.body);
      const tail = await new Promise<{ status: number; body: Buffer; range: string | undefined }>((resolve, reject) => {
        const u = new URL(peer.proxyUrl);
        http
          .get(
            { hostname: u.hostname, port: u.port, path: blob.url, headers: { 'x-dragonfly-use-p2p': 'true', range: 'bytes=-100' } },
            (res) => {
              readAll(res).then((b) => resolve({ status: res.statusCode ?? 0, body: b, range: res.headers['content-range'] }), reject);
            },
          )
          .on('error', reject);
      });
      assert.equal(tail.status, 206);
      assert.equal(tail.range, `bytes ${20 * MiB - 100}-${20 * MiB - 1}/${20 * MiB}`);
      assert.deepEqual(tail.body, blob.data.subarray(20 * MiB - 100));
      assert.ok(
        peer.store.get(taskId({ blobDigest: true, url: blob.url, range: `${20 * MiB - 100}-${20 * MiB - 1}` })),
        'suffix range normalized',
      );
      assert.equal(origin.blobBytes() - before, 100);
      // The whole blob afterwards is its own task, correct and digest-checked.
      const full = await fetchAll(peer.proxyUrl, blob.url);
      assert.equal(sha(full.body), blob.digest);
      assert.ok(peer.store.get(taskId({ blobDigest: true, url: blob.url }))?.complete);
    } finally {
      await c.close();
    }
  });

  test('lazy-loading pattern through P2P: scattered small ranges are range tasks; the origin serves ~the ranges once, other nodes get them from peers', async (t) => {
    // Generous back-to-source patience so the cold ranges are fetched by the seed only, also on a loaded machine.
    const c = await cluster(3, {
      allow: [origin.host],
      scheduling: { retryBackToSourceLimit: 100, retryLimit: 120, seedRangeTasks: true },
    });
    try {
      const blob = origin.addBlob('library/lazyp2p', randomBlob(64 * MiB));
      const L = 16 * 1024;
      // 20 scattered 16 KiB reads, some across 4 MiB boundaries (where whole-task pieces would split).
      const ranges: [number, number][] = Array.from({ length: 20 }, (_, i) => {
        const start = i === 3 ? 4 * MiB - 100 : i * (3 * MiB + 12345) + ((i * 7919) % 65536);
        return [start, start + L - 1];
      });
      const sum = ranges.reduce((a, [s, e]) => a + e - s + 1, 0);
      const readAllRanges = async (p: PeerHandle): Promise<number> => {
        const t0 = Date.now();
        // four at a time, like a lazy loader's concurrent reads
        for (let i = 0; i < ranges.length; i += 4) {
          const rs = await Promise.all(ranges.slice(i, i + 4).map((r) => fetchAll(p.proxyUrl, blob.url, {}, r)));
          rs.forEach((r, k) => {
            const [s, e] = ranges[i + k]!;
            assert.equal(r.status, 206);
            assert.equal(r.headers['content-range'], `bytes ${s}-${e}/${blob.data.length}`);
            assert.ok(r.body.equals(blob.data.subarray(s, e + 1)), `bytes of range ${s}-${e}`);
          });
        }
        return Date.now() - t0;
      };
      let before = origin.blobBytes();
      const ms0 = await readAllRanges(c.peers[0]!);
      const served0 = origin.blobBytes() - before;
      t.diagnostic(`node0: ${ranges.length} ranges (${sum} bytes) in ${ms0} ms; origin served ${served0} bytes`);
      assert.ok(served0 >= sum && served0 < 2 * sum, `origin served ${served0} bytes for ${sum} bytes of ranges`);
      for (const [s, e] of ranges) {
        const e0 = c.peers[0]!.store.get(taskId({ blobDigest: true, url: blob.url, range: `${s}-${e}` }));
        assert.ok(e0, `range task ${s}-${e} on node0`);
        assert.deepEqual([e0.meta.contentLength, e0.meta.pieceCount], [L, 1]);
      }
      assert.equal(c.peers[0]!.store.get(taskId({ blobDigest: true, url: blob.url })), undefined, 'no whole-blob task was started');
      assert.ok(
        (await metricValue(c.seed!.metrics, 'ferry_peer_download_traffic_bytes_total', { type: 'BACK_TO_SOURCE' })) >= sum,
        'the seed fetched the ranges',
      );

      // Node 1 reads the same ranges: the same range tasks, pieces from peers, nothing more from the origin.
      before = origin.blobBytes();
      const ms1 = await readAllRanges(c.peers[1]!);
      const served1 = origin.blobBytes() - before;
      const remote1 = await metricValue(c.peers[1]!.metrics, 'ferry_peer_download_traffic_bytes_total', { type: 'REMOTE_PEER' });
      t.diagnostic(`node1: same ranges in ${ms1} ms; origin served ${served1} bytes; REMOTE_PEER ${remote1} bytes`);
      assert.ok(served1 < L, `origin served ${served1} more bytes`);
      assert.ok(remote1 >= sum, `node1 got ${remote1} bytes from peers`);
      assert.equal(await metricValue(c.peers[1]!.metrics, 'ferry_peer_download_traffic_bytes_total', { type: 'BACK_TO_SOURCE' }), 0);

      // Node 2 holds the whole blob: its range reads come from the whole task, no range task, no origin bytes.
      const whole = await fetchAll(c.peers[2]!.proxyUrl, blob.url);
      assert.equal(sha(whole.body), blob.digest);
      const wid = taskId({ blobDigest: true, url: blob.url });
      for (let i = 0; i < 200 && !c.peers[2]!.store.get(wid)?.meta.done; i++) await sleep(20);
      before = origin.blobBytes();
      const [s, e] = ranges[5]!;
      const r2 = await fetchAll(c.peers[2]!.proxyUrl, blob.url, {}, [s, e]);
      assert.equal(r2.status, 206);
      assert.ok(r2.body.equals(blob.data.subarray(s, e + 1)));
      assert.equal(r2.headers['x-dragonfly-task-id'], wid);
      assert.equal(r2.headers['x-dragonfly-task-download-finished'], 'true');
      assert.equal(origin.blobBytes() - before, 0);
      assert.equal(
        c.peers[2]!.store.get(taskId({ blobDigest: true, url: blob.url, range: `${s}-${e}` })),
        undefined,
        'no range task on node2',
      );
    } finally {
      await c.close();
    }
  });

  test('containment: a range is served from a task holding all of it — on another node as its pieces arrive, and locally; a partial overlap goes to the origin', async (t) => {
    const c = await cluster(2, { allow: [origin.host] });
    try {
      const blob = origin.addBlob('library/contain', randomBlob(8 * MiB));
      const big: [number, number] = [100_000, 100_000 + 3 * MiB - 1];
      const inside: [number, number] = [200_000, 200_000 + 65_535];
      const overlap: [number, number] = [big[1] - 1000, big[1] + 64 * 1024];
      const check = (r: Awaited<ReturnType<typeof fetchAll>>, [s, e]: [number, number]): void => {
        assert.equal(r.status, 206);
        assert.ok(r.body.equals(blob.data.subarray(s, e + 1)), `bytes of ${s}-${e}`);
      };
      const traffic = (p: PeerHandle, type: string): Promise<number> =>
        metricValue(p.metrics, 'ferry_peer_download_traffic_bytes_total', { type });
      // node0 reads the big range (from the origin: the first peer of a cold range task, no seed trigger);
      // node1 asks for a range inside it while node0 may still be downloading
      let before = origin.blobBytes();
      const [r0, r1] = await Promise.all([
        fetchAll(c.peers[0]!.proxyUrl, blob.url, {}, big),
        (async () => {
          for (let i = 0; i < 200 && !c.peers[0]!.store.get(taskId({ blobDigest: true, url: blob.url, range: `${big[0]}-${big[1]}` })); i++)
            await sleep(5);
          return fetchAll(c.peers[1]!.proxyUrl, blob.url, {}, inside);
        })(),
      ]);
      check(r0, big);
      check(r1, inside);
      const served = origin.blobBytes() - before;
      t.diagnostic(`origin served ${served} bytes for the big range ${big[1] - big[0] + 1} and the inside range`);
      assert.equal(served, big[1] - big[0] + 1, 'the origin served the big range once and nothing for the range inside it');
      assert.equal(await traffic(c.peers[1]!, 'REMOTE_PEER'), inside[1] - inside[0] + 1, 'node1 got the inside range from node0');
      assert.equal(await traffic(c.peers[1]!, 'BACK_TO_SOURCE'), 0);
      assert.equal(await traffic(c.seed!, 'BACK_TO_SOURCE'), 0, 'the seed was not triggered');
      // (node0 filled the inside range task from its big one to serve node1)
      assert.ok(c.peers[0]!.store.get(taskId({ blobDigest: true, url: blob.url, range: `${inside[0]}-${inside[1]}` }))?.complete);
      // node0 reads another range inside its own big task: served from it, no new task, no request out
      const own: [number, number] = [big[0] + 2 * MiB, big[0] + 2 * MiB + 4095];
      before = origin.blobBytes();
      check(await fetchAll(c.peers[0]!.proxyUrl, blob.url, {}, own), own);
      assert.equal(origin.blobBytes() - before, 0);
      assert.equal(
        c.peers[0]!.store.get(taskId({ blobDigest: true, url: blob.url, range: `${own[0]}-${own[1]}` })),
        undefined,
        'no task for a range inside a held one',
      );
      // a range only overlapping the big one is not held by any task: node1 fetches it from the origin
      before = origin.blobBytes();
      check(await fetchAll(c.peers[1]!.proxyUrl, blob.url, {}, overlap), overlap);
      assert.equal(origin.blobBytes() - before, overlap[1] - overlap[0] + 1);
    } finally {
      await c.close();
    }
  });

  test('lazy-loading pattern: small ranges go to the origin, X-Dragonfly-Prefetch fills the task in the background', async () => {
    const c = await cluster(1, { allow: [origin.host], seed: false, peerConfig: { download: { directBelow: 4 * MiB } } });
    try {
      const blob = origin.addBlob('library/lazy', randomBlob(12 * MiB));
      const r1 = await fetchAll(c.peers[0]!.proxyUrl, blob.url, { 'x-dragonfly-prefetch': 'true' }, [100, 1100]);
      assert.equal(r1.status, 206);
      assert.deepEqual(r1.body, blob.data.subarray(100, 1101));
      const tid = taskId({ blobDigest: true, url: blob.url });
      for (let i = 0; i < 100 && !c.peers[0]!.store.get(tid)?.complete; i++) await sleep(50);
      assert.ok(c.peers[0]!.store.get(tid)?.complete, 'prefetched');
      const before = origin.blobBytes();
      const r2 = await fetchAll(c.peers[0]!.proxyUrl, blob.url, {}, [9 * MiB, 9 * MiB + 4095]);
      assert.deepEqual(r2.body, blob.data.subarray(9 * MiB, 9 * MiB + 4096));
      assert.equal(origin.blobBytes(), before, 'served from the local store');
    } finally {
      await c.close();
    }
  });

  test('two schedulers: tasks are sharded by consistent hash of the task id; all peers of a task meet at one scheduler', async () => {
    const s1 = await startScheduler({ listen: '127.0.0.1:0', config: { scheduling: { retryInterval: 100 } } });
    const s2 = await startScheduler({ listen: '127.0.0.1:0', config: { scheduling: { retryInterval: 100 } } });
    const dirs: string[] = [];
    const peers: PeerHandle[] = [];
    try {
      for (const [i, seed] of [
        [0, true],
        [1, false],
        [2, false],
      ] as const) {
        const dir = mkdtempSync(join(tmpdir(), 'ferry-p2p-shard-'));
        dirs.push(dir);
        peers.push(
          await startPeer({
            dataDir: dir,
            schedulers: [s1.url, s2.url],
            seed,
            proxyListen: '127.0.0.1:0',
            uploadListen: '127.0.0.1:0',
            config: { host: { hostname: `sh${i}` }, download: { directBelow: 0 }, proxy: { allowedHosts: [origin.host] } },
          }),
        );
      }
      await until('3 hosts at both schedulers', () => s1.service.hostsOf().length >= 3 && s2.service.hostsOf().length >= 3);
      assert.equal(s1.service.hostsOf().length, 3, 'hosts announce to every scheduler');
      assert.equal(s2.service.hostsOf().length, 3);
      const blobs = Array.from({ length: 8 }, (_, i) => origin.addBlob('library/shard', randomBlob(1 * MiB + i)));
      for (const b of blobs) {
        const rs = await Promise.all([peers[1]!, peers[2]!].map((p) => fetchAll(p.proxyUrl, b.url)));
        for (const r of rs) assert.equal(sha(r.body), b.digest);
      }
      let on1 = 0;
      let on2 = 0;
      for (const b of blobs) {
        const tid = taskId({ blobDigest: true, url: b.url });
        const t1 = s1.service.state.tasks.get(tid);
        const t2 = s2.service.state.tasks.get(tid);
        assert.ok(!!t1 !== !!t2, 'exactly one scheduler knows the task');
        const t = (t1 ?? t2)!;
        assert.equal(t.peers.size, 3, 'seed and both peers registered at the same scheduler');
        if (t1) on1++;
        else on2++;
      }
      assert.ok(on1 > 0 && on2 > 0, `both schedulers got tasks (${on1}/${on2})`);
    } finally {
      for (const p of peers) await p.close();
      await s1.close();
      await s2.close();
      for (const d of dirs) rmSync(d, { recursive: true, force: true });
    }
  });

  test('blob-digest task ids: the same layer from two registries is one task', async () => {
    const other = await startOrigin();
    const c = await cluster(2, {
      allow: [origin.host, other.host],
      seed: false,
      peerConfig: { download: { directBelow: 0, taskIdBasedBlobDigest: true } },
    });
    try {
      const data = randomBlob(6 * MiB);
      const b1 = origin.addBlob('library/dedupe', data);
      const b2 = other.addBlob('mirror/dedupe', data);
      assert.equal(taskId({ url: b1.url, blobDigest: true }), taskId({ url: b2.url, blobDigest: true }));
      assert.equal(sha((await fetchAll(c.peers[0]!.proxyUrl, b1.url)).body), b1.digest);
      const before = other.blobBytes();
      assert.equal(sha((await fetchAll(c.peers[1]!.proxyUrl, b2.url)).body), b2.digest);
      assert.equal(other.blobBytes() - before, 0, 'the second registry served no blob bytes');
      assert.ok(
        (await metricValue(c.peers[1]!.metrics, 'ferry_peer_download_traffic_bytes_total', { type: 'REMOTE_PEER' })) >= data.length,
      );
    } finally {
      await c.close();
      await other.close();
    }
  });

  test('origin failing mid-download: the client gets an error, no half task is kept, the next request succeeds', async () => {
    const c = await cluster(1, { allow: [origin.host], seed: false });
    try {
      const blob = origin.addBlob('library/flaky', randomBlob(10 * MiB));
      const tid = taskId({ blobDigest: true, url: blob.url });
      origin.setCutAfter(1 * MiB);
      await assert.rejects(fetchAll(c.peers[0]!.proxyUrl, blob.url));
      for (let i = 0; i < 100 && c.peers[0]!.store.get(tid); i++) await sleep(20);
      assert.equal(c.peers[0]!.store.get(tid), undefined, 'failed task dropped');
      assert.ok((await metricValue(c.peers[0]!.metrics, 'ferry_peer_piece_failure_total', { reason: 'source' })) >= 1);
      origin.setCutAfter(undefined);
      const ok = await fetchAll(c.peers[0]!.proxyUrl, blob.url);
      assert.equal(sha(ok.body), blob.digest);
    } finally {
      origin.setCutAfter(undefined);
      await c.close();
    }
  });

  test('scheduler down: the peer falls back to the origin', async () => {
    const dead = createServer();
    await new Promise<void>((r) => dead.listen(0, '127.0.0.1', () => r()));
    const deadUrl = `http://127.0.0.1:${(dead.address() as AddressInfo).port}`;
    await new Promise<void>((r) => dead.close(() => r()));
    const c = await cluster(1, { allow: [origin.host], seed: false, schedulerUrl: deadUrl });
    try {
      const blob = origin.addBlob('library/nosched', randomBlob(9 * MiB));
      const r = await fetchAll(c.peers[0]!.proxyUrl, blob.url);
      assert.equal(sha(r.body), blob.digest);
      assert.equal(await metricValue(c.peers[0]!.metrics, 'ferry_peer_scheduler_fallback_total'), 1);
    } finally {
      await c.close();
    }
  });

  test('a parent killed mid-piece: the child finishes from another source', async () => {
    const c = await cluster(2, {
      allow: [origin.host],
      seed: false,
      peerConfig: { download: { directBelow: 0, concurrentPieceCount: 2 }, upload: { rateLimit: 6 * MiB } },
    });
    try {
      const blob = origin.addBlob('library/kill', randomBlob(32 * MiB));
      origin.setRate(16 * MiB);
      const [a, b] = c.peers as [PeerHandle, PeerHandle];
      const pa = fetchAll(a.proxyUrl, blob.url).catch((e: unknown) => e);
      const tid = taskId({ blobDigest: true, url: blob.url });
      for (let i = 0; i < 100 && (a.store.get(tid)?.finishedCount ?? 0) < 1; i++) await sleep(50);
      const pb = fetchAll(b.proxyUrl, blob.url);
      // Kill a while b is receiving a piece from it (uploads are limited to 6 MiB/s: a piece takes ~0.7 s).
      for (let i = 0; i < 100 && (await metricValue(a.metrics, 'ferry_peer_upload_traffic_bytes_total')) < 1 * MiB; i++) await sleep(20);
      await a.close();
      const rb = await pb;
      origin.setRate(0);
      assert.equal(sha(rb.body), blob.digest);
      assert.ok(
        (await metricValue(b.metrics, 'ferry_peer_piece_failure_total', { reason: 'network' })) >= 1,
        'the broken parent was noticed',
      );
      await pa;
    } finally {
      origin.setRate(0);
      await c.close();
    }
  });

  test('a parent serving corrupted bytes is detected by crc32, blocked, and the piece refetched', async () => {
    const c = await cluster(1, { allow: [origin.host], seed: false });
    const blob = origin.addBlob('library/corrupt', randomBlob(12 * MiB));
    const tid = taskId({ blobDigest: true, url: blob.url });
    const L = 4 * MiB;
    // A lying parent: announces the right digests, serves flipped bytes.
    let bad = 0;
    const liar = createServer((req, res) => {
      const u = new URL(req.url ?? '/', 'http://x');
      if (u.pathname.endsWith('/pieces')) {
        const pieces = [0, 1, 2].map((n) => ({ number: n, digest: pieceDigest(blob.data.subarray(n * L, (n + 1) * L)) }));
        res.end(
          JSON.stringify({
            taskId: tid,
            contentLength: blob.data.length,
            pieceLength: L,
            pieceCount: 3,
            pieces,
            done: true,
            failed: false,
          }),
        );
        return;
      }
      const n = Number(u.pathname.split('/').pop());
      const buf = Buffer.from(blob.data.subarray(n * L, (n + 1) * L));
      buf[100] = buf[100]! ^ 0xff;
      bad++;
      res.end(buf);
    });
    await new Promise<void>((r) => liar.listen(0, '127.0.0.1', () => r()));
    const liarUrl = `http://127.0.0.1:${(liar.address() as AddressInfo).port}`;
    try {
      const s = c.scheduler.url;
      await jsonRequest(`${s}/api/v1/hosts/liar`, {
        method: 'PUT',
        json: { id: 'liar', ip: '127.0.0.1', hostname: 'liar', type: 'normal', uploadUrl: liarUrl, maxTxBps: 1e10 },
        auth,
      });
      const reg = {
        peerId: 'liar-peer',
        hostId: 'liar',
        taskId: tid,
        download: { url: blob.url, contentLength: blob.data.length, actualPieceLength: L },
      };
      const first = await jsonRequest<{ kind: string }>(`${s}/api/v1/peers`, { method: 'POST', json: reg, auth });
      assert.equal(first.kind, 'needBackToSource');
      await jsonRequest(`${s}/api/v1/peers/liar-peer/events`, {
        method: 'POST',
        json: { events: [{ kind: 'backToSourceStarted' }, { kind: 'backToSourceFinished' }] },
        auth,
      });
      const before = origin.blobBytes();
      const r = await fetchAll(c.peers[0]!.proxyUrl, blob.url);
      assert.equal(sha(r.body), blob.digest);
      assert.ok(bad >= 1, 'the liar was asked for a piece');
      assert.ok((await metricValue(c.peers[0]!.metrics, 'ferry_peer_piece_failure_total', { reason: 'crc' })) >= 1);
      assert.equal(origin.blobBytes() - before, blob.data.length, 'refetched from the origin after blocking the liar');
      const t = await jsonRequest<{ peers: { id: string; parents: string[] }[] }>(`${s}/api/v1/tasks/${tid}`, { auth });
      assert.ok(t.peers.every((p) => !p.parents.includes('liar-peer')));
    } finally {
      liar.close();
      await c.close();
    }
  });

  test('a one-piece range task asked of a lying parent directly (no piece list): crc32 against the digest it sends, blocked, refetched', async () => {
    const c = await cluster(1, { allow: [origin.host], seed: false });
    const blob = origin.addBlob('library/corrupt-range', randomBlob(6 * MiB));
    const wholeId = taskId({ blobDigest: true, url: blob.url });
    const [s0, e0] = [1000, 1000 + 16 * 1024 - 1];
    const want = blob.data.subarray(s0, e0 + 1);
    // A parent holding the whole blob (so the scheduler names it for the range): right digest header, flipped bytes.
    let asked = '';
    const liar = createServer((req, res) => {
      asked = req.url ?? '';
      const buf = Buffer.from(want);
      buf[7] = buf[7]! ^ 0xff;
      res.writeHead(200, { 'x-ferry-piece-digest': pieceDigest(want) });
      res.end(buf);
    });
    await new Promise<void>((r) => liar.listen(0, '127.0.0.1', () => r()));
    const liarUrl = `http://127.0.0.1:${(liar.address() as AddressInfo).port}`;
    try {
      const s = c.scheduler.url;
      await jsonRequest(`${s}/api/v1/hosts/liar`, {
        method: 'PUT',
        json: { id: 'liar', ip: '127.0.0.1', hostname: 'liar', type: 'normal', uploadUrl: liarUrl, maxTxBps: 1e10 },
        auth,
      });
      const reg = {
        peerId: 'liar-peer',
        hostId: 'liar',
        taskId: wholeId,
        download: { url: blob.url, blobDigest: true, contentLength: blob.data.length, actualPieceLength: 4 * MiB },
      };
      assert.equal(
        (await jsonRequest<{ kind: string }>(`${s}/api/v1/peers`, { method: 'POST', json: reg, auth })).kind,
        'needBackToSource',
      );
      await jsonRequest(`${s}/api/v1/peers/liar-peer/events`, {
        method: 'POST',
        json: { events: [{ kind: 'backToSourceStarted' }, { kind: 'backToSourceFinished' }] },
        auth,
      });
      const before = origin.blobBytes();
      const r = await fetchAll(c.peers[0]!.proxyUrl, blob.url, {}, [s0, e0]);
      assert.equal(r.status, 206);
      assert.ok(r.body.equals(want), 'the right bytes');
      assert.match(
        asked,
        new RegExp(`/pieces/0\\?.*from=${wholeId}&range=${s0}-${e0}&wait=\\d+`),
        'the piece was asked directly, through the whole task',
      );
      assert.ok((await metricValue(c.peers[0]!.metrics, 'ferry_peer_piece_failure_total', { reason: 'crc' })) >= 1);
      assert.equal(origin.blobBytes() - before, want.length, 'refetched from the origin after blocking the liar');
    } finally {
      liar.close();
      await c.close();
    }
  });

  test('a registry serving other bytes than the blob digest names: no complete body, the task fails and is not kept, a seed command reports it', async () => {
    const c = await cluster(1, { allow: [origin.host], seed: false });
    try {
      const good = randomBlob(9 * MiB);
      const digest = sha(good);
      const bad = Buffer.from(good);
      bad[5 * MiB] = bad[5 * MiB]! ^ 1;
      const blob = origin.addBlobAs('library/lies', digest, bad);
      const tid = taskId({ blobDigest: true, url: blob.url });
      const peer = c.peers[0]!;
      // A client through the proxy: the last piece is held back, the transfer cut short.
      const got = await fetchAll(peer.proxyUrl, blob.url).then(
        (r) => r.body.length,
        () => -1,
      );
      assert.ok(got < bad.length, `the client did not get a complete body (${got} bytes)`);
      for (let i = 0; i < 300 && peer.store.get(tid); i++) await sleep(20);
      assert.equal(peer.store.get(tid), undefined, 'the task that failed its digest is not kept');
      assert.ok((await metricValue(peer.metrics, 'ferry_peer_download_task_total', { result: 'failed' })) >= 1);
      assert.ok(
        (await metricValue(peer.metrics, 'ferry_peer_piece_failure_total', { reason: 'digest' })) >= 2,
        'checked, refetched from the origin, checked again',
      );
      // A seed command (what the scheduler and preheat send): answered failed, naming the digest.
      const r = await jsonRequest<{ state: string; description?: string }>(`${peer.uploadUrl}/api/v1/tasks`, {
        method: 'POST',
        json: { url: blob.url, wait: true },
        auth,
      });
      assert.equal(r.state, 'failed');
      assert.match(r.description ?? '', new RegExp(`blob ${digest} did not verify`));
      for (let i = 0; i < 300 && peer.store.get(tid); i++) await sleep(20);
      assert.equal(peer.store.get(tid), undefined);
      // Once the registry serves the right bytes the same URL works.
      origin.addBlobAs('library/lies', digest, good);
      assert.equal(sha((await fetchAll(peer.proxyUrl, blob.url)).body), digest);
    } finally {
      await c.close();
    }
  });

  test("access model: private blobs need the client's own authorisation; parents need the exact URL", async () => {
    const priv = await startOrigin({ token: 's3cret' });
    const c = await cluster(2, { allow: [priv.host] });
    try {
      const blob = priv.addBlob('private/app', randomBlob(8 * MiB));
      const ok = await fetchAll(c.peers[0]!.proxyUrl, blob.url, { authorization: 'Bearer s3cret' });
      assert.equal(sha(ok.body), blob.digest);
      // Another node without credentials: the origin's 401 is relayed and no bytes are served.
      await assert.rejects(fetchAll(c.peers[1]!.proxyUrl, blob.url), /401/);
      await assert.rejects(fetchAll(c.peers[0]!.proxyUrl, blob.url, { authorization: 'Bearer wrong' }), /401/);
      // Even the node holding the task checks again for each request.
      await assert.rejects(fetchAll(c.peers[0]!.proxyUrl, blob.url), /401/);
      // Upload server: a cluster member's request naming another URL gets nothing.
      const tid = taskId({ blobDigest: true, url: blob.url });
      const signedStatus = async (url: string, headers: Record<string, string> = {}): Promise<number> => {
        const r = await request(url, { auth, headers });
        r.body.resume();
        return r.status;
      };
      assert.equal(
        await signedStatus(`${c.peers[0]!.uploadUrl}/api/v1/tasks/${tid}/pieces/0?url=${encodeURIComponent(`${blob.url}x`)}`),
        403,
      );
      assert.equal(await signedStatus(`${c.peers[0]!.uploadUrl}/api/v1/tasks/${tid}/pieces/0`), 403);
      // Range tasks: the same rules.
      const rng: [number, number] = [MiB + 5, 2 * MiB];
      const rok = await fetchAll(c.peers[1]!.proxyUrl, blob.url, { authorization: 'Bearer s3cret' }, rng);
      assert.deepEqual(rok.body, blob.data.subarray(rng[0], rng[1] + 1));
      await assert.rejects(fetchAll(c.peers[1]!.proxyUrl, blob.url, {}, rng), /401/);
      await assert.rejects(
        fetchAll(c.peers[0]!.proxyUrl, blob.url, {}, [10, 20]),
        /401/,
        'held whole task: the range needs authorisation too',
      );
      const rid = taskId({ blobDigest: true, url: blob.url, range: `${rng[0]}-${rng[1]}` });
      const status = (q: string): Promise<number> => signedStatus(`${c.peers[1]!.uploadUrl}/api/v1/tasks/${rid}/pieces/0${q}`);
      assert.equal(await status(`?url=${encodeURIComponent(`${blob.url}x`)}`), 403);
      assert.equal(await status(''), 403);
      // The exact URL is not enough for a private object: the requester's credential is checked too (p2p/peer/access).
      assert.equal(await status(`?url=${encodeURIComponent(blob.url)}`), 403);
      const withCredential = (cred: string): Promise<number> =>
        signedStatus(`${c.peers[1]!.uploadUrl}/api/v1/tasks/${rid}/pieces/0?url=${encodeURIComponent(blob.url)}`, {
          'x-ferry-origin-authorization': cred,
        });
      assert.equal(await withCredential('Bearer wrong'), 403);
      assert.equal(await withCredential('Bearer s3cret'), 200);
    } finally {
      await c.close();
      await priv.close();
    }
  });

  test('proxy: manifests, HEADs and non-GETs pass straight through with all headers but Host', async () => {
    const c = await cluster(1, { allow: [origin.host], seed: false });
    try {
      const body = Buffer.from('{"schemaVersion":2}');
      origin.addManifest('library/pt', 'v1', body, 'application/vnd.oci.image.manifest.v1+json');
      const reqVia = (
        method: string,
        path: string,
        headers: Record<string, string>,
      ): Promise<{ status: number; body: Buffer; headers: IncomingMessage['headers'] }> =>
        new Promise((resolve, reject) => {
          const u = new URL(c.peers[0]!.proxyUrl);
          const r = http.request(
            { hostname: u.hostname, port: u.port, method, path, headers: { ...headers, 'x-dragonfly-registry': origin.url } },
            (res) => {
              readAll(res).then((b) => resolve({ status: res.statusCode ?? 0, body: b, headers: res.headers }), reject);
            },
          );
          r.on('error', reject);
          r.end();
        });
      origin.log.length = 0;
      const m = await reqVia('GET', `/v2/library/pt/manifests/v1?ns=${origin.host}`, { authorization: 'Bearer x' });
      assert.equal(m.status, 200);
      assert.deepEqual(m.body, body);
      assert.equal(m.headers['content-type'], 'application/vnd.oci.image.manifest.v1+json');
      assert.deepEqual(origin.log, ['GET /v2/library/pt/manifests/v1 auth=yes']);
      const blob = origin.addBlob('library/pt', randomBlob(5 * MiB));
      const h = await reqVia('HEAD', `/v2/library/pt/blobs/${blob.digest}`, {});
      assert.equal(h.status, 200);
      assert.equal(h.headers['content-length'], String(5 * MiB));
      assert.equal(await metricValue(c.peers[0]!.metrics, 'ferry_peer_proxy_request_via_p2p_total'), 0);
      const g = await reqVia('GET', `/v2/library/pt/blobs/${blob.digest}`, {});
      assert.equal(sha(g.body), blob.digest);
      assert.equal(await metricValue(c.peers[0]!.metrics, 'ferry_peer_proxy_request_via_p2p_total'), 1);
      assert.equal(await metricValue(c.peers[0]!.metrics, 'ferry_peer_proxy_request_total'), 3);
      const missing = await reqVia('GET', `/v2/library/pt/blobs/sha256:${'0'.repeat(64)}`, {});
      assert.equal(missing.status, 404);
    } finally {
      await c.close();
    }
  });

  test('CONNECT: configured hosts are intercepted with a minted certificate and go P2P; others are tunnelled untouched', async () => {
    const originCa = createCa('test origin CA');
    const leaf = new LeafMinter(originCa.certPem, originCa.keyPem);
    const tlsOrigin = await startOrigin({ tls: { cert: leaf.certFor('127.0.0.1'), key: leaf.keyPem } });
    const dir = mkdtempSync(join(tmpdir(), 'ferry-p2p-mitm-'));
    const caFile = join(dir, 'origin-ca.pem');
    (await import('node:fs')).writeFileSync(caFile, originCa.certPem);
    const other = await startOrigin({ tls: { cert: leaf.certFor('127.0.0.1'), key: leaf.keyPem } });
    const c = await cluster(1, {
      allow: [other.host],
      seed: false,
      peerConfig: { proxy: { hijackHosts: [`^127\\.0\\.0\\.1:${tlsOrigin.host.split(':')[1]}$`], upstreamCaCerts: [caFile] } },
    });
    try {
      const peer = c.peers[0]!;
      assert.ok(peer.ca, 'a CA was generated');
      const { statSync } = await import('node:fs');
      assert.equal(statSync(peer.ca.keyPath).mode & 0o777, 0o600);
      const getVia = (target: string, path: string, ca: string): Promise<{ status: number; body: Buffer; issuer: string }> =>
        new Promise((resolve, reject) => {
          const pu = new URL(peer.proxyUrl);
          const creq = http.request({ hostname: pu.hostname, port: pu.port, method: 'CONNECT', path: target });
          creq.on('connect', (res, socket) => {
            if (res.statusCode !== 200) {
              reject(new Error(`CONNECT ${res.statusCode}`));
              return;
            }
            const r = https.request(
              {
                host: '127.0.0.1',
                port: Number(target.split(':')[1]),
                path,
                method: 'GET',
                ca,
                createConnection: () => tls.connect({ socket, ca, host: '127.0.0.1' }),
              },
              (resp) => {
                const issuer = String((resp.socket as tls.TLSSocket).getPeerCertificate().issuer?.CN ?? '');
                readAll(resp).then((b) => resolve({ status: resp.statusCode ?? 0, body: b, issuer }), reject);
              },
            );
            r.on('error', reject);
            r.end();
          });
          creq.on('error', reject);
          creq.end();
        });
      const blob = tlsOrigin.addBlob('library/tls', randomBlob(6 * MiB));
      const r1 = await getVia(tlsOrigin.host, `/v2/library/tls/blobs/${blob.digest}`, peer.ca.certPem);
      assert.equal(r1.status, 200);
      assert.equal(r1.issuer, 'Ferry P2P proxy CA');
      assert.equal(sha(r1.body), blob.digest);
      assert.equal(await metricValue(peer.metrics, 'ferry_peer_proxy_request_via_p2p_total'), 1);
      const blob2 = other.addBlob('library/tls', randomBlob(1 * MiB));
      const r2 = await getVia(other.host, `/v2/library/tls/blobs/${blob2.digest}`, originCa.certPem);
      assert.equal(r2.issuer, 'test origin CA', "tunnel: the origin's own certificate reached the client");
      assert.equal(sha(r2.body), blob2.digest);
      assert.equal(await metricValue(peer.metrics, 'ferry_peer_proxy_request_via_p2p_total'), 1);
    } finally {
      await c.close();
      await tlsOrigin.close();
      await other.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('preheat via /oapi/v1/jobs puts the image blobs on the seed; peers then pull without origin blob traffic', async () => {
    const scheduler = await startScheduler({
      listen: '127.0.0.1:0',
      config: { cluster: { token: SECRET }, scheduling: { retryInterval: 100 }, preheat: { tokens: ['pat-123'] } },
    });
    const dirs = [mkdtempSync(join(tmpdir(), 'ferry-ph-seed-')), mkdtempSync(join(tmpdir(), 'ferry-ph-p-'))];
    const seed = await startPeer({
      dataDir: dirs[0]!,
      schedulers: [scheduler.url],
      seed: true,
      proxyListen: '127.0.0.1:0',
      uploadListen: '127.0.0.1:0',
      config: { cluster: { token: SECRET }, host: { hostname: 'seed' }, download: { directBelow: 0 } },
    }); // a seed needs no allow-list: it fetches what members command
    const peer = await startPeer({
      dataDir: dirs[1]!,
      schedulers: [scheduler.url],
      proxyListen: '127.0.0.1:0',
      uploadListen: '127.0.0.1:0',
      config: {
        cluster: { token: SECRET },
        host: { hostname: 'n1' },
        download: { directBelow: 0 },
        proxy: { registryMirror: { url: origin.url, nsScheme: 'http' } },
      },
    });
    try {
      await until('seed and peer announced', () => scheduler.service.hostsOf().length >= 2);
      const cfg = origin.addBlob('library/ph', Buffer.from('{"architecture":"amd64","os":"linux"}'));
      const l1 = origin.addBlob('library/ph', randomBlob(6 * MiB));
      const l2 = origin.addBlob('library/ph', randomBlob(3 * MiB));
      const manifest = Buffer.from(
        JSON.stringify({
          schemaVersion: 2,
          mediaType: 'application/vnd.oci.image.manifest.v1+json',
          config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: cfg.digest, size: cfg.data.length },
          layers: [l1, l2].map((l) => ({
            mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip',
            digest: l.digest,
            size: l.data.length,
          })),
        }),
      );
      origin.addManifest('library/ph', 'v1', manifest, 'application/vnd.oci.image.manifest.v1+json');
      const job = {
        type: 'preheat',
        args: { type: 'image', url: `${origin.url}/v2/library/ph/manifests/v1`, headers: {}, scope: 'single_seed_peer' },
      };
      await assert.rejects(jsonRequest(`${scheduler.url}/oapi/v1/jobs`, { method: 'POST', json: job }), /401/);
      const created = await jsonRequest<{ id: number; state: string }>(`${scheduler.url}/oapi/v1/jobs`, {
        method: 'POST',
        json: job,
        headers: { authorization: 'Bearer pat-123' },
      });
      assert.equal(created.state, 'PENDING');
      let state = 'PENDING';
      let last: { state: string; result: { job_states: { results: { success_tasks: unknown[] }[] }[] } } | undefined;
      for (let i = 0; i < 100 && state === 'PENDING'; i++) {
        await sleep(100);
        last = await jsonRequest(`${scheduler.url}/oapi/v1/jobs/${created.id}`, { headers: { authorization: 'Bearer pat-123' } });
        state = last!.state;
      }
      assert.equal(state, 'SUCCESS', JSON.stringify(last));
      assert.equal(last!.result.job_states[0]!.results[0]!.success_tasks.length, 3);
      assert.equal(seed.store.list().filter((t) => t.complete).length, 3);
      // A lazy loader's range read: its range task is served by the seed from the preheated blob.
      const rb = origin.blobBytes();
      const rr = await fetchAll(peer.proxyUrl, `${l1.url}?ns=${origin.host}`, {}, [100, 5 * MiB]);
      assert.equal(rr.status, 206);
      assert.deepEqual(rr.body, l1.data.subarray(100, 5 * MiB + 1));
      assert.equal(origin.blobBytes() - rb, 0, 'the range came from the preheated seed');
      assert.ok(seed.store.get(taskId({ blobDigest: true, url: l1.url, range: `100-${5 * MiB}` }))?.complete);
      const before = origin.blobBytes();
      for (const l of [cfg, l1, l2]) {
        const r = await fetchAll(peer.proxyUrl, `${l.url}?ns=${origin.host}`);
        assert.equal(sha(r.body), l.digest);
      }
      assert.equal(origin.blobBytes() - before, 0, 'no blob bytes from the origin after preheat');
      const h = await new Promise<number>((resolve) =>
        http.get(`${scheduler.url}/healthy`, (res) => {
          res.resume();
          resolve(res.statusCode ?? 0);
        }),
      );
      assert.equal(h, 200);
      const bad = await jsonRequest(`${scheduler.url}/oapi/v1/jobs`, {
        method: 'POST',
        json: { type: 'preheat', args: { type: 'image' } },
        headers: { authorization: 'Bearer pat-123' },
      }).catch((e: Error) => e.message);
      assert.match(String(bad), /400/);
    } finally {
      await peer.close();
      await seed.close();
      await scheduler.close();
      for (const d of dirs) rmSync(d, { recursive: true, force: true });
    }
  });

  test('disk quota: LRU eviction of finished tasks, reported to the scheduler', async () => {
    const c = await cluster(1, { allow: [origin.host], seed: false, peerConfig: { storage: { quota: 10 * MiB } } });
    try {
      const b1 = origin.addBlob('library/q', randomBlob(6 * MiB));
      const b2 = origin.addBlob('library/q', randomBlob(6 * MiB));
      assert.equal(sha((await fetchAll(c.peers[0]!.proxyUrl, b1.url)).body), b1.digest);
      // The download finishes (verify, metadata, report) just after the client has its bytes.
      const e1 = (): ReturnType<PeerHandle['store']['get']> => c.peers[0]!.store.get(taskId({ blobDigest: true, url: b1.url }));
      for (let i = 0; i < 200 && (e1()?.downloading || !e1()?.meta.done); i++) await sleep(20);
      assert.equal(sha((await fetchAll(c.peers[0]!.proxyUrl, b2.url)).body), b2.digest);
      for (let i = 0; i < 100 && c.peers[0]!.store.list().length > 1; i++) await sleep(20);
      const ids = c.peers[0]!.store.list().map((t) => t.id);
      assert.deepEqual(ids, [taskId({ blobDigest: true, url: b2.url })]);
      assert.equal(await metricValue(c.peers[0]!.metrics, 'ferry_peer_evicted_task_total'), 1);
      // the node's disk view: the same names as the daemon's chunk cache, store="peer"
      const nodeCache = async (name: string): Promise<number> => metricValue(c.peers[0]!.metrics, name, { store: 'peer' });
      assert.equal(await nodeCache('ferry_node_cache_bytes'), 6 * MiB);
      assert.equal(await nodeCache('ferry_node_cache_quota_bytes'), 10 * MiB);
      assert.equal(await nodeCache('ferry_node_cache_evicted_bytes_total'), 6 * MiB);
      // the eviction report reaches the scheduler (bounded wait for it)
      const evicted = async (): Promise<number> =>
        (await jsonRequest<{ peers: unknown[] }>(`${c.scheduler.url}/api/v1/tasks/${taskId({ blobDigest: true, url: b1.url })}`, { auth }))
          .peers.length;
      await until('the scheduler to forget the evicted copy', async () => (await evicted()) === 0);
      assert.equal(await evicted(), 0, 'the scheduler forgot the evicted copy');
      const big = origin.addBlob('library/q', randomBlob(11 * MiB));
      await assert.rejects(fetchAll(c.peers[0]!.proxyUrl, big.url), /quota|429|exceeds/);
    } finally {
      await c.close();
    }
  });
});
