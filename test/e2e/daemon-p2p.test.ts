/**
 * The lazy daemon reading through real `ferry peer` processes (the P2P backend in production: the
 * mount's `backend.proxy` = the node's peer proxy), with a real `ferry scheduler`:
 * - node A: every chunk request goes through peer A and is served P2P (none falls back to the
 *   registry); the registry serves only what peer A fetched back to source;
 * - node B (its own peer, cold cache): the same reads cost the registry nothing — no blob request
 *   at all; peer B got the bytes from peer A;
 * - control: with node B's peer gone, reads still work (the daemon falls back to the registry) and
 *   the same counters show it — so a broken peer path fails the checks above instead of hiding
 *   behind the fallback.
 * The peers run with `download.directBelow: 0` (as `ferry bench`'s lazy-p2p mode does): with the
 * default (4 MiB), ranges as small as chunks go straight to the registry through the peer. The
 * daemon reads with its defaults (read-ahead on): range tasks are whole cells of the peers' range
 * grid and the daemon cuts its proxy requests at that grid, so differently split reads share tasks.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { requirePrereqs } from '../support/prereq.js';
import { FERRY_BIN } from '../support/paths.js';
import { startRegistry } from '../../src/registry/index.js';
import { metricValue, silentLogger } from '../../src/observe/index.js';
import { Daemon, type MountRequest } from '../../src/daemon/index.js';
import { spawnFerry, type FerryProc } from '../../src/p2p/testing/procs.js';
import { buildAndPush } from './daemon-support.js';

const PASSWORD = 'Daemon-p2p-1';
const MiB = 1024 * 1024;
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

/** Sum of a metric's samples in Prometheus text whose labels include `labels`. */
function metric(text: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    const m = /^([a-zA-Z_:][\w:]*)(\{[^}]*\})? (\S+)$/.exec(line);
    if (!m || m[1] !== name) continue;
    const ls = m[2] ?? '';
    if (Object.entries(labels).every(([k, v]) => ls.includes(`${k}="${v}"`))) sum += Number(m[3]);
  }
  return sum;
}

interface Peer {
  proc: FerryProc;
  proxy: string;
  upload: string;
}

