/**
 * Faults: kill -9 of a registry process in the middle of pushes leaves no corrupt blob and no
 * manifest pointing at a missing blob; a digest mismatch leaves no file behind; the restarted
 * registry serves everything it acknowledged.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { listeningUrl } from '../support/ferry.js';
import { FERRY_BIN } from '../support/paths.js';
import { basic, makeImage, sha256 } from '../../src/registry/testing/client.js';

const PW = 'Fault1Secret';
const AUTH = basic('admin', PW);
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';

const children: ChildProcess[] = [];

async function startChild(dataDir: string): Promise<{ child: ChildProcess; url: string }> {
  const child = spawn(process.execPath, [FERRY_BIN, 'registry', '--listen', '127.0.0.1:0', '--data', dataDir, '--admin-password', PW], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, FERRY_LOG_LEVEL: 'warn' },
  });
  children.push(child);
  const url = await listeningUrl(child, { what: 'registry', timeoutMs: 20_000 });
  child.stderr!.resume();
  return { child, url };
}

async function fileDigest(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const c of createReadStream(path)) h.update(c as Buffer);
  return `sha256:${h.digest('hex')}`;
}

/** Every committed blob file hashes to its name. */
async function checkBlobFiles(dataDir: string): Promise<number> {
  const root = join(dataDir, 'blobs', 'sha256');
  let n = 0;
  for (const pre of await readdir(root).catch(() => [] as string[])) {
    for (const hex of await readdir(join(root, pre))) {
      assert.equal(await fileDigest(join(root, pre, hex)), `sha256:${hex}`, `blob file ${hex} is intact`);
      n++;
    }
  }
  return n;
}

