/**
 * The web console served by a real registry, driven over HTTP like a browser with a cookie jar:
 * login (wrong password, robots refused), CSRF and Origin checks on every form (nothing changes
 * without them), project visibility for anonymous visitors and plain users, a private repository's
 * artifacts invisible to whoever cannot pull, a robot's secret shown once and working, disabling it
 * refusing its logins, logout ending the session.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { basic, sha256, startTestRegistry, type TestRegistry } from './testing/client.js';
import { Browser, createUser } from './testing/browser.js';

describe('web console on ferry registry', () => {
  let reg: TestRegistry;
  let admin: Browser;
  let csrf: string;

  before(async () => {
    reg = await startTestRegistry();
    admin = new Browser(reg.url);
    const r = await admin.login('admin', 'Adm1nSecret');
    assert.equal(r.status, 303);
    assert.equal(r.headers.get('location'), '/projects');
    const cookies = r.headers.getSetCookie().join('\n');
    assert.match(cookies, /ferry_session=[\w-]{43}; Path=\/; HttpOnly; SameSite=Strict/);
    csrf = (await admin.page('/projects')).csrf;
    assert.ok(csrf);
  });
  after(async () => {
    await reg?.destroy();
  });

  it('refuses wrong passwords, robots and login forms without their token', async () => {
    const b = new Browser(reg.url);
    const wrong = await b.login('admin', 'nope');
    assert.equal(wrong.status, 401);
    assert.match(await wrong.text(), /Wrong user name or password/);
    assert.equal(b.jar.has('ferry_session'), false);
    const r = await reg.req('/api/v2.0/robots', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        name: 'ci',
        level: 'project',
        permissions: [{ kind: 'project', namespace: 'library', access: [{ resource: 'repository', action: 'pull' }] }],
      }),
    });
    const robot = (await r.json()) as { name: string; secret: string };
    const asRobot = await b.login(robot.name, robot.secret);
    assert.equal(asRobot.status, 403);
    assert.match(await asRobot.text(), /robot accounts cannot log in/);
    const noToken = await new Browser(reg.url).post('/login', { username: 'admin', password: 'Adm1nSecret' });
    assert.equal(noToken.status, 403, 'login CSRF: no double-submit token');
    assert.equal(noToken.headers.getSetCookie().length, 0);
  });

  it('changes nothing without the session CSRF token or from another origin', async () => {
    const missing = await admin.post('/projects', { name: 'nocsrf' });
    assert.equal(missing.status, 403);
    const stale = await admin.post('/projects', { name: 'nocsrf', _csrf: `${csrf}x` });
    assert.equal(stale.status, 403);
    const foreign = await admin.post('/projects', { name: 'nocsrf', _csrf: csrf }, { origin: 'http://evil.example' });
    assert.equal(foreign.status, 403);
    const json = await admin.req('/projects', {
      method: 'POST',
      body: `_csrf=${csrf}&name=nocsrf`,
      headers: { 'content-type': 'text/plain' },
    });
    assert.equal(json.status, 400);
    assert.equal((await reg.req('/api/v2.0/projects?name=nocsrf')).status, 200);
    assert.deepEqual(await (await reg.req('/api/v2.0/projects?name=nocsrf')).json(), []);
    const anon = new Browser(reg.url);
    const anonPost = await anon.post('/projects', { name: 'nocsrf', _csrf: '' });
    assert.equal(anonPost.status, 403);
  });

  it('creates a private project; anonymous visitors and plain users do not see it or its artifacts', async () => {
    const created = await admin.post('/projects', { name: 'secret-team', _csrf: csrf }, { origin: reg.url });
    assert.equal(created.status, 303);
    assert.equal(created.headers.get('location'), '/projects/secret-team');
    const dup = await admin.post('/projects', { name: 'secret-team', _csrf: csrf });
    assert.equal(dup.status, 409);
    const bad = await admin.post('/projects', { name: 'Bad Name<', _csrf: csrf });
    assert.equal(bad.status, 400);
    assert.ok(!(await bad.text()).includes('Bad Name<'), 'input not echoed raw');

    const config = Buffer.from('{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}');
    const cfgDigest = await reg.pushBlob('secret-team/app', config);
    const manifest = JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: cfgDigest, size: config.length },
      layers: [],
    });
    assert.equal((await reg.putManifest('secret-team/app', 'v1', manifest, 'application/vnd.oci.image.manifest.v1+json')).status, 201);

    const mine = await admin.page('/projects');
    assert.match(mine.text, /href="\/projects\/secret-team">secret-team<\/a>[\s\S]*?private/);
    const repo = await admin.page('/projects/secret-team/repositories/app');
    assert.equal(repo.status, 200);
    assert.ok(repo.text.includes(sha256(manifest).slice(0, 19)));
    assert.match(repo.text, /<code>v1<\/code> <span class="badge none">not accelerated/);

    const anon = new Browser(reg.url);
    const list = await anon.page('/projects');
    assert.equal(list.status, 200);
    assert.ok(list.text.includes('>library</a>'));
    assert.ok(!list.text.includes('secret-team'), 'anonymous: private project not listed');
    assert.equal((await anon.page('/projects/secret-team')).status, 404);
    const hidden = await anon.page('/projects/secret-team/repositories/app');
    assert.equal(hidden.status, 404);
    assert.ok(!hidden.text.includes('sha256:'));
    assert.equal((await anon.page('/projects/secret-team/repositories/app?fragment=artifacts')).status, 404);

    await reg.req('/api/v2.0/projects', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"project_name":"open","metadata":{"public":"true"}}',
    });
    await createUser(reg, 'dev', 'DevPassw0rd');
    const dev = new Browser(reg.url);
    assert.equal((await dev.login('dev', 'DevPassw0rd')).status, 303);
    const devList = await dev.page('/projects');
    assert.ok(devList.text.includes('>open</a>') && !devList.text.includes('secret-team'));
    assert.ok(!devList.text.includes('create-project'), 'no create form for a plain user');
    const devCsrf = devList.csrf;
    assert.equal((await dev.post('/projects', { name: 'devproj', _csrf: devCsrf })).status, 403, 'plain users cannot create projects');
    assert.equal((await dev.page('/projects/secret-team/repositories/app')).status, 404);
    assert.equal((await dev.page('/robots')).status, 403);
  });

  it("shows quotas and webhook policies with their deliveries to admins only, never a target's credentials", async () => {
    const created = await reg.req('/api/v2.0/projects/secret-team/webhook/policies', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        name: 'notify <ci>',
        event_types: ['PUSH_ARTIFACT'],
        enabled: true,
        // nothing listens on port 9: the delivery fails and says why
        targets: [
          {
            type: 'http',
            address: 'http://hook:pw-in-url@127.0.0.1:9/hook',
            auth_header: 'Bearer hook-header-S3cr',
            payload_format: 'Default',
          },
        ],
      }),
    });
    assert.equal(created.status, 201, await created.text());
    const config = Buffer.from('{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]},"x":2}');
    const cfgDigest = await reg.pushBlob('secret-team/hooked', config);
    const manifest = JSON.stringify({
      schemaVersion: 2,
      mediaType: 'application/vnd.oci.image.manifest.v1+json',
      config: { mediaType: 'application/vnd.oci.image.config.v1+json', digest: cfgDigest, size: config.length },
      layers: [],
    });
    assert.equal((await reg.putManifest('secret-team/hooked', 'v1', manifest, 'application/vnd.oci.image.manifest.v1+json')).status, 201);
    const page = await admin.page('/projects/secret-team');
    assert.match(page.text, /Storage: <span id="quota">[\d.]+ (B|KiB) \/ unlimited<\/span>/);
    assert.match(page.text, /notify &lt;ci&gt;[\s\S]*PUSH_ARTIFACT → <code>http:\/\/127\.0\.0\.1:9\/hook<\/code>/);
    assert.match(page.text, /<td>PUSH_ARTIFACT<\/td><td><code>secret-team\/hooked<\/code><\/td>/);
    assert.ok(!page.text.includes('hook-header-S3cr') && !page.text.includes('pw-in-url'), "a target's credentials never shown");
    assert.match((await admin.page('/projects')).text, /Storage used \/ quota/);
    const dev = new Browser(reg.url);
    assert.equal((await dev.login('dev', 'DevPassw0rd')).status, 303);
    const open = await dev.page('/projects/open');
    assert.equal(open.status, 200);
    assert.ok(!open.text.includes('Webhook policies') && !open.text.includes('id="quota"'), 'plain users see neither');
    assert.ok(!(await dev.page('/projects')).text.includes('Storage used'));
    assert.equal((await dev.page('/p2p')).status, 403, 'P2P task URLs name every project: admins only');
    assert.equal((await new Browser(reg.url).page('/p2p')).status, 401);
    assert.match((await admin.page('/p2p')).text, /No P2P scheduler is linked/);
  });

  it('shows a robot secret once; the robot can pull; disabling it refuses its logins', async () => {
    const r = await admin.post('/robots', {
      _csrf: csrf,
      project: 'secret-team',
      name: 'deploy',
      description: '<b>ci</b>',
      action: ['pull'],
    });
    assert.equal(r.status, 201);
    const text = await r.text();
    const secret = /<code id="secret-value">([^<]+)<\/code>/.exec(text)?.[1];
    assert.ok(secret && /^[A-Za-z0-9]{32}$/.test(secret), text);
    assert.ok(text.includes('&lt;b&gt;ci&lt;/b&gt;'));
    const again = await admin.page('/robots');
    assert.ok(!again.text.includes(secret), 'secret never shown twice');
    assert.ok(!again.text.includes('secret-value'));
    const name = 'robot$secret-team+deploy';
    const auth = basic(name, secret);
    assert.equal((await reg.req('/v2/secret-team/app/manifests/v1', { auth, method: 'HEAD' })).status, 200);
    const bad = await admin.post('/robots', { _csrf: csrf, project: 'secret-team', name: 'x', action: ['admin'] });
    assert.equal(bad.status, 400);

    const id = /action="\/robots\/(\d+)\/disable"[^>]*>[\s\S]{0,200}?<\/form><\/td><\/tr>/.exec(
      again.text.slice(again.text.indexOf('robot$secret-team+deploy')),
    )?.[1];
    assert.ok(id);
    assert.equal((await admin.post(`/robots/${id}/disable`, {})).status, 403, 'disable needs the token');
    assert.equal((await reg.req('/v2/secret-team/app/manifests/v1', { auth, method: 'HEAD' })).status, 200);
    assert.equal((await admin.post(`/robots/${id}/disable`, { _csrf: csrf })).status, 303);
    assert.equal((await reg.req('/v2/secret-team/app/manifests/v1', { auth, method: 'HEAD' })).status, 401, 'disabled robot refused');
    assert.match((await admin.page('/robots')).text, /robot\$secret-team\+deploy[\s\S]*?disabled/);
  });

  it('logout ends the session: the old cookie is anonymous again', async () => {
    const b = new Browser(reg.url);
    await b.login('admin', 'Adm1nSecret');
    const old = b.jar.get('ferry_session')!;
    const { csrf: token } = await b.page('/projects');
    const out = await b.post('/logout', { _csrf: token });
    assert.equal(out.status, 303);
    assert.equal(b.jar.has('ferry_session'), false);
    b.jar.set('ferry_session', old);
    const after = await b.page('/projects');
    assert.ok(!after.text.includes('secret-team'));
    assert.equal((await b.page('/robots')).status, 401);
  });

  it('answers HTML errors for unknown console pages and leaves the APIs as they were', async () => {
    const r = await admin.req('/projects/library/nope/x');
    assert.equal(r.status, 404);
    assert.match(r.headers.get('content-type') ?? '', /text\/html/);
    assert.match(r.headers.get('content-security-policy') ?? '', /default-src 'none'/);
    assert.equal((await reg.req('/v2/')).status, 200);
    assert.equal((await reg.req('/api/v2.0/projects')).status, 200);
    assert.equal((await reg.req('/nothing-here', { auth: '' })).status, 404);
  });
});
