/**
 * acceld's `estargz` driver end to end: `ferry accel` with `driver.type: estargz` converts an image
 * pushed to `ferry registry` into `<tag>-estargz`. Checked with independent tools: GNU tar extracts
 * each eStargz layer to the same tree as its source layer (plus the landmark and TOC files eStargz
 * adds); the TOC digest annotation is the sha256 of the TOC the footer points at; every TOC offset is
 * a gzip member starting with that file's bytes; the diff_ids are the uncompressed tars'; skopeo
 * copies the image; containerd pulls and runs it; `ctr-remote images get-toc-digest` (stargz-
 * snapshotter's own reader) finds the same TOC digest in containerd's content store.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { chmod, link, mkdir, mkdtemp, rm, symlink, unlink, writeFile } from 'node:fs/promises';
import { existsSync, openSync, closeSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { gunzipSync } from 'node:zlib';
import { requirePrereqs } from '../support/prereq.js';
import { diffSnapshots, snapshot } from '../support/fstree.js';
import {
  buildOciImage,
  busyboxRootfs,
  exec,
  mountsUnder,
  pushImage,
  startContainerd,
  unmountUnder,
  waitFor,
  type Containerd,
} from '../../src/bench/env/index.js';
import { STARGZ_DAEMON, findStargzDaemon, stargzDaemonArgs } from '../../src/bench/index.js';
import { startTestRegistry, ADMIN_PASSWORD, type TestRegistry } from '../../src/registry/testing/client.js';
import { AccelClient } from '../../src/accel/client.js';
import { startAccel, type AccelHandle } from '../../src/accel/index.js';
import {
  EstargzAnnotation,
  FOOTER_SIZE,
  PREFETCH_LANDMARK,
  TOC_TAR_NAME,
  parseFooter,
  parseToc,
  type Toc,
} from '../../src/format/estargz/index.js';
import { readLayer } from '../../src/format/tar/index.js';

const sha = (b: Buffer): string => `sha256:${createHash('sha256').update(b).digest('hex')}`;
const AUTH = 'Basic ZXN0YXJnei1lMmU6c2VjcmV0';
const OCI_MANIFEST = 'application/vnd.oci.image.manifest.v1+json';

interface Manifest {
  config: { digest: string };
  layers: Array<{ digest: string; mediaType: string; annotations?: Record<string, string> }>;
  annotations?: Record<string, string>;
}

/** The TOC a blob's footer points at, and the bytes of its tar entry. */
async function tocOf(blob: Buffer): Promise<{ toc: Toc; json: Buffer; offset: number }> {
  const offset = parseFooter(blob.subarray(blob.length - FOOTER_SIZE));
  const member = gunzipSync(blob.subarray(offset, blob.length - FOOTER_SIZE));
  const entries: Array<{ path: string; data: Buffer }> = [];
  for await (const { entry, body } of readLayer(Readable.from([member]))) {
    const parts: Buffer[] = [];
    for await (const c of body) parts.push(c as Buffer);
    entries.push({ path: entry.path, data: Buffer.concat(parts) });
  }
  assert.deepEqual(
    entries.map((e) => e.path),
    [TOC_TAR_NAME],
    'the TOC member holds the TOC entry alone',
  );
  return { toc: parseToc(entries[0]!.data), json: entries[0]!.data, offset };
}

