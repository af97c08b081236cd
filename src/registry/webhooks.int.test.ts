/**
 * Webhooks end to end: policies through the Harbor API, the "Default" payload, the Auth Header,
 * retries with backoff and the delivery log (on a fake clock: the dispatcher's waits are checked,
 * not waited for), one event per index push, and a delivery that survives a registry restart
 * (durable outbox). "Nothing more is sent" is checked once every delivery is in a final state
 * (Success, Error, Stopped), never by sleeping and counting.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startTestRegistry, makeImage, sha256, type TestRegistry } from './testing/client.js';
import { FakeClock } from '../../test/support/clock.js';

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
const OCI_INDEX = 'application/vnd.oci.image.index.v1+json';

interface Received {
  headers: Record<string, string | string[] | undefined>;
  body: Record<string, unknown>;
  at: number;
}

class Receiver {
  server: Server;
  received: Received[] = [];
  /** Status codes to answer, in order; then 200. */
  plan: number[] = [];
  url = '';
  constructor() {
    this.server = createServer((req, res) => {
      let text = '';
      req.setEncoding('utf8');
      req.on('data', (c: string) => {
        text += c;
      });
      req.on('end', () => {
        this.received.push({ headers: req.headers, body: JSON.parse(text) as Record<string, unknown>, at: Date.now() });
        res.writeHead(this.plan.shift() ?? 200);
        res.end();
      });
    });
  }
  async start(): Promise<void> {
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/hook`;
  }
  close(): Promise<void> {
    return new Promise((r) => this.server.close(() => r()));
  }
  async waitFor(n: number, timeoutMs = 10_000): Promise<void> {
    const end = Date.now() + timeoutMs;
    while (this.received.length < n) {
      if (Date.now() > end) throw new Error(`expected ${n} webhook requests, got ${this.received.length}`);
      await new Promise((r) => setTimeout(r, 20));
    }
  }
}

const FAST = { webhook: { backoff: '100ms', settleDelay: '1500ms', pollInterval: '50ms', timeout: '1s' } };

interface Execution {
  id: number;
  status: string;
  extra_attrs: { event_type: string; payload: string };
}

/** A policy's deliveries once none is Pending or Running any more (bounded wait): nothing more will be sent for them. */
async function settled(reg: TestRegistry, project: string, policyId: number): Promise<Execution[]> {
  let list: Execution[] = [];
  for (let i = 0; i < 400; i++) {
    list = (await (await reg.req(`/api/v2.0/projects/${project}/webhook/policies/${policyId}/executions`)).json()) as Execution[];
    if (list.every((e) => e.status !== 'Pending' && e.status !== 'Running')) return list;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`deliveries still open: ${JSON.stringify(list.map((e) => e.status))}`);
}

/** The resources of a delivery's payload. */
const resourcesOf = (e: Execution): Array<{ digest: string; tag: string }> =>
  (JSON.parse(e.extra_attrs.payload) as { event_data: { resources: Array<{ digest: string; tag: string }> } }).event_data.resources;

async function addPolicy(reg: TestRegistry, project: string, address: string, events: string[], authHeader?: string): Promise<number> {
  const r = await reg.req(`/api/v2.0/projects/${project}/webhook/policies`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      name: `p-${Math.random().toString(36).slice(2)}`,
      enabled: true,
      event_types: events,
      targets: [
        { type: 'http', address, ...(authHeader ? { auth_header: authHeader } : {}), skip_cert_verify: true, payload_format: 'Default' },
      ],
    }),
  });
  assert.equal(r.status, 201, await r.clone().text());
  return Number(r.headers.get('location')!.split('/').pop());
}

async function pushImage(reg: TestRegistry, repo: string, ref: string, seed: string): Promise<string> {
  const img = makeImage(seed);
  await reg.pushBlob(repo, img.config);
  await reg.pushBlob(repo, img.layer);
  const r = await reg.putManifest(repo, ref, img.manifest, OCI_MANIFEST);
  assert.equal(r.status, 201);
  return img.digest;
}

describe('webhooks', () => {
  let reg: TestRegistry;
  let rx: Receiver;
  let libraryPolicy: number;
  before(async () => {
    rx = new Receiver();
    await rx.start();
    reg = await startTestRegistry({ config: FAST });
  });
  after(async () => {
    await reg.destroy();
    await rx.close();
  });

  it('a tagged push sends PUSH_ARTIFACT in Harbor Default format with the Auth Header verbatim', async () => {
    libraryPolicy = await addPolicy(reg, 'library', rx.url, ['PUSH_ARTIFACT'], 'Bearer s3cret-token');
    const digest = await pushImage(reg, 'library/nginx', 'v1', 'wh-1');
    await rx.waitFor(1);
    const ev = rx.received[0]!;
    assert.equal(ev.headers.authorization, 'Bearer s3cret-token');
    assert.equal(ev.headers['content-type'], 'application/json');
    const b = ev.body as {
      type: string;
      occur_at: number;
      operator: string;
      event_data: { resources: Array<Record<string, string>>; repository: Record<string, unknown> };
    };
    assert.equal(b.type, 'PUSH_ARTIFACT');
    assert.ok(Number.isInteger(b.occur_at), 'occur_at is unix seconds (exact value: see the fake-clock test)');
    assert.equal(b.operator, 'admin');
    assert.deepEqual(b.event_data.resources, [{ digest, tag: 'v1', resource_url: `${reg.host}/library/nginx:v1` }]);
    const { date_created: created, ...repo } = b.event_data.repository;
    assert.equal(typeof created, 'number');
    assert.deepEqual(repo, { name: 'nginx', namespace: 'library', repo_full_name: 'library/nginx', repo_type: 'public' });
  });

  it('an index push sends one event for the index, none for its children', async () => {
    rx.received = [];
    const repo = 'library/multi';
    const children: Array<{ digest: string; size: number }> = [];
    for (const arch of ['amd64', 'arm64']) {
      const img = makeImage(`multi-${arch}`);
      await reg.pushBlob(repo, img.config);
      await reg.pushBlob(repo, img.layer);
      assert.equal((await reg.putManifest(repo, img.digest, img.manifest, OCI_MANIFEST)).status, 201);
      children.push({ digest: img.digest, size: img.manifest.length });
    }
    const index = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: OCI_INDEX,
        manifests: children.map((c, i) => ({
          mediaType: OCI_MANIFEST,
          ...c,
          platform: { os: 'linux', architecture: i ? 'arm64' : 'amd64' },
        })),
      }),
    );
    assert.equal((await reg.putManifest(repo, 'latest', index, OCI_INDEX)).status, 201);
    await rx.waitFor(1);
    // the children's by-digest events (held for the settle delay) were stopped by the index push
    const multi = (await settled(reg, 'library', libraryPolicy)).filter((e) => e.extra_attrs.payload.includes('library/multi'));
    assert.deepEqual(
      multi.map((e) => [resourcesOf(e)[0]!.digest, e.status]).sort(),
      [
        [children[0]!.digest, 'Stopped'],
        [children[1]!.digest, 'Stopped'],
        [sha256(index), 'Success'],
      ].sort(),
    );
    assert.equal(rx.received.length, 1, 'one event, for the index');
    const b = rx.received[0]!.body as { event_data: { resources: Array<{ digest: string; tag: string }> } };
    assert.deepEqual(
      b.event_data.resources.map((x) => [x.digest, x.tag]),
      [[sha256(index), 'latest']],
    );
  });

  it('an untagged push by digest is announced with the digest as tag and an @digest URL', async () => {
    rx.received = [];
    const img = makeImage('by-digest');
    await reg.pushBlob('library/bd', img.config);
    await reg.pushBlob('library/bd', img.layer);
    await reg.putManifest('library/bd', img.digest, img.manifest, OCI_MANIFEST);
    await rx.waitFor(1);
    const res = (rx.received[0]!.body as { event_data: { resources: Array<Record<string, string>> } }).event_data.resources[0]!;
    assert.deepEqual(res, { digest: img.digest, tag: img.digest, resource_url: `${reg.host}/library/bd@${img.digest}` });
  });

  it('failures are retried with doubling backoff and logged; after 3 retries the delivery is an error (fake clock)', async () => {
    // Its own registry whose dispatcher runs on a fake clock; a long poll interval, so each wait the
    // dispatcher sets is the time until the next retry is due.
    const clock = new FakeClock();
    const r = await startTestRegistry({
      config: { webhook: { backoff: '100ms', settleDelay: '1500ms', pollInterval: '1h', timeout: '5s' } },
      clock,
    });
    const rx3 = new Receiver();
    await rx3.start();
    /** Fires the dispatcher's pending timer; the delay of the timer it sets next (bounded wait for it). */
    const step = async (): Promise<number> => {
      const n = clock.history.length;
      await clock.advance(Math.max(0, (clock.nextDue() ?? clock.now()) - clock.now()));
      if (clock.history.length === n) await clock.nextTimer();
      return clock.history.at(-1)!.ms;
    };
    try {
      const pid = await addPolicy(r, 'library', rx3.url, ['PUSH_ARTIFACT']);
      await step(); // the start-up pass over the outbox
      rx3.plan = [500, 503, 200];
      const t0 = clock.now();
      await pushImage(r, 'library/retry', 'v1', 'retry-1');
      assert.deepEqual([await step(), await step(), await step()], [100, 200, 3_600_000], 'retry after 100 ms, then 200 ms; then idle');
      assert.equal(rx3.received.length, 3);
      assert.equal((rx3.received[0]!.body as { occur_at: number }).occur_at, Math.floor(t0 / 1000), 'occur_at: unix seconds of the push');
      const [ok] = await settled(r, 'library', pid);
      assert.equal(ok!.status, 'Success');
      const log = await (await r.req(`/api/v2.0/projects/library/webhook/policies/${pid}/executions/${ok!.id}/tasks/${ok!.id}/log`)).text();
      const lines = log.trim().split('\n');
      assert.equal(lines.length, 3);
      assert.deepEqual(
        lines.map((l) => Date.parse(l.split(' ')[0]!) - t0),
        [0, 100, 300],
        'attempts at 0, +100 ms, +300 ms',
      );
      assert.match(lines[0]!, /attempt 1 .* 500/);
      assert.match(lines[2]!, /attempt 3 .* 200/);

      rx3.received = [];
      rx3.plan = [500, 500, 500, 500, 500];
      await pushImage(r, 'library/retry', 'v2', 'retry-2');
      assert.deepEqual(
        [await step(), await step(), await step(), await step()],
        [100, 200, 400, 3_600_000],
        'retries after 100, 200, 400 ms; then idle',
      );
      const [failed] = await settled(r, 'library', pid);
      assert.equal(failed!.status, 'Error');
      assert.equal(rx3.received.length, 4, 'one attempt plus 3 retries, and the delivery is final');
    } finally {
      await r.destroy();
      await rx3.close();
    }
  });

  it('PULL_ARTIFACT and DELETE_ARTIFACT are sent to policies that ask for them', async () => {
    const rx2 = new Receiver();
    await rx2.start();
    try {
      await reg.req('/api/v2.0/projects', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: '{"project_name":"events"}',
      });
      await addPolicy(reg, 'events', rx2.url, ['PULL_ARTIFACT', 'DELETE_ARTIFACT']);
      const digest = await pushImage(reg, 'events/app', 'v1', 'events');
      const g = await reg.req('/v2/events/app/manifests/v1');
      await g.arrayBuffer();
      await reg.req('/v2/events/app/manifests/v1', { method: 'DELETE' });
      await rx2.waitFor(2);
      const types = rx2.received.map((x) => (x.body as { type: string }).type).sort();
      assert.deepEqual(types, ['DELETE_ARTIFACT', 'PULL_ARTIFACT']);
      for (const x of rx2.received) {
        const b = x.body as { event_data: { resources: Array<{ digest: string; tag: string }>; repository: { repo_type: string } } };
        assert.equal(b.event_data.resources[0]!.digest, digest);
        assert.equal(b.event_data.resources[0]!.tag, 'v1');
        assert.equal(b.event_data.repository.repo_type, 'private');
      }
    } finally {
      await rx2.close();
    }
  });

  it('policy input is validated', async () => {
    const bad = async (body: unknown): Promise<number> =>
      (
        await reg.req('/api/v2.0/projects/library/webhook/policies', {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify(body),
        })
      ).status;
    assert.equal(await bad({ name: 'x', event_types: ['NOPE'], targets: [{ address: 'http://127.0.0.1:1/' }] }), 400);
    assert.equal(await bad({ name: 'x', event_types: ['PUSH_ARTIFACT'], targets: [{ address: 'file:///etc/passwd' }] }), 400);
    assert.equal(
      await bad({
        name: 'x',
        event_types: ['PUSH_ARTIFACT'],
        targets: [{ address: 'http://127.0.0.1:1/', payload_format: 'CloudEvents' }],
      }),
      400,
    );
    assert.equal(await bad({ name: 'x', event_types: ['PUSH_ARTIFACT'], targets: [] }), 400);
  });
});

describe('webhook outbox durability', () => {
  it('a delivery pending when the registry stops is sent after a restart', async () => {
    const dataDir = await mkdtemp(join(tmpdir(), 'ferry-reg-wh-'));
    const rx = new Receiver();
    await rx.start();
    try {
      // A long settle delay keeps the by-digest push's event in the outbox across the restart.
      const cfg = { webhook: { backoff: '100ms', settleDelay: '1500ms', pollInterval: '50ms' } };
      const a = await startTestRegistry({ dataDir, config: cfg });
      const pid = await addPolicy(a, 'library', rx.url, ['PUSH_ARTIFACT']);
      const img = makeImage('durable');
      await a.pushBlob('library/durable', img.config);
      await a.pushBlob('library/durable', img.layer);
      await a.putManifest('library/durable', img.digest, img.manifest, OCI_MANIFEST);
      await a.close();
      assert.equal(rx.received.length, 0);
      const b = await startTestRegistry({ dataDir, config: cfg });
      try {
        await rx.waitFor(1);
        assert.equal(
          (rx.received[0]!.body as { event_data: { resources: Array<{ digest: string }> } }).event_data.resources[0]!.digest,
          img.digest,
        );
        const final = await settled(b, 'library', pid);
        assert.deepEqual(
          final.map((e) => e.status),
          ['Success'],
        );
        assert.equal(rx.received.length, 1, 'delivered exactly once');
      } finally {
        await b.close();
      }
    } finally {
      await rx.close();
      await rm(dataDir, { recursive: true, force: true });
    }
  });
});
