/**
 * Harbor's GC API on a real registry (loopback): a Manual run requested through
 * `/system/gc/schedule` is executed by the registry's gc jobs, collects an orphan blob and keeps a
 * pushed image, with Harbor's GCHistory JSON and a log; schedules (Daily, Custom, None) with their
 * next time; malformed requests refused.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { makeImage, sha256, startTestRegistry, type TestRegistry } from './testing/client.js';

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';

interface GcHistory {
  id: number;
  job_name: string;
  job_kind: string;
  job_parameters: string;
  job_status: string;
  creation_time: string;
  update_time: string;
}

describe('Harbor GC API', () => {
  let reg: TestRegistry;
  before(async () => {
    reg = await startTestRegistry({ config: { gc: { minAge: '0s', jobPollInterval: '100ms' } } });
  });
  after(async () => {
    await reg?.destroy();
  });
  const json = (body: unknown): RequestInit => ({ headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });

  /** The run once it is no longer Pending or Running (bounded wait on its final state). */
  const finished = async (id: number): Promise<GcHistory> => {
    let h: GcHistory | undefined;
    for (let i = 0; i < 300; i++) {
      h = (await (await reg.req(`/api/v2.0/system/gc/${id}`)).json()) as GcHistory;
      if (h.job_status !== 'Pending' && h.job_status !== 'Running') return h;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`gc ${id} still ${h?.job_status}`);
  };

  it('a Manual run collects an orphan blob, keeps a pushed image, and is listed with its log', async () => {
    const img = makeImage('gc-api');
    await reg.pushBlob('library/kept', img.config);
    await reg.pushBlob('library/kept', img.layer);
    assert.equal((await reg.putManifest('library/kept', 'v1', img.manifest, OCI_MANIFEST)).status, 201);
    const orphan = randomBytes(500);
    await reg.pushBlob('library/orphan', orphan);

    const r = await reg.req('/api/v2.0/system/gc/schedule', {
      method: 'POST',
      ...json({ schedule: { type: 'Manual' }, parameters: { dry_run: false } }),
    });
    assert.equal(r.status, 201, await r.clone().text());
    const id = Number(r.headers.get('location')!.split('/').pop());
    const done = await finished(id);
    assert.equal(done.job_status, 'Success');
    assert.equal(done.job_name, 'GARBAGE_COLLECTION');
    assert.equal(done.job_kind, 'MANUAL');
    assert.deepEqual(JSON.parse(done.job_parameters), { dry_run: false });
    const log = await (await reg.req(`/api/v2.0/system/gc/${id}/log`)).text();
    assert.match(log, new RegExp(`deleted blob ${sha256(orphan)}`));
    assert.match(log, /gc finished/);
    assert.equal((await reg.req(`/v2/library/orphan/blobs/${sha256(orphan)}`, { method: 'HEAD' })).status, 404);
    for (const d of [img.configDigest, img.layerDigest])
      assert.equal((await reg.req(`/v2/library/kept/blobs/${d}`, { method: 'HEAD' })).status, 200);

    const list = await reg.req('/api/v2.0/system/gc');
    assert.equal(list.status, 200);
    assert.ok(Number(list.headers.get('x-total-count')) >= 1);
    assert.equal(((await list.json()) as GcHistory[])[0]!.id, id, 'newest first');
    const stop = await reg.req(`/api/v2.0/system/gc/${id}`, { method: 'PUT' });
    assert.equal(stop.status, 412, 'a finished run cannot be stopped');
    assert.equal((await reg.req('/api/v2.0/system/gc/99999')).status, 404);
  });

  it('schedules: Daily and Custom with their next time, None removes; malformed requests refused', async () => {
    const set = (body: unknown, method = 'PUT'): Promise<Response> => reg.req('/api/v2.0/system/gc/schedule', { method, ...json(body) });
    assert.equal((await set({ schedule: { type: 'Daily' }, parameters: { delete_untagged: true } }, 'POST')).status, 201);
    const s = (await (await reg.req('/api/v2.0/system/gc/schedule')).json()) as {
      schedule: { type: string; cron: string; next_scheduled_time: string };
      parameters: Record<string, unknown>;
    };
    assert.equal(s.schedule.type, 'Daily');
    assert.equal(s.schedule.cron, '0 0 0 * * *');
    const next = Date.parse(s.schedule.next_scheduled_time);
    const midnight = new Date();
    midnight.setUTCHours(24, 0, 0, 0);
    assert.equal(next, midnight.getTime(), 'next UTC midnight');
    assert.deepEqual(s.parameters, { delete_untagged: true });
    assert.equal((await set({ schedule: { type: 'Custom', cron: '0 30 2 * * 1' } })).status, 200);
    assert.equal(((await (await reg.req('/api/v2.0/system/gc/schedule')).json()) as typeof s).schedule.cron, '0 30 2 * * 1');
    for (const bad of [
      { schedule: { type: 'Custom' } },
      { schedule: { type: 'Custom', cron: '30 2 * * 1' } },
      { schedule: { type: 'Custom', cron: '5 0 0 * * *' } },
      { schedule: { type: 'Sometimes' } },
      { schedule: { type: 'Manual' }, parameters: { workers: 9 } },
      { schedule: { type: 'Manual' }, parameters: { shred: true } },
    ]) {
      const r = await set(bad, 'POST');
      assert.equal(r.status, 400, JSON.stringify(bad));
    }
    assert.equal((await set({ schedule: { type: 'None' } })).status, 200);
    assert.deepEqual(await (await reg.req('/api/v2.0/system/gc/schedule')).json(), { schedule: null });
    assert.equal((await reg.req('/api/v2.0/system/gc', { auth: '' })).status, 401);
  });
});
