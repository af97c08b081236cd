/**
 * containerd pulls through `ferry peer`: (1) as a hosts.toml registry mirror in front of ferry
 * registry, (2) via HTTPS_PROXY with TLS interception of a TLS registry (Debian docker-registry with a
 * test certificate, at a non-loopback address inside a network namespace so Go's proxy rules apply).
 * In both, the peer's metrics show the blobs went through P2P.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { FERRY_BIN } from '../support/paths.js';
import { requirePrereqs } from '../support/prereq.js';
import {
  buildOciImage,
  createNetns,
  deleteNetns,
  execCheck,
  execInNetns,
  pushImage,
  startContainerd,
  type Containerd,
} from '../../src/bench/env/index.js';
import { startRegistry } from '../../src/registry/index.js';
import { metricValue } from '../../src/observe/index.js';
import { createCa, LeafMinter, hostsToml, startPeer, startScheduler, type PeerHandle, type SchedulerHandle } from '../../src/p2p/index.js';
import { spawnFerry, type FerryProc } from '../../src/p2p/testing/procs.js';

const MiB = 1024 * 1024;
const cleanups: (() => Promise<void>)[] = [];
after(async () => {
  for (const c of cleanups.reverse()) await c().catch(() => undefined);
});

function imageDir(root: string, mib: number): string {
  const d = join(root, 'layer');
  mkdirSync(join(d, 'opt'), { recursive: true });
  writeFileSync(join(d, 'opt', 'payload.bin'), randomBytes(mib * MiB));
  writeFileSync(join(d, 'hello.txt'), 'hello from ferry p2p\n');
  return d;
}

test('containerd pulls through ferry peer as a hosts.toml mirror; blobs go P2P; after preheat no registry blob traffic', {
  timeout: 180_000,
}, async () => {
  requirePrereqs({ root: true, commands: ['containerd', 'ctr', 'skopeo'] });
  const work = mkdtempSync(join(tmpdir(), 'ferry-p2p-ctd-'));
  cleanups.push(async () => rmSync(work, { recursive: true, force: true }));
  const registry = await startRegistry({ listen: '127.0.0.1:0', dataDir: join(work, 'reg'), adminPassword: 'Adm1n-pass-ctd' });
  cleanups.push(() => registry.close());
  const img = await buildOciImage({ layers: [imageDir(work, 6)], outDir: join(work, 'oci') });
  await pushImage(img.layoutDir, `${registry.host}/library/app:v1`, { creds: 'admin:Adm1n-pass-ctd' });

  const scheduler: SchedulerHandle = await startScheduler({
    listen: '127.0.0.1:0',
    config: { scheduling: { retryBackToSourceLimit: 60, retryLimit: 80 } },
  });
  cleanups.push(() => scheduler.close());
  const mk = async (name: string, seed: boolean): Promise<PeerHandle> => {
    const p = await startPeer({
      dataDir: join(work, name),
      schedulers: [scheduler.url],
      seed,
      proxyListen: '127.0.0.1:0',
      uploadListen: '127.0.0.1:0',
      config: { host: { hostname: name }, download: { directBelow: 0 }, proxy: { allowedHosts: [registry.host] } },
    });
    cleanups.push(() => p.close());
    return p;
  };
  await mk('seed', true);
  const peer = await mk('node1', false);
  const hostsDir = join(work, 'certs.d');
  mkdirSync(join(hostsDir, registry.host), { recursive: true });
  writeFileSync(join(hostsDir, registry.host, 'hosts.toml'), hostsToml(peer.proxyUrl, { name: registry.host, url: registry.url }));

  const ctd: Containerd = await startContainerd({ dir: join(work, 'ctd') });
  cleanups.push(() => ctd.stop());
  const before = await metricValue(registry.metrics, 'ferry_registry_blob_bytes_served_total');
  const r = await ctd.ctr(['images', 'pull', '--hosts-dir', hostsDir, `${registry.host}/library/app:v1`], { timeoutMs: 120_000 });
  assert.equal(r.code, 0, r.stderr);
  const viaP2P = await metricValue(peer.metrics, 'ferry_peer_proxy_request_via_p2p_total');
  assert.ok(viaP2P >= 2, `config + layer through P2P (got ${viaP2P})`);
  assert.ok(
    (await metricValue(peer.metrics, 'ferry_peer_download_traffic_bytes_total', { type: 'REMOTE_PEER' })) >= 6 * MiB,
    'the node got the layer from the seed',
  );
  const served = (await metricValue(registry.metrics, 'ferry_registry_blob_bytes_served_total')) - before;
  assert.ok(served <= 1.2 * img.compressedSize + 4096, `registry served ${served} bytes for ${img.compressedSize} of layers`);
  const ls = await ctd.ctr(['images', 'ls', '-q']);
  assert.match(ls.stdout, /library\/app:v1/);

  // Preheat a second image through the job API (what Harbor sends), then pull it: the registry serves no blob bytes.
  const img2 = await buildOciImage({ layers: [imageDir(join(work, 'img2'), 5)], outDir: join(work, 'oci2') });
  await pushImage(img2.layoutDir, `${registry.host}/library/app2:v1`, { creds: 'admin:Adm1n-pass-ctd' });
  const job = (await (
    await fetch(`${scheduler.url}/oapi/v1/jobs`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        type: 'preheat',
        args: { type: 'image', url: `${registry.url}/v2/library/app2/manifests/v1`, scope: 'single_seed_peer' },
      }),
    })
  ).json()) as { id: number };
  let state = 'PENDING';
  let detail = '';
  for (let i = 0; i < 200 && state === 'PENDING'; i++) {
    await sleep(100);
    const j = (await (await fetch(`${scheduler.url}/oapi/v1/jobs/${job.id}`)).json()) as { state: string };
    state = j.state;
    detail = JSON.stringify(j);
  }
  assert.equal(state, 'SUCCESS', detail);
  const before2 = await metricValue(registry.metrics, 'ferry_registry_blob_bytes_served_total');
  const r2 = await ctd.ctr(['images', 'pull', '--hosts-dir', hostsDir, `${registry.host}/library/app2:v1`], { timeoutMs: 120_000 });
  assert.equal(r2.code, 0, r2.stderr);
  assert.equal(
    (await metricValue(registry.metrics, 'ferry_registry_blob_bytes_served_total')) - before2,
    0,
    'no registry blob traffic after preheat',
  );
});

test('containerd pulls via HTTPS_PROXY with TLS interception of a TLS registry; blobs go P2P', { timeout: 180_000 }, async () => {
  requirePrereqs({ root: true, commands: ['containerd', 'ctr', 'skopeo', 'docker-registry', 'ip', 'nsenter', 'curl'] });
  const work = mkdtempSync(join(tmpdir(), 'ferry-p2p-mitm-'));
  cleanups.push(async () => rmSync(work, { recursive: true, force: true }));
  const ns = `fp2pt${randomBytes(3).toString('hex')}`;
  await createNetns(ns);
  cleanups.push(() => deleteNetns(ns));
  const ip = '198.18.77.1';
  await execCheck('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
  await execCheck('ip', ['-n', ns, 'addr', 'add', `${ip}/32`, 'dev', 'lo']);

  // TLS registry with a test CA.
  const regCa = createCa('ferry test registry CA');
  const minter = new LeafMinter(regCa.certPem, regCa.keyPem);
  writeFileSync(join(work, 'reg.crt'), minter.certFor(ip));
  writeFileSync(join(work, 'reg.key'), minter.keyPem);
  writeFileSync(join(work, 'reg-ca.crt'), regCa.certPem);
  writeFileSync(
    join(work, 'registry.yml'),
    [
      'version: 0.1',
      'log:',
      '  level: warn',
      'storage:',
      '  filesystem:',
      `    rootdirectory: ${join(work, 'regdata')}`,
      'http:',
      `  addr: ${ip}:5443`,
      '  tls:',
      `    certificate: ${join(work, 'reg.crt')}`,
      `    key: ${join(work, 'reg.key')}`,
      '',
    ].join('\n'),
  );
  const reg: ChildProcess = spawn('nsenter', [`--net=/run/netns/${ns}`, '--', 'docker-registry', 'serve', join(work, 'registry.yml')], {
    stdio: 'ignore',
    env: { ...process.env, OTEL_TRACES_EXPORTER: 'none' },
  });
  cleanups.push(async () => {
    reg.kill('SIGKILL');
  });
  for (let i = 0; i < 100; i++) {
    const r = await execInNetns(ns, 'curl', ['-sf', '--cacert', join(work, 'reg-ca.crt'), `https://${ip}:5443/v2/`], { timeoutMs: 5000 });
    if (r.code === 0) break;
    await sleep(100);
  }
  const img = await buildOciImage({ layers: [imageDir(work, 5)], outDir: join(work, 'oci') });
  await pushImage(img.layoutDir, `${ip}:5443/library/tlsapp:v1`, { netns: ns, insecure: true });

  const procs: FerryProc[] = [];
  cleanups.push(async () => {
    for (const p of procs) await p.stop();
  });
  procs.push(await spawnFerry(FERRY_BIN, ['scheduler', '--listen', '127.0.0.1:8002'], { netns: ns, ready: /listening/ }));
  writeFileSync(join(work, 'peer.yml'), 'download:\n  directBelow: 0\n');
  const data = join(work, 'peer');
  procs.push(
    await spawnFerry(
      FERRY_BIN,
      [
        'peer',
        '--scheduler',
        'http://127.0.0.1:8002',
        '--data',
        data,
        '--proxy-listen',
        '127.0.0.1:65001',
        '--upload-listen',
        '127.0.0.1:65002',
        '--hijack',
        `^198\\.18\\.77\\.1:5443$`,
        '--upstream-ca',
        join(work, 'reg-ca.crt'),
        '--config',
        join(work, 'peer.yml'),
      ],
      { netns: ns, ready: /BEGIN CERTIFICATE[\s\S]*END CERTIFICATE/ },
    ),
  );
  assert.match(procs[1]!.output(), /HTTPS_PROXY=http:\/\/127\.0\.0\.1:65001/);

  const ctd = await startContainerd({ dir: join(work, 'ctd'), netns: ns });
  cleanups.push(() => ctd.stop());
  const env = { ...process.env, HTTPS_PROXY: 'http://127.0.0.1:65001', HTTP_PROXY: 'http://127.0.0.1:65001', NO_PROXY: '' };
  const r = await ctd.ctr(['images', 'pull', '--tlscacert', join(data, 'ca', 'ca.crt'), `${ip}:5443/library/tlsapp:v1`], {
    timeoutMs: 120_000,
    env,
  });
  assert.equal(r.code, 0, r.stderr);
  const m = await execInNetns(ns, 'curl', ['-sf', 'http://127.0.0.1:65001/metrics'], { timeoutMs: 5000 });
  const via = Number(/^ferry_peer_proxy_request_via_p2p_total (\d+)/m.exec(m.stdout)?.[1] ?? '0');
  const connects = Number(/^ferry_peer_proxy_request_total\{method="CONNECT"\} (\d+)/m.exec(m.stdout)?.[1] ?? '0');
  assert.ok(connects >= 1, 'containerd tunnelled through the proxy');
  assert.ok(
    via >= 2,
    `config + layer through P2P (got ${via})\n${m.stdout
      .split('\n')
      .filter((l) => l.startsWith('ferry_peer_'))
      .join('\n')}`,
  );
});
