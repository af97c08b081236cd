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
      taskId: 'c'.repeat(64),
      url: 'http://127.0.0.1:1/v2/x/blobs/sha256:0',
      idOptions: {},
      contentLength: 4096,
      pieceLength: 4096,
      responseHeaders: {},
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

test('close waits for running downloads and file writes, and takes no new tasks: nothing is written after it', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'ferry-store-'));
  try {
    const store = new PieceStore(dir, { quota: 0, keep: true, taskTTL: 60_000 });
    await store.open();
    const spec = (c: string): CreateTask => ({
      taskId: c.repeat(64),
      url: `http://127.0.0.1:1/v2/x/blobs/sha256:${c}`,
      idOptions: {},
      contentLength: 4096,
      pieceLength: 4096,
      responseHeaders: {},
    });
    const t = await store.create(spec('a'));
    // A download still finishing when close starts: it writes its piece and metadata, then ends.
    let finished = false;
    t.downloading = (async () => {
      await new Promise((r) => setTimeout(r, 50));
      const piece = Buffer.alloc(4096, 3);
      await t.writePiece(0, piece, pieceDigest(piece));
      await store.markDone(t);
      finished = true;
    })();
    const creating = store.create(spec('b')); // in flight when close starts
    await store.close();
    assert.ok(finished, 'close returned before the download ended');
    await creating; // it started before close, so it completed
    await assert.rejects(store.create(spec('d')), /closed/);
    await assert.rejects(store.markDone(t), /closed/);
    // what was written is complete: a new store loads the finished task
    const again = new PieceStore(dir, { quota: 0, keep: true, taskTTL: 60_000 });
    await again.open();
    assert.ok(again.get('a'.repeat(64))?.complete);
    await again.close();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

test('range tasks: the handle a task is created with is the one its pieces go through, closed when the task goes', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'ferry-store-'));
  const { readdirSync } = await import('node:fs');
  const openFds = (): number => readdirSync('/proc/self/fd').length;
  try {
    const store = new PieceStore(dir, { quota: 0, keep: false, taskTTL: 60_000 });
    await store.open();
    const base = openFds();
    const ids = Array.from({ length: 40 }, (_, i) => i.toString(16).padStart(64, 'a'));
    for (const id of ids) {
      const t = await store.create({
        taskId: id,
        url: 'http://127.0.0.1:1/v2/x/blobs/sha256:0',
        idOptions: {},
        contentLength: 16384,
        pieceLength: 16384,
        responseHeaders: {},
      });
      const piece = Buffer.alloc(16384, id.charCodeAt(63));
      await t.writePiece(0, piece, pieceDigest(piece));
      assert.deepEqual(await t.readRange(0, 16384), piece, `bytes of ${id}`);
    }
    // (± 2: descriptors of the runtime opening or closing meanwhile; a reopen would be 2 per task)
    const held = openFds() - base;
    assert.ok(Math.abs(held - ids.length) <= 2, `one handle per task (created, not reopened): ${held} for ${ids.length} tasks`);
    for (const id of ids) await store.delete(id);
    assert.ok(openFds() <= base + 2, `every handle closed with its task: ${openFds() - base} left`);
    await store.close();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
