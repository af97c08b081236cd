/**
 * `ferry scheduler`, `ferry peer`, `ferry get` on bad input: clear errors, non-zero exits, no data
 * written; and a plain run on loopback (peer prints its hosts.toml / HTTP_PROXY snippets).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FERRY_BIN } from '../support/paths.js';
import { runFerry, spawnFerry } from '../../src/p2p/testing/procs.js';
import { randomBlob, startOrigin } from '../../src/p2p/testing/origin.js';

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
  } finally { rmSync(dir, { recursive: true, force: true }); }
});

test('ferry peer prints its containerd snippets; ferry get downloads through it', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ferry-p2p-cli-'));
  const origin = await startOrigin();
  const peer = await spawnFerry(FERRY_BIN, ['peer', '--data', join(dir, 'data'), '--proxy-listen', '127.0.0.1:0', '--upload-listen', '127.0.0.1:0',
    '--registry-mirror', origin.url], { ready: /HTTPS_PROXY=/ });
  try {
    const out = peer.output();
    assert.match(out, new RegExp(`certs.d/${origin.host.replace(/\./g, '\\.')}/hosts.toml`));
    assert.match(out, /X-Dragonfly-Registry = "http:\/\/127\.0\.0\.1:\d+"/);
    const proxy = /proxy (http:\/\/127\.0\.0\.1:\d+)/.exec(out)![1]!;
    const blob = origin.addBlob('library/cli', randomBlob(5 * 1024 * 1024));
    const g = await runFerry(FERRY_BIN, ['get', blob.url, '-O', join(dir, 'blob'), '--peer', proxy]);
    assert.equal(g.code, 0, g.stderr);
    assert.equal(`sha256:${createHash('sha256').update(readFileSync(join(dir, 'blob'))).digest('hex')}`, blob.digest);
    const missing = await runFerry(FERRY_BIN, ['get', `${origin.url}/v2/library/cli/blobs/sha256:${'1'.repeat(64)}`, '-O', join(dir, 'nope'), '--peer', proxy]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /404/);
    assert.equal(existsSync(join(dir, 'nope')), false);
  } finally { await peer.stop(); await origin.close(); rmSync(dir, { recursive: true, force: true }); }
});
