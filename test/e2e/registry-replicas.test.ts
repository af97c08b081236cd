/**
 * Two `ferry registry` processes on one PostgreSQL and one radosgw (both private, on loopback):
 * a chunked upload started on replica A continues on B; skopeo pushes via A and pulls via B (B
 * redirects blob GETs to presigned radosgw URLs) with identical digests; webhooks of pushes made
 * on both replicas are delivered once each; `ferry registry gc` collects orphans while B accepts
 * pushes, and no acknowledged manifest loses a blob; kill -9 of one replica mid-push loses nothing
 * the other acknowledged. Secrets reach the processes through the environment only.
 */
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED = 'true';

import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { listeningUrl } from '../support/ferry.js';
import { FERRY_BIN } from '../support/paths.js';
import { requirePrereqs } from '../support/prereq.js';
import { startPostgres, type PostgresInstance } from '../support/postgres.js';
import { startRadosgw, type RadosgwInstance } from '../support/ceph.js';
import { buildOciImage, busyboxRootfs, exec, pushImage, type BuiltImage } from '../../src/bench/env/index.js';
import { basic, makeImage, sha256 } from '../../src/registry/testing/client.js';

const PW = 'Replica1Secret';
const AUTH = basic('admin', PW);
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';

interface Replica {
  name: string;
  url: string;
  host: string;
  child: ChildProcess;
}

