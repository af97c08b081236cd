/**
 * Whole files through a real lazy mount (EROFS mode, the default): after the mount has marked its
 * files, a read of the first bytes of a small file or a shared object fetches the whole file in one
 * request (the rest then reads without a request); a file over the limits fetches only what is read.
 */
import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, open, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { requirePrereqs } from '../../test/support/prereq.js';
import { buildLayer } from '../builder/index.js';
import { silentLogger } from '../observe/index.js';
import { Daemon } from './index.js';

before(() => requirePrereqs({ root: true, devices: ['/dev/fuse'], commands: ['mount', 'umount', 'losetup'] }));

const CHUNK = 32 * 1024;

async function head(path: string, n: number): Promise<Buffer> {
  const fh = await open(path, 'r');
  try {
    const buf = Buffer.alloc(n);
    await fh.read(buf, 0, n, 0);
    return buf;
  } finally {
    await fh.close();
  }
}

test('daemon: a read of the first chunk of a small file or shared object fetches it whole; bigger files only what is read', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'ferry-whole-'));
  const daemon = new Daemon({
    log: silentLogger(),
    dataDir: join(dir, 'data'),
    prewarm: false,
    // no merging over gaps, no miss amplification, no read-ahead: only whole files make requests bigger
    config: { amplify_io: 0, ferry: { merge_gap: 0, miss_window: 0, whole_so: 320 * 1024, whole_file: 96 * 1024 } },
  });
  try {
    const src = join(dir, 'rootfs');
    await mkdir(join(src, 'etc'), { recursive: true });
    await mkdir(join(src, 'usr/lib'), { recursive: true });
    const files = {
      'etc/conf': randomBytes(3 * CHUNK), // at the whole_file limit
      'usr/lib/libx.so.1': randomBytes(10 * CHUNK), // a shared object at the whole_so limit
      'etc/big': randomBytes(3 * CHUNK + 1), // over whole_file
      'etc/one': randomBytes(100), // one chunk: nothing to add
    };
    for (const [rel, data] of Object.entries(files)) await writeFile(join(src, rel), data);
    const blobDir = join(dir, 'blobs');
    await mkdir(blobDir);
    const built = await buildLayer({
      source: { dir: src },
      blobDir,
      fsVersion: 6,
      compressor: 'zstd',
      chunkSize: CHUNK,
      digester: 'blake3',
    });
    await writeFile(join(dir, 'image.boot'), built.bootstrap);
    const mnt = join(dir, 'mnt');
    const info = await daemon.mount({
      id: 'w',
      mountpoint: mnt,
      bootstrapPath: join(dir, 'image.boot'),
      backend: { type: 'localfs', dir: blobDir },
      cacheDir: join(dir, 'cache'),
    });
    assert.equal(info.activeMode, 'erofs');
    // marking runs after the mount is up; bounded wait for it (a real background step, not a timing)
    let marked: number | undefined;
    for (let i = 0; i < 500 && marked === undefined; i++) {
      marked = (await daemon.get('w')).stats?.wholeFiles;
      if (marked === undefined) await new Promise((r) => setTimeout(r, 10));
    }
    assert.equal(marked, 2, 'conf and libx.so.1 are marked, big and one are not');
    const requests = async (): Promise<number> => (await daemon.get('w')).stats?.requests ?? Number.NaN;
    const r0 = await requests();

    assert.ok((await head(join(mnt, 'etc/conf'), 10)).equals(files['etc/conf'].subarray(0, 10)));
    assert.equal((await requests()) - r0, 1);
    assert.ok((await readFile(join(mnt, 'etc/conf'))).equals(files['etc/conf']));
    assert.equal((await requests()) - r0, 1, 'the rest of conf came with its first chunk');

    assert.ok((await head(join(mnt, 'usr/lib/libx.so.1'), 64)).equals(files['usr/lib/libx.so.1'].subarray(0, 64)));
    assert.ok((await readFile(join(mnt, 'usr/lib/libx.so.1'))).equals(files['usr/lib/libx.so.1']));
    assert.equal((await requests()) - r0, 2, 'libx.so.1 whole in one request');

    const bytes0 = (await daemon.get('w')).metrics.bytesFetched;
    assert.ok((await head(join(mnt, 'etc/big'), 10)).equals(files['etc/big'].subarray(0, 10)));
    assert.equal((await requests()) - r0, 3);
    const got = (await daemon.get('w')).metrics.bytesFetched - bytes0;
    assert.ok(got <= CHUNK + 1024, `a file over the limit: only its first chunk fetched (${got} bytes)`);
    assert.ok((await readFile(join(mnt, 'etc/big'))).equals(files['etc/big']));
    assert.ok((await requests()) - r0 > 3, 'the rest of big needed requests of its own');
    await daemon.umount('w');
  } finally {
    await daemon.close();
    await rm(dir, { recursive: true, force: true });
  }
});

