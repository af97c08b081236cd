/**
 * Bytes on the wire for the abuse tests: a request head written as is (no client normalising it),
 * body pieces, and what came back until the server closed.
 */
import assert from 'node:assert/strict';
import { connect } from 'node:net';

/** Where to connect: a TCP port on 127.0.0.1, or a unix socket path. */
export type WireTarget = { port: number } | { path: string };

export interface WireAnswer {
  text: string;
  /** set when the connection was reset instead of closed (the server closing with bytes of ours unread) */
  reset?: string;
}

/**
 * Writes `head` (request line and headers, no blank line; a `Host: <host>` header is added), then
 * `body` pieces, without ending the request. Resolves with everything the server sent until it closed.
 */
export function wire(target: WireTarget, host: string, head: string, body: Buffer[] = []): Promise<WireAnswer> {
  return new Promise((resolve) => {
    const onConnect = (): void => {
      c.write(`${head}\r\nHost: ${host}\r\n\r\n`);
      for (const b of body) c.write(b);
    };
    const c = 'path' in target ? connect(target.path, onConnect) : connect(target.port, '127.0.0.1', onConnect);
    let text = '';
    let reset: string | undefined;
    c.on('data', (d: Buffer) => {
      text += d.toString('latin1');
    });
    c.on('error', (err: NodeJS.ErrnoException) => {
      reset = err.code ?? err.message;
    });
    c.on('close', () => resolve(reset === undefined ? { text } : { text, reset }));
  });
}

/** `n` bytes of body in HTTP/1.1 chunked encoding (64 KiB chunks), without the final chunk. */
export function chunkedBody(n: number): Buffer[] {
  const out: Buffer[] = [];
  for (let left = n; left > 0; left -= 64 << 10) {
    const k = Math.min(left, 64 << 10);
    out.push(Buffer.from(`${k.toString(16)}\r\n`), Buffer.alloc(k, 0x20), Buffer.from('\r\n'));
  }
  return out;
}

/** Asserts an answer with `status` and a closed connection — or, for a body the server stopped reading, a reset. */
export function assertRefused(r: WireAnswer, status: number, what: string, resetAllowed = false): void {
  if (resetAllowed && r.text === '' && r.reset !== undefined) return;
  assert.match(r.text, new RegExp(`^HTTP/1\\.1 ${status} `), `${what} → ${r.text.split('\r\n')[0] ?? ''} ${r.reset ?? ''}`);
  assert.match(r.text, /\r\nconnection: close\r\n/i, `${what}: the connection is closed, the body not drained`);
}