describe('registry replicas on PostgreSQL + S3', { timeout: 600_000 }, () => {
  let work: string;
  let db: PostgresInstance;
  let s3: RadosgwInstance;
  let a: Replica;
  let b: Replica;
  let img: BuiltImage;
  const children: ChildProcess[] = [];

  /** The environment carrying every secret (never a command line or the config file). */
  const secretEnv = (): NodeJS.ProcessEnv => ({
    ...process.env,
    FERRY_LOG_LEVEL: 'warn',
    FERRY_ADMIN_PASSWORD: PW,
    FERRY_REGISTRY_DB_PASSWORD: db.password,
    AWS_ACCESS_KEY_ID: s3.accessKeyId,
    AWS_SECRET_ACCESS_KEY: s3.secretAccessKey,
    AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED: 'true',
  });

  /** A config file for PG + S3 (`redirect` on for blob GETs when asked). */
  const configFile = async (name: string, redirect: boolean): Promise<string> => {
    const u = new URL(db.url);
    u.password = '';
    const path = join(work, `${name}.json`);
    const config = {
      database: { postgres: { url: u.toString(), password_env: 'FERRY_REGISTRY_DB_PASSWORD' } },
      storage: { s3: { bucket: s3.bucket, endpoint: s3.endpoint, region: s3.region, redirect } },
      tokenKey: join(work, 'token-key.jwk'),
      webhook: { backoff: '100ms', settleDelay: '1s', pollInterval: '50ms', timeout: '2s' },
    };
    await writeFile(path, JSON.stringify(config));
    return path;
  };

  const startReplica = async (name: string, redirect = false): Promise<Replica> => {
    const args = [
      FERRY_BIN,
      'registry',
      '--listen',
      '127.0.0.1:0',
      '--data',
      join(work, `data-${name}`),
      '--config',
      await configFile(name, redirect),
    ];
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], env: secretEnv() });
    children.push(child);
    let err = '';
    child.stderr!.on('data', (d: Buffer) => {
      err = (err + d.toString()).slice(-4000);
    });
    const url = await listeningUrl(child, { what: `replica ${name}`, timeoutMs: 60_000, stderrTail: () => err });
    return { name, url, host: new URL(url).host, child };
  };

  const req = (r: Replica, path: string, init: RequestInit = {}): Promise<Response> =>
    fetch(`${r.url}${path}`, {
      redirect: 'manual',
      ...init,
      headers: { authorization: AUTH, ...(init.headers as Record<string, string>) },
    });

  /** Uploads a blob in one POST (monolithic). */
  const putBlob = async (r: Replica, repo: string, data: Buffer): Promise<number> =>
    (
      await req(r, `/v2/${repo}/blobs/uploads/?digest=${sha256(data)}`, {
        method: 'POST',
        body: data,
        headers: { 'content-type': 'application/octet-stream' },
      })
    ).status;

  const putManifest = async (r: Replica, repo: string, ref: string, manifest: Buffer): Promise<number> =>
    (await req(r, `/v2/${repo}/manifests/${ref}`, { method: 'PUT', body: manifest, headers: { 'content-type': OCI_MANIFEST } })).status;

  /** The blob's bytes from `r`, following a redirect to the object store. */
  const getBlob = async (r: Replica, repo: string, digest: string): Promise<{ status: number; body: Buffer }> => {
    let res = await req(r, `/v2/${repo}/blobs/${digest}`);
    if (res.status === 307) res = await fetch(res.headers.get('location')!);
    return { status: res.status, body: Buffer.from(await res.arrayBuffer()) };
  };

  before(async () => {
    requirePrereqs({ root: true, commands: ['skopeo', 'busybox', 'tar'] });
    work = await mkdtemp(join(tmpdir(), 'ferry-replicas-'));
    [db, s3] = await Promise.all([startPostgres(), startRadosgw({ bucket: 'registry' })]);
    // started together: the schema is migrated once, one token key wins
    [a, b] = await Promise.all([startReplica('a'), startReplica('b', true)]);
    await busyboxRootfs(join(work, 'rootfs'));
    img = await buildOciImage({ layers: [join(work, 'rootfs')], outDir: join(work, 'layout'), config: { Cmd: ['/bin/sh'] } });
  });
  after(async () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    await s3?.stop();
    await db?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('a chunked upload started on A continues on B; the blob is invisible until committed, then served by both', async () => {
    const data = randomBytes(6 * 1024 * 1024 + 123);
    const digest = sha256(data);
    const start = await req(a, '/v2/library/chunked/blobs/uploads/', { method: 'POST' });
    assert.equal(start.status, 202);
    const location = start.headers.get('location')!;
    const cut = [0, 2 * 1024 * 1024, 5 * 1024 * 1024, data.length];
    const replicas = [a, b, a];
    for (let i = 0; i < 3; i++) {
      const chunk = data.subarray(cut[i], cut[i + 1]);
      const p = await fetch(new URL(location, replicas[i]!.url), {
        method: 'PATCH',
        body: chunk,
        headers: { authorization: AUTH, 'content-range': `${cut[i]}-${cut[i + 1]! - 1}`, 'content-type': 'application/octet-stream' },
      });
      assert.equal(p.status, 202, `chunk ${i} on ${replicas[i]!.name}: ${await p.text()}`);
      assert.equal(p.headers.get('range'), `0-${cut[i + 1]! - 1}`);
    }
    const status = await fetch(new URL(location, b.url), { headers: { authorization: AUTH } });
    assert.equal(status.status, 204);
    assert.equal(status.headers.get('range'), `0-${data.length - 1}`, 'B reports the size A and B wrote');
    assert.equal((await req(a, `/v2/library/chunked/blobs/${digest}`, { method: 'HEAD' })).status, 404, 'not a blob before the commit');
    const done = await fetch(new URL(`${location}${location.includes('?') ? '&' : '?'}digest=${digest}`, b.url), {
      method: 'PUT',
      headers: { authorization: AUTH },
    });
    assert.equal(done.status, 201, await done.text());
    const fromA = await getBlob(a, 'library/chunked', digest);
    assert.equal(fromA.status, 200);
    assert.equal(sha256(fromA.body), digest);
    const ranged = await req(a, `/v2/library/chunked/blobs/${digest}`, { headers: { range: 'bytes=100-199' } });
    assert.equal(ranged.status, 206);
    assert.deepEqual(Buffer.from(await ranged.arrayBuffer()), data.subarray(100, 200));
    const viaB = await req(b, `/v2/library/chunked/blobs/${digest}`);
    assert.equal(viaB.status, 307, 'B redirects blob GETs to the object store');
    assert.ok(viaB.headers.get('location')!.startsWith(s3.endpoint));
  });

  it('a token issued by A is accepted by B (one signing key shared by the replicas)', async () => {
    const t = await req(a, '/service/token?service=harbor-registry&scope=repository:library/chunked:pull');
    assert.equal(t.status, 200);
    const { token } = (await t.json()) as { token: string };
    const viaB = await fetch(`${b.url}/v2/library/chunked/tags/list`, { headers: { authorization: `Bearer ${token}` } });
    assert.notEqual(viaB.status, 401, "B verifies A's token");
  });

  it('skopeo pushes via A and pulls via B (through presigned redirects), and back: digests identical', async () => {
    const pushed = await pushImage(img.layoutDir, `${a.host}/library/busybox:v1`, { creds: `admin:${PW}` });
    assert.equal(pushed, img.manifestDigest);
    const out = join(work, 'pulled');
    const r = await exec(
      'skopeo',
      ['copy', '--src-tls-verify=false', `--src-creds=admin:${PW}`, `docker://${b.host}/library/busybox:v1`, `dir:${out}`],
      { timeoutMs: 120_000, env: { ...process.env } },
    );
    assert.equal(r.code, 0, r.stderr);
    assert.equal(sha256(await readFile(join(out, 'manifest.json'))), img.manifestDigest);
    for (const l of img.layers) assert.equal(sha256(await readFile(join(out, l.digest.slice('sha256:'.length)))), l.digest);
    // and the other way round: push via B, pull via A
    assert.equal(await pushImage(img.layoutDir, `${b.host}/library/busybox:v2`, { creds: `admin:${PW}` }), img.manifestDigest);
    const back = join(work, 'pulled-back');
    const r2 = await exec(
      'skopeo',
      ['copy', '--src-tls-verify=false', `--src-creds=admin:${PW}`, `docker://${a.host}/library/busybox:v2`, `dir:${back}`],
      {
        timeoutMs: 120_000,
      },
    );
    assert.equal(r2.code, 0, r2.stderr);
    assert.equal(sha256(await readFile(join(back, 'manifest.json'))), img.manifestDigest);
  });

  it('webhooks of pushes on both replicas are delivered once each', async () => {
    const seen: string[] = [];
    const hooks: Server = createServer((rq, rs) => {
      let body = '';
      rq.on('data', (c: Buffer) => {
        body += c.toString();
      });
      rq.on('end', () => {
        const p = JSON.parse(body) as { event_data: { resources: Array<{ tag: string }> } };
        seen.push(p.event_data.resources[0]!.tag);
        rs.end();
      });
    });
    await new Promise<void>((res) => hooks.listen(0, '127.0.0.1', res));
    try {
      const policy = await req(a, '/api/v2.0/projects/library/webhook/policies', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({
          name: 'once',
          enabled: true,
          event_types: ['PUSH_ARTIFACT'],
          targets: [{ type: 'http', address: `http://127.0.0.1:${(hooks.address() as AddressInfo).port}/hook`, payload_format: 'Default' }],
        }),
      });
      assert.equal(policy.status, 201, await policy.text());
      const pid = policy.headers.get('location')!.split('/').pop();
      // blobs first, then all manifests at once on both replicas: both dispatchers claim together
      const images = Array.from({ length: 24 }, (_, i) => ({ r: i % 2 === 0 ? a : b, im: makeImage(`hook-${i}`), tag: `t${i}` }));
      for (const { r, im } of images) {
        assert.equal(await putBlob(r, 'library/hooks', im.config), 201);
        assert.equal(await putBlob(r, 'library/hooks', im.layer), 201);
      }
      const statuses = await Promise.all(images.map(({ r, im, tag }) => putManifest(r, 'library/hooks', tag, im.manifest)));
      assert.deepEqual(new Set(statuses), new Set([201]));
      const tags = images.map((x) => x.tag);
      // final state: no delivery Pending or Running (bounded), then count what the receiver got
      let list: Array<{ status: string }> = [];
      for (let i = 0; i < 600; i++) {
        list = (await (await req(b, `/api/v2.0/projects/library/webhook/policies/${pid}/executions`)).json()) as Array<{ status: string }>;
        if (list.length === tags.length && list.every((e) => e.status === 'Success')) break;
        await new Promise((res) => setTimeout(res, 50));
      }
      assert.deepEqual(
        list.map((e) => e.status),
        tags.map(() => 'Success'),
      );
      assert.deepEqual([...seen].sort(), [...tags].sort(), 'each push delivered exactly once');
    } finally {
      hooks.close();
    }
  });

  it('gc on the shared stores while B accepts pushes: orphans go, every acknowledged manifest keeps its blobs', async () => {
    const orphans = [randomBytes(1000), randomBytes(2000), randomBytes(3000)];
    for (const o of orphans) assert.equal(await putBlob(a, 'library/orphans', o), 201);
    const acked: Array<{ repo: string; tag: string; blobs: string[]; digest: string }> = [];
    let stop = false;
    let retries = 0;
    const pusher = (async () => {
      for (let i = 0; !stop && i < 300; i++) {
        const im = makeImage(`gc-${i}-${Math.random()}`);
        for (let attempt = 0; attempt < 3; attempt++) {
          assert.equal(await putBlob(b, 'library/busy', im.config), 201);
          assert.equal(await putBlob(b, 'library/busy', im.layer), 201);
          const st = await putManifest(b, 'library/busy', `g${i}`, im.manifest);
          if (st === 201) {
            acked.push({ repo: 'library/busy', tag: `g${i}`, blobs: [im.configDigest, im.layerDigest], digest: im.digest });
            break;
          }
          assert.equal(st, 400, 'only MANIFEST_BLOB_UNKNOWN is retried');
          retries++;
        }
      }
    })();
    const cfg = join(work, 'a.json');
    const gc = await exec(
      process.execPath,
      [FERRY_BIN, 'registry', 'gc', '--data', join(work, 'data-gc'), '--config', cfg, '--min-age', '0s'],
      {
        timeoutMs: 120_000,
        env: secretEnv(),
      },
    );
    stop = true;
    await pusher;
    assert.equal(gc.code, 0, gc.stderr);
    const report = JSON.parse(gc.stdout.trim().split('\n').pop()!) as { deleted: string[] };
    for (const o of orphans) assert.ok(report.deleted.includes(sha256(o)), `orphan ${sha256(o)} collected`);
    for (const o of orphans) assert.equal((await getBlob(a, 'library/orphans', sha256(o))).status, 404);
    assert.ok(acked.length > 0, 'pushes went on during gc');
    for (const m of acked) {
      const got = await req(a, `/v2/${m.repo}/manifests/${m.tag}`, { headers: { accept: OCI_MANIFEST } });
      assert.equal(got.status, 200);
      for (const d of m.blobs) {
        const blob = await getBlob(a, m.repo, d);
        assert.equal(blob.status, 200, `blob ${d} of ${m.tag} is still there`);
        assert.equal(sha256(blob.body), d);
      }
    }
    // the earlier image survives too
    assert.equal((await req(a, '/v2/library/busybox/manifests/v1', { method: 'HEAD', headers: { accept: OCI_MANIFEST } })).status, 200);
    process.stderr.write(
      `# gc deleted ${report.deleted.length} blobs while ${acked.length} images were pushed (${retries} manifest retries)\n`,
    );
  });

  it('kill -9 of replica A mid-push and mid-pull: B serves everything acknowledged, retried pushes and pulls succeed on B', async () => {
    const acked: Array<{ tag: string; digest: string; blobs: string[] }> = [];
    let killed = false;
    const writer = (async () => {
      for (let i = 0; i < 200 && !killed; i++) {
        const im = makeImage(`kill-${i}`);
        try {
          if ((await putBlob(a, 'library/kill', im.config)) !== 201) continue;
          if ((await putBlob(a, 'library/kill', im.layer)) !== 201) continue;
          if ((await putManifest(a, 'library/kill', `k${i}`, im.manifest)) === 201)
            acked.push({ tag: `k${i}`, digest: im.digest, blobs: [im.configDigest, im.layerDigest] });
        } catch {
          // the connection died with A; retried on B below
          const retry = async (): Promise<void> => {
            assert.equal(await putBlob(b, 'library/kill', im.config), 201);
            assert.equal(await putBlob(b, 'library/kill', im.layer), 201);
            assert.equal(await putManifest(b, 'library/kill', `k${i}`, im.manifest), 201);
            acked.push({ tag: `k${i}`, digest: im.digest, blobs: [im.configDigest, im.layerDigest] });
          };
          await retry();
          return;
        }
      }
    })();
    // a reader pulls what was acknowledged, from A while it lives, then (retrying) from B
    let reads = 0;
    const reader = (async () => {
      for (let i = 0; i < 2000 && !(killed && reads > 20); i++) {
        const m = acked[i % Math.max(1, acked.length)];
        if (!m) {
          await new Promise((res) => setTimeout(res, 5));
          continue;
        }
        const got: { status: number; body: Buffer } = await getBlob(killed ? b : a, 'library/kill', m.blobs[1]!).catch(() =>
          getBlob(b, 'library/kill', m.blobs[1]!),
        );
        assert.equal(got.status, 200);
        assert.equal(sha256(got.body), m.blobs[1], 'a pulled blob is whole');
        reads++;
      }
    })();
    for (let i = 0; i < 400 && acked.length < 5; i++) await new Promise((res) => setTimeout(res, 10));
    a.child.kill('SIGKILL');
    killed = true;
    await writer;
    await reader;
    assert.ok(reads > 20, `pulls went on across the kill (${reads})`);
    assert.ok(acked.length >= 5);
    for (const m of acked) {
      const got = await req(b, `/v2/library/kill/manifests/${m.tag}`, { headers: { accept: OCI_MANIFEST } });
      assert.equal(got.status, 200, `acknowledged ${m.tag} served by B`);
      assert.equal(
        createHash('sha256')
          .update(Buffer.from(await got.arrayBuffer()))
          .digest('hex'),
        m.digest.slice(7),
      );
      for (const d of m.blobs) {
        const blob = await getBlob(b, 'library/kill', d);
        assert.equal(blob.status, 200);
        assert.equal(sha256(blob.body), d, 'no half-written blob is served');
      }
    }
  });
});