test('daemon: misses among the small files of one directory are amplified over that family of files only, counted as read', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'ferry-family-'));
  const daemon = new Daemon({
    log: silentLogger(),
    dataDir: join(dir, 'data'),
    prewarm: false,
    // a starting window of about 4 chunks (two files); no merging over gaps, no read-ahead
    config: { amplify_io: 0, ferry: { merge_gap: 0, miss_window: 150 * 1024, miss_window_max: 1024 * 1024 } },
  });
  try {
    const src = join(dir, 'rootfs');
    await mkdir(join(src, 'pkg/__pycache__'), { recursive: true });
    const files: Record<string, Buffer> = {};
    for (let i = 0; i < 8; i++) files[`pkg/__pycache__/m${i}.pyc`] = randomBytes(2 * CHUNK);
    files['pkg/__pycache__/z.py'] = randomBytes(2 * CHUNK); // laid out right after m7, another extension
    for (const [rel, data] of Object.entries(files)) await writeFile(join(src, rel), data);
    const blobDir = join(dir, 'blobs');
    await mkdir(blobDir);
    const built = await buildLayer({
      source: { dir: src },
      blobDir,
      fsVersion: 6,
      compressor: 'zstd',
      chunkSize: CHUNK,
      digester: 'blake3',
    });
    await writeFile(join(dir, 'image.boot'), built.bootstrap);
    const mnt = join(dir, 'mnt');
    await daemon.mount({
      id: 'f',
      mountpoint: mnt,
      bootstrapPath: join(dir, 'image.boot'),
      backend: { type: 'localfs', dir: blobDir },
      cacheDir: join(dir, 'cache'),
    });
    for (let i = 0; i < 500 && (await daemon.get('f')).stats?.wholeFiles === undefined; i++) await new Promise((r) => setTimeout(r, 10));
    const requests = async (): Promise<number> => (await daemon.get('f')).stats?.requests ?? Number.NaN;
    const r0 = await requests();
    const seen: number[] = [];
    for (const rel of [...Array.from({ length: 8 }, (_, i) => `pkg/__pycache__/m${i}.pyc`), 'pkg/__pycache__/z.py']) {
      assert.ok((await readFile(join(mnt, rel))).equals(files[rel]!), rel);
      seen.push((await requests()) - r0);
    }
    // m0: a first miss; m1 brings m2, m3; m4 brings m5, m6; m7 brings nothing (z.py is another family)
    assert.deepEqual(seen, [1, 2, 2, 2, 3, 3, 3, 4, 5]);
    const ahead = (await daemon.get('f')).stats?.ahead?.amplify;
    assert.ok(ahead && ahead.fetched >= 8 * CHUNK && ahead.read === ahead.fetched, `every amplified byte read: ${JSON.stringify(ahead)}`);
    await daemon.umount('f');
  } finally {
    await daemon.close();
    await rm(dir, { recursive: true, force: true });
  }
});
