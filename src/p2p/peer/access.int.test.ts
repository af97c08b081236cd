/**
 * P2P that keeps the registry's access rules, against a real Ferry registry with a private project
 * and a pull-only robot. Node A holds a private blob; node B without a credential gets none of it
 * by any port (A's upload API: piece list, piece, download command; A's proxy; `ferry get` through
 * it; its own proxy); with the robot's token B gets it from A, the registry serving no blob byte.
 * Public blobs still flow to anyone. The decision cache (per credential and repository, TTL on an
 * injected clock) is checked on its own.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { FakeClock } from '../../../test/support/clock.js';
import { FERRY_BIN } from '../../../test/support/paths.js';
import { startPrivateRegistry, type PrivateRegistry, type PushedImage } from '../../../test/support/private-registry.js';
import { metricValue } from '../../observe/index.js';
import { ClusterAuth } from '../common/cluster-auth.js';
import { readAll, request } from '../common/http.js';
import { H, taskId } from '../common/index.js';
import { PeerClient, startPeer, startScheduler, type PeerHandle, type SchedulerHandle } from '../index.js';
import { AccessCheck } from './access.js';

const execFileP = promisify(execFile);
const MiB = 1024 * 1024;
const SECRET = 'access-test-cluster-secret';
const member = new ClusterAuth(SECRET);
const sha = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;

let registry: PrivateRegistry;
let priv: PushedImage;
let pub: PushedImage;
let token: string;

before(async () => {
  registry = await startPrivateRegistry();
  priv = await registry.push('secret/app', 'v1', [6 * MiB]);
  pub = await registry.push('library/pub', 'v1', [5 * MiB]);
  token = await registry.pullToken('secret/app', registry.robotAuth);
});
after(async () => {
  await registry?.close();
});

describe('the decision cache', () => {
  test('one registry HEAD per (credential, repository) and TTL; refusals cached too; a new credential is asked', async () => {
    const clock = new FakeClock();
    const access = new AccessCheck({ origin: {}, ttlMs: 30_000, clock });
    const [url] = priv.layerUrls as [string];
    await access.check(url, `Bearer ${token}`);
    assert.equal(access.asked, 2, 'anonymous (refused: private) then the credential (allowed)');
    await access.check(url, `Bearer ${token}`);
    await access.check(`${registry.reg.url}/v2/secret/app/blobs/${priv.config.digest}`, `Bearer ${token}`);
    assert.equal(access.asked, 2, 'the same repository within the TTL: from the cache');
    await assert.rejects(access.check(url, undefined), (e: Error) => /not public/.test(e.message));
    const other = await registry.pullToken('library/pub', '');
    await assert.rejects(access.check(url, `Bearer ${other}`), (e: Error) => /refused the requester's credential.*\(401\)/.test(e.message));
    assert.equal(access.asked, 3, 'another credential is asked about; the anonymous refusal came from the cache');
    await assert.rejects(access.check(url, `Bearer ${other}`));
    assert.equal(access.asked, 3, 'a refusal is cached');
    await clock.advance(30_001);
    await access.check(url, `Bearer ${token}`);
    assert.equal(access.asked, 5, 'after the TTL both decisions are asked again');
    await access.check(pub.layerUrls[0]!, undefined);
    await access.check(pub.layerUrls[0]!, `Bearer ${other}`);
    assert.equal(access.asked, 6, 'a public repository: one anonymous HEAD, for every credential');
  });
});

describe('two nodes', () => {
  let scheduler: SchedulerHandle;
  let a: PeerHandle;
  let b: PeerHandle;
  const dirs: string[] = [];
  const node = async (name: string): Promise<PeerHandle> => {
    const dir = mkdtempSync(join(tmpdir(), `ferry-access-${name}-`));
    dirs.push(dir);
    return startPeer({
      dataDir: dir,
      schedulers: [scheduler.url],
      proxyListen: '127.0.0.1:0',
      uploadListen: '127.0.0.1:0',
      config: {
        cluster: { token: SECRET },
        host: { hostname: name },
        download: { directBelow: 0 },
        proxy: { allowedHosts: [registry.reg.host] },
      },
    });
  };
  const get = async (peer: PeerHandle, url: string, headers: Record<string, string> = {}): Promise<{ status: number; body: Buffer }> => {
    try {
      const res = await new PeerClient(peer.proxyUrl).download(url, { headers });
      return { status: res.statusCode ?? 0, body: await readAll(res, 64 * MiB) };
    } catch (err) {
      // the client turns a refusal into an error naming the status
      const m = /answered (\d{3})/.exec((err as Error).message);
      if (!m) throw err;
      return { status: Number(m[1]), body: Buffer.alloc(0) };
    }
  };
  /** A request to A's upload API as another cluster member sends it (signed with the cluster secret). */
  const upload = async (path: string, opts: { headers?: Record<string, string>; method?: string; json?: unknown } = {}) => {
    const body = opts.json === undefined ? undefined : Buffer.from(JSON.stringify(opts.json));
    const res = await request(`${a.uploadUrl}${path}`, {
      method: opts.method ?? 'GET',
      headers: { ...(opts.headers ?? {}), ...(body ? { 'content-type': 'application/json' } : {}) },
      ...(body ? { body } : {}),
      auth: member,
    });
    return { status: res.status, text: (await readAll(res.body, 64 * MiB)).toString() };
  };
  const complete = async (peer: PeerHandle, url: string): Promise<void> => {
    for (let i = 0; i < 250 && !peer.store.get(taskId({ blobDigest: true, url }))?.meta.done; i++) await sleep(20);
    assert.ok(peer.store.get(taskId({ blobDigest: true, url }))?.complete, `${url} complete on the node`);
  };

  before(async () => {
    scheduler = await startScheduler({ listen: '127.0.0.1:0', config: { cluster: { token: SECRET }, scheduling: { retryInterval: 100 } } });
    a = await node('node-a');
    b = await node('node-b');
    for (let i = 0; i < 250 && scheduler.service.hostsOf().length < 2; i++) await sleep(20);
    assert.equal(scheduler.service.hostsOf().length, 2);
  });
  after(async () => {
    await b?.close();
    await a?.close();
    await scheduler?.close();
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  });

  test('A holds the private blob, fetched with the robot token through its proxy', async () => {
    const r = await get(a, priv.layerUrls[0]!, { authorization: `Bearer ${token}` });
    assert.equal(r.status, 200);
    assert.equal(sha(r.body), priv.layers[0]!.digest);
    await complete(a, priv.layerUrls[0]!);
  });

  test("without a credential B gets nothing of it from any of A's ports", async () => {
    const url = priv.layerUrls[0]!;
    const tid = taskId({ blobDigest: true, url });
    const q = `url=${encodeURIComponent(url)}`;
    const egress = await registry.blobBytesServed();
    // upload API (what B's download would use): piece list, piece bytes, a download command
    const list = await upload(`/api/v1/tasks/${tid}/pieces?${q}`);
    assert.equal(list.status, 403, list.text);
    assert.match(list.text, /not public/);
    assert.equal((await upload(`/api/v1/tasks/${tid}/pieces/0?${q}`)).status, 403);
    const anonToken = await registry.pullToken('library/pub', '');
    const wrong = await upload(`/api/v1/tasks/${tid}/pieces/0?${q}`, { headers: { [H.originAuthorization]: `Bearer ${anonToken}` } });
    assert.equal(wrong.status, 403, 'a token for another repository');
    assert.match(wrong.text, /refused the requester's credential/);
    const cmd = await upload('/api/v1/tasks', { method: 'POST', json: { url, wait: true } });
    assert.equal(cmd.status, 403, cmd.text);
    // A's proxy (what `ferry get` and containerd on A use)
    assert.equal((await get(a, url)).status, 401);
    // `ferry get` through A's proxy
    const out = join(dirs[0]!, 'stolen.bin');
    // (asynchronously: A answers from this process)
    const cli = await execFileP(process.execPath, [FERRY_BIN, 'get', url, '-O', out, '--peer', a.proxyUrl.replace(/^http:\/\//, '')], {
      timeout: 60_000,
    }).then(
      () => assert.fail('ferry get succeeded'),
      (e: { code?: number; stderr?: string }) => e,
    );
    assert.equal(cli.code, 1, cli.stderr);
    assert.match(cli.stderr ?? '', /401/);
    assert.equal(existsSync(out), false);
    // and B's own proxy
    assert.equal((await get(b, url)).status, 401);
    assert.equal(b.store.get(tid), undefined);
    assert.equal(await metricValue(a.metrics, 'ferry_peer_upload_traffic_bytes_total'), 0, 'A uploaded no piece byte');
    assert.equal(await registry.blobBytesServed(), egress, 'nor did the registry serve any');
  });

  test('with the robot token B gets the private blob from A, not from the registry', async () => {
    const egress = await registry.blobBytesServed();
    const r = await get(b, priv.layerUrls[0]!, { authorization: `Bearer ${token}` });
    assert.equal(r.status, 200);
    assert.equal(sha(r.body), priv.layers[0]!.digest);
    await complete(b, priv.layerUrls[0]!);
    assert.equal(await registry.blobBytesServed(), egress, 'no blob byte from the registry');
    assert.equal(await metricValue(b.metrics, 'ferry_peer_download_traffic_bytes_total', { type: 'REMOTE_PEER' }), 6 * MiB);
    assert.equal(await metricValue(a.metrics, 'ferry_peer_upload_traffic_bytes_total'), 6 * MiB);
  });

  test('one blob in two repositories is one task (blob-digest ids, the default): the registry serves it once; access stays per repository', async () => {
    const img = await registry.push('secret/shared', 'v1', [3 * MiB]);
    const layer = img.layers[0]!;
    await registry.reg.pushBlob('library/mirror', layer.data);
    const privUrl = img.layerUrls[0]!;
    const pubUrl = `${registry.reg.url}/v2/library/mirror/blobs/${layer.digest}`;
    const tid = taskId({ url: privUrl, blobDigest: true });
    assert.equal(taskId({ url: pubUrl, blobDigest: true }), tid);
    const egress = await registry.blobBytesServed();
    // A pulls it from the private repository with the robot's token, B from the public one without any
    const tok = await registry.pullToken('secret/shared', registry.robotAuth);
    assert.equal(sha((await get(a, privUrl, { authorization: `Bearer ${tok}` })).body), layer.digest);
    for (let i = 0; i < 250 && !a.store.get(tid)?.meta.done; i++) await sleep(20);
    assert.equal(sha((await get(b, pubUrl)).body), layer.digest);
    assert.equal(await registry.blobBytesServed(), egress + 3 * MiB, 'the registry served the blob once');
    assert.ok(b.store.get(tid), "B holds it under the blob's task id");
    const t = scheduler.service.state.tasks.get(tid);
    assert.ok(t && t.peers.size >= 2, 'one scheduler task with both nodes');
    assert.equal(scheduler.service.state.tasks.has(taskId({ url: privUrl })), false);
    assert.equal(scheduler.service.state.tasks.has(taskId({ url: pubUrl })), false);
    // A holds the task (fetched through the private repository); asking for it as the public one is fine…
    const q = (u: string): string => `url=${encodeURIComponent(u)}`;
    assert.equal((await upload(`/api/v1/tasks/${tid}/pieces?${q(pubUrl)}`)).status, 200);
    // …but asking A for it as the private repository without access is refused
    const refused = await upload(`/api/v1/tasks/${tid}/pieces/0?${q(privUrl)}`);
    assert.equal(refused.status, 403, refused.text);
    assert.match(refused.text, /not public/);
    assert.equal((await get(b, privUrl)).status, 401, "B's proxy: the private repository's URL without a credential");
    // and a URL with the same digest on a registry A does not serve cannot stand in for it
    const elsewhere = await upload(`/api/v1/tasks/${tid}/pieces/0?${q(`http://127.0.0.1:9/v2/x/blobs/${layer.digest}`)}`);
    assert.equal(elsewhere.status, 403, elsewhere.text);
    assert.match(elsewhere.text, /not a registry this peer serves/);
  });

  test('a public blob still flows to B without any credential', async () => {
    const url = pub.layerUrls[0]!;
    assert.equal((await get(a, url)).status, 200);
    await complete(a, url);
    const egress = await registry.blobBytesServed();
    const r = await get(b, url);
    assert.equal(r.status, 200);
    assert.equal(sha(r.body), pub.layers[0]!.digest);
    assert.equal(await registry.blobBytesServed(), egress, 'served by A');
  });
});