describe('accel estargz driver: convert, extract, pull and run', () => {
  let work: string;
  let reg: TestRegistry;
  let accel: AccelHandle | undefined;
  let ctd: Containerd | undefined;
  let source: Manifest;
  let target: Manifest;
  const big = Buffer.alloc(2_500_000 + 123);

  async function get(path: string, accept?: string): Promise<Buffer> {
    const r = await reg.req(path, accept ? { headers: { accept } } : {});
    assert.equal(r.status, 200, `${path}: ${r.status}`);
    return Buffer.from(await r.arrayBuffer());
  }
  const blob = (d: string): Promise<Buffer> => get(`/v2/library/app/blobs/${d}`);

  before(async () => {
    requirePrereqs({ root: true, commands: ['skopeo', 'containerd', 'ctr', 'runc', 'busybox', 'tar', 'setfattr', 'ctr-remote'] });
    work = await mkdtemp(join(tmpdir(), 'ferry-esgz-e2e-'));
    reg = await startTestRegistry();
    await busyboxRootfs(join(work, 'base'));
    const extra = join(work, 'extra');
    await mkdir(join(extra, 'opt/app'), { recursive: true });
    for (let i = 0; i < big.length; i++) big[i] = (i * 7919) % 251;
    await writeFile(join(extra, 'opt/app/big.bin'), big);
    await writeFile(join(extra, 'opt/app/hello.txt'), 'hello from estargz\n');
    await writeFile(join(extra, 'opt/app/empty'), '');
    await writeFile(join(extra, 'opt/app/suid'), '#!/bin/sh\n');
    await chmod(join(extra, 'opt/app/suid'), 0o4755);
    await link(join(extra, 'opt/app/hello.txt'), join(extra, 'opt/app/hard.txt'));
    await symlink('hello.txt', join(extra, 'opt/app/soft.txt'));
    assert.equal((await exec('setfattr', ['-n', 'user.ferry', '-v', 'esgz', join(extra, 'opt/app/hello.txt')])).code, 0);
    const img = await buildOciImage({
      layers: [join(work, 'base'), extra],
      outDir: join(work, 'layout'),
      config: { Cmd: ['/bin/sh', '-c', 'cat /opt/app/hard.txt'] },
    });
    await pushImage(img.layoutDir, `${reg.host}/library/app:v1`, { creds: `admin:${ADMIN_PASSWORD}` });
    accel = await startAccel({
      config: {
        provider: {
          source: {
            [reg.host]: { auth: Buffer.from(`admin:${ADMIN_PASSWORD}`).toString('base64'), insecure: true, webhook: { auth_header: AUTH } },
          },
        },
        converter: {
          worker: 1,
          driver: {
            type: 'estargz',
            config: { prefetch_patterns: '/bin/busybox\n/opt/app/hard.txt', estargz_chunk_size: '1MiB', estargz_compression_level: '6' },
          },
        },
      },
      listen: '127.0.0.1:0',
      workDir: join(work, 'accel'),
    });
    const client = new AccelClient(accel.url.replace(/^http:\/\//, ''), { authHeader: AUTH });
    await client.createTask(`${reg.host}/library/app:v1`, { sync: true });
    const tasks = await client.listTasks();
    assert.equal(tasks[0]?.status, 'COMPLETED', JSON.stringify(tasks[0]));
    source = JSON.parse((await get('/v2/library/app/manifests/v1', OCI_MANIFEST)).toString()) as Manifest;
    target = JSON.parse((await get('/v2/library/app/manifests/v1-estargz', OCI_MANIFEST)).toString()) as Manifest;
  });
  after(async () => {
    await ctd?.stop();
    await accel?.close();
    await reg?.destroy();
    if (work) await rm(work, { recursive: true, force: true });
  });

  it('each eStargz layer is one gzip stream that GNU tar extracts to the source layer tree (+ landmark and TOC)', async () => {
    assert.equal(target.layers.length, source.layers.length);
    assert.equal(target.annotations?.['io.goharbor.artifact.v1alpha1.acceleration.driver.name'], 'estargz');
    for (const [i, l] of target.layers.entries()) {
      const dirs = [join(work, `x-src-${i}`), join(work, `x-esgz-${i}`)];
      const blobs = [await blob(source.layers[i]!.digest), await blob(l.digest)];
      for (const [k, d] of dirs.entries()) {
        await mkdir(d);
        await writeFile(`${d}.tgz`, blobs[k]!);
        const r = await exec('tar', ['--xattrs', '--xattrs-include=*', '--same-owner', '-p', '-xzf', `${d}.tgz`, '-C', d]);
        assert.equal(r.code, 0, r.stderr);
      }
      const added = [join(dirs[1]!, TOC_TAR_NAME), join(dirs[1]!, PREFETCH_LANDMARK)];
      for (const f of added) assert.ok(existsSync(f), `${f} extracted`);
      for (const f of added) await unlink(f);
      const opts = { xattrs: true, hardlinks: true, root: true };
      const [a, b] = [snapshot(dirs[0]!, opts), snapshot(dirs[1]!, opts)];
      // GNU tar sets a directory's mtime as soon as it moves on to an entry outside it; entries put
      // back into a directory later (the rest of a directory whose prioritized file went first) touch
      // it again. containerd's applier sets directory times at the end, as the tar asks.
      for (const [k, v] of Object.entries(a)) if (v.type === 'dir' && b[k]?.type === 'dir' && v.mtime !== undefined) b[k]!.mtime = v.mtime;
      assert.deepEqual(diffSnapshots(a, b), [], `layer ${i}`);
    }
  });

  it('TOC digest annotation = sha256 of the TOC the footer points at; offsets are gzip members of each file; diff_ids right', async () => {
    const config = JSON.parse((await blob(target.config.digest)).toString()) as { rootfs: { diff_ids: string[] } };
    for (const [i, l] of target.layers.entries()) {
      const b = await blob(l.digest);
      const { toc, json, offset } = await tocOf(b);
      assert.equal(l.mediaType, 'application/vnd.oci.image.layer.v1.tar+gzip');
      assert.equal(l.annotations?.[EstargzAnnotation.TOC_DIGEST], sha(json), `layer ${i} TOC digest`);
      const tar = gunzipSync(b);
      assert.equal(config.rootfs.diff_ids[i], sha(tar), `layer ${i} diff_id`);
      assert.equal(l.annotations?.['containerd.io/uncompressed'], sha(tar));
      assert.equal(l.annotations?.[EstargzAnnotation.UNCOMPRESSED_SIZE], String(tar.length));
      const data = toc.entries.filter((e) => e.offset !== undefined);
      for (const [k, e] of data.entries()) {
        const next = data[k + 1]?.offset ?? offset;
        const plain = gunzipSync(b.subarray(e.offset!, next));
        const fileSize = toc.entries.find((x) => x.name === e.name && x.type === 'reg')!.size!;
        const n = e.chunkSize ?? fileSize - (e.chunkOffset ?? 0);
        assert.equal(sha(plain.subarray(0, n)), e.chunkDigest, `${e.name}@${e.chunkOffset ?? 0}`);
      }
      // prioritized files first, then the landmark
      const names = toc.entries.map((e) => e.name);
      const wanted = i === 0 ? 'bin/busybox' : 'opt/app/hard.txt';
      assert.ok(names.indexOf(wanted) < names.indexOf(PREFETCH_LANDMARK), `${wanted} before the landmark`);
      if (i === 1) {
        // a hardlink's target comes before it (moved along when the link is prioritized); the 2.5 MB file is chunked at 1 MiB
        const links = toc.entries.filter((e) => e.type === 'hardlink');
        assert.equal(links.length, 1);
        for (const h of links) assert.ok(names.indexOf(h.linkName!) < names.indexOf(h.name), `${h.linkName} before ${h.name}`);
        assert.deepEqual(
          toc.entries.filter((e) => e.name === 'opt/app/big.bin').map((e) => e.type),
          ['reg', 'chunk', 'chunk'],
        );
        assert.equal(toc.entries.find((e) => e.name === 'opt/app/big.bin')!.digest, sha(big));
      }
    }
  });

  it('skopeo copies the image (digests verified); containerd pulls and runs it; ctr-remote reads the TOC digest', async () => {
    const out = join(work, 'skopeo');
    const cp = await exec('skopeo', ['copy', '--src-tls-verify=false', `docker://${reg.host}/library/app:v1-estargz`, `dir:${out}`], {
      timeoutMs: 120_000,
    });
    assert.equal(cp.code, 0, cp.stderr);
    ctd = await startContainerd({ dir: join(work, 'ctd') });
    const ref = `${reg.host}/library/app:v1-estargz`;
    const pull = await ctd.ctr(['images', 'pull', '--plain-http', ref]);
    assert.equal(pull.code, 0, pull.stderr);
    const run = await ctd.ctr(['run', '--rm', ref, 'ferry-esgz-e2e']);
    assert.equal(run.code, 0, run.stderr);
    assert.equal(run.stdout.replace(/\r/g, ''), 'hello from estargz\n');
    for (const l of target.layers) {
      const r = await exec('ctr-remote', ['--address', ctd.address, '-n', ctd.namespace, 'images', 'get-toc-digest', l.digest]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout.trim(), l.annotations?.[EstargzAnnotation.TOC_DIGEST]);
    }
    await ctd.stop();
    ctd = undefined;
  });

  it("parity with upstream: ctr-remote's own conversion of the same image has the same TOC entries (names, types, modes, owners, sizes, digests, chunks)", async () => {
    ctd = await startContainerd({ dir: join(work, 'ctd-parity') });
    const remote = (args: string[]) =>
      exec('ctr-remote', ['--address', ctd!.address, '-n', ctd!.namespace, ...args], { timeoutMs: 300_000 });
    const src = `${reg.host}/library/app:v1`;
    const pull = await ctd.ctr(['images', 'pull', '--plain-http', src]);
    assert.equal(pull.code, 0, pull.stderr);
    const conv = await remote([
      'images',
      'convert',
      '--estargz',
      '--oci',
      '--estargz-chunk-size',
      String(1 << 20),
      src,
      'local/upstream:esgz',
    ]);
    assert.equal(conv.code, 0, conv.stderr);
    const ls = await ctd.ctr(['images', 'ls']);
    const digest = /local\/upstream:esgz\s+\S+\s+(sha256:[0-9a-f]{64})/.exec(ls.stdout)?.[1];
    assert.ok(digest, ls.stdout);
    const up = JSON.parse((await ctd.ctr(['content', 'get', digest])).stdout) as Manifest;
    assert.equal(up.layers.length, target.layers.length);
    // what both writers must agree on; userName/groupName depend on entry order, offsets on compression
    const facts = (toc: Toc): string[] =>
      toc.entries
        .map((e) => ({ ...e, name: e.name.replace(/^\.\//, '').replace(/\/$/, '') || '.' }))
        .filter((e) => e.name !== '.' && e.name !== PREFETCH_LANDMARK && e.name !== '.no.prefetch.landmark')
        .map((e) =>
          JSON.stringify([
            e.name,
            e.type,
            e.size ?? 0,
            e.modtime ?? '',
            e.linkName ?? '',
            e.mode ?? 0,
            e.uid ?? 0,
            e.gid ?? 0,
            e.devMajor ?? 0,
            e.devMinor ?? 0,
            e.xattrs ?? {},
            e.digest ?? '',
            e.chunkOffset ?? 0,
            e.chunkSize ?? 0,
            e.chunkDigest ?? '',
          ]),
        )
        .sort();
    for (const [i, l] of up.layers.entries()) {
      const dump = await remote(['images', 'get-toc-digest', '--dump-toc', l.digest]);
      assert.equal(dump.code, 0, dump.stderr);
      const theirs = parseToc(Buffer.from(dump.stdout));
      const ours = (await tocOf(await blob(target.layers[i]!.digest))).toc;
      assert.deepEqual(facts(ours), facts(theirs), `layer ${i}`);
    }
    await ctd.stop();
    ctd = undefined;
  });

  it('stargz-snapshotter runs the image lazily: every layer mounted remotely, none unpacked (extra check, a bench tool)', async (t) => {
    const daemon = findStargzDaemon();
    if (!daemon) {
      t.skip(`${STARGZ_DAEMON} not built (sudo bench/estargz/build.sh builds it for ferry bench): lazy run not checked`);
      return;
    }
    const dir = join(work, 'stargz');
    await mkdir(dir, { recursive: true });
    const sock = join(dir, 'stargz.sock');
    const logFd = openSync(join(dir, 'stargz.log'), 'a');
    const proc = spawn(daemon, stargzDaemonArgs({ root: join(dir, 'root'), address: sock, registries: [reg.host] }), {
      stdio: ['ignore', logFd, logFd],
    });
    closeSync(logFd);
    let lazy: Containerd | undefined;
    try {
      await waitFor(() => existsSync(sock) || proc.exitCode !== null, 'containerd-stargz-grpc socket', 30_000);
      assert.equal(proc.exitCode, null, 'containerd-stargz-grpc exited at start (see stargz.log)');
      lazy = await startContainerd({ dir: join(work, 'ctd-lazy'), snapshotters: { stargz: sock } });
      const ref = `${reg.host}/library/app:v1-estargz`;
      const pull = await exec(
        'ctr-remote',
        ['--address', lazy.address, '-n', lazy.namespace, 'images', 'rpull', '--plain-http', '--snapshotter', 'stargz', ref],
        {
          timeoutMs: 120_000,
        },
      );
      assert.equal(pull.code, 0, pull.stderr);
      // a layer the snapshotter could not mount remotely would have been unpacked: a FUSE mount per layer proves it was not
      const fuse = (await mountsUnder(join(dir, 'root'))).filter((m) => m.includes('/snapshots/'));
      assert.equal(fuse.length, target.layers.length, `remote mounts: ${fuse.join(', ')}`);
      const run = await lazy.ctr(['run', '--rm', '--snapshotter', 'stargz', ref, 'ferry-esgz-lazy']);
      assert.equal(run.code, 0, run.stderr);
      assert.equal(run.stdout.replace(/\r/g, ''), 'hello from estargz\n');
    } finally {
      await lazy?.stop();
      proc.kill('SIGTERM');
      await waitFor(() => proc.exitCode !== null || proc.signalCode !== null, 'containerd-stargz-grpc exit', 10_000).catch(() =>
        proc.kill('SIGKILL'),
      );
      await unmountUnder(dir);
    }
  });
});
