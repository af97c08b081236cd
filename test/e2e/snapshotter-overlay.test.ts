/**
 * The ferry snapshotter as containerd's proxy snapshotter for ordinary OCI images (overlay path):
 * `ctr images pull --snapshotter ferry` unpacks a multi-layer image through it (with a whiteout),
 * `ctr run --snapshotter ferry` runs it, snapshots are listed, and removing the image lets
 * containerd's GC remove them through Remove/Cleanup.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { requirePrereqs } from '../support/prereq.js';
import { busyboxRootfs, buildOciImage, exec, pushImage, startContainerd, whiteout, type Containerd } from '../../src/bench/env/index.js';
import { ferry } from './snapshotter-support.js';
import { startRegistry, type RegistryHandle } from '../../src/registry/index.js';
import { parseSnapshotterConfig } from '../../src/config/snapshotter.js';
import { startSnapshotter, type SnapshotterHandle } from '../../src/snapshotter/index.js';

let dir: string;
let reg: RegistryHandle;
let snap: SnapshotterHandle;
let cd: Containerd;
let ref: string;

before(async () => {
  requirePrereqs({ root: true, commands: ['containerd', 'ctr', 'runc', 'skopeo', 'busybox'] });
  dir = await mkdtemp(join(tmpdir(), 'ferry-snap-ovl-'));
  reg = await startRegistry({ listen: '127.0.0.1:0', dataDir: join(dir, 'reg'), adminPassword: 'pw-admin-1' });
  const l0 = await busyboxRootfs(join(dir, 'l0'));
  await writeFile(join(l0, 'etc', 'gone.txt'), 'to be deleted\n');
  const l1 = join(dir, 'l1');
  await mkdir(join(l1, 'srv'), { recursive: true });
  await writeFile(join(l1, 'srv', 'hello.txt'), 'hello from layer 1\n');
  await mkdir(join(l1, 'etc'), { recursive: true });
  await whiteout(l1, 'etc/gone.txt');
  const img = await buildOciImage({ layers: [l0, l1], outDir: join(dir, 'oci'), config: { Cmd: ['/bin/sh'] } });
  ref = `${reg.host}/library/bb:v1`;
  await pushImage(img.layoutDir, ref, { creds: 'admin:pw-admin-1' });
  const config = parseSnapshotterConfig({ address: join(dir, 'snap.sock'), root: join(dir, 'snaproot'), metricsAddress: '127.0.0.1:0' });
  snap = await startSnapshotter({ config });
  cd = await startContainerd({ dir: join(dir, 'cd'), snapshotters: { ferry: snap.address } });
});

after(async () => {
  await cd?.stop();
  await snap?.close();
  await reg?.close();
  if (dir) await rm(dir, { recursive: true, force: true });
});

test('ctr pull + run through the ferry snapshotter (overlay), then GC removes the snapshots', async () => {
  const plugins = await cd.ctr(['plugins', 'ls']);
  assert.match(plugins.stdout, /io\.containerd\.snapshotter\.v1\s+ferry\s+-\s+ok/);

  const pull = await cd.ctr(['images', 'pull', '--plain-http', '--snapshotter', 'ferry', ref]);
  assert.equal(pull.code, 0, `${pull.stdout}\n${pull.stderr}`);
  const sn = await cd.ctr(['snapshots', '--snapshotter', 'ferry', 'ls']);
  assert.equal(sn.stdout.trim().split('\n').length, 3, sn.stdout); // header + 2 committed layers

  const run = await cd.ctr([
    'run',
    '--rm',
    '--snapshotter',
    'ferry',
    ref,
    'ovl-1',
    '/bin/sh',
    '-c',
    'cat /srv/hello.txt; test -e /etc/gone.txt && echo LEAK || echo whiteout-ok; echo w > /tmp/x; busybox | head -1',
  ]);
  assert.equal(run.code, 0, run.stderr);
  assert.match(run.stdout, /hello from layer 1\nwhiteout-ok\nBusyBox v/);

  // the snapshotter's own view: 2 committed layers (the container's active one goes at the next GC)
  const infos = snap.snapshotter.list([]);
  assert.equal(infos.filter((i) => i.kind === 'COMMITTED').length, 2);
  const usage = await cd.ctr(['snapshots', '--snapshotter', 'ferry', 'usage']);
  assert.equal(usage.code, 0, usage.stderr);

  // metrics endpoint
  const m = await fetch(`http://${snap.metricsAddress}/metrics`).then((r) => r.text());
  assert.match(m, /ferry_snapshotter_rpc_total\{method="Prepare",code="OK"\} [1-9]/);

  // image removal + synchronous GC removes the layers through Remove (children first) and Cleanup
  const rmi = await cd.ctr(['images', 'rm', '--sync', ref]);
  assert.equal(rmi.code, 0, rmi.stderr);
  assert.equal(snap.snapshotter.list([]).length, 0);
  assert.deepEqual(await readdir(join(dir, 'snaproot', 'snapshots')), []);
});

test('ferry pull (ordinary OCI image: download + diff Apply + Commit) then ctr run', async () => {
  const r = await ferry(['pull', '--local', '--address', cd.address, '--namespace', cd.namespace, '--plain-http', '--json', ref]);
  assert.equal(r.code, 0, r.stderr);
  const res = JSON.parse(r.stdout) as { layers: Array<{ how: string }>; bytesFetched: number };
  assert.deepEqual(
    res.layers.map((l) => l.how),
    ['applied', 'applied'],
  );
  assert.ok(res.bytesFetched > 500_000, String(res.bytesFetched)); // busybox is ~1 MB gzip
  const imgs = await cd.ctr(['images', 'ls', '-q']);
  assert.match(imgs.stdout, new RegExp(ref.replace(/[.:/]/g, '\\$&')));
  const run = await cd.ctr(['run', '--rm', '--snapshotter', 'ferry', ref, 'ovl-2', '/bin/cat', '/srv/hello.txt']);
  assert.equal(run.code, 0, run.stderr);
  assert.equal(run.stdout, 'hello from layer 1\n');
  // a second pull finds everything unpacked
  const again = await ferry(['pull', '--local', '--address', cd.address, '--namespace', cd.namespace, '--plain-http', '--json', ref]);
  assert.equal(again.code, 0, again.stderr);
  assert.deepEqual(
    (JSON.parse(again.stdout) as { layers: Array<{ how: string }> }).layers.map((l) => l.how),
    ['present', 'present'],
  );
  // survives containerd's GC: a synchronous GC (removing a second name) keeps the image's content and snapshots
  const tag = await cd.ctr(['images', 'tag', ref, `${reg.host}/library/bb:other`]);
  assert.equal(tag.code, 0, tag.stderr);
  const rm2 = await cd.ctr(['images', 'rm', '--sync', `${reg.host}/library/bb:other`]);
  assert.equal(rm2.code, 0, rm2.stderr);
  assert.equal(snap.snapshotter.list(['kind==committed']).length, 2);
  const content = await cd.ctr(['content', 'ls', '-q']);
  assert.equal(content.stdout.trim().split('\n').length, 4, content.stdout); // manifest, config, 2 layers
});

test('ctr-remote images rpull --snapshotter ferry of an ordinary image falls back to download', async () => {
  requirePrereqs({ commands: ['ctr-remote'] });
  const rmi = await cd.ctr(['images', 'rm', '--sync', ref]);
  assert.equal(rmi.code, 0, rmi.stderr);
  const r = await exec('ctr-remote', [
    '--address',
    cd.address,
    '-n',
    cd.namespace,
    'images',
    'rpull',
    '--plain-http',
    '--snapshotter',
    'ferry',
    ref,
  ]);
  assert.equal(r.code, 0, r.stderr);
  const run = await cd.ctr(['run', '--rm', '--snapshotter', 'ferry', ref, 'ovl-3', '/bin/cat', '/srv/hello.txt']);
  assert.equal(run.code, 0, run.stderr);
  assert.equal(run.stdout, 'hello from layer 1\n');
});

test('ferry snapshotter print-config prints the proxy-plugin snippet; bad config is a clear error', async () => {
  const r = await ferry(['snapshotter', 'print-config', '--address', '/run/x/ferry.sock', '--name', 'lazy']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /\[proxy_plugins\."lazy"\]\n\s+type = "snapshot"\n\s+address = "\/run\/x\/ferry\.sock"/);
  assert.match(r.stdout, /disable_snapshot_annotations = false/);
  const bad = await ferry(['snapshotter', '--daemon-mode', 'bogus', '--root', join(dir, 'never'), '--address', join(dir, 'never.sock')]);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /daemon\.mode/);
});
