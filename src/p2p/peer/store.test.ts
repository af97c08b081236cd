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

test('memory tasks: no file until complete, then data and metadata written once; restarts keep them; a cut metadata write loses the entry, not a byte', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'ferry-store-'));
  const { existsSync, readFileSync, writeFileSync } = await import('node:fs');
  try {
    const opts = { quota: 0, keep: true, taskTTL: 60_000, memoryBelow: 4 * 1024 * 1024 };
    const store = new PieceStore(dir, opts);
    await store.open();
    const spec = (c: string): CreateTask => ({
      taskId: c.repeat(64),
      url: `http://127.0.0.1:1/v2/x/blobs/sha256:${c}`,
      idOptions: {},
      contentLength: 16384,
      pieceLength: 16384,
      responseHeaders: {},
      range: { start: 0, end: 16383, total: 65536 },
    });
    const pieces = ['a', 'b', 'c'].map((c) => Buffer.alloc(16384, c));
    const tasks = [];
    for (const [i, c] of ['a', 'b', 'c'].entries()) {
      const t = await store.create(spec(c));
      assert.ok(t.mem, 'a memory task');
      await t.writePiece(0, pieces[i]!, pieceDigest(pieces[i]!));
      assert.deepEqual(await t.readPiece(0), pieces[i], 'served from memory');
      assert.equal(existsSync(t.dataPath) || existsSync(t.metaPath), false, 'no file before the task is complete');
      tasks.push(t);
    }
    for (const t of tasks) await store.markDone(t);
    // deleted while its write may run: no file left behind
    await store.delete(tasks[2]!.id);
    await tasks[0]!.flushing;
    await tasks[1]!.flushing;
    assert.ok(readFileSync(tasks[0]!.dataPath).equals(pieces[0]!), 'data file written in one go');
    assert.equal(JSON.parse(readFileSync(tasks[0]!.metaPath, 'utf8')).done, true);
    assert.equal(existsSync(tasks[2]!.dataPath) || existsSync(tasks[2]!.metaPath), false, 'a deleted task leaves no file');
    await store.close();
    // a crash cut the metadata write of task b short
    const metaB = readFileSync(tasks[1]!.metaPath, 'utf8');
    writeFileSync(tasks[1]!.metaPath, metaB.slice(0, metaB.length - 7));
    const again = new PieceStore(dir, opts);
    await again.open();
    const a = again.get('a'.repeat(64));
    assert.ok(a?.complete, 'a complete memory task survives a restart');
    assert.deepEqual(await a.readPiece(0), pieces[0], 'read back from its data file');
    assert.equal(again.get('b'.repeat(64)), undefined, 'a task whose metadata write was cut is discarded');
    assert.equal(existsSync(tasks[1]!.dataPath), false, 'with its data file');
    await again.close();
    // an older version's interrupted metadata write (`<id>.json.tmp`) is removed at the next start
    const tmp = `${tasks[0]!.metaPath}.tmp`;
    writeFileSync(tmp, '{"taskId"');
    const third = new PieceStore(dir, opts);
    await third.open();
    assert.equal(existsSync(tmp), false, 'a leftover .json.tmp is removed');
    assert.ok(third.get('a'.repeat(64))?.complete, 'the kept task beside it stays');
    await third.close();
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});
