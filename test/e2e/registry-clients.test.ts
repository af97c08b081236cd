/**
 * Real clients against `ferry registry`: skopeo round trips of an OCI image and a Docker v2s2
 * image with identical digests (admin and robot credentials; a pull-only robot cannot push), and
 * containerd pulling (`ctr image pull --plain-http`) and running an image from it.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { requirePrereqs } from '../support/prereq.js';
import {
  buildOciImage,
  busyboxRootfs,
  exec,
  pushImage,
  startContainerd,
  type BuiltImage,
  type Containerd,
} from '../../src/bench/env/index.js';
import { startTestRegistry, type TestRegistry } from '../../src/registry/testing/client.js';

describe('ferry registry with skopeo and containerd', () => {
  let work: string;
  let reg: TestRegistry;
  let img: BuiltImage;
  let ctd: Containerd | undefined;
  const admin = 'admin:Adm1nSecret';

  async function robot(name: string, actions: string[]): Promise<string> {
    const b = await reg.createRobot('library', name, actions);
    return `${b.name}:${b.secret}`;
  }

  async function skopeo(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
    return exec('skopeo', args, { timeoutMs: 120_000 });
  }

  /** Copies the registry image to a `dir:` and returns the sha256 of the manifest written there. */
  async function pullDigest(ref: string, creds?: string): Promise<string> {
    const out = await mkdtemp(join(work, 'pull-'));
    const r = await skopeo(['copy', '--src-tls-verify=false', ...(creds ? [`--src-creds=${creds}`] : []), `docker://${ref}`, `dir:${out}`]);
    assert.equal(r.code, 0, r.stderr);
    return `sha256:${createHash('sha256')
      .update(await readFile(join(out, 'manifest.json')))
      .digest('hex')}`;
  }

  before(async () => {
    requirePrereqs({ root: true, commands: ['skopeo', 'containerd', 'ctr', 'runc', 'busybox', 'tar'] });
    work = await mkdtemp(join(tmpdir(), 'ferry-reg-e2e-'));
    reg = await startTestRegistry();
    await busyboxRootfs(join(work, 'rootfs'));
    img = await buildOciImage({
      layers: [join(work, 'rootfs')],
      outDir: join(work, 'layout'),
      config: { Cmd: ['/bin/sh', '-c', 'echo hello from ferry'] },
    });
  });
  after(async () => {
    await ctd?.stop();
    await reg?.destroy();
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('round-trips an OCI image with admin credentials, digests identical', async () => {
    const pushed = await pushImage(img.layoutDir, `${reg.host}/library/busybox:oci`, { creds: admin });
    assert.equal(pushed, img.manifestDigest);
    assert.equal(await pullDigest(`${reg.host}/library/busybox:oci`), img.manifestDigest, 'anonymous pull from library');
    const inspect = await skopeo(['inspect', '--tls-verify=false', `docker://${reg.host}/library/busybox:oci`]);
    assert.equal((JSON.parse(inspect.stdout) as { Digest: string }).Digest, img.manifestDigest);
  });

  it('round-trips a Docker v2s2 image, digests identical through a registry-to-registry copy', async () => {
    const pushed = await pushImage(img.layoutDir, `${reg.host}/library/busybox:v2s2`, { creds: admin, format: 'v2s2' });
    assert.notEqual(pushed, img.manifestDigest);
    const raw = await skopeo(['inspect', '--raw', '--tls-verify=false', `docker://${reg.host}/library/busybox:v2s2`]);
    assert.equal((JSON.parse(raw.stdout) as { mediaType: string }).mediaType, 'application/vnd.docker.distribution.manifest.v2+json');
    assert.equal(await pullDigest(`${reg.host}/library/busybox:v2s2`), pushed);
    const copy = await skopeo([
      'copy',
      '--src-tls-verify=false',
      '--dest-tls-verify=false',
      `--dest-creds=${admin}`,
      `docker://${reg.host}/library/busybox:v2s2`,
      `docker://${reg.host}/mirror/busybox:v2s2`,
    ]);
    assert.equal(copy.code, 0, copy.stderr);
    assert.equal(await pullDigest(`${reg.host}/mirror/busybox:v2s2`, admin), pushed);
  });

  it('a robot with pull+push pushes both formats; a pull-only robot is refused', async () => {
    const pusher = await robot('skopeo', ['pull', 'push']);
    assert.equal(await pushImage(img.layoutDir, `${reg.host}/library/robot:oci`, { creds: pusher }), img.manifestDigest);
    const v2 = await pushImage(img.layoutDir, `${reg.host}/library/robot:v2s2`, { creds: pusher, format: 'v2s2' });
    assert.equal(await pullDigest(`${reg.host}/library/robot:v2s2`, pusher), v2);
    const reader = await robot('reader', ['pull']);
    assert.equal(await pullDigest(`${reg.host}/library/robot:oci`, reader), img.manifestDigest);
    await assert.rejects(pushImage(img.layoutDir, `${reg.host}/library/robot:nope`, { creds: reader }), /unauthorized|denied|401|403/i);
    await assert.rejects(pushImage(img.layoutDir, `${reg.host}/library/anon:nope`), /unauthorized|denied|401|403|authentication/i);
    const tags = (await (await reg.req('/v2/library/robot/tags/list')).json()) as { tags: string[] };
    assert.deepEqual(tags.tags, ['oci', 'v2s2']);
  });

  it('containerd pulls with --plain-http and runs the image', async () => {
    const ref = `${reg.host}/library/busybox:oci`;
    ctd = await startContainerd({ dir: join(work, 'ctd') });
    const pull = await ctd.ctr(['images', 'pull', '--plain-http', ref]);
    assert.equal(pull.code, 0, pull.stderr);
    const run = await ctd.ctr([
      'run',
      '--rm',
      ref,
      'ferry-reg-e2e',
      '/bin/sh',
      '-c',
      'echo hello from ferry; busybox | head -1 | cut -c1-7',
    ]);
    assert.equal(run.code, 0, run.stderr);
    assert.equal(run.stdout.replace(/\r/g, ''), 'hello from ferry\nBusyBox\n');
    const v2 = await ctd.ctr(['images', 'pull', '--plain-http', `${reg.host}/library/busybox:v2s2`]);
    assert.equal(v2.code, 0, v2.stderr);
    await ctd.stop();
    ctd = undefined;
  });
});
