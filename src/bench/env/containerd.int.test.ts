import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdtemp, mkdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { requirePrereqs } from '../../../test/support/prereq.js';
import { parseImageConfig } from '../../oci/index.js';
import {
  buildOciImage,
  busyboxRootfs,
  containerdConfig,
  mountsUnder,
  pushImage,
  startContainerd,
  startDistributionRegistry,
  whiteout,
  type Containerd,
  type DistributionRegistry,
} from './index.js';

describe('bench/env containerd + images (real containerd, runc, skopeo, docker-registry)', () => {
  let work: string;
  let reg: DistributionRegistry | undefined;
  let ctd: Containerd | undefined;

  before(async () => {
    requirePrereqs({ root: true, commands: ['containerd', 'ctr', 'runc', 'skopeo', 'docker-registry', 'busybox', 'tar'] });
    work = await mkdtemp(join(tmpdir(), 'ferry-env-ctd-'));
    reg = await startDistributionRegistry({ dir: join(work, 'registry') });
  });
  after(async () => {
    await ctd?.stop();
    await reg?.close();
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('writes a private config with CRI disabled, opt path and proxy snapshotters', () => {
    const t = containerdConfig({
      root: '/r',
      state: '/s',
      address: '/a.sock',
      optPath: '/o',
      debugAddress: '/d.sock',
      snapshotters: { ferry: '/f.sock' },
    });
    assert.match(t, /^version = 2$/m);
    assert.match(t, /disabled_plugins = \["io.containerd.grpc.v1.cri"\]/);
    assert.match(t, /\[plugins."io.containerd.internal.v1.opt"\]\n {2}path = "\/o"/);
    assert.match(t, /\[proxy_plugins."ferry"\]\n {2}type = "snapshot"\n {2}address = "\/f.sock"/);
    assert.throws(
      () => containerdConfig({ root: '/r', state: '/s', address: '/a', optPath: '/o', debugAddress: '/d', snapshotters: { 'a"b': '/x' } }),
      /invalid snapshotter name/,
    );
  });

  it('builds a two-layer image with a whiteout, pushes it, pulls and runs it with ctr', async () => {
    const l1 = join(work, 'l1');
    const l2 = join(work, 'l2');
    await busyboxRootfs(l1);
    await mkdir(join(l1, 'data'), { recursive: true });
    await writeFile(join(l1, 'data/a'), 'gone\n');
    await writeFile(join(l1, 'data/b'), 'kept\n');
    await mkdir(join(l2, 'data'), { recursive: true });
    await whiteout(l2, 'data/a');
    await writeFile(join(l2, 'data/c'), 'new\n');
    const img = await buildOciImage({ layers: [l1, l2], outDir: join(work, 'layout'), config: { Cmd: ['/bin/sh'] } });
    assert.equal(img.layers.length, 2);
    const cfg = parseImageConfig(await readFile(join(img.layoutDir, 'blobs/sha256', img.configDigest.slice(7))));
    assert.deepEqual(
      cfg.rootfs.diff_ids,
      img.layers.map((l) => l.diffId),
    );
    const ref = `${reg!.host}/library/env-test:1`;
    const pushed = await pushImage(img.layoutDir, ref);
    assert.equal(pushed, img.manifestDigest);
    const pushedV2 = await pushImage(img.layoutDir, `${reg!.host}/library/env-test:v2s2`, { format: 'v2s2' });
    assert.notEqual(pushedV2, img.manifestDigest);

    ctd = await startContainerd({ dir: join(work, 'ctd') });
    assert.match(ctd.namespace, /^ferry-[0-9a-f]{10}$/);
    const pull = await ctd.ctr(['images', 'pull', '--plain-http', ref]);
    assert.equal(pull.code, 0, pull.stderr);
    const run = await ctd.ctr(['run', '--rm', ref, 'envtest1', '/bin/sh', '-c', 'ls /data; cat /data/b']);
    assert.equal(run.code, 0, run.stderr);
    assert.equal(run.stdout.replace(/\r/g, ''), 'b\nc\nkept\n');
    // leave a running task behind: stop() must clean it up
    const bg = await ctd.ctr(['run', '-d', ref, 'envtest2', '/bin/sleep', '600']);
    assert.equal(bg.code, 0, bg.stderr);
    const { root, namespace } = ctd;
    await ctd.stop();
    ctd = undefined;
    assert.deepEqual(await mountsUnder(root), []);
    assert.equal(existsSync(join('/run/containerd/runc', namespace)), false);
  });
});