test('lazy reads through real ferry peers: no fallback, the registry serves the first peer only, the second node costs it nothing', {
  timeout: 600_000,
}, async (t) => {
  requirePrereqs({ root: true, devices: ['/dev/fuse'], commands: ['mount', 'umount'] });
  const dir = await mkdtemp(join(tmpdir(), 'ferry-daemon-p2p-'));
  const procs: FerryProc[] = [];
  const reg = await startRegistry({ listen: '127.0.0.1:0', dataDir: join(dir, 'registry'), adminPassword: PASSWORD, log: silentLogger() });
  // Default read-ahead: how a node's reads split into requests depends on timing, but requests
  // through a peer are cut at the range grid and range tasks cover whole grid cells, so node B asks
  // for the same tasks node A fetched whatever the split.
  const daemon = new Daemon({ log: silentLogger(), dataDir: join(dir, 'daemon'), config: { ferry: { p2p_range_grid: MiB } } });
  try {
    // an image: a text file and two files of incompressible data over many 32 KiB chunks
    const src = join(dir, 'src');
    await mkdir(join(src, 'etc'), { recursive: true });
    await mkdir(join(src, 'opt'), { recursive: true });
    await writeFile(join(src, 'etc', 'os-release'), 'NAME="ferry p2p e2e"\n');
    const files = { 'opt/data.bin': randomBytes(5 * MiB + 123), 'opt/more.bin': randomBytes(3 * MiB) };
    for (const [p, b] of Object.entries(files)) await writeFile(join(src, p), b);
    const img = await buildAndPush({
      rootfs: src,
      host: reg.host,
      repo: 'library/p2p',
      tag: 'nydus',
      password: PASSWORD,
      workDir: join(dir, 'build'),
      // the converter's default chunk size: requests are made of many chunks and split by timing and order
      chunkSize: 32 * 1024,
    });

    const sched = await spawnFerry(FERRY_BIN, ['scheduler', '--listen', '127.0.0.1:0'], { ready: /scheduler listening on/ });
    procs.push(sched);
    const schedUrl = /scheduler listening on (\S+)/.exec(sched.output())![1]!;
    const cfg = join(dir, 'peer.yaml');
    await writeFile(cfg, `proxy:\n  allowedHosts: ["${reg.host}"]\ndownload:\n  directBelow: 0\n  rangeGrid: 1048576\n`);
    const startPeer = async (name: string): Promise<Peer> => {
      const proc = await spawnFerry(
        FERRY_BIN,
        [
          'peer',
          '--config',
          cfg,
          '--scheduler',
          schedUrl,
          '--data',
          join(dir, name),
          '--proxy-listen',
          '127.0.0.1:0',
          '--upload-listen',
          '127.0.0.1:0',
          '--hostname',
          name,
        ],
        { ready: /HTTPS_PROXY=/ },
      );
      procs.push(proc);
      const m = /proxy (http:\/\/127\.0\.0\.1:\d+), upload (http:\/\/127\.0\.0\.1:\d+)/.exec(proc.output());
      assert.ok(m, proc.output());
      return { proc, proxy: m[1]!, upload: m[2]! };
    };
    const peerA = await startPeer('node-a');
    const peerB = await startPeer('node-b');
    const metricsOf = async (p: Peer): Promise<string> => (await fetch(`${p.upload}/metrics`)).text();

    const served = (): Promise<number> => metricValue(reg.metrics, 'ferry_registry_blob_bytes_served_total');
    const blobGets = (): Promise<number> => metricValue(reg.metrics, 'ferry_registry_requests_total', { route: 'blob', method: 'GET' });
    const mount = async (name: string, proxy: string): Promise<MountRequest> => {
      const req: MountRequest = {
        id: `p2p-${name}`,
        mountpoint: join(dir, `mnt-${name}`),
        bootstrapPath: img.bootstrapPath,
        mode: 'fuse',
        cacheDir: join(dir, `cache-${name}`),
        backend: { type: 'registry', host: reg.host, repo: img.repo, insecure: true, proxy },
      };
      await mkdir(req.mountpoint, { recursive: true });
      await daemon.mount(req);
      return req;
    };
    /** Reads every file; `reversed`: in the other order, so the reads split the blob into other requests. */
    const readAll = async (req: MountRequest, reversed = false): Promise<void> => {
      assert.equal(await readFile(join(req.mountpoint, 'etc/os-release'), 'utf8'), 'NAME="ferry p2p e2e"\n');
      const list = Object.entries(files);
      for (const [p, b] of reversed ? list.reverse() : list) assert.equal(sha(await readFile(join(req.mountpoint, p))), sha(b), p);
    };

    // Node A: every chunk through peer A, P2P, no fallback; the registry served peer A only.
    const s0 = await served();
    const a = await mount('a', peerA.proxy);
    await readAll(a);
    const infoA = await daemon.get(a.id);
    const textA = await metricsOf(peerA);
    const fetchedA = infoA.metrics.bytesFetched;
    t.diagnostic(
      `node A: ${infoA.stats?.requests} backend requests, ${fetchedA} bytes; peer A: ${metric(textA, 'ferry_peer_proxy_request_via_p2p_total')} P2P requests, ` +
        `${metric(textA, 'ferry_peer_download_traffic_bytes_total', { type: 'BACK_TO_SOURCE' })} bytes back to source; registry served ${(await served()) - s0}`,
    );
    assert.ok(fetchedA >= 8 * MiB, `node A fetched ${fetchedA} bytes`);
    assert.equal(infoA.stats?.proxyFallbacks, 0, 'no read fell back to the registry');
    assert.ok(
      metric(textA, 'ferry_peer_proxy_request_via_p2p_total') >= infoA.stats!.requests,
      'every backend request was served P2P by peer A',
    );
    assert.equal(metric(textA, 'ferry_peer_proxy_served_bytes_total'), fetchedA, 'peer A served the daemon every byte it fetched');
    const backA = metric(textA, 'ferry_peer_download_traffic_bytes_total', { type: 'BACK_TO_SOURCE' });
    assert.ok(backA >= fetchedA, `peer A fetched ${backA} bytes from the registry for ${fetchedA}`);
    assert.equal((await served()) - s0, backA, 'the registry served peer A and nobody else');

    // Peer A's tasks are complete (bounded wait for the event) before node B asks for the same ranges.
    let open = -1;
    for (let i = 0; i < 200 && open !== 0; i++) {
      const tasks = (await (await fetch(`${peerA.upload}/api/v1/tasks`)).json()) as Array<{ done: boolean }>;
      open = tasks.filter((x) => !x.done).length;
      if (open) await sleep(50);
    }
    assert.equal(open, 0, 'peer A finished its tasks');

    // Node B, cold, through its own peer: the registry sees no blob request; peer B got it from peer A.
    const s1 = await served();
    const g1 = await blobGets();
    const upA0 = metric(await metricsOf(peerA), 'ferry_peer_upload_traffic_bytes_total');
    // It reads the files in the other order: its read-ahead windows start elsewhere, so its requests
    // differ from node A's — the grid-aligned range tasks are what it shares.
    const b = await mount('b', peerB.proxy);
    await readAll(b, true);
    const infoB = await daemon.get(b.id);
    const textB = await metricsOf(peerB);
    assert.ok(infoB.metrics.bytesFetched >= 8 * MiB);
    t.diagnostic(
      `node B: ${infoB.stats?.requests} backend requests; registry: ${(await blobGets()) - g1} blob GETs, ${(await served()) - s1} bytes; ` +
        `peer B: ${metric(textB, 'ferry_peer_download_traffic_bytes_total', { type: 'BACK_TO_SOURCE' })} bytes back to source, ` +
        `${metric(textB, 'ferry_peer_download_traffic_bytes_total', { type: 'REMOTE_PEER' })} from peers`,
    );
    // What the peers and the scheduler warned about, to tell a slow machine from a broken path on failure.
    const warnings = (): string =>
      [
        ['peer B', peerB.proc],
        ['peer A', peerA.proc],
        ['scheduler', sched],
      ]
        .map(
          ([n, p]) =>
            `${n}:\n${(p as FerryProc)
              .output()
              .split('\n')
              .filter((l) => /"level":(4|5)\d/.test(l))
              .slice(-20)
              .join('\n')}`,
        )
        .join('\n');
    assert.equal(infoB.stats?.proxyFallbacks, 0, 'no read fell back to the registry');
    assert.equal((await blobGets()) - g1, 0, `no blob request reached the registry\n${warnings()}`);
    assert.equal((await served()) - s1, 0, 'the registry served no blob bytes');
    assert.equal(metric(textB, 'ferry_peer_download_traffic_bytes_total', { type: 'BACK_TO_SOURCE' }), 0);
    assert.ok(
      metric(textB, 'ferry_peer_download_traffic_bytes_total', { type: 'REMOTE_PEER' }) >= infoB.metrics.bytesFetched,
      'peer B got the bytes from another peer',
    );
    assert.ok(
      metric(await metricsOf(peerA), 'ferry_peer_upload_traffic_bytes_total') - upA0 >= infoB.metrics.bytesFetched,
      'peer A uploaded them',
    );
    assert.equal(metric(textB, 'ferry_peer_proxy_served_bytes_total'), infoB.metrics.bytesFetched);

    // Control: node B's peer is gone. Reads still work — through the registry — and the counters
    // say so: the checks above cannot pass on a broken peer path.
    await peerB.proc.stop();
    const s2 = await served();
    const c = await mount('c', peerB.proxy);
    await readAll(c);
    const infoC = await daemon.get(c.id);
    t.diagnostic(`control: peer gone, ${infoC.stats?.proxyFallbacks} fallbacks, registry served ${(await served()) - s2} bytes`);
    assert.ok((infoC.stats?.proxyFallbacks ?? 0) > 0, 'the daemon counted its fallbacks');
    assert.equal((await served()) - s2, infoC.metrics.bytesFetched, 'the registry served what the daemon fetched');
  } finally {
    await daemon.close().catch(() => undefined);
    for (const p of procs.reverse()) await p.stop();
    await reg.close();
    await rm(dir, { recursive: true, force: true });
  }
});
