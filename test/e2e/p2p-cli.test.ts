/**
 * `ferry scheduler`, `ferry peer`, `ferry get` on bad input: clear errors, non-zero exits, no data
 * written; a network-reachable scheduler or peer without a cluster secret refuses to start; a
 * plain run on loopback (peer prints its hosts.toml / HTTP_PROXY snippets); `ferry get` checks
 * registry blobs against their digest (a lying registry → exit 1 naming it; a peer copy altered on
 * disk → the peer aborts, drops it, and the retry gets the right bytes).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, readSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FERRY_BIN } from '../support/paths.js';
import { runFerry, spawnFerry } from '../../src/p2p/testing/procs.js';
import { randomBlob, startOrigin } from '../../src/p2p/testing/origin.js';
import { pieceDigest, taskId } from '../../src/p2p/index.js';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';

test('p2p CLIs reject bad input clearly', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ferry-p2p-cli-'));
  try {
    writeFileSync(join(dir, 'bad.yaml'), 'proxy:\n  listne: 1\n');
    const p = await runFerry(FERRY_BIN, ['peer', '--data', dir, '--config', join(dir, 'bad.yaml')]);
    assert.equal(p.code, 1);
    assert.match(p.stderr, /peer config: .*listne/s);
    const s = await runFerry(FERRY_BIN, ['scheduler', '--listen', 'nonsense']);
    assert.equal(s.code, 1);
    assert.match(s.stderr, /host:port/);
    const g1 = await runFerry(FERRY_BIN, ['get', 'http://127.0.0.1:1/x', '-O', join(dir, 'out'), '-H', 'novalue']);
    assert.equal(g1.code, 2);
    const g2 = await runFerry(FERRY_BIN, ['get', 'http://127.0.0.1:1/x', '-O', join(dir, 'out'), '--peer', '127.0.0.1:1']);
    assert.equal(g2.code, 1);
    assert.match(g2.stderr, /peer 127\.0\.0\.1:1/);
    assert.equal(existsSync(join(dir, 'out')) || existsSync(join(dir, 'out.part')), false);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('ferry peer prints its containerd snippets (one per allowed registry, each accepted by the proxy); ferry get downloads through it', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ferry-p2p-cli-'));
  const origin = await startOrigin();
  const second = await startOrigin();
  writeFileSync(join(dir, 'peer.yaml'), 'proxy:\n  registryMirror:\n    nsScheme: http\n');
  const peer = await spawnFerry(
    FERRY_BIN,
    [
      'peer',
      '--data',
      join(dir, 'data'),
      '--proxy-listen',
      '127.0.0.1:0',
      '--upload-listen',
      '127.0.0.1:0',
      '--registry-mirror',
      origin.url,
      '--allow-host',
      second.host,
      '--config',
      join(dir, 'peer.yaml'),
    ],
    { ready: /HTTPS_PROXY=/ },
  );
  try {
    const out = peer.output();
    assert.match(out, new RegExp(`certs.d/${origin.host.replace(/\./g, '\\.')}/hosts.toml`));
    assert.match(out, new RegExp(`certs.d/${second.host.replace(/\./g, '\\.')}/hosts.toml`));
    assert.doesNotMatch(out, /_default/, 'no catch-all snippet: other registries would get 403');
    assert.match(out, /X-Dragonfly-Registry = "http:\/\/127\.0\.0\.1:\d+"/);
    const proxy = /proxy (http:\/\/127\.0\.0\.1:\d+)/.exec(out)![1]!;
    // What containerd does with each printed snippet (the header and ?ns=) is accepted by the proxy.
    const printed = [...out.matchAll(/X-Dragonfly-Registry = "([^"]+)"/g)].map((m) => m[1]!);
    assert.deepEqual(printed.sort(), [origin.url, second.url].sort());
    for (const reg of printed) {
      const ns = new URL(reg).host;
      const r = await fetch(`${proxy}/v2/?ns=${ns}`, { headers: { 'x-dragonfly-registry': reg } });
      assert.equal(r.status, 200, `${reg} through the printed snippet`);
      assert.equal((await fetch(`${proxy}/v2/?ns=${ns}`)).status, 200, `${ns} via ?ns= alone`);
    }
    assert.equal((await fetch(`${proxy}/v2/?ns=127.0.0.1:1`)).status, 403, 'a registry not printed is refused');
    const blob = origin.addBlob('library/cli', randomBlob(5 * 1024 * 1024));
    const g = await runFerry(FERRY_BIN, ['get', blob.url, '-O', join(dir, 'blob'), '--peer', proxy]);
    assert.equal(g.code, 0, g.stderr);
    assert.equal(
      `sha256:${createHash('sha256')
        .update(readFileSync(join(dir, 'blob')))
        .digest('hex')}`,
      blob.digest,
    );
    const missing = await runFerry(FERRY_BIN, [
      'get',
      `${origin.url}/v2/library/cli/blobs/sha256:${'1'.repeat(64)}`,
      '-O',
      join(dir, 'nope'),
      '--peer',
      proxy,
    ]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /404/);
    assert.equal(existsSync(join(dir, 'nope')), false);
  } finally {
    await peer.stop();
    await origin.close();
    await second.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

test('a scheduler or peer reachable from the network needs a cluster secret; the flag and the environment variable supply one', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ferry-p2p-cli-'));
  try {
    const p = await runFerry(FERRY_BIN, ['peer', '--data', dir, '--proxy-listen', '127.0.0.1:0', '--upload-listen', '0.0.0.0:0'], {
      env: { FERRY_CLUSTER_TOKEN: '' },
    });
    assert.equal(p.code, 1);
    assert.match(
      p.stderr,
      /no cluster secret is configured.*cluster\.tokenFile.*FERRY_CLUSTER_TOKEN.*--cluster-token-file.*--upload-listen 127\.0\.0\.1:0/s,
    );
    const s = await runFerry(FERRY_BIN, ['scheduler', '--listen', '0.0.0.0:0'], { env: { FERRY_CLUSTER_TOKEN: '' } });
    assert.equal(s.code, 1);
    assert.match(s.stderr, /no cluster secret is configured.*--listen 127\.0\.0\.1:0/s);
    // The secret's sources are read (a too-short one is refused, naming where it came from).
    writeFileSync(join(dir, 'token'), 'short\n', { mode: 0o600 });
    const f = await runFerry(FERRY_BIN, ['scheduler', '--listen', '0.0.0.0:0', '--cluster-token-file', join(dir, 'token')]);
    assert.equal(f.code, 1);
    assert.match(f.stderr, new RegExp(`cluster secret in ${join(dir, 'token').replace(/[.]/g, '\\.')} too short`));
    const e = await runFerry(FERRY_BIN, ['peer', '--data', dir, '--proxy-listen', '127.0.0.1:0', '--upload-listen', '0.0.0.0:0'], {
      env: { FERRY_CLUSTER_TOKEN: 'short' },
    });
    assert.equal(e.code, 1);
    assert.match(e.stderr, /cluster secret too short/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('ferry get checks registry blobs: a lying registry fails naming the digest; a peer copy altered on disk is dropped and fetched again', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ferry-p2p-cli-'));
  const origin = await startOrigin();
  const data = join(dir, 'data');
  const args = ['peer', '--data', data, '--proxy-listen', '127.0.0.1:0', '--upload-listen', '127.0.0.1:0', '--registry-mirror', origin.url];
  let peer = await spawnFerry(FERRY_BIN, args, { ready: /HTTPS_PROXY=/ });
  const proxyOf = (): string => /proxy (http:\/\/127\.0\.0\.1:\d+)/.exec(peer.output())![1]!;
  const shaOf = (f: string): string => `sha256:${createHash('sha256').update(readFileSync(f)).digest('hex')}`;
  try {
    // 1. A registry whose storage is corrupt: the bytes never match the digest.
    const good = randomBlob(9 * 1024 * 1024);
    const digest = `sha256:${createHash('sha256').update(good).digest('hex')}`;
    const bad = Buffer.from(good);
    bad[6 * 1024 * 1024] = bad[6 * 1024 * 1024]! ^ 0x80;
    const lie = origin.addBlobAs('library/lie', digest, bad);
    const g1 = await runFerry(FERRY_BIN, ['get', lie.url, '-O', join(dir, 'lie'), '--peer', proxyOf()]);
    assert.equal(g1.code, 1, g1.stderr);
    assert.match(g1.stderr, new RegExp(`blob ${digest} did not verify`));
    assert.equal(existsSync(join(dir, 'lie')) || existsSync(join(dir, 'lie.part')), false, 'no output file');
    // ferry get checks by itself: a "peer" that answers 200 with a complete body of other bytes.
    let asked = 0;
    const liar = createServer((_req, res) => {
      asked++;
      res.writeHead(200, { 'content-length': bad.length });
      res.end(bad);
    });
    await new Promise<void>((r) => liar.listen(0, '127.0.0.1', () => r()));
    try {
      const g = await runFerry(FERRY_BIN, [
        'get',
        lie.url,
        '-O',
        join(dir, 'lie'),
        '--peer',
        `127.0.0.1:${(liar.address() as AddressInfo).port}`,
      ]);
      assert.equal(g.code, 1, g.stderr);
      assert.match(g.stderr, new RegExp(`blob ${digest} did not verify: the bytes received hash to sha256:`));
      assert.equal(asked, 2, 'tried twice');
      assert.equal(existsSync(join(dir, 'lie')) || existsSync(join(dir, 'lie.part')), false, 'no output file');
    } finally {
      liar.close();
    }

    // 2. A good blob, fetched, then altered on disk with its crc32 rewritten to match (only the
    //    whole-blob digest can tell), and the peer restarted (so it loads the altered metadata).
    const blob = origin.addBlob('library/cli', randomBlob(9 * 1024 * 1024));
    const g2 = await runFerry(FERRY_BIN, ['get', blob.url, '-O', join(dir, 'one'), '--peer', proxyOf()]);
    assert.equal(g2.code, 0, g2.stderr);
    assert.equal(shaOf(join(dir, 'one')), blob.digest);
    await peer.stop();
    const id = taskId({ blobDigest: true, url: blob.url });
    const base = join(data, 'tasks', id.slice(0, 3), id);
    const fd = openSync(`${base}.data`, 'r+');
    const piece = Buffer.alloc(4 * 1024 * 1024);
    readSync(fd, piece, 0, piece.length, 4 * 1024 * 1024);
    piece[12345] = piece[12345]! ^ 0xff;
    writeSync(fd, piece, 0, piece.length, 4 * 1024 * 1024);
    closeSync(fd);
    const meta = JSON.parse(readFileSync(`${base}.json`, 'utf8')) as { done: boolean; pieces: Record<string, string> };
    assert.equal(meta.done, true);
    meta.pieces['1'] = pieceDigest(piece);
    writeFileSync(`${base}.json`, JSON.stringify(meta));
    peer = await spawnFerry(FERRY_BIN, args, { ready: /HTTPS_PROXY=/ });
    const before = origin.blobBytes();
    const g3 = await runFerry(FERRY_BIN, ['get', blob.url, '-O', join(dir, 'two'), '--peer', proxyOf()]);
    assert.equal(g3.code, 0, g3.stderr);
    assert.match(g3.stderr, /trying again/, 'the first transfer was aborted by the peer');
    assert.equal(shaOf(join(dir, 'two')), blob.digest);
    assert.ok(origin.blobBytes() - before >= blob.data.length, 'the dropped copy was fetched again');
  } finally {
    await peer.stop();
    await origin.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
