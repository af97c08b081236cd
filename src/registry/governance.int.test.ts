/**
 * Harbor governance on a real registry (loopback): project quotas enforced on blob and manifest
 * pushes with Harbor's error shape, `/quotas` JSON, usage counted once per blob per project; the
 * audit log of pushes, pulls, deletes, failed logins and robot changes in Harbor's `AuditLog` JSON.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { basic, makeImage, sha256, startTestRegistry, type TestRegistry } from './testing/client.js';
import { parseAuditQ } from './governance-api.js';

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';

interface QuotaJson {
  id: number;
  ref: { id: number; name: string; owner_name: string };
  hard: { storage: number };
  used: { storage: number };
  creation_time: string;
  update_time: string;
}

describe('Harbor governance: quotas and audit log', () => {
  let reg: TestRegistry;
  before(async () => {
    reg = await startTestRegistry();
  });
  after(async () => {
    await reg?.destroy();
  });

  const json = (body: unknown): RequestInit => ({ headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
  const quotaOf = async (projectId: number): Promise<QuotaJson> => {
    const r = await reg.req(`/api/v2.0/quotas?reference=project&reference_id=${projectId}`);
    assert.equal(r.status, 200);
    const list = (await r.json()) as QuotaJson[];
    assert.equal(list.length, 1);
    return list[0]!;
  };
  /** A blob upload answered with the registry's status and body. */
  const upload = async (repo: string, data: Buffer): Promise<{ status: number; body: string }> => {
    const r = await reg.req(`/v2/${repo}/blobs/uploads/?digest=${sha256(data)}`, { method: 'POST', body: data });
    return { status: r.status, body: await r.text() };
  };

  it('storage_limit is enforced on blob and manifest pushes; usage counts a blob once per project', async () => {
    const created = await reg.req('/api/v2.0/projects', { method: 'POST', ...json({ project_name: 'quota', storage_limit: 3000 }) });
    assert.equal(created.status, 201);
    const pid = Number(created.headers.get('location')!.split('/').pop());
    let q = await quotaOf(pid);
    assert.deepEqual([q.ref.name, q.ref.id, q.hard.storage, q.used.storage], ['quota', pid, 3000, 0]);
    assert.ok(q.creation_time && q.update_time);

    const a = randomBytes(1200);
    assert.equal((await upload('quota/one', a)).status, 201);
    assert.equal((await upload('quota/two', a)).status, 201, 'the same blob in another repository of the project');
    assert.equal((await quotaOf(pid)).used.storage, 1200, 'counted once per project');

    const big = randomBytes(2000);
    const refused = await upload('quota/one', big);
    assert.equal(refused.status, 403);
    const err = JSON.parse(refused.body) as { errors: Array<{ code: string; message: string }> };
    assert.equal(err.errors[0]!.code, 'DENIED');
    assert.match(
      err.errors[0]!.message,
      /adding 2\.0 KiB of storage resource, which when updated to current usage of 1\.2 KiB will exceed the configured upper limit of 2\.9 KiB/,
    );
    assert.equal((await reg.req(`/v2/quota/one/blobs/${sha256(big)}`, { method: 'HEAD' })).status, 404, 'the refused blob is not there');

    // a manifest whose blobs fit but whose own bytes do not
    const img = makeImage('quota-manifest');
    const pad = Buffer.alloc(3000 - 1200 - img.config.length - img.layer.length - 10);
    const config = Buffer.concat([img.config.subarray(0, -1), Buffer.from(`,"pad":"${'x'.repeat(pad.length)}"}`)]);
    assert.equal((await upload('quota/one', config)).status, 201);
    assert.equal((await upload('quota/one', img.layer)).status, 201);
    const manifest = Buffer.from(
      JSON.stringify({
        schemaVersion: 2,
        mediaType: OCI_MANIFEST,
        config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: sha256(config), size: config.length },
        layers: [{ mediaType: 'application/vnd.oci.image.layer.v1.tar+gzip', digest: sha256(img.layer), size: img.layer.length }],
      }),
    );
    const put = await reg.putManifest('quota/one', 'v1', manifest, OCI_MANIFEST);
    assert.equal(put.status, 403);
    assert.equal(((await put.json()) as { errors: Array<{ code: string }> }).errors[0]!.code, 'DENIED');
    assert.equal((await reg.req('/v2/quota/one/manifests/v1', { method: 'HEAD' })).status, 404);

    q = await quotaOf(pid);
    const raised = await reg.req(`/api/v2.0/quotas/${q.id}`, { method: 'PUT', ...json({ hard: { storage: 10_000 } }) });
    assert.equal(raised.status, 200);
    assert.equal((await reg.putManifest('quota/one', 'v1', manifest, OCI_MANIFEST)).status, 201);
    const after = await quotaOf(pid);
    assert.equal(after.used.storage, 1200 + config.length + img.layer.length + manifest.length);
    assert.equal(after.hard.storage, 10_000);
    const byId = (await (await reg.req(`/api/v2.0/quotas/${q.id}`)).json()) as QuotaJson;
    assert.deepEqual(byId.used, after.used);

    for (const bad of [{ hard: { storage: 0 } }, { hard: { storage: -2 } }, { hard: { storage: 'x' } }, { hard: { count: 1 } }, {}]) {
      const r = await reg.req(`/api/v2.0/quotas/${q.id}`, { method: 'PUT', ...json(bad) });
      assert.equal(r.status, 400, JSON.stringify(bad));
      assert.equal(((await r.json()) as { errors: Array<{ code: string }> }).errors[0]!.code, 'BAD_REQUEST');
    }
    assert.equal((await reg.req('/api/v2.0/quotas/99999')).status, 404);
    assert.equal((await reg.req('/api/v2.0/quotas', { auth: '' })).status, 401);
    assert.equal((await reg.req('/api/v2.0/projects', { method: 'POST', ...json({ project_name: 'bad', storage_limit: 0 }) })).status, 400);
  });

  it('the audit log records pushes, pulls, deletes, failed logins and robot changes in Harbor JSON', async () => {
    const from = new Date(Date.now() - 1000).toISOString().replace('T', ' ').slice(0, 19);
    const img = makeImage('audit');
    await reg.pushBlob('library/audited', img.config);
    await reg.pushBlob('library/audited', img.layer);
    assert.equal((await reg.putManifest('library/audited', 'v1', img.manifest, OCI_MANIFEST)).status, 201);
    assert.equal((await reg.req('/v2/library/audited/manifests/v1', { headers: { accept: OCI_MANIFEST } })).status, 200);
    assert.equal((await reg.req('/v2/library/audited/manifests/v1', { method: 'DELETE' })).status, 202);
    assert.equal((await reg.req('/v2/', { auth: basic('mallory', 'wrong-password') })).status, 401);
    const robot = await reg.req('/api/v2.0/robots', {
      method: 'POST',
      ...json({
        name: 'auditbot',
        level: 'system',
        duration: -1,
        permissions: [{ kind: 'project', namespace: 'library', access: [{ resource: 'repository', action: 'pull' }] }],
      }),
    });
    assert.equal(robot.status, 201);

    const r = await reg.req('/api/v2.0/audit-logs?page_size=100');
    assert.equal(r.status, 200);
    const logs = (await r.json()) as Array<{
      id: number;
      username: string;
      resource: string;
      resource_type: string;
      operation: string;
      op_time: string;
    }>;
    assert.ok(Number(r.headers.get('x-total-count')) >= logs.length);
    const find = (op: string, res: string): (typeof logs)[number] | undefined => logs.find((e) => e.operation === op && e.resource === res);
    const push = find('create', 'library/audited:v1');
    assert.ok(push, JSON.stringify(logs));
    assert.deepEqual(Object.keys(push).sort(), ['id', 'op_time', 'operation', 'resource', 'resource_type', 'username']);
    assert.equal(push.username, 'admin');
    assert.equal(push.resource_type, 'artifact');
    assert.ok(find('pull', 'library/audited:v1'));
    assert.ok(find('delete', 'library/audited:v1'));
    assert.equal(find('login', 'mallory')?.resource_type, 'user');
    assert.equal(find('create', 'robot$auditbot')?.resource_type, 'robot');
    const ids = logs.map((e) => e.id);
    assert.deepEqual(
      ids,
      [...ids].sort((x, y) => y - x),
      'newest first',
    );

    const pulls = (await (
      await reg.req(`/api/v2.0/audit-logs?q=${encodeURIComponent(`operation=pull,op_time=[${from}~]`)}`)
    ).json()) as typeof logs;
    assert.ok(pulls.length >= 1 && pulls.every((e) => e.operation === 'pull'));
    const perProject = (await (await reg.req('/api/v2.0/projects/library/logs?q=resource%3D~audited')).json()) as typeof logs;
    assert.ok(perProject.length >= 3 && perProject.every((e) => e.resource.includes('audited')));
    const paged = await reg.req('/api/v2.0/audit-logs?page=1&page_size=2');
    assert.equal(((await paged.json()) as unknown[]).length, 2);
    assert.equal((await reg.req('/api/v2.0/audit-logs?q=nonsense%3D1')).status, 400);
    assert.equal((await reg.req('/api/v2.0/audit-logs', { auth: '' })).status, 401);
  });

  it('parses Harbor q expressions', () => {
    assert.deepEqual(
      parseAuditQ('operation={create delete},username=admin,resource=~lib,op_time=[2024-01-02 03:04:05~2024-01-03 00:00:00]'),
      {
        operation: ['create', 'delete'],
        username: 'admin',
        resource: 'lib',
        from: Date.parse('2024-01-02T03:04:05Z'),
        to: Date.parse('2024-01-03T00:00:00Z'),
      },
    );
    assert.throws(() => parseAuditQ('op_time=2024'), /\[from~to\]/);
  });
});
