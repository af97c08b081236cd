import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { PeerEvent } from '../common/index.js';
import { SchedulerClient } from './scheduler-client.js';

/** Each request as `peer:kind[:piece]` per event; `batch` = the scheduler has `POST /api/v1/events`. */
function reportServer(batch: boolean) {
  const bodies: string[][] = [];
  const paths: string[] = [];
  const held: ServerResponse[] = [];
  const label = (peer: string, e: PeerEvent): string =>
    `${peer}:${e.kind.startsWith('piece') ? `${e.kind}:${(e as { piece: { number: number } }).piece.number}` : e.kind}`;
  const server = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const path = req.url ?? '';
      if (path === '/api/v1/events' && !batch) {
        res.writeHead(404, { 'content-type': 'application/json' });
        res.end('{"code":"NOT_FOUND","message":"no route"}');
        return;
      }
      paths.push(path);
      const body = JSON.parse(Buffer.concat(chunks).toString()) as {
        reports?: { peerId: string; events: PeerEvent[] }[];
        events?: PeerEvent[];
      };
      const single = /^\/api\/v1\/peers\/([^/]+)\/events$/.exec(path)?.[1];
      const reports = body.reports ?? [{ peerId: single ?? '?', events: body.events ?? [] }];
      bodies.push(reports.flatMap((r) => r.events.map((e) => label(r.peerId, e))));
      held.push(res); // answered when the test says so
    });
  });
  return { server, bodies, paths, held };
}

test('reports: events of one tick, and events of every peer reported while a request is in flight, go out together, each peer in order', async () => {
  const { server, bodies, paths, held } = reportServer(true);
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
    // while it is unanswered, more reports — of this peer and another — in separate ticks wait and go out as one request
    const second = c.report(url, 'p', [piece(1)]);
    await new Promise((r) => setImmediate(r));
    const other = c.report(url, 'q', [piece(0), { kind: 'backToSourceFinished' }]);
    await new Promise((r) => setImmediate(r));
    const third = c.report(url, 'p', [{ kind: 'backToSourceFinished' }]);
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(bodies.length, 1, 'nothing more sent while the first request is in flight');
    answer();
    await Promise.all(first);
    await until(() => held.length === 1);
    answer();
    await Promise.all([second, third, other]);
    assert.deepEqual(bodies, [
      ['p:backToSourceStarted', 'p:pieceBackToSourceFinished:0'],
      ['p:pieceBackToSourceFinished:1', 'p:backToSourceFinished', 'q:pieceBackToSourceFinished:0', 'q:backToSourceFinished'],
    ]);
    assert.deepEqual(paths, ['/api/v1/events', '/api/v1/events'], 'the batch call');
  } finally {
    for (const r of held) r.destroy();
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  }
});

test('reports to a scheduler without the batch call: one request per peer, in order', async () => {
  const { server, bodies, paths, held } = reportServer(false);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  try {
    const c = new SchedulerClient(
      [url],
      { id: 'h', ip: '127.0.0.1', hostname: 'h', type: 'normal', uploadUrl: url },
      {
        timeoutMs: 5000,
        announceInterval: 60_000,
      },
    );
    const sent = [c.report(url, 'p', [{ kind: 'backToSourceStarted' }]), c.report(url, 'q', [{ kind: 'backToSourceFinished' }])];
    for (let i = 0; i < 2; i++) {
      for (let k = 0; k < 500 && held.length === 0; k++) await new Promise((r) => setTimeout(r, 5));
      const res = held.shift()!;
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end('{}');
    }
    await Promise.all(sent);
    assert.deepEqual(bodies, [['p:backToSourceStarted'], ['q:backToSourceFinished']]);
    assert.deepEqual(paths, ['/api/v1/peers/p/events', '/api/v1/peers/q/events']);
  } finally {
    for (const r of held) r.destroy();
    server.closeAllConnections();
    await new Promise<void>((r) => server.close(() => r()));
  }
});
