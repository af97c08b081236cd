/**
 * @module fuse/reader-worker
 * One request-reader loop of a FUSE session, run in a worker thread: a blocking read(2) on the
 * /dev/fuse descriptor (so it occupies this thread, not libuv's pool), each request handed to the
 * main thread as a transferred ArrayBuffer. Ends when the connection goes away (ENODEV after
 * unmount or abort).
 */
import { parentPort, workerData } from 'node:worker_threads';
import { readSync } from 'node:fs';

const { fd, bufferSize } = workerData as { fd: number; bufferSize: number };
const buf = Buffer.allocUnsafe(bufferSize);
for (;;) {
  let n: number;
  try {
    n = readSync(fd, buf, 0, bufferSize, null);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    // ENOENT: the request was interrupted before we read it; EINTR/EAGAIN: just retry.
    if (code === 'ENOENT' || code === 'EINTR' || code === 'EAGAIN') continue;
    parentPort!.postMessage({ type: 'end', code });
    break;
  }
  if (n === 0) {
    parentPort!.postMessage({ type: 'end', code: 'EOF' });
    break;
  }
  const copy = new Uint8Array(n);
  copy.set(buf.subarray(0, n));
  parentPort!.postMessage({ type: 'req', data: copy }, [copy.buffer]);
}
