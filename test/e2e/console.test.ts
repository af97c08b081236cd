/**
 * The web console in headless Chromium (Debian's `chromium`, driven by playwright-core) against a
 * real `ferry registry` process: log in, create a private project and a robot (its secret shown
 * once), push an image with skopeo as that robot, convert it with `ferry convert` to `<tag>-nydus`,
 * see the repository, the tag and — without a reload — its Nydus form; an anonymous visitor sees only public projects.
 * Screenshots of each page go to test-output/console/.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { buildOciImage, busyboxRootfs, exec, type BuiltImage } from '../../src/bench/env/index.js';
import { ferry, listeningUrl } from '../support/ferry.js';
import { FERRY_BIN, ROOT } from '../support/paths.js';
import { requirePrereqs } from '../support/prereq.js';

const ADMIN_PASSWORD = 'Adm1nSecret-e2e';
const SHOTS = join(ROOT, 'test-output', 'console');

/** Starts `ferry registry` on a free loopback port; resolves its base URL once it listens. */
async function startRegistryProcess(dataDir: string): Promise<{ url: string; child: ChildProcess }> {
  const child = spawn(process.execPath, [FERRY_BIN, 'registry', '--listen', '127.0.0.1:0', '--data', dataDir], {
    env: { ...process.env, FERRY_ADMIN_PASSWORD: ADMIN_PASSWORD, FERRY_LOG_LEVEL: 'warn' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const url = await listeningUrl(child, { what: 'ferry registry' });
  return { url, child };
}

describe('web console in headless Chromium against ferry registry', () => {
  let work: string;
  let reg: { url: string; child: ChildProcess };
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
    reg = await startRegistryProcess(join(work, 'data'));
    host = new URL(reg.url).host;
    await busyboxRootfs(join(work, 'rootfs'));
    img = await buildOciImage({ layers: [join(work, 'rootfs')], outDir: join(work, 'layout'), config: { Cmd: ['/bin/sh'] } });
    browser = await chromium.launch({ executablePath: '/usr/bin/chromium', headless: true, args: ['--no-sandbox'] });
    page = await browser.newPage({ viewport: { width: 1200, height: 760 } });
  });
  after(async () => {
    await browser?.close();
    if (reg?.child.exitCode === null) {
      const exited = new Promise((r) => reg.child.once('exit', r));
      reg.child.kill('SIGTERM');
      await exited;
    }
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

  it('shows an image pushed by the robot with skopeo, and its Nydus form after ferry convert', async () => {
    // Credentials in an owner-only auth file, never on a command line.
    const dockerConfig = join(work, 'docker');
    await mkdir(dockerConfig, { mode: 0o700 });
    const authFile = join(dockerConfig, 'config.json');
    const auth = Buffer.from(`${robot.name}:${robot.secret}`).toString('base64');
    await writeFile(authFile, JSON.stringify({ auths: { [host]: { auth } } }), { mode: 0o600 });
    await chmod(authFile, 0o600);
    const digestFile = join(work, 'pushed.digest');
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
        `oci:${img.layoutDir}`,
        `docker://${host}/team/busybox:v1`,
      ],
      { timeoutMs: 120_000 },
    );
    assert.equal(push.code, 0, push.stderr);
    assert.equal((await readFile(digestFile, 'utf8')).trim(), img.manifestDigest);

    await page.goto(`${reg.url}/projects/team`);
    await page.click('text=team/busybox');
    assert.match((await page.textContent('#artifacts')) ?? '', /v1\s*not accelerated/);
    assert.ok((await page.getAttribute('code.digest', 'title')) === img.manifestDigest);

    const conv = await ferry(
      [
        'convert',
        '--source',
        `${host}/team/busybox:v1`,
        '--target',
        `${host}/team/busybox:v1-nydus`,
        '--source-plain-http',
        '--target-plain-http',
      ],
      { env: { DOCKER_CONFIG: dockerConfig } },
    );
    assert.equal(conv.code, 0, conv.stderr);
    // No reload: the page's script polls the artifacts table (every 5 s) and shows the new tag.
    await page.locator('#artifacts', { hasText: 'v1-nydus' }).waitFor({ timeout: 30_000 });
    const table = (await page.textContent('#artifacts')) ?? '';
    assert.match(table, /v1\s*accelerated: v1-nydus/);
    assert.match(table, /v1-nydus\s*Nydus/);
    await shot('repository');
    await page.goto(`${reg.url}/projects`);
    await shot('projects');
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
