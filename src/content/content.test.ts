import { mkdtemp, rm, readdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { Readable } from 'node:stream';
import { blobStoreSuite } from './testsuite.js';
import { LocalBlobStore, MemoryBlobStore } from './index.js';

blobStoreSuite('memory', async () => ({ store: new MemoryBlobStore(), cleanup: async () => undefined }));
blobStoreSuite('local', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'ferry-content-'));
  return { store: new LocalBlobStore(dir), cleanup: () => rm(dir, { recursive: true, force: true }) };
});

it('local: upload ids that could escape the directory are rejected', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'ferry-content-'));
  try {
    const s = new LocalBlobStore(dir);
    for (const id of ['../x', '..', 'a/b', '', 'x'.repeat(100)]) {
      await assert.rejects(s.startUpload(id), { code: 'INVALID_ARGUMENT' });
      await assert.rejects(s.append(id, 0, Readable.from([Buffer.from('a')])), { code: 'INVALID_ARGUMENT' });
    }
    assert.deepEqual(await readdir(join(dir, 'uploads')), []);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
