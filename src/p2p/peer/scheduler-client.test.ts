import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { PeerEvent } from '../common/index.js';
import { SchedulerClient } from './scheduler-client.js';

test('reports: events of one tick, and events reported while a request is in flight, go out together, in order', async () => {
  const bodies: PeerEvent[][] = [];
  const held: ServerResponse[] = [];
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      bodies.push((JSON.parse(Buffer.concat(chunks).toString()) as { events: PeerEvent[] }).events);
      held.push(res); // answered when the test says so
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const answer = (): void => {
    const res = held.shift()!;
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end('{}');
  };
  const until = async (cond: () => boolean): Promise<void> => {
    for (let i = 0; i < 500 && !cond(); i++) await new Promise((r) => setTimeout(r, 5));
    assert.ok(cond());
  };
  try {
    const c = new SchedulerClient(
      [url],
      { id: 'h', ip: '127.0.0.1', hostname: 'h', type: 'normal', uploadUrl: url },
      {
        timeoutMs: 5000,
        announceInterval: 60_000,
      },
    );
    const piece = (n: number): PeerEvent => ({
      kind: 'pieceBackToSourceFinished',
      piece: { number: n, length: 1, digest: 'crc32:0', costMs: 0 },
    });
    // one tick: one request
    const first = [c.report(url, 'p', [{ kind: 'backToSourceStarted' }]), c.report(url, 'p', [piece(0)])];
    await until(() => held.length === 1);
    // while it is unanswered, two more reports in separate ticks wait and go out as one request
    const second = c.report(url, 'p', [piece(1)]);
    await new Promise((r) => setImmediate(r));
    const third = c.report(url, 'p', [{ kind: 'backToSourceFinished' }]);
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(bodies.length, 1, 'nothing more sent while the first request is in flight');
    answer();
    await Promise.all(first);
    await until(() => held.length === 1);
    answer();
    await Promise.all([second, third]);
    assert.deepEqual(
      bodies.map((b) =>
        b.map((e) => (e.kind.startsWith('piece') ? `${e.kind}:${(e as { piece: { number: number } }).piece.number}` : e.kind)),
      ),
      [
        ['backToSourceStarted', 'pieceBackToSourceFinished:0'],
        ['pieceBackToSourceFinished:1', 'backToSourceFinished'],
      ],
    );
  } finally {
    for (const r of held) r.destroy();
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  }
});
