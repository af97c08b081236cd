/**
 * @module builder/compress-worker
 * Worker-thread body of the compression pool: compresses one chunk per message with the codec it
 * names and answers with the compressed bytes, or null when they would not be smaller.
 */
import { parentPort } from 'node:worker_threads';
import { getCodec } from '../format/compress/index.js';

parentPort?.on('message', (m: { id: number; name: string; level?: number; buf: Uint8Array }) => {
  try {
    const data = Buffer.from(m.buf.buffer, m.buf.byteOffset, m.buf.byteLength);
    const out = getCodec(m.name).compress(data, m.level);
    if (out) {
      const copy = new Uint8Array(out.length); // own ArrayBuffer: transferable
      copy.set(out);
      parentPort!.postMessage({ id: m.id, out: copy }, [copy.buffer]);
    } else {
      parentPort!.postMessage({ id: m.id, out: null });
    }
  } catch (err) {
    parentPort!.postMessage({ id: m.id, error: (err as Error).message });
  }
});
