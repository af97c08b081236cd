/**
 * @module snapshotter/pull-api-client
 * The `ferry pull` side of the snapshotter's pull API (pull-api.ts, api/snapshotter.openapi.yaml):
 * one POST on the unix socket, NDJSON progress relayed line by line. Imports only node:http (through
 * httpx/client.ts), core and the protocol's types, so that a delegated pull costs the CLI process
 * next to nothing to load.
 */
import { FerryError } from '../core/index.js';
import { JsonClient, decodeError } from '../httpx/client.js';
import type { PullLine, PullRequestBody, PullResult } from './protocol.js';
import type { CacheGcReport } from '../daemon/protocol.js';

const client = (socket: string): JsonClient => new JsonClient({ what: 'snapshotter API', socketPath: socket });

/**
 * Sends a pull to the snapshotter listening on `socket`; `progress` gets its step lines. Rejects
 * with the snapshotter's error (its code kept), or UNAVAILABLE (`cause.code` ENOENT /
 * ECONNREFUSED) when nothing listens there.
 */
export async function requestPull(socket: string, body: PullRequestBody, progress?: (line: string) => void): Promise<PullResult> {
  const res = await client(socket).open('POST', '/api/v1/pull', body);
  res.setEncoding('utf8');
  return new Promise((resolve, reject) => {
    let buf = '';
    let done = false;
    if (res.statusCode !== 200) {
      res.on('data', (c: string) => {
        buf += c;
      });
      res.on('end', () => reject(decodeError(res.statusCode ?? 0, buf, { fallback: `snapshotter API answered ${res.statusCode}` })));
      return;
    }
    const onLine = (l: string): void => {
      if (!l.trim()) return;
      let m: Partial<Record<'progress' | 'result' | 'error', unknown>>;
      try {
        m = JSON.parse(l) as typeof m;
      } catch {
        return;
      }
      const line = m as PullLine;
      if ('progress' in line && typeof line.progress === 'string') progress?.(line.progress);
      else if ('result' in line && line.result) {
        done = true;
        resolve(line.result);
      } else if ('error' in line && line.error) {
        done = true;
        reject(decodeError(500, JSON.stringify(line.error), { fallback: 'pull failed' }));
      }
    };
    res.on('data', (c: string) => {
      buf += c;
      for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
        onLine(buf.slice(0, i));
        buf = buf.slice(i + 1);
      }
    });
    res.on('end', () => {
      onLine(buf);
      if (!done) reject(new FerryError('UNAVAILABLE', 'snapshotter API closed the pull without a result'));
    });
    res.on('error', (err) => {
      if (!done) reject(new FerryError('UNAVAILABLE', `snapshotter API: ${err.message}`, { cause: err }));
    });
  });
}

/** Runs a node cache GC round in the snapshotter's daemon on `socket` (`POST /api/v1/cache/gc`). */
export function requestGc(socket: string): Promise<CacheGcReport> {
  return client(socket).json('POST', '/api/v1/cache/gc', {});
}

/** The access trace of the image with this manifest digest, from the snapshotter on `socket` (`GET /api/v1/traces/{digest}`). */
export function requestTrace(socket: string, manifestDigest: string): Promise<unknown> {
  return client(socket).json('GET', `/api/v1/traces/${manifestDigest}`);
}
