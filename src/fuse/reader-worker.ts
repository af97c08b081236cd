/**
 * @module fuse/reader-worker
 * One request-reader loop of a FUSE session, run in a worker thread: a blocking read(2) on the
 * /dev/fuse descriptor (so it occupies this thread, not libuv's pool), each request handed to the
 * main thread as a transferred ArrayBuffer. Ends when the connection goes away (ENODEV after
 * unmount or abort).
 *
 * A session may give a fast path (a module exporting `init(data)` that returns a synchronous
 * handler): requests it can answer from memory and local files (lookups, attributes, reads of
 * cached data) are answered here, in this thread, without a hop to the main thread; it returns
 * null for anything else, which then goes to the main thread as usual.
 *
 * A thread either gets its session in `workerData` or, started ahead of time by the warm pool, in
 * its first message.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { readSync, writevSync } from 'node:fs';
import { outHeader } from './protocol.js';

export type FastHandler = (opcode: number, nodeid: number, body: Buffer) => { parts: Buffer[]; hits?: number } | null;

interface Start {
  fd: number;
  bufferSize: number;
  fastPath?: { module: string; data: unknown };
  initFirst?: boolean;
}

/**
 * A thread of the warm pool (FuseSession.prewarm) boots without a session: it loads the modules
 * it is told to (fast paths), then waits for its session's `start` message.
 */
const warm = workerData as { preload?: string[] } | Start;
let start: Start;
if ('fd' in warm) {
  start = warm;
} else {
  const loads = Promise.allSettled((warm.preload ?? []).map((m) => import(m)));
  start = await new Promise<Start>((resolve) => parentPort!.once('message', (m: Start) => resolve(m)));
  await loads;
}
const { fd, bufferSize, fastPath, initFirst } = start;
let fast: FastHandler | null = null;
const buf = Buffer.allocUnsafe(bufferSize);
let fastCount = 0;
let fastHits = 0;

/** Reads and answers (fast path) or forwards one request; false when the connection ended. */
function step(): boolean {
  let n: number;
  try {
    n = readSync(fd, buf, 0, bufferSize, null);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    // ENOENT: the request was interrupted before we read it; EINTR/EAGAIN: just retry.
    if (code === 'ENOENT' || code === 'EINTR' || code === 'EAGAIN') return true;
    parentPort!.postMessage({ type: 'end', code, fastCount, fastHits });
    return false;
  }
  if (n === 0) {
    parentPort!.postMessage({ type: 'end', code: 'EOF', fastCount, fastHits });
    return false;
  }
  if (fast && n >= 40) {
    let r: ReturnType<FastHandler> = null;
    try {
      r = fast(buf.readUInt32LE(4), Number(buf.readBigUInt64LE(16)), buf.subarray(40, n));
    } catch {
      r = null; // let the main thread answer (and report) it
    }
    if (r) {
      let len = 16;
      for (const p of r.parts) len += p.length;
      fastCount++;
      fastHits += r.hits ?? 0;
      // Reported before the reply, so that whoever sees the reply sees the counters too.
      parentPort!.postMessage({ type: 'fast', fastCount, fastHits });
      try {
        writevSync(fd, [outHeader(len, 0, buf.readBigUInt64LE(8)), ...r.parts]);
      } catch {
        /* interrupted */
      }
      return true;
    }
  }
  const copy = new Uint8Array(n);
  copy.set(buf.subarray(0, n));
  parentPort!.postMessage({ type: 'req', data: copy }, [copy.buffer]);
  return true;
}

// The first reader of a session forwards FUSE_INIT (the kernel sends nothing else before it is
// answered) before loading the fast path, so the mount does not wait for that module.
let live = initFirst ? step() : true;
if (live && fastPath) {
  try {
    const m = (await import(fastPath.module)) as { init(data: unknown): FastHandler };
    fast = m.init(fastPath.data);
  } catch (err) {
    parentPort!.postMessage({ type: 'fast-error', message: (err as Error).message });
  }
}
while (live) live = step();
