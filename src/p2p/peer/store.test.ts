import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PieceStore, type CreateTask } from './store.js';
import { pieceDigest } from '../common/idgen.js';

test('a task re-created while its deletion is still removing files keeps its new files', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'ferry-store-'));
  try {
    const store = new PieceStore(dir, { quota: 0, keep: false, taskTTL: 60_000 });
    await store.open();
    const spec: CreateTask = {
      taskId: 'c'.repeat(64), url: 'http://127.0.0.1:1/v2/x/blobs/sha256:0', idOptions: {},
      contentLength: 4096, pieceLength: 4096, responseHeaders: {},
    };
    const first = await store.create(spec);
    const piece = Buffer.alloc(4096, 1);
    await first.writePiece(0, piece, pieceDigest(piece));
    // The failure path deletes the task; a retry creates it again at once, without waiting.
    const deleting = store.delete(spec.taskId);
    const second = await store.create(spec);
    await deleting;
    assert.notEqual(second, first);
    const again = Buffer.alloc(4096, 2);
    await second.writePiece(0, again, pieceDigest(again));
    assert.deepEqual(await second.readPiece(0), again);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
