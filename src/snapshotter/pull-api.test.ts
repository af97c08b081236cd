/**
 * The pull API's wire behaviour (request checks, NDJSON progress, error codes, socket mode). The
 * pull itself against containerd is exercised end to end in test/e2e/lazy-pull.test.ts.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { request } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FerryError } from '../core/index.js';
import { servePullApi } from './pull-api.js';
import { requestPull, requestTrace } from './pull-api-client.js';
import type { PullRequestBody, PullResult } from './protocol.js';

function post(socketPath: string, path: string, body: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath, method: 'POST', path, headers: { 'content-type': 'application/json' } }, (res) => {
      let b = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        b += c;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: b }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

test('pull API: progress lines then the result; errors keep their code; bad requests are 400s', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ferry-pullapi-'));
  const seen: PullRequestBody[] = [];
  const result: PullResult = { name: 'r/x:1', manifestDigest: 'sha256:m', configDigest: 'sha256:c', layers: [], bytesFetched: 42, ms: 7 };
  const api = await servePullApi({
    path: join(dir, 'api.sock'),
    pull: async (body, progress) => {
      seen.push(body);
      if (body.ref === 'missing') throw new FerryError('NOT_FOUND', 'no such image');
      progress('resolved');
      progress('layer 1/1 remote');
      return result;
    },
  });
  try {
    assert.equal(statSync(api.path).mode & 0o777, 0o600);
    const lines: string[] = [];
    const r = await requestPull(api.path, { ref: 'r/x:1', address: '/run/containerd/containerd.sock', plainHttp: true }, (l) =>
      lines.push(l),
    );
    assert.deepEqual(r, result);
    assert.deepEqual(lines, ['resolved', 'layer 1/1 remote']);
    assert.deepEqual(seen[0], { ref: 'r/x:1', address: '/run/containerd/containerd.sock', plainHttp: true });

    await assert.rejects(
      requestPull(api.path, { ref: 'missing', address: '/c.sock' }),
      (e: unknown) => FerryError.hasCode(e, 'NOT_FOUND') && /no such image/.test((e as Error).message),
    );

    const bad = await post(api.path, '/api/v1/pull', JSON.stringify({ ref: '', address: 'relative.sock', plainHttp: 'yes', extra: 1 }));
    assert.equal(bad.status, 400);
    const e = JSON.parse(bad.body) as { code: string; message: string };
    assert.equal(e.code, 'INVALID_ARGUMENT');
    for (const word of ['ref', 'address', 'plainHttp', 'extra']) assert.match(e.message, new RegExp(word));
    assert.equal((await post(api.path, '/api/v1/pull', '{not json')).status, 400);
    assert.equal((await post(api.path, '/api/v1/other', '{}')).status, 404);
    assert.equal(seen.length, 2, 'rejected requests never reach the pull');
  } finally {
    await api.close();
    rmSync(dir, { recursive: true, force: true });
  }
  await assert.rejects(
    requestPull(join(dir, 'api.sock'), { ref: 'x', address: '/c.sock' }),
    (e: unknown) => FerryError.hasCode(e, 'UNAVAILABLE') && (e as { cause?: { code?: string } }).cause?.code === 'ENOENT',
  );
});

test('pull API: GET /api/v1/traces/{manifest} answers the trace, NOT_FOUND keeps its code, a snapshotter without lazy images says so', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'ferry-pullapi-'));
  const known = `sha256:${'a'.repeat(64)}`;
  const trace = { schemaVersion: 1 as const, blobs: ['b'.repeat(64)], chunks: [[0, 3]] as Array<[number, number]> };
  const api = await servePullApi({
    path: join(dir, 'api.sock'),
    pull: async () => {
      throw new FerryError('INTERNAL', 'unused');
    },
    trace: async (d) => {
      if (d !== known) throw new FerryError('NOT_FOUND', `no lazy image with manifest ${d}`);
      return trace;
    },
  });
  const bare = await servePullApi({
    path: join(dir, 'bare.sock'),
    pull: async () => {
      throw new FerryError('INTERNAL', 'unused');
    },
  });
  try {
    assert.deepEqual(await requestTrace(api.path, known), trace);
    await assert.rejects(
      requestTrace(api.path, `sha256:${'c'.repeat(64)}`),
      (e) => FerryError.hasCode(e, 'NOT_FOUND') && /no lazy image/.test((e as Error).message),
    );
    await assert.rejects(requestTrace(bare.path, known), (e) => FerryError.hasCode(e, 'FAILED_PRECONDITION'));
    await assert.rejects(requestTrace(join(dir, 'none.sock'), known), (e) => FerryError.hasCode(e, 'UNAVAILABLE'));
  } finally {
    await api.close();
    await bare.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