describe('registry under faults', () => {
  let work: string;
  let child: ChildProcess | undefined;
  before(async () => {
    work = await mkdtemp(join(tmpdir(), 'ferry-reg-fault-'));
  });
  after(async () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    await rm(work, { recursive: true, force: true });
  });

  it('kill -9 during pushes leaves only intact blobs and complete manifests', async () => {
    const dataDir = join(work, 'data');
    const started = await startChild(dataDir);
    child = started.child;
    const url = started.url;
    const acked: Array<{ repo: string; tag: string; digest: string }> = [];
    let stop = false;
    // Requests fail once the registry is killed; a failure before that is the test's failure.
    let killed = false;
    const afterKillOnly = (err: unknown): void => {
      if (!killed) throw err;
    };
    const big = randomBytes(8 * 1024 * 1024);
    const bigDigest = sha256(big);

    // A slow chunked upload of a large blob that will be cut off.
    let sessionUrl: string | undefined;
    let ackedBytes = 0;
    const slow = (async () => {
      const r = await fetch(`${url}/v2/library/big/blobs/uploads/`, { method: 'POST', headers: { authorization: AUTH } });
      assert.equal(r.status, 202, 'upload session opened');
      sessionUrl = new URL(r.headers.get('location')!, url).href;
      const chunk = 64 * 1024;
      while (!stop && ackedBytes < big.length) {
        const body = big.subarray(ackedBytes, ackedBytes + chunk);
        const p = await fetch(sessionUrl, {
          method: 'PATCH',
          body,
          headers: { authorization: AUTH, 'content-range': `${ackedBytes}-${ackedBytes + body.length - 1}` },
        });
        assert.equal(p.status, 202, `PATCH at ${ackedBytes}`);
        ackedBytes += body.length;
        await new Promise((res) => setTimeout(res, 25));
      }
    })().catch(afterKillOnly);

    // Several writers pushing small images in a loop.
    const writers = Array.from({ length: 4 }, (_, w) =>
      (async () => {
        for (let i = 0; !stop && i < 500; i++) {
          const img = makeImage(`fault-${w}-${i}-${Math.random()}`);
          const repo = `library/w${w}`;
          for (const data of [img.config, img.layer]) {
            const d = sha256(data);
            const r = await fetch(`${url}/v2/${repo}/blobs/uploads/?digest=${d}`, {
              method: 'POST',
              body: data,
              headers: { authorization: AUTH },
            });
            if (r.status !== 201) throw new Error(`blob push ${r.status}`);
          }
          const m = await fetch(`${url}/v2/${repo}/manifests/t${i}`, {
            method: 'PUT',
            body: img.manifest,
            headers: { authorization: AUTH, 'content-type': OCI_MANIFEST },
          });
          if (m.status !== 201) throw new Error(`manifest push ${m.status}`);
          acked.push({ repo, tag: `t${i}`, digest: img.digest });
        }
      })().catch(afterKillOnly),
    );

    // Kill once pushes are flowing (bounded wait), in the middle of whatever is in flight.
    for (let i = 0; i < 200 && (acked.length < 5 || ackedBytes === 0); i++) await new Promise((res) => setTimeout(res, 50));
    await new Promise((res) => setTimeout(res, 150));
    killed = true;
    child.kill('SIGKILL');
    await new Promise((res) => child!.once('exit', res));
    stop = true;
    await slow;
    await Promise.all(writers);
    assert.ok(acked.length > 0, 'some pushes were acknowledged before the kill');
    assert.ok(
      sessionUrl && ackedBytes > 0 && ackedBytes < big.length,
      `the large upload was cut off midway (${ackedBytes} bytes acknowledged)`,
    );

    const files = await checkBlobFiles(dataDir);
    assert.ok(files >= acked.length);

    const restarted = await startChild(dataDir);
    child = restarted.child;
    const url2 = restarted.url;
    // Everything acknowledged is there, byte-exact, and every manifest's blobs exist.
    for (const a of acked) {
      const r = await fetch(`${url2}/v2/${a.repo}/manifests/${a.tag}`, { headers: { authorization: AUTH } });
      assert.equal(r.status, 200, `${a.repo}:${a.tag}`);
      assert.equal(sha256(Buffer.from(await r.arrayBuffer())), a.digest);
    }
    const cat = (await (await fetch(`${url2}/v2/_catalog`, { headers: { authorization: AUTH } })).json()) as { repositories: string[] };
    for (const repo of cat.repositories) {
      const tags = (await (await fetch(`${url2}/v2/${repo}/tags/list`, { headers: { authorization: AUTH } })).json()) as { tags: string[] };
      for (const t of tags.tags) {
        const m = (await (await fetch(`${url2}/v2/${repo}/manifests/${t}`, { headers: { authorization: AUTH } })).json()) as {
          config: { digest: string };
          layers: Array<{ digest: string }>;
        };
        for (const d of [m.config.digest, ...m.layers.map((l) => l.digest)]) {
          const b = await fetch(`${url2}/v2/${repo}/blobs/${d}`, { headers: { authorization: AUTH } });
          assert.equal(b.status, 200);
          assert.equal(sha256(Buffer.from(await b.arrayBuffer())), d);
        }
      }
    }
    // The cut-off large blob is not visible, and finishing its session with the digest cannot
    // produce a corrupt blob: either the bytes are complete or it is DIGEST_INVALID.
    assert.equal(
      (await fetch(`${url2}/v2/library/big/blobs/${bigDigest}`, { method: 'HEAD', headers: { authorization: AUTH } })).status,
      404,
    );
    // The session survived the kill (an upload is a file in uploads/) with at least every
    // acknowledged byte; closing it with the digest cannot produce a corrupt blob.
    const rel = new URL(sessionUrl).pathname;
    const s = await fetch(`${url2}${rel}`, { headers: { authorization: AUTH } });
    assert.equal(s.status, 204, 'the upload session is still there after the restart');
    const got = Number(s.headers.get('range')!.split('-')[1]) + 1;
    assert.ok(got >= ackedBytes && got <= big.length, `session holds ${got} bytes, ${ackedBytes} were acknowledged`);
    const fin = await fetch(`${url2}${rel}?digest=${bigDigest}`, { method: 'PUT', headers: { authorization: AUTH } });
    // Complete bytes commit; partial ones are DIGEST_INVALID: never a corrupt blob.
    assert.equal(fin.status, got === big.length ? 201 : 400);
    assert.equal(
      (await fetch(`${url2}/v2/library/big/blobs/${bigDigest}`, { method: 'HEAD', headers: { authorization: AUTH } })).status,
      got === big.length ? 200 : 404,
      'a partial upload closed with the digest left no blob',
    );
    if (got < big.length) {
      const r = await fetch(`${url2}/v2/library/big/blobs/uploads/?digest=${bigDigest}`, {
        method: 'POST',
        body: big,
        headers: { authorization: AUTH },
      });
      assert.equal(r.status, 201);
    }
    const g = await fetch(`${url2}/v2/library/big/blobs/${bigDigest}`, { headers: { authorization: AUTH } });
    assert.equal(sha256(Buffer.from(await g.arrayBuffer())), bigDigest);
    await checkBlobFiles(dataDir);
    child.kill('SIGTERM');
    await new Promise((res) => child!.once('exit', res));
  });

  it('a digest mismatch leaves no file in blobs/ or uploads/', async () => {
    const dataDir = join(work, 'data2');
    const started = await startChild(dataDir);
    child = started.child;
    const before = await checkBlobFiles(dataDir);
    const data = randomBytes(100_000);
    const r = await fetch(`${started.url}/v2/library/x/blobs/uploads/?digest=${sha256('other')}`, {
      method: 'POST',
      body: data,
      headers: { authorization: AUTH },
    });
    assert.equal(r.status, 400);
    assert.equal(((await r.json()) as { errors: Array<{ code: string }> }).errors[0]!.code, 'DIGEST_INVALID');
    assert.equal(await checkBlobFiles(dataDir), before);
    assert.deepEqual(await readdir(join(dataDir, 'uploads')), []);
    child.kill('SIGTERM');
    await new Promise((res) => child!.once('exit', res));
  });
});
