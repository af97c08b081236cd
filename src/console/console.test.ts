/**
 * The console's pure parts: escaping in templates and pages, sessions on a fake clock (idle and
 * absolute expiry, bounded count), cookies and CSRF token comparison.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { FakeClock } from '../../test/support/clock.js';
import { escapeHtml, html, raw } from './html.js';
import {
  artifactsTable,
  bytes,
  conversionsPage,
  conversionsTable,
  duration,
  loginPage,
  p2pPage,
  peerShare,
  projectsPage,
  repoPath,
  robotsPage,
} from './pages.js';
import type { ConversionView } from './backend.js';
import { cookie, parseCookies, sameToken, SessionStore } from './session.js';

describe('console html', () => {
  it('escapes interpolated text and attribute values, keeps nested templates', () => {
    assert.equal(escapeHtml(`<a href="x" onclick='y'>&\``), '&lt;a href=&quot;x&quot; onclick=&#39;y&#39;&gt;&amp;&#96;');
    const evil = '"><script>alert(1)</script>';
    const out = html`<p title="${evil}">${evil}${html`<b>${'<i>'}</b>`}${raw('<hr>')}${[1, '<', false, null, undefined]}</p>`.text;
    assert.ok(!out.includes('<script>'), out);
    assert.equal(
      out,
      '<p title="&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;">&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;<b>&lt;i&gt;</b><hr>1&lt;</p>',
    );
  });

  it('pages escape what users chose (robot descriptions, names) and carry the CSRF token', () => {
    const f = { viewer: { name: 'admin', admin: true }, csrf: 'tok"en' };
    const page = robotsPage(
      f,
      [
        {
          id: 1,
          name: 'robot$p+x',
          description: '<img src=x onerror=alert(1)>',
          disabled: false,
          expiresAt: -1,
          scopes: ['a<b'],
          createdAt: 0,
        },
      ],
      [],
    ).text;
    assert.ok(!page.includes('<img src=x'), 'description escaped');
    assert.ok(page.includes('&lt;img src=x onerror=alert(1)&gt;'));
    assert.ok(page.includes('value="tok&quot;en"'), 'token in every form, escaped');
    assert.equal(page.match(/name="_csrf"/g)?.length, 3, 'logout, disable and create forms');
    assert.ok(!page.includes('robot-secret'), 'no secret box unless just created');
    assert.ok(loginPage('abc').text.includes('name="_csrf" value="abc"'));
    const anon = projectsPage({ viewer: undefined, csrf: '' }, []).text;
    assert.ok(!anon.includes('create-project') && !anon.includes('/robots"'), 'no admin forms for anonymous');
  });

  it("shows each tag's Nydus form and sizes", () => {
    const a = (tags: string[]) => ({ digest: `sha256:${'a'.repeat(64)}`, mediaType: 'm', size: 1536, pushedAt: 0, tags });
    const t = artifactsTable([a(['v1', 'v2']), a(['v1-nydus'])]).text;
    assert.match(t, /<code>v1<\/code> <span class="badge ok">accelerated: <code>v1-nydus<\/code>/);
    assert.match(t, /<code>v2<\/code> <span class="badge none">not accelerated/);
    assert.match(t, /<code>v1-nydus<\/code> <span class="badge nydus">Nydus/);
    const n = { ...a(['v3-nydus']), nydus: { rafs: 6 as const, chunks: 812, blobs: 1, trace: true } };
    const u = { ...a(['v4-nydus']), nydus: { trace: false } };
    const t2 = artifactsTable([a(['v3']), n, u]).text;
    assert.match(
      t2,
      /<code>v3<\/code> <span class="badge ok">accelerated: <code>v3-nydus<\/code><\/span> <small class="nydus-facts">RAFS v6 · 812 chunks in 1 blob · <span class="badge ok">prefetch trace/,
    );
    assert.match(t2, /<code>v3-nydus<\/code> <span class="badge nydus">Nydus<\/span> <small class="nydus-facts">RAFS v6 · 812 chunks/);
    assert.match(t2, /<code>v4-nydus<\/code> .*bootstrap not readable · <span class="badge none">no prefetch trace/);
    assert.equal(bytes(1536), '1.5 KiB');
    assert.equal(bytes(12), '12 B');
    assert.equal(repoPath('p/a/b'), '/projects/p/repositories/a%2Fb');
  });
});

describe('console conversions page', () => {
  const task = (over: Partial<ConversionView>): ConversionView => ({
    id: 'id',
    source: 'reg:5000/p/app:v1',
    target: '',
    state: 'queued',
    reason: '',
    attempts: 0,
    createdAt: 0,
    durationMs: 1500,
    sourceSize: 0,
    targetSize: 0,
    canRetry: false,
    ...over,
  });
  const f = { viewer: { name: 'u', admin: false }, csrf: 'tok' };

  it('groups queue, running, failed, completed; a retry form (with the CSRF token) only where the viewer may retry', () => {
    const t = conversionsTable(f, {
      configured: true,
      tasks: [
        task({ id: 'c', state: 'completed', target: 'reg:5000/p/app:v1-nydus', finishedAt: 1, sourceSize: 2048, targetSize: 1024 }),
        task({ id: 'f1', state: 'failed', reason: 'NOT_FOUND: <b>gone</b>', canRetry: true, finishedAt: 1 }),
        task({ id: 'f2', state: 'failed', reason: 'NOT_FOUND: x', canRetry: false, finishedAt: 1 }),
        task({ id: 'r', state: 'running', attempts: 1 }),
        task({ id: 'q', state: 'queued' }),
      ],
    }).text;
    assert.deepEqual(
      [...t.matchAll(/data-task="(\w+)"/g)].map((m) => m[1]),
      ['q', 'r', 'f1', 'f2', 'c'],
    );
    assert.equal(t.match(/class="retry"/g)?.length, 1, 'one retry button');
    assert.match(t, /action="\/conversions\/f1\/retry"[^>]*><input type="hidden" name="_csrf" value="tok">/);
    assert.ok(t.includes('NOT_FOUND: &lt;b&gt;gone&lt;/b&gt;'), 'reason escaped');
    assert.match(t, /<code class="target">reg:5000\/p\/app:v1-nydus<\/code>/);
    assert.match(t, /2\.0 KiB → 1\.0 KiB/);
    assert.match(t, /1\.5 s so far/, 'an unfinished task counts its duration so far');
    assert.match(t, /failed: <b id="count-failed">2<\/b>/);
  });

  it('says when no accel service is linked or it did not answer; the page refreshes itself', () => {
    assert.match(conversionsTable(f, { configured: false, tasks: [] }).text, /console\.accel/);
    const down = conversionsPage(f, { configured: true, tasks: [], error: 'the accel service did not answer' }).text;
    assert.match(down, /role="alert">the accel service did not answer/);
    assert.match(down, /data-live="\/conversions\?fragment=tasks" data-live-ms="2000"/);
    assert.equal(duration(999), '999 ms');
    assert.equal(duration(61_000), '1 min 01 s');
  });
});

describe('console P2P page', () => {
  it('shows traffic, hosts, tasks and jobs, escaped; says when no scheduler is linked', () => {
    const f = { viewer: { name: 'admin', admin: true }, csrf: 't' };
    const page = p2pPage(f, {
      configured: true,
      hosts: [{ hostname: '<seed>', ip: '127.0.0.1', seed: true, peers: 2 }],
      tasks: [
        {
          id: 'x',
          url: 'http://r/v2/a/blobs/sha256:1',
          state: 'succeeded',
          contentLength: 2048,
          peers: 2,
          succeededPeers: 2,
          backToSourcePeers: 1,
        },
      ],
      traffic: { fromPeers: 3 * 1024 * 1024, fromSource: 1024 * 1024 },
      jobs: [
        {
          id: 7,
          state: 'FAILURE',
          url: 'http://r/v2/a/manifests/v1',
          createdAt: 'c',
          updatedAt: 'u',
          successTasks: 0,
          failureTasks: 1,
          error: '<b>x</b>',
        },
      ],
    }).text;
    assert.match(page, /id="from-peers">3\.0 MiB<\/td><td id="from-source">1\.0 MiB<\/td><td id="peer-share">75\.0 %/);
    assert.ok(page.includes('&lt;seed&gt;') && page.includes('&lt;b&gt;x&lt;/b&gt;') && !page.includes('<b>x</b>'));
    assert.match(page, /id="seed-count">1</);
    assert.equal(peerShare({ fromPeers: 0, fromSource: 0 }), '–');
    const none = p2pPage(f, { configured: false, hosts: [], tasks: [], traffic: { fromPeers: 0, fromSource: 0 }, jobs: [] }).text;
    assert.match(none, /console\.scheduler/);
  });
});

describe('console sessions', () => {
  it('expire when idle and at their absolute age, on the injected clock', async () => {
    const clock = new FakeClock();
    const s = new SessionStore({ clock, idleMs: 1000, maxAgeMs: 5000 });
    const a = s.create('alice');
    assert.notEqual(a.id, a.csrf);
    assert.ok(a.id.length >= 43);
    await clock.advance(999);
    assert.equal(s.get(a.id)?.user, 'alice', 'use restarts the idle time');
    await clock.advance(999);
    assert.ok(s.get(a.id));
    await clock.advance(1000);
    assert.equal(s.get(a.id), undefined, 'idle too long');
    const b = s.create('bob');
    for (let i = 0; i < 5; i++) {
      await clock.advance(900);
      assert.ok(s.get(b.id), `still alive at ${i}`);
    }
    await clock.advance(900);
    assert.equal(s.get(b.id), undefined, 'past the absolute age although used');
    assert.equal(s.get(undefined), undefined);
    assert.equal(s.get('nope'), undefined);
  });

  it('keeps a bounded number, dropping the oldest; ends all of one user', () => {
    const s = new SessionStore({ clock: new FakeClock(), max: 3 });
    const ids = ['a', 'b', 'c', 'd'].map((u) => s.create(u).id);
    assert.equal(s.size, 3);
    assert.equal(s.get(ids[0]), undefined);
    assert.equal(s.get(ids[3])?.user, 'd');
    s.create('d');
    s.deleteUser('d');
    assert.equal(s.size, 1);
  });

  it('parses cookies, sets HttpOnly SameSite=Strict ones, compares tokens', () => {
    const c = parseCookies('a=1; ferry_session=xyz; a=2; junk; =v');
    assert.equal(c.get('a'), '1');
    assert.equal(c.get('ferry_session'), 'xyz');
    assert.equal(c.size, 2);
    assert.equal(cookie('s', 'v', { maxAgeS: 60, secure: false }), 's=v; Path=/; HttpOnly; SameSite=Strict; Max-Age=60');
    assert.match(cookie('s', '', { maxAgeS: 0, secure: true }), /Max-Age=0; Secure$/);
    assert.equal(sameToken('abc', 'abc'), true);
    assert.equal(sameToken('abc', 'abd'), false);
    assert.equal(sameToken('abc', 'abcd'), false);
    assert.equal(sameToken(undefined, undefined), false);
    assert.equal(sameToken('', ''), false);
  });
});
