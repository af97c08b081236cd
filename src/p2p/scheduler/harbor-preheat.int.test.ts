/**
 * Harbor's Dragonfly provider, byte for byte: the body it POSTs to `/oapi/v1/jobs` is a marshalled
 * Go struct (goharbor/harbor src/pkg/p2p/preheat/provider/dragonfly.go), so unset fields arrive as
 * `""`, `0` and `null`; Harbor ≤ 2.12 names the scope `single_peer`, newer Harbor sends `""` when
 * the policy names none. Each exact body, with a pull token of a private repository in
 * `Authorization` as Harbor's enforcer makes it, runs to SUCCESS with the blobs on the seed peer.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { startPrivateRegistry, type PrivateRegistry } from '../../../test/support/private-registry.js';
import { startPeer, startScheduler, type PeerHandle, type SchedulerHandle } from '../index.js';
import { taskId } from '../common/index.js';

const SECRET = 'harbor-preheat-test-cluster-secret';
const PAT = 'harbor-provider-token';

let registry: PrivateRegistry;
let scheduler: SchedulerHandle;
let seed: PeerHandle;
let seedDir: string;

before(async () => {
  registry = await startPrivateRegistry();
  scheduler = await startScheduler({
    listen: '127.0.0.1:0',
    config: { cluster: { token: SECRET }, scheduling: { retryInterval: 100 }, preheat: { tokens: [PAT] } },
  });
  seedDir = mkdtempSync(join(tmpdir(), 'ferry-harbor-seed-'));
  seed = await startPeer({
    dataDir: seedDir,
    schedulers: [scheduler.url],
    seed: true,
    proxyListen: '127.0.0.1:0',
    uploadListen: '127.0.0.1:0',
    config: { cluster: { token: SECRET }, host: { hostname: 'seed' }, download: { directBelow: 0 } },
  });
  for (let i = 0; i < 250 && scheduler.service.hostsOf().length < 1; i++) await sleep(20);
  assert.equal(scheduler.service.hostsOf().length, 1, 'the seed announced itself');
});

after(async () => {
  await seed?.close();
  await scheduler?.close();
  await registry?.close();
  if (seedDir) rmSync(seedDir, { recursive: true, force: true });
});

/** The body exactly as Go's encoding/json writes Harbor's dragonflyCreateJobRequest. */
function harborBody(url: string, token: string, scope: string): string {
  return (
    `{"type":"preheat","args":{"type":"image","url":${JSON.stringify(url)},"tag":"","filtered_query_params":"",` +
    `"headers":{"Authorization":${JSON.stringify(`Bearer ${token}`)}},"scope":${JSON.stringify(scope)},` +
    `"concurrent_count":0,"timeout":0},"scheduler_cluster_ids":null}`
  );
}

async function runJob(body: string): Promise<{ state: string; job: unknown }> {
  const created = await fetch(`${scheduler.url}/oapi/v1/jobs`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${PAT}` },
    body,
  });
  const text = await created.text();
  assert.equal(created.status, 200, text);
  const { id, state } = JSON.parse(text) as { id: number; state: string };
  assert.equal(state, 'PENDING');
  // Harbor polls GET /oapi/v1/jobs/<id> until the state leaves PENDING (bounded here).
  for (let i = 0; i < 300; i++) {
    const r = await fetch(`${scheduler.url}/oapi/v1/jobs/${id}`, { headers: { authorization: `Bearer ${PAT}` } });
    const job = (await r.json()) as { state: string };
    if (job.state !== 'PENDING') return { state: job.state, job };
    await sleep(50);
  }
  assert.fail(`job ${id} still PENDING`);
}

for (const [harbor, scope] of [
  ['Harbor 2.12 (scope single_peer)', 'single_peer'],
  ['Harbor 2.13+ (policy without scope: "")', ''],
] as const) {
  test(`${harbor}: the exact provider body runs to SUCCESS and the private image is on the seed`, async () => {
    const img = await registry.push('secret/app', scope || 'noscope', [256 * 1024, 64 * 1024]);
    const token = await registry.pullToken('secret/app', registry.robotAuth);
    const url = `${registry.reg.url}/v2/secret/app/manifests/${img.tag}`;
    const { state, job } = await runJob(harborBody(url, token, scope));
    assert.equal(state, 'SUCCESS', JSON.stringify(job));
    const j = job as { scheduler_cluster_ids: number[]; args: { scope: string; headers: Record<string, string> } };
    assert.deepEqual(j.scheduler_cluster_ids, [1], 'null scheduler_cluster_ids = every cluster: this one');
    assert.equal(j.args.scope, 'single_seed_peer');
    assert.ok(!JSON.stringify(job).includes(token), 'the job answer does not carry the registry token');
    const blobUrls = [`${registry.reg.url}/v2/secret/app/blobs/${img.config.digest}`, ...img.layerUrls];
    for (const u of blobUrls) assert.ok(seed.store.get(taskId({ blobDigest: true, url: u }))?.complete, `${u} preheated on the seed`);
  });
}

test('the same body with a token of another repository fails (the registry refuses the seed), and says so', async () => {
  const img = await registry.push('secret/other', 'v1', [1024]);
  const token = await registry.pullToken('library/none', '');
  const { state, job } = await runJob(harborBody(`${registry.reg.url}/v2/secret/other/manifests/${img.tag}`, token, 'single_peer'));
  assert.equal(state, 'FAILURE');
  assert.match(JSON.stringify(job), /401|unauthori[sz]ed|UNAUTHENTICATED/i);
});

test('an unknown scope is still refused with 400 naming the field', async () => {
  const r = await fetch(`${scheduler.url}/oapi/v1/jobs`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${PAT}` },
    body: harborBody(`${registry.reg.url}/v2/secret/app/manifests/v1`, 'x', 'every_peer'),
  });
  assert.equal(r.status, 400);
  assert.match(await r.text(), /scope/);
});
