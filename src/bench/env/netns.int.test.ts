import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { requirePrereqs } from '../../../test/support/prereq.js';
import { createStar, execInNetns, ifaceCounters, inNetns, parseRate, type Star } from './index.js';

describe('bench/env netns (real network namespaces, veth, bridge, tbf)', () => {
  let star: Star | undefined;
  const prefix = `t${randomBytes(3).toString('hex')}`;
  before(() => requirePrereqs({ root: true, commands: ['ip', 'tc', 'nsenter', 'curl'] }));
  after(async () => { await star?.destroy(); });

  it('parses tc rates', () => {
    assert.equal(parseRate('100mbit'), 100e6);
    assert.equal(parseRate('1gbit'), 1e9);
    assert.equal(parseRate('500kbit'), 500e3);
    assert.equal(parseRate('1mbps'), 8e6);
    assert.throws(() => parseRate('fast'), /invalid rate/);
  });

  it('connects nodes to a shaped registry namespace and counts bytes', async () => {
    star = await createStar({ prefix, nodes: 2, registryRate: '40mbit' });
    assert.equal(star.nodes.length, 2);
    assert.ok(existsSync(`/run/netns/${star.registry.netns}`));
    // a 3 MB HTTP response from the registry namespace to node 1
    const size = 3 * 1024 * 1024;
    const server = inNetns(star.registry.netns, process.execPath, ['-e', `
      const http = require('node:http');
      const body = Buffer.alloc(${size}, 7);
      const s = http.createServer((q, r) => { r.end(body); }).listen(8080, '${star.registry.ip}', () => console.log('up'));
    `], { stdio: ['ignore', 'pipe', 'inherit'] });
    try {
      await new Promise<void>((res, rej) => {
        server.stdout!.once('data', () => res());
        server.once('exit', (c) => rej(new Error(`server exited ${c}`)));
      });
      const before = await ifaceCounters(star.registry.dev, star.registry.netns);
      const t0 = Date.now();
      const r = await execInNetns(star.nodes[0]!.netns, 'curl', ['-sS', '-o', '/dev/null', '-w', '%{size_download}', `http://${star.registry.ip}:8080/`]);
      const ms = Date.now() - t0;
      assert.equal(r.code, 0, r.stderr);
      assert.equal(Number(r.stdout), size);
      const r2 = await execInNetns(star.nodes[1]!.netns, 'curl', ['-sS', '-o', '/dev/null', '-w', '%{size_download}', `http://${star.registry.ip}:8080/`]);
      assert.equal(Number(r2.stdout), size, r2.stderr);
      const afterC = await ifaceCounters(star.registry.dev, star.registry.netns);
      const tx = afterC.txBytes - before.txBytes;
      assert.ok(tx >= 2 * size && tx < 2 * size * 1.1, `tx bytes ${tx}`);
      // 3 MiB at 40 Mbit/s takes ≥ 0.6 s when the shaper works (unshaped veth: a few ms)
      assert.ok(ms > 450, `transfer took only ${ms} ms: shaping not applied`);
    } finally {
      server.kill('SIGKILL');
    }
    const names = [star.hub, star.registry.netns, ...star.nodes.map((n) => n.netns)];
    await star.destroy();
    star = undefined;
    for (const n of names) assert.equal(existsSync(`/run/netns/${n}`), false, n);
  });
});
