import { test } from 'node:test';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import assert from 'node:assert/strict';
import { buildahPrecondition, diagnose, runBuildah, storageArgs } from './buildah.js';

test('without buildah on PATH: a FAILED_PRECONDITION naming the package and ferry convert as the fallback', async () => {
  await assert.rejects(runBuildah(['--version'], { env: { PATH: '/nonexistent' } }), (err: Error & { code?: string }) => {
    assert.equal(err.code, 'FAILED_PRECONDITION');
    assert.match(err.message, /buildah is not installed \(Debian: apt-get install buildah\)/);
    assert.match(err.message, /ferry convert/);
    return true;
  });
});

test('not root: says why buildah cannot run here and points to ferry convert', () => {
  assert.match(buildahPrecondition(1000) ?? '', /runs as root here.*ferry convert/);
  assert.equal(buildahPrecondition(0), undefined);
});

test('known failures of buildah are explained', () => {
  assert.match(diagnose("Error: kernel does not support overlay fs: 'overlay' is not supported over xfs") ?? '', /--storage-driver vfs/);
  assert.match(diagnose('error: unshare(CLONE_NEWUSER): operation not permitted') ?? '', /namespaces/);
  assert.match(
    diagnose('pinging container registry 127.0.0.1:5000: http: server gave HTTP response to HTTPS client') ?? '',
    /--plain-http/,
  );
  assert.equal(diagnose('STEP 1/2: FROM scratch'), undefined);
});

test("a failing build reports buildah's own last lines and the exit status", async () => {
  const dir = await mkdtemp(join(tmpdir(), 'ferry-buildah-test-'));
  const storage = { driver: 'vfs', root: join(dir, 'root'), runroot: join(dir, 'run') };
  try {
    await assert.rejects(
      runBuildah(['build', '-f', '/nonexistent/Dockerfile', '/nonexistent'], { storage }),
      (err: Error & { code?: string }) => {
        assert.equal(err.code, 'FAILED_PRECONDITION');
        assert.match(err.message, /buildah build failed \(exit \d+\)/);
        assert.match(err.message, /nonexistent/);
        return true;
      },
    );
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('storage options go before the subcommand; overlay by default', () => {
  assert.deepEqual(storageArgs(), ['--storage-driver', 'overlay']);
  assert.deepEqual(storageArgs({ root: '/r', runroot: '/rr', driver: 'vfs' }), [
    '--root',
    '/r',
    '--runroot',
    '/rr',
    '--storage-driver',
    'vfs',
  ]);
});
