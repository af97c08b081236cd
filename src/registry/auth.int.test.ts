/**
 * Authentication and authorisation end to end over HTTP: anonymous pull of public projects only,
 * admin Basic, the Docker token flow (challenge → token endpoint → Bearer), robot accounts with
 * per-project permissions, hashed secrets, and the admin password lifecycle.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { decodeJwt } from 'jose';
import { startTestRegistry, makeImage, basic, type TestRegistry, ADMIN_PASSWORD } from './testing/client.js';
import { startRegistry } from './index.js';

const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';
let reg: TestRegistry;

async function token(
  scope: string,
  auth = '',
): Promise<{ status: number; token?: string; access?: Array<{ type: string; name: string; actions: string[] }> }> {
  const r = await reg.req(`/service/token?service=harbor-registry&scope=${encodeURIComponent(scope)}`, { auth });
  if (r.status !== 200) return { status: r.status };
  const body = (await r.json()) as { token: string; access_token: string; expires_in: number; issued_at: string };
  assert.equal(body.token, body.access_token);
  assert.ok(body.expires_in >= 60);
  const claims = decodeJwt(body.token) as { access: Array<{ type: string; name: string; actions: string[] }>; iss: string; aud: string };
  assert.equal(claims.iss, 'harbor-token-issuer');
  assert.equal(claims.aud, 'harbor-registry');
  return { status: 200, token: body.token, access: claims.access };
}

function createRobot(name: string, project: string, actions: string[]): Promise<{ name: string; secret: string; id: number }> {
  return reg.createRobot(project, name, actions);
}

before(async () => {
  reg = await startTestRegistry();
  const img = makeImage('auth');
  await reg.pushBlob('library/pub', img.config);
  await reg.pushBlob('library/pub', img.layer);
  assert.equal((await reg.putManifest('library/pub', 'v1', img.manifest, OCI_MANIFEST)).status, 201);
  const r = await reg.req('/api/v2.0/projects', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ project_name: 'secret', metadata: { public: 'false' } }),
  });
  assert.equal(r.status, 201);
  await reg.pushBlob('secret/img', img.config);
  await reg.pushBlob('secret/img', img.layer);
  assert.equal((await reg.putManifest('secret/img', 'v1', img.manifest, OCI_MANIFEST)).status, 201);
});
after(async () => {
  await reg.destroy();
});

describe('anonymous access', () => {
  it('GET /v2/ without credentials is a Bearer challenge naming realm and service', async () => {
    const r = await reg.req('/v2/', { auth: '' });
    assert.equal(r.status, 401);
    assert.equal(r.headers.get('www-authenticate'), `Bearer realm="http://${reg.host}/service/token",service="harbor-registry"`);
    assert.equal(r.headers.get('docker-distribution-api-version'), 'registry/2.0');
    assert.equal(((await r.json()) as { errors: Array<{ code: string }> }).errors[0]!.code, 'UNAUTHORIZED');
  });
  it('a private manifest without credentials is challenged with the repository scope; a public one is served', async () => {
    const r = await reg.req('/v2/secret/img/manifests/v1', { auth: '' });
    assert.equal(r.status, 401);
    assert.match(r.headers.get('www-authenticate')!, /scope="repository:secret\/img:pull"/);
    const pub = await reg.req('/v2/library/pub/manifests/v1', { auth: '' });
    assert.equal(pub.status, 200);
    await pub.arrayBuffer();
  });
  it('an anonymous token pulls from the public library project', async () => {
    const t = await token('repository:library/pub:pull,push');
    assert.deepEqual(t.access, [{ type: 'repository', name: 'library/pub', actions: ['pull'] }]);
    const r = await reg.req('/v2/library/pub/manifests/v1', { auth: `Bearer ${t.token}` });
    assert.equal(r.status, 200);
    await r.arrayBuffer();
  });
  it('an anonymous token grants nothing on a private project and never push', async () => {
    const t = await token('repository:secret/img:pull');
    assert.deepEqual(t.access, [{ type: 'repository', name: 'secret/img', actions: [] }]);
    let r = await reg.req('/v2/secret/img/manifests/v1', { auth: `Bearer ${t.token}` });
    assert.equal(r.status, 401);
    const t2 = await token('repository:library/pub:push');
    r = await reg.req('/v2/library/pub/blobs/uploads/', { method: 'POST', auth: `Bearer ${t2.token}` });
    assert.equal(r.status, 401);
    assert.match(r.headers.get('www-authenticate')!, /scope="repository:library\/pub:pull,push"/);
    r = await reg.req('/v2/library/pub/blobs/uploads/', { method: 'POST', auth: '' });
    assert.equal(r.status, 401);
  });
  it('a token for one repository does not open another', async () => {
    const t = await token('repository:library/pub:pull', basic('admin', ADMIN_PASSWORD));
    const r = await reg.req('/v2/secret/img/manifests/v1', { auth: `Bearer ${t.token}` });
    assert.equal(r.status, 401);
  });
  it('a forged or tampered token is rejected', async () => {
    const t = await token('repository:library/pub:pull');
    const [h, p] = t.token!.split('.');
    const claims = JSON.parse(Buffer.from(p!, 'base64url').toString()) as { access: Array<{ name: string; actions: string[] }> };
    claims.access = [{ name: 'secret/img', actions: ['pull', 'push'] } as never];
    const forged = `${h}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.${t.token!.split('.')[2]}`;
    const r = await reg.req('/v2/secret/img/manifests/v1', { auth: `Bearer ${forged}` });
    assert.equal(r.status, 401);
  });
  it('POST to the token endpoint answers 405 so clients fall back to GET', async () => {
    const r = await reg.req('/service/token', { method: 'POST', auth: '', body: 'grant_type=password' });
    assert.equal(r.status, 405);
  });
});

describe('admin and users', () => {
  it('wrong Basic credentials get a Basic challenge', async () => {
    const r = await reg.req('/v2/', { auth: basic('admin', 'nope') });
    assert.equal(r.status, 401);
    assert.equal(r.headers.get('www-authenticate'), 'Basic realm="harbor"');
    const t = await reg.req('/service/token?service=harbor-registry&scope=repository:library/pub:pull', { auth: basic('admin', 'nope') });
    assert.equal(t.status, 401);
  });
  it('admin Basic pulls private content and the admin token grants push and delete', async () => {
    const r = await reg.req('/v2/secret/img/manifests/v1');
    assert.equal(r.status, 200);
    await r.arrayBuffer();
    const t = await token('repository:secret/img:pull,push,delete', basic('admin', ADMIN_PASSWORD));
    assert.deepEqual(t.access![0]!.actions, ['pull', 'push', 'delete']);
    const c = await token('registry:catalog:*', basic('admin', ADMIN_PASSWORD));
    const cat = await reg.req('/v2/_catalog', { auth: `Bearer ${c.token}` });
    assert.equal(cat.status, 200);
    await cat.arrayBuffer();
  });
  it('the admin changes the password through PUT /users/{id}/password', async () => {
    const me = (await (await reg.req('/api/v2.0/users/current')).json()) as { user_id: number; username: string; sysadmin_flag: boolean };
    assert.equal(me.username, 'admin');
    assert.equal(me.sysadmin_flag, true);
    const put = (body: unknown, auth?: string): Promise<Response> =>
      reg.req(`/api/v2.0/users/${me.user_id}/password`, {
        method: 'PUT',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify(body),
        ...(auth ? { auth } : {}),
      });
    assert.equal((await put({ old_password: 'wrong', new_password: 'N3wPassword' })).status, 403);
    assert.equal((await put({ old_password: ADMIN_PASSWORD, new_password: 'weak' })).status, 400);
    assert.equal((await put({ old_password: ADMIN_PASSWORD, new_password: 'N3wPassword' })).status, 200);
    assert.equal((await reg.req('/v2/')).status, 401, 'the old password stops working at once');
    assert.equal((await reg.req('/v2/', { auth: basic('admin', 'N3wPassword') })).status, 200);
    assert.equal((await put({ old_password: 'N3wPassword', new_password: ADMIN_PASSWORD }, basic('admin', 'N3wPassword'))).status, 200);
    assert.equal((await reg.req('/v2/')).status, 200);
  });
  it('the admin password is stored hashed, and a generated one survives restarts', async () => {
    const db = readFileSync(join(reg.dataDir, 'registry.db'));
    assert.ok(!db.includes(Buffer.from(ADMIN_PASSWORD)));
    const { mkdtemp, rm } = await import('node:fs/promises');
    const { tmpdir } = await import('node:os');
    const dir = await mkdtemp(join(tmpdir(), 'ferry-reg-admin-'));
    const saved = process.env.FERRY_ADMIN_PASSWORD;
    delete process.env.FERRY_ADMIN_PASSWORD;
    try {
      const a = await startRegistry({ listen: '127.0.0.1:0', dataDir: dir });
      assert.equal(a.adminPasswordGenerated, true);
      const pw = a.adminPassword!;
      assert.ok(pw.length >= 12);
      await a.close();
      const b = await startRegistry({ listen: '127.0.0.1:0', dataDir: dir });
      assert.equal(b.adminPasswordGenerated, false);
      assert.equal(b.adminPassword, undefined);
      const r = await fetch(`${b.url}/v2/`, { headers: { authorization: basic('admin', pw) } });
      assert.equal(r.status, 200);
      await b.close();
      process.env.FERRY_ADMIN_PASSWORD = 'FromEnv123';
      const c = await startRegistry({ listen: '127.0.0.1:0', dataDir: dir });
      assert.equal((await fetch(`${c.url}/v2/`, { headers: { authorization: basic('admin', 'FromEnv123') } })).status, 200);
      assert.equal((await fetch(`${c.url}/v2/`, { headers: { authorization: basic('admin', pw) } })).status, 401);
      await c.close();
    } finally {
      if (saved === undefined) delete process.env.FERRY_ADMIN_PASSWORD;
      else process.env.FERRY_ADMIN_PASSWORD = saved;
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('robot accounts', () => {
  it('a project robot is named robot$<project>+<name>, its secret returned once and stored hashed', async () => {
    const rb = await createRobot('ci', 'secret', ['pull', 'push']);
    assert.equal(rb.name, 'robot$secret+ci');
    assert.match(rb.secret, /^[A-Za-z0-9]{32}$/);
    const list = (await (await reg.req('/api/v2.0/robots')).json()) as Array<Record<string, unknown>>;
    const entry = list.find((x) => x.name === 'robot$secret+ci')!;
    assert.ok(entry);
    assert.equal(entry.secret, undefined);
    const db = readFileSync(join(reg.dataDir, 'registry.db'));
    assert.ok(!db.includes(Buffer.from(rb.secret)));
    const dup = await reg.req('/api/v2.0/robots', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ name: 'ci', level: 'project', permissions: [{ kind: 'project', namespace: 'secret', access: [] }] }),
    });
    assert.equal(dup.status, 409);
  });
  it('a push robot pushes with Basic and with a token; it cannot touch other private projects', async () => {
    const rb = await createRobot('pusher', 'secret', ['pull', 'push']);
    const auth = basic(rb.name, rb.secret);
    const img = makeImage('robot-push');
    await reg.pushBlob('secret/robot', img.config, auth);
    await reg.pushBlob('secret/robot', img.layer, auth);
    assert.equal((await reg.putManifest('secret/robot', 'v1', img.manifest, OCI_MANIFEST, auth)).status, 201);
    const t = await token('repository:secret/robot:pull,push', auth);
    assert.deepEqual(t.access![0]!.actions, ['pull', 'push']);
    assert.equal((await reg.putManifest('secret/robot', 'v2', img.manifest, OCI_MANIFEST, `Bearer ${t.token}`)).status, 201);
    const other = await reg.req('/v2/otherproj/x/blobs/uploads/', { method: 'POST', auth });
    assert.equal(other.status, 403);
    const del = await reg.req('/v2/secret/robot/manifests/v2', { method: 'DELETE', auth });
    assert.equal(del.status, 403, 'no delete permission');
  });
  it('a pull-only robot pulls but gets 403 (Basic) / 401 (token) on push', async () => {
    const rb = await createRobot('reader', 'secret', ['pull']);
    const auth = basic(rb.name, rb.secret);
    const r = await reg.req('/v2/secret/img/manifests/v1', { auth });
    assert.equal(r.status, 200);
    await r.arrayBuffer();
    const p = await reg.req('/v2/secret/img/blobs/uploads/', { method: 'POST', auth });
    assert.equal(p.status, 403);
    assert.equal(((await p.json()) as { errors: Array<{ code: string }> }).errors[0]!.code, 'DENIED');
    const t = await token('repository:secret/img:pull,push', auth);
    assert.deepEqual(t.access![0]!.actions, ['pull']);
    const p2 = await reg.req('/v2/secret/img/blobs/uploads/', { method: 'POST', auth: `Bearer ${t.token}` });
    assert.equal(p2.status, 401);
  });
  it('disabling, refreshing and deleting a robot take effect at once', async () => {
    const rb = await createRobot('temp', 'secret', ['pull']);
    const auth = basic(rb.name, rb.secret);
    assert.equal((await reg.req('/v2/secret/img/manifests/v1', { method: 'HEAD', auth })).status, 200);
    const put = await reg.req(`/api/v2.0/robots/${rb.id}`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ disable: true }),
    });
    assert.equal(put.status, 200);
    assert.equal((await reg.req('/v2/secret/img/manifests/v1', { method: 'HEAD', auth })).status, 401);
    await reg.req(`/api/v2.0/robots/${rb.id}`, {
      method: 'PUT',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ disable: false }),
    });
    const patch = await reg.req(`/api/v2.0/robots/${rb.id}`, {
      method: 'PATCH',
      headers: { 'content-type': 'application/json' },
      body: '{}',
    });
    const { secret } = (await patch.json()) as { secret: string };
    assert.notEqual(secret, rb.secret);
    assert.equal((await reg.req('/v2/secret/img/manifests/v1', { method: 'HEAD', auth })).status, 401);
    assert.equal((await reg.req('/v2/secret/img/manifests/v1', { method: 'HEAD', auth: basic(rb.name, secret) })).status, 200);
    assert.equal((await reg.req(`/api/v2.0/robots/${rb.id}`, { method: 'DELETE' })).status, 200);
    assert.equal((await reg.req('/v2/secret/img/manifests/v1', { method: 'HEAD', auth: basic(rb.name, secret) })).status, 401);
  });
  it('only the admin manages robots and projects', async () => {
    const rb = await createRobot('nomgmt', 'secret', ['pull', 'push']);
    const auth = basic(rb.name, rb.secret);
    assert.equal((await reg.req('/api/v2.0/robots', { auth })).status, 403);
    assert.equal((await reg.req('/api/v2.0/robots', { auth: '' })).status, 401);
    const r = await reg.req('/api/v2.0/projects', {
      method: 'POST',
      auth,
      headers: { 'content-type': 'application/json' },
      body: '{"project_name":"x"}',
    });
    assert.equal(r.status, 403);
  });
});

describe('projects API', () => {
  it('lists public projects to everyone and private ones to the admin', async () => {
    const anon = (await (await reg.req('/api/v2.0/projects', { auth: '' })).json()) as Array<{
      name: string;
      metadata: { public: string };
    }>;
    assert.deepEqual(
      anon.map((p) => p.name),
      ['library'],
    );
    assert.equal(anon[0]!.metadata.public, 'true');
    const all = (await (await reg.req('/api/v2.0/projects')).json()) as Array<{ name: string }>;
    assert.ok(all.some((p) => p.name === 'secret'));
    assert.equal((await reg.req('/api/v2.0/projects?project_name=secret', { method: 'HEAD' })).status, 200);
    assert.equal((await reg.req('/api/v2.0/projects?project_name=nope', { method: 'HEAD' })).status, 404);
    const dup = await reg.req('/api/v2.0/projects', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ project_name: 'secret' }),
    });
    assert.equal(dup.status, 409);
    const bad = await reg.req('/api/v2.0/projects', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ project_name: '../x' }),
    });
    assert.equal(bad.status, 400);
    const badJson = await reg.req('/api/v2.0/projects', { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{' });
    assert.equal(badJson.status, 400);
  });
  it('making a project public opens anonymous pull', async () => {
    assert.equal((await reg.req('/v2/secret/img/manifests/v1', { method: 'HEAD', auth: '' })).status, 401);
    await reg.req('/api/v2.0/projects/secret', {
      method: 'PUT',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ metadata: { public: 'true' } }),
    });
    const t = await token('repository:secret/img:pull');
    assert.equal((await reg.req('/v2/secret/img/manifests/v1', { method: 'HEAD', auth: `Bearer ${t.token}` })).status, 200);
    await reg.req('/api/v2.0/projects/secret', {
      method: 'PUT',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ metadata: { public: 'false' } }),
    });
  });
  it('artifacts and repositories are deleted through the API (admin only)', async () => {
    const img = makeImage('api-delete');
    for (const repo of ['library/del/one', 'library/del2']) {
      await reg.pushBlob(repo, img.config);
      await reg.pushBlob(repo, img.layer);
      assert.equal((await reg.putManifest(repo, 'v1', img.manifest, OCI_MANIFEST)).status, 201);
    }
    assert.equal(
      (await reg.req('/api/v2.0/projects/library/repositories/del%252Fone/artifacts/v1', { method: 'DELETE', auth: '' })).status,
      401,
    );
    assert.equal((await reg.req('/api/v2.0/projects/library/repositories/del%252Fone/artifacts/v1', { method: 'DELETE' })).status, 200);
    assert.equal((await reg.req(`/v2/library/del/one/manifests/${img.digest}`, { method: 'HEAD' })).status, 404);
    assert.equal((await reg.req('/api/v2.0/projects/library/repositories/del2', { method: 'DELETE' })).status, 200);
    assert.equal((await reg.req('/v2/library/del2/tags/list')).status, 404);
    assert.equal((await reg.req('/api/v2.0/projects/library/repositories/del2', { method: 'DELETE' })).status, 404);
  });
  it('repositories and artifacts are listed Harbor-style', async () => {
    const repos = (await (await reg.req('/api/v2.0/projects/library/repositories')).json()) as Array<{
      name: string;
      artifact_count: number;
    }>;
    assert.deepEqual(
      repos.map((r) => r.name),
      ['library/pub'],
    );
    const arts = (await (await reg.req('/api/v2.0/projects/library/repositories/pub/artifacts')).json()) as Array<{
      digest: string;
      tags: Array<{ name: string }>;
    }>;
    assert.equal(arts.length, 1);
    assert.deepEqual(
      arts[0]!.tags.map((t) => t.name),
      ['v1'],
    );
  });
});
