/**
 * The web console in headless Chromium (Debian's `chromium`, driven by playwright-core) against real
 * `ferry registry` and `ferry accel` processes (the registry linked to accel by `console.accel`, a
 * webhook policy on the project pointing at accel): log in, create a private project and a robot (its
 * secret shown once), push an image with skopeo as that robot, watch its conversion finish on the
 * conversions page without a reload, see its Nydus tag on the repository page; a task whose source
 * does not exist fails with its reason, and once the image is there it is retried from the page and
 * completes; an anonymous visitor sees only public projects. Screenshots of each page go to
 * test-output/console/.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { stringify } from 'yaml';
import { buildOciImage, busyboxRootfs, exec, type BuiltImage } from '../../src/bench/env/index.js';
import { AccelClient } from '../../src/accel/index.js';
import { PeerClient, startPeer, startScheduler, type PeerHandle, type SchedulerHandle } from '../../src/p2p/index.js';
import { freePort } from '../support/daemons.js';
import { listeningUrl } from '../support/ferry.js';
import { FERRY_BIN, ROOT } from '../support/paths.js';
import { requirePrereqs } from '../support/prereq.js';

const ADMIN_PASSWORD = 'Adm1nSecret-e2e';
const SHOTS = join(ROOT, 'test-output', 'console');

const ACCEL_HEADER = 'Bearer console-e2e-accel-Vb42';
const PREHEAT_TOKEN = 'console-e2e-preheat-Hq81';
const CLUSTER_SECRET = 'console-e2e-cluster-secret-0123456789abcdef';
const adminBasic = `Basic ${Buffer.from(`admin:${ADMIN_PASSWORD}`).toString('base64')}`;

interface Proc {
  url: string;
  child: ChildProcess;
}

/** Starts `ferry <args>`; resolves its base URL once it prints `listening on URL`. */
async function startProcess(what: string, args: string[]): Promise<Proc> {
  const child = spawn(process.execPath, [FERRY_BIN, ...args], {
    env: { ...process.env, FERRY_ADMIN_PASSWORD: ADMIN_PASSWORD, FERRY_LOG_LEVEL: 'warn' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  return { url: await listeningUrl(child, { what }), child };
}

async function stop(p: Proc | undefined): Promise<void> {
  if (!p || p.child.exitCode !== null) return;
  const exited = new Promise((r) => p.child.once('exit', r));
  p.child.kill('SIGTERM');
  await exited;
}

/**
 * `ferry accel` converting what `host` sends (as admin: its credentials in an owner-only acceld
 * config), then `ferry registry` on `host` linked to it by console.accel (the header in an owner-only file).
 */
async function startStack(work: string, host: string, schedulerUrl: string): Promise<{ accel: Proc; reg: Proc }> {
  const accelCfg = join(work, 'accel.yaml');
  const auth = Buffer.from(`admin:${ADMIN_PASSWORD}`).toString('base64');
  const source = { [host]: { auth, insecure: true, webhook: { auth_header: ACCEL_HEADER } } };
  await writeFile(accelCfg, stringify({ provider: { work_dir: join(work, 'accel'), source } }), { mode: 0o600 });
  const accel = await startProcess('ferry accel', ['accel', '--config', accelCfg, '--listen', '127.0.0.1:0']);
  const headerFile = join(work, 'accel-header');
  await writeFile(headerFile, `${ACCEL_HEADER}\n`, { mode: 0o600 });
  const regCfg = join(work, 'registry.yaml');
  const preheatFile = join(work, 'scheduler-header');
  await writeFile(preheatFile, `Bearer ${PREHEAT_TOKEN}\n`, { mode: 0o600 });
  const links = {
    accel: { url: accel.url, authHeaderFile: headerFile },
    scheduler: { url: schedulerUrl, authHeaderFile: preheatFile },
  };
  // the reports `ferry bench` wrote into docs/results (one directory per run)
  const benchDir = join(ROOT, 'docs', 'results', 'bench-runs');
  await writeFile(regCfg, stringify({ console: { ...links, benchDir } }));
  const reg = await startProcess('ferry registry', ['registry', '--listen', host, '--data', join(work, 'data'), '--config', regCfg]);
  return { accel, reg };
}

/** Copies the OCI layout to `ref` with skopeo, credentials from an owner-only auth file. */
async function skopeoPush(layoutDir: string, ref: string, authFile: string, digestFile: string): Promise<void> {
  const push = await exec(
    'skopeo',
    [
      'copy',
      '--quiet',
      `--digestfile=${digestFile}`,
      '--dest-tls-verify=false',
      `--dest-authfile=${authFile}`,
      '--format',
      'oci',
      `oci:${layoutDir}`,
      `docker://${ref}`,
    ],
    { timeoutMs: 120_000 },
  );
  assert.equal(push.code, 0, push.stderr);
}

describe('web console in headless Chromium against ferry registry', () => {
  let work: string;
  let reg: Proc;
  let accel: Proc;
  let scheduler: SchedulerHandle;
  const peers: PeerHandle[] = [];
  let host: string;
  let browser: Browser;
  let page: Page;
  let img: BuiltImage;
  let robot: { name: string; secret: string };

  const shot = (name: string): Promise<Buffer> => page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: true });

  before(async () => {
    requirePrereqs({ commands: ['chromium', 'skopeo', 'busybox', 'tar'] });
    await mkdir(SHOTS, { recursive: true });
    work = await mkdtemp(join(tmpdir(), 'ferry-console-e2e-'));
    host = `127.0.0.1:${await freePort()}`;
    // A P2P scheduler (preheat API behind a token) with a seed peer and a peer, in this process.
    const cluster = { token: CLUSTER_SECRET };
    scheduler = await startScheduler({ listen: '127.0.0.1:0', config: { cluster, preheat: { tokens: [PREHEAT_TOKEN] } } });
    for (const [name, seed] of [
      ['seed', true],
      ['node1', false],
    ] as const) {
      peers.push(
        await startPeer({
          dataDir: join(work, `p2p-${name}`),
          schedulers: [scheduler.url],
          seed,
          proxyListen: '127.0.0.1:0',
          uploadListen: '127.0.0.1:0',
          config: { cluster, host: { hostname: name }, download: { directBelow: 0 }, proxy: { allowedHosts: [host] } },
        }),
      );
    }
    ({ accel, reg } = await startStack(work, host, scheduler.url));
    await busyboxRootfs(join(work, 'rootfs'));
    img = await buildOciImage({ layers: [join(work, 'rootfs')], outDir: join(work, 'layout'), config: { Cmd: ['/bin/sh'] } });
    browser = await chromium.launch({ executablePath: '/usr/bin/chromium', headless: true, args: ['--no-sandbox'] });
    page = await browser.newPage({ viewport: { width: 1200, height: 760 } });
  });
  after(async () => {
    await browser?.close();
    await stop(reg);
    await stop(accel);
    for (const p of peers) await p.close().catch(() => undefined);
    await scheduler?.close();
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('logs in; a wrong password is refused on the page', async () => {
    await page.goto(`${reg.url}/`);
    assert.equal(new URL(page.url()).pathname, '/projects');
    await page.click('#login-link');
    await page.fill('input[name=username]', 'admin');
    await page.fill('input[name=password]', 'wrong');
    await page.click('#login-submit');
    assert.match((await page.textContent('[role=alert]')) ?? '', /Wrong user name or password/);
    await shot('login');
    await page.fill('input[name=username]', 'admin');
    await page.fill('input[name=password]', ADMIN_PASSWORD);
    await page.click('#login-submit');
    await page.waitForURL(`${reg.url}/projects`);
    assert.match((await page.textContent('.who')) ?? '', /admin \(admin\)/);
    const cookies = await page.context().cookies();
    const session = cookies.find((c) => c.name === 'ferry_session');
    assert.ok(session?.httpOnly && session.sameSite === 'Strict', 'HttpOnly, SameSite=Strict session cookie');
    assert.equal(await page.evaluate('document.cookie'), '', 'the session is invisible to scripts');
  });

  it('creates a private project', async () => {
    await page.fill('input[name=name]', 'team');
    await page.click('#create-project');
    await page.waitForURL(`${reg.url}/projects/team`);
    assert.match((await page.textContent('main')) ?? '', /private[\s\S]*No repositories yet/);
    await page.goto(`${reg.url}/projects`);
    assert.match((await page.textContent('#projects')) ?? '', /team\s*private/);
  });

  it('creates a robot for the project; its secret is shown once', async () => {
    await page.click('text=Robot accounts');
    await page.selectOption('select[name=project]', 'team');
    await page.fill('form[action="/robots"] input[name=name]', 'ci');
    await page.fill('input[name=description]', 'pushes from CI');
    await page.check('input[name=action][value=push]');
    await page.click('#create-robot');
    const secret = (await page.textContent('#secret-value')) ?? '';
    assert.match(secret, /^[A-Za-z0-9]{32}$/);
    robot = { name: 'robot$team+ci', secret };
    await shot('robots');
    await page.goto(`${reg.url}/robots`);
    assert.equal(await page.locator('#secret-value').count(), 0, 'the secret is not shown again');
    assert.ok(!(await page.content()).includes(secret));
    assert.match((await page.textContent('#robots')) ?? '', /robot\$team\+ci[\s\S]*repository pull, repository push[\s\S]*enabled/);
  });

  it('converts an image pushed by the robot with skopeo: the conversions page shows it finish, the repository its Nydus tag', async () => {
    // Harbor: a webhook policy on the project pointing at accel, with accel's Auth Header.
    const policy = await fetch(`${reg.url}/api/v2.0/projects/team/webhook/policies`, {
      method: 'POST',
      headers: { authorization: adminBasic, 'content-type': 'application/json' },
      body: JSON.stringify({
        name: 'accel',
        event_types: ['PUSH_ARTIFACT'],
        enabled: true,
        targets: [{ type: 'http', address: `${accel.url}/api/v1/conversions`, auth_header: ACCEL_HEADER, payload_format: 'Default' }],
      }),
    });
    assert.equal(policy.status, 201, await policy.text());
    await page.goto(`${reg.url}/conversions`);
    assert.match((await page.textContent('#tasks')) ?? '', /No conversion tasks you can see/);

    // Credentials in an owner-only auth file, never on a command line.
    const dockerConfig = join(work, 'docker');
    await mkdir(dockerConfig, { mode: 0o700 });
    const authFile = join(dockerConfig, 'config.json');
    const auth = Buffer.from(`${robot.name}:${robot.secret}`).toString('base64');
    await writeFile(authFile, JSON.stringify({ auths: { [host]: { auth } } }), { mode: 0o600 });
    await chmod(authFile, 0o600);
    const digestFile = join(work, 'pushed.digest');
    await skopeoPush(img.layoutDir, `${host}/team/busybox:v1`, authFile, digestFile);
    assert.equal((await readFile(digestFile, 'utf8')).trim(), img.manifestDigest);

    // No reload: the page's script polls the task table (every 2 s) until accel has converted the push.
    const row = page.locator('tr[data-task]', { hasText: `${host}/team/busybox:v1` });
    await row.locator('.state', { hasText: 'completed' }).waitFor({ timeout: 120_000 });
    assert.equal(await row.locator('.target').textContent(), `${host}/team/busybox:v1-nydus`);
    assert.match((await row.textContent()) ?? '', /[KM]iB → [\d.]+ [KM]iB/);
    assert.ok(!(await page.content()).includes('console-e2e-accel'), "accel's header never reaches the browser");
    await shot('conversions');

    await page.goto(`${reg.url}/projects/team`);
    await page.click('text=team/busybox');
    const table = (await page.textContent('#artifacts')) ?? '';
    assert.match(table, /v1\s*accelerated: v1-nydus/);
    assert.match(table, /v1-nydus\s*Nydus\s*RAFS v6 · [1-9]\d* chunks in [1-9]\d* blobs? · no prefetch trace/);
    assert.ok(
      (await page.locator('code.digest').evaluateAll((els) => els.map((e) => e.getAttribute('title')))).includes(img.manifestDigest),
    );
    // a prefetch trace attached with `ferry trace push` (the robot's credentials from its config.json) shows up
    const nydusRes = await fetch(`${reg.url}/v2/team/busybox/manifests/v1-nydus`, {
      headers: { accept: 'application/vnd.oci.image.manifest.v1+json', authorization: `Basic ${auth}` },
    });
    assert.equal(nydusRes.status, 200);
    const nydusManifest = (await nydusRes.json()) as { layers: Array<{ digest: string; annotations?: Record<string, string> }> };
    const dataBlobs = nydusManifest.layers
      .filter((l) => l.annotations?.['containerd.io/snapshot/nydus-bootstrap'] !== 'true')
      .map((l) => l.digest.slice('sha256:'.length));
    const traceFile = join(work, 'trace.json');
    await writeFile(traceFile, JSON.stringify({ schemaVersion: 1, blobs: dataBlobs, chunks: [[0, 0]] }));
    const pushed = await exec(
      process.execPath,
      [FERRY_BIN, 'trace', 'push', '--plain-http', '--file', traceFile, `${host}/team/busybox:v1-nydus`],
      {
        env: { ...process.env, DOCKER_CONFIG: dockerConfig },
      },
    );
    assert.equal(pushed.code, 0, pushed.stderr);
    await page.reload();
    assert.match(
      (await page.textContent('#artifacts')) ?? '',
      /v1-nydus\s*Nydus\s*RAFS v6 · [1-9]\d* chunks in [1-9]\d* blobs? · prefetch trace/,
    );
    await shot('repository');
    // The project: its quota usage and the webhook policy's delivery of the push, never its auth header.
    await page.goto(`${reg.url}/projects/team`);
    assert.match((await page.textContent('#quota')) ?? '', /^[\d.]+ MiB \/ unlimited$/);
    const hooks = page.locator('#webhooks .policy', { hasText: 'accel' });
    assert.match((await hooks.textContent()) ?? '', /PUSH_ARTIFACT → .*\/api\/v1\/conversions/);
    await hooks.locator('tr', { hasText: 'team/busybox' }).locator('.delivery-status', { hasText: 'Success' }).first().waitFor();
    assert.ok(!(await page.content()).includes('console-e2e-accel'), "the target's auth header is never shown");
    await shot('project');
    await page.goto(`${reg.url}/projects`);
    await shot('projects');
  });

  it('shows a failed task with its reason and retries it from the page', async () => {
    // A source accel cannot read: library/busybox:v2 does not exist yet (library has no webhook policy).
    const accelClient = new AccelClient(accel.url, { authHeader: ACCEL_HEADER });
    await accelClient.createTask(`${host}/library/busybox:v2`);
    await page.goto(`${reg.url}/conversions`);
    const row = page.locator('tr[data-task]', { hasText: `${host}/library/busybox:v2` });
    await row.locator('.state', { hasText: 'failed' }).waitFor({ timeout: 60_000 });
    assert.match((await row.locator('.reason').textContent()) ?? '', /NOT_FOUND/);
    await shot('conversions-failed');

    const authFile = join(work, 'admin-auth.json');
    await writeFile(authFile, JSON.stringify({ auths: { [host]: { auth: adminBasic.slice('Basic '.length) } } }), { mode: 0o600 });
    await skopeoPush(img.layoutDir, `${host}/library/busybox:v2`, authFile, join(work, 'v2.digest'));
    await row.locator('button.retry').click();
    await page.waitForURL(`${reg.url}/conversions`);
    await row.locator('.state', { hasText: 'completed' }).waitFor({ timeout: 120_000 });
    assert.equal(await row.locator('.target').textContent(), `${host}/library/busybox:v2-nydus`);
    assert.equal(await row.locator('button.retry').count(), 0);
    await shot('conversions-retried');
  });

  it('shows the P2P scheduler: hosts, seed peers, tasks, bytes from peers vs the registry, preheat jobs', async () => {
    await page.goto(`${reg.url}/p2p`);
    assert.equal((await page.textContent('#seed-count'))?.trim(), '1');
    assert.match((await page.textContent('#jobs')) ?? '', /No preheat jobs/);
    // Preheat library/busybox:v2 onto the seed (Dragonfly's job API, the token on the scheduler).
    const bearer = { authorization: `Bearer ${PREHEAT_TOKEN}`, 'content-type': 'application/json' };
    const job = { type: 'preheat', args: { type: 'image', url: `${reg.url}/v2/library/busybox/manifests/v2`, scope: 'single_seed_peer' } };
    const created = (await (
      await fetch(`${scheduler.url}/oapi/v1/jobs`, { method: 'POST', headers: bearer, body: JSON.stringify(job) })
    ).json()) as {
      id: number;
    };
    const jobRow = page.locator(`tr[data-job="${created.id}"]`);
    for (let i = 0; i < 60 && !((await jobRow.count()) && /SUCCESS/.test((await jobRow.textContent()) ?? '')); i++) {
      await new Promise((r) => setTimeout(r, 500));
      await page.reload();
    }
    assert.match((await jobRow.textContent()) ?? '', /SUCCESS/);
    // The peer fetches the image's layer: the seed serves it, so the bytes come from a peer, not the registry.
    const token = (await (
      await fetch(`${reg.url}/service/token?service=harbor-registry&scope=repository:library/busybox:pull`)
    ).json()) as {
      token: string;
    };
    const layer = img.layers[0]!;
    const res = await new PeerClient(peers[1]!.proxyUrl).download(`${reg.url}/v2/library/busybox/blobs/${layer.digest}`, {
      headers: { authorization: `Bearer ${token.token}` },
    });
    let got = 0;
    for await (const chunk of res) got += (chunk as Buffer).length;
    assert.equal(res.statusCode, 200);
    assert.equal(got, layer.size);
    await page.reload();
    assert.notEqual((await page.textContent('#from-peers'))?.trim(), '0 B', 'bytes from peers');
    assert.notEqual((await page.textContent('#from-source'))?.trim(), '0 B', "the seed's preheat from the registry");
    assert.match((await page.textContent('#hosts')) ?? '', /seed[\s\S]*seed peer[\s\S]*node1/);
    assert.match((await page.textContent('#p2p-tasks')) ?? '', /library\/busybox\/blobs/);
    assert.ok(!(await page.content()).includes(PREHEAT_TOKEN), 'the preheat token stays server-side');
    await shot('p2p');
  });

  it('shows the newest ferry bench report', async () => {
    await page.click('header >> text=Bench');
    await page.waitForURL(`${reg.url}/bench`);
    assert.match((await page.textContent('#bench-report')) ?? '', /Report \S+: \d{4}-\d\d-\d\dT.* → .*commit/);
    const rows = await page.locator('#bench tbody tr').count();
    assert.ok(rows > 0);
    assert.match((await page.textContent('#bench')) ?? '', /Ferry lazy/);
    await shot('bench');
  });

  it('an anonymous visitor sees only public projects', async () => {
    const anon = await browser.newPage({ viewport: { width: 1200, height: 600 } });
    try {
      await anon.goto(`${reg.url}/projects`);
      const text = (await anon.textContent('#projects')) ?? '';
      assert.match(text, /library\s*public/);
      assert.ok(!text.includes('team'), text);
      assert.equal(await anon.locator('#create-project').count(), 0);
      await anon.screenshot({ path: join(SHOTS, 'anonymous.png'), fullPage: true });
      const r = await anon.goto(`${reg.url}/projects/team/repositories/busybox`);
      assert.equal(r?.status(), 404);
      assert.ok(!(await anon.content()).includes(img.manifestDigest));
    } finally {
      await anon.close();
    }
  });

  it('logs out', async () => {
    await page.click('#logout');
    await page.waitForURL(`${reg.url}/login`);
    await page.goto(`${reg.url}/projects`);
    assert.ok(!((await page.textContent('#projects')) ?? '').includes('team'));
  });
});
