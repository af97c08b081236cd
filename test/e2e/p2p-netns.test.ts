/**
 * P2P in network namespaces: ferry registry behind a 100 Mbit tbf link, a scheduler, a seed peer
 * and 4 peers, each in its own namespace (198.18.0.0/24 star from src/bench/env). All peers
 * `ferry get` the same 64 MiB blob at once: every copy is byte-identical and the registry serves
 * about one copy (its own counter and its interface counter).
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FERRY_BIN } from '../support/paths.js';
import { requirePrereqs } from '../support/prereq.js';
import { buildOciImage, createStar, execInNetns, ifaceCounters, pushImage, type Star } from '../../src/bench/env/index.js';
import { runFerry, spawnFerry, type FerryProc } from '../../src/p2p/testing/procs.js';

const MiB = 1024 * 1024;
const ADMIN = 'Adm1n-pass-p2p';

async function metric(netns: string, url: string, name: string, labels = ''): Promise<number> {
  const r = await execInNetns(netns, 'curl', ['-sf', url], { timeoutMs: 10_000 });
  let sum = 0;
  for (const line of r.stdout.split('\n')) {
    if (!line.startsWith(name)) continue;
    const m = /^([a-z_]+)(\{[^}]*\})? ([0-9.e+-]+)$/.exec(line);
    if (m && m[1] === name && (!labels || (m[2] ?? '').includes(labels))) sum += Number(m[3]);
  }
  return sum;
}

let star: Star | undefined;
let work = '';
const procs: FerryProc[] = [];

before(() => {
  requirePrereqs({ root: true, commands: ['ip', 'tc', 'nsenter', 'skopeo', 'curl'] });
});
after(async () => {
  for (const p of procs.reverse()) await p.stop().catch(() => undefined);
  await star?.destroy();
  if (work) rmSync(work, { recursive: true, force: true });
});

test('4 peers in namespaces get one 64 MiB blob at once through a seed; registry serves ~1 copy', { timeout: 240_000 }, async () => {
  work = mkdtempSync(join(tmpdir(), 'ferry-p2p-netns-'));
  star = await createStar({ prefix: `p${randomBytes(3).toString('hex')}`, nodes: 4, extras: 2, registryRate: '100mbit' });
  const [schedNs, seedNs] = star.extras as [(typeof star.extras)[0], (typeof star.extras)[0]];
  const reg = star.registry;
  procs.push(
    await spawnFerry(FERRY_BIN, ['registry', '--listen', `${reg.ip}:5000`, '--data', join(work, 'registry'), '--admin-password', ADMIN], {
      netns: reg.netns,
      ready: /listening/,
    }),
  );

  // A one-layer image whose layer is 64 MiB of random bytes (uncompressed tar).
  const layer = join(work, 'layer');
  mkdirSync(layer);
  writeFileSync(join(layer, 'big.bin'), randomBytes(64 * MiB));
  const img = await buildOciImage({ layers: [layer], outDir: join(work, 'oci'), compression: 'none' });
  await pushImage(img.layoutDir, `${reg.ip}:5000/library/big:v1`, { creds: `admin:${ADMIN}`, netns: reg.netns });
  // The layer as the registry holds it (skopeo may recompress on push): read the pushed manifest.
  const man = await execInNetns(
    reg.netns,
    'curl',
    ['-sf', '-H', 'Accept: application/vnd.oci.image.manifest.v1+json', `http://${reg.ip}:5000/v2/library/big/manifests/v1`],
    { timeoutMs: 10_000 },
  );
  const blob = (JSON.parse(man.stdout) as { layers: { digest: string; size: number }[] }).layers[0]!;
  assert.ok(blob.size >= 64 * MiB, `layer is ${blob.size} bytes`);
  void img;
  const url = `http://${reg.ip}:5000/v2/library/big/blobs/${blob.digest}`;

  // Patient back-to-source (loaded CI machines): loops wake as soon as the seed registers anyway.
  writeFileSync(join(work, 'scheduler.yaml'), 'scheduling:\n  retryBackToSourceLimit: 60\n  retryLimit: 80\n');
  // Scheduler and peers listen on namespace addresses: one cluster secret for all of them.
  const token = join(work, 'cluster-token');
  writeFileSync(token, `${randomBytes(32).toString('hex')}\n`, { mode: 0o600 });
  procs.push(
    await spawnFerry(
      FERRY_BIN,
      ['scheduler', '--listen', `${schedNs.ip}:8002`, '--config', join(work, 'scheduler.yaml'), '--cluster-token-file', token],
      { netns: schedNs.netns, ready: /listening/ },
    ),
  );
  const sched = `http://${schedNs.ip}:8002`;
  const peerArgs = (ns: { ip: string }, name: string): string[] => [
    'peer',
    '--scheduler',
    sched,
    '--data',
    join(work, name),
    '--proxy-listen',
    '127.0.0.1:65001',
    '--upload-listen',
    `${ns.ip}:65002`,
    '--hostname',
    name,
    '--cluster-token-file',
    token,
    '--allow-host',
    `${reg.ip}:5000`,
  ];
  procs.push(await spawnFerry(FERRY_BIN, [...peerArgs(seedNs, 'seed'), '--seed'], { netns: seedNs.netns, ready: /proxy http/ }));
  for (const [i, n] of star.nodes.entries())
    procs.push(await spawnFerry(FERRY_BIN, peerArgs(n, `node${i + 1}`), { netns: n.netns, ready: /proxy http/ }));

  // From another machine: the peer RPC and the upload API want the cluster signature; the preheat
  // API of a network-reachable scheduler without preheat tokens is disabled.
  const probe = async (url: string, method = 'GET', body?: string): Promise<string> =>
    (
      await execInNetns(
        star!.nodes[0]!.netns,
        'curl',
        ['-s', '-o', '/dev/null', '-w', '%{http_code}', '-X', method, ...(body ? ['-d', body] : []), url],
        { timeoutMs: 10_000 },
      )
    ).stdout;
  assert.equal(await probe(`${sched}/api/v1/hosts`), '401');
  assert.equal(await probe(`http://${seedNs.ip}:65002/api/v1/tasks`), '401');
  assert.equal(
    await probe(`http://${seedNs.ip}:65002/api/v1/tasks`, 'POST', JSON.stringify({ url: `http://${reg.ip}:5000/v2/`, wait: true })),
    '401',
  );
  assert.equal(
    await probe(
      `${sched}/oapi/v1/jobs`,
      'POST',
      JSON.stringify({ type: 'preheat', args: { type: 'file', url: `http://${reg.ip}:5000/v2/` } }),
    ),
    '401',
  );

  const regBefore = await metric(reg.netns, `http://${reg.ip}:5000/metrics`, 'ferry_registry_blob_bytes_served_total');
  const txBefore = (await ifaceCounters(reg.dev, reg.netns)).txBytes;
  const t0 = Date.now();
  const results = await Promise.all(
    star.nodes.map((n, i) =>
      runFerry(FERRY_BIN, ['get', url, '-O', join(work, `out${i + 1}`), '--peer', '127.0.0.1:65001'], {
        netns: n.netns,
        timeoutMs: 180_000,
      }),
    ),
  );
  const ms = Date.now() - t0;
  for (const r of results) assert.equal(r.code, 0, r.stderr);
  for (let i = 1; i <= 4; i++) {
    const got = `sha256:${createHash('sha256')
      .update(readFileSync(join(work, `out${i}`)))
      .digest('hex')}`;
    assert.equal(got, blob.digest, `node${i} copy is byte-identical`);
  }
  const served = (await metric(reg.netns, `http://${reg.ip}:5000/metrics`, 'ferry_registry_blob_bytes_served_total')) - regBefore;
  const tx = (await ifaceCounters(reg.dev, reg.netns)).txBytes - txBefore;
  process.stdout.write(`# 4 nodes: ${ms} ms, registry served ${served} blob bytes, uplink tx ${tx} bytes, blob ${blob.size}\n`);
  assert.ok(served <= 1.2 * blob.size, `registry counter: ${served} bytes for a ${blob.size}-byte blob`);
  assert.ok(tx <= 1.3 * blob.size, `registry uplink: ${tx} bytes (payload + headers) for a ${blob.size}-byte blob`);
  let remote = 0;
  for (const n of star.nodes)
    remote += await metric(n.netns, 'http://127.0.0.1:65001/metrics', 'ferry_peer_download_traffic_bytes_total', 'REMOTE_PEER');
  assert.ok(remote >= 4 * blob.size * 0.99, `nodes got ${remote} bytes from peers`);
});
