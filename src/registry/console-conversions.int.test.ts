/**
 * The console's conversions page on a real registry linked to a real accel service: each viewer sees
 * only the tasks of repositories it may pull; a failed task is queued again only through a form with
 * the session's CSRF token, by whoever may push its repository (audited); accel's Authorization
 * header never reaches a page; an accel that does not answer is reported on the page; the header's
 * file must be owner-only and its variable set.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { chmod, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from '../../test/support/daemons.js';
import { AccelClient, startAccel, type AccelHandle, type TaskView } from '../accel/index.js';
import { startTestRegistry, type TestRegistry } from './testing/client.js';
import { Browser, createUser } from './testing/browser.js';
import { startRegistry } from './index.js';

const TOKEN = 'Bearer accel-console-Zq7vX3';
const ADMIN_PASSWORD = 'Adm1nSecret';

/** Polls accel's task list (bounded) until `ok` holds. */
async function tasksWhen(client: AccelClient, ok: (t: TaskView[]) => boolean, what: string): Promise<TaskView[]> {
  for (let i = 0; i < 400; i++) {
    const t = await client.listTasks();
    if (ok(t)) return t;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}`);
}

describe('console conversions with a real accel service', () => {
  let dir: string;
  let accel: AccelHandle;
  let reg: TestRegistry;
  let host: string;
  let client: AccelClient;
  let admin: Browser;
  let bob: Browser;
  const task = (tasks: TaskView[], repo: string): TaskView => tasks.find((t) => t.source.includes(`/${repo}:`))!;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'ferry-console-accel-'));
    host = `127.0.0.1:${await freePort()}`;
    const auth = Buffer.from(`admin:${ADMIN_PASSWORD}`).toString('base64');
    accel = await startAccel({
      config: { provider: { work_dir: join(dir, 'accel'), source: { [host]: { auth, insecure: true, webhook: { auth_header: TOKEN } } } } },
      listen: '127.0.0.1:0',
    });
    const tokenFile = join(dir, 'accel-token');
    await writeFile(tokenFile, `${TOKEN}\n`, { mode: 0o600 });
    reg = await startTestRegistry({
      listen: host,
      dataDir: join(dir, 'registry'),
      config: { console: { accel: { url: accel.url, authHeaderFile: tokenFile } } },
    });
    const created = await reg.req('/api/v2.0/projects', {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ project_name: 'team', metadata: { public: 'false' } }),
    });
    assert.equal(created.status, 201, await created.text());
    await createUser(reg, 'bob', 'BobPassw0rd');
    client = new AccelClient(accel.url, { authHeader: TOKEN });
    // Sources that do not exist: accel fails them at once (NOT_FOUND is permanent).
    for (const ref of [`${host}/team/app:missing`, `${host}/library/pub:missing`]) await client.createTask(ref);
    await tasksWhen(client, (t) => t.length === 2 && t.every((x) => x.status === 'FAILED'), 'two failed tasks');
    admin = new Browser(reg.url);
    assert.equal((await admin.login('admin', ADMIN_PASSWORD)).status, 303);
    bob = new Browser(reg.url);
    assert.equal((await bob.login('bob', 'BobPassw0rd')).status, 303);
  });
  after(async () => {
    await reg?.destroy();
    await accel?.close();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('shows each viewer the tasks of repositories it may pull; retry buttons only with push', async () => {
    const a = await admin.page('/conversions');
    assert.equal(a.status, 200);
    assert.match(a.text, /team\/app:missing[\s\S]*failed[\s\S]*NOT_FOUND/);
    assert.match(a.text, /library\/pub:missing/);
    assert.equal(a.text.match(/class="retry"/g)?.length, 2);
    assert.match(a.text, /failed: <b id="count-failed">2<\/b>/);
    const fragment = await admin.page('/conversions?fragment=tasks');
    assert.ok(fragment.text.startsWith('<div id="conversions">'), 'the live fragment is the table alone');
    for (const b of [new Browser(reg.url), bob]) {
      const p = await b.page('/conversions');
      assert.equal(p.status, 200);
      assert.ok(!p.text.includes('team/app'), 'a private repository stays invisible');
      assert.match(p.text, /library\/pub:missing/);
      assert.equal(p.text.match(/class="retry"/g), null, 'no retry without push');
    }
    for (const p of [a, fragment])
      assert.ok(!p.text.includes('accel-console-Zq7vX3') && !p.text.includes(accel.url), "accel's address and header stay server-side");
  });

  it('queues nothing without the CSRF token, for a viewer without push, or for a task it cannot see', async () => {
    const before = await client.listTasks();
    const teamId = task(before, 'team/app').id;
    const pubId = task(before, 'library/pub').id;
    assert.equal((await admin.post(`/conversions/${teamId}/retry`, {})).status, 403, 'no token');
    assert.equal((await admin.post(`/conversions/${teamId}/retry`, { _csrf: 'stale' })).status, 403, 'stale token');
    const { csrf } = await bob.page('/conversions');
    const denied = await bob.post(`/conversions/${pubId}/retry`, { _csrf: csrf });
    assert.equal(denied.status, 403);
    assert.match(await denied.text(), /needs push access/);
    assert.equal((await bob.post(`/conversions/${teamId}/retry`, { _csrf: csrf })).status, 404, 'invisible = absent');
    assert.deepEqual(await client.listTasks(), before, 'no task touched');
  });

  it('queues a failed task again from the form, audited; the task runs again', async () => {
    const t = task(await client.listTasks(), 'team/app');
    const { csrf } = await admin.page('/conversions');
    const r = await admin.post(`/conversions/${t.id}/retry`, { _csrf: csrf });
    assert.equal(r.status, 303);
    assert.equal(r.headers.get('location'), '/conversions');
    const again = await tasksWhen(
      client,
      (l) => task(l, 'team/app').finished !== t.finished && task(l, 'team/app').status === 'FAILED',
      'the retried task to end',
    );
    assert.equal(task(again, 'team/app').attempts, 1, 'attempts counted from zero again');
    const logs = (await (await reg.req('/api/v2.0/audit-logs?q=operation=retry')).json()) as Array<{ resource: string; username: string }>;
    assert.deepEqual(
      logs.map((l) => [l.username, l.resource]),
      [['admin', t.source]],
    );
  });

  it('says so on the page when the accel service does not answer', async () => {
    await accel.close();
    const p = await admin.page('/conversions');
    assert.equal(p.status, 200);
    assert.match(p.text, /role="alert">the accel service did not answer/);
  });

  it("refuses to start with the header's file readable by others or its variable unset", async () => {
    const loose = join(dir, 'loose-token');
    await writeFile(loose, TOKEN);
    await chmod(loose, 0o644);
    /** Starts a registry with this console.accel; a registry that starts anyway is closed, then the test fails. */
    const refused = async (accelLink: Record<string, string>, data: string): Promise<unknown> => {
      const config = { console: { accel: { url: 'http://127.0.0.1:9', ...accelLink } } };
      try {
        const r = await startRegistry({ listen: '127.0.0.1:0', dataDir: join(dir, data), config });
        await r.close();
      } catch (err) {
        return err;
      }
      assert.fail('the registry started');
    };
    assert.match(
      String(await refused({ authHeaderFile: loose }, 'r2')),
      /console\.accel: authHeaderFile .* is readable by group or others/,
    );
    assert.match(
      String(await refused({ authHeaderEnv: 'FERRY_TEST_UNSET_VAR' }, 'r3')),
      /console\.accel: environment variable FERRY_TEST_UNSET_VAR \(authHeaderEnv\) is not set/,
    );
  });
});
