import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { requirePrereqs } from '../../../test/support/prereq.js';
import { createStar, execCheck, execInNetns, ifaceCounters, inNetns, parseRate, type Star } from './index.js';

describe('bench/env netns (real network namespaces, veth, bridge, tbf)', () => {
  let star: Star | undefined;
  const prefix = `t${randomBytes(3).toString('hex')}`;
  before(() => requirePrereqs({ root: true, commands: ['ip', 'tc', 'nsenter', 'curl'] }));
  after(async () => {
    await star?.destroy();
  });

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
    const server = inNetns(
      star.registry.netns,
      process.execPath,
      [
        '-e',
        `
      const http = require('node:http');
      const body = Buffer.alloc(${size}, 7);
      const s = http.createServer((q, r) => { r.end(body); }).listen(8080, '${star.registry.ip}', () => console.log('up'));
    `,
      ],
      { stdio: ['ignore', 'pipe', 'inherit'] },
    );
    try {
      await new Promise<void>((res, rej) => {
        server.stdout!.once('data', () => res());
        server.once('exit', (c) => rej(new Error(`server exited ${c}`)));
      });
      const before = await ifaceCounters(star.registry.dev, star.registry.netns);
      /** The shaper on the registry's uplink and its counters (tc -s). */
      const qdisc = async (): Promise<{ kind: string; options: { rate: number }; bytes: number; overlimits: number }> =>
        (
          JSON.parse(await execCheck('tc', ['-n', star!.registry.netns, '-s', '-j', 'qdisc', 'show', 'dev', star!.registry.dev])) as Array<{
            kind: string;
            options: { rate: number };
            bytes: number;
            overlimits: number;
          }>
        )[0]!;
      const q0 = await qdisc();
      assert.equal(q0.kind, 'tbf');
      assert.equal(q0.options.rate * 8, 40e6, 'tbf at 40 Mbit/s');
      const r = await execInNetns(star.nodes[0]!.netns, 'curl', [
        '-sS',
        '-o',
        '/dev/null',
        '-w',
        '%{size_download}',
        `http://${star.registry.ip}:8080/`,
      ]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(Number(r.stdout), size);
      const r2 = await execInNetns(star.nodes[1]!.netns, 'curl', [
        '-sS',
        '-o',
        '/dev/null',
        '-w',
        '%{size_download}',
        `http://${star.registry.ip}:8080/`,
      ]);
      assert.equal(Number(r2.stdout), size, r2.stderr);
      const afterC = await ifaceCounters(star.registry.dev, star.registry.netns);
      const tx = afterC.txBytes - before.txBytes;
      assert.ok(tx >= 2 * size && tx < 2 * size * 1.1, `tx bytes ${tx}`);
      // The shaper acted on this traffic (its state, not the transfer's duration): every byte went
      // through the tbf, and packets had to wait for tokens (a 3 MiB burst cannot pass a 64 KiB bucket).
      const q1 = await qdisc();
      assert.ok(q1.bytes - q0.bytes >= 2 * size, `tbf passed ${q1.bytes - q0.bytes} bytes`);
      assert.ok(q1.overlimits > q0.overlimits, 'tbf throttled the transfer (overlimits counted)');
    } finally {
      server.kill('SIGKILL');
    }
    const names = [star.hub, star.registry.netns, ...star.nodes.map((n) => n.netns)];
    await star.destroy();
    star = undefined;
    for (const n of names) assert.equal(existsSync(`/run/netns/${n}`), false, n);
  });
});
