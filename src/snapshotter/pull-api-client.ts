/**
 * @module snapshotter/pull-api-client
 * The `ferry pull` side of the snapshotter's pull API (pull-api.ts, api/snapshotter.openapi.yaml):
 * one POST on the unix socket, NDJSON progress relayed line by line. Imports only node:http and
 * core, so that a delegated pull costs the CLI process next to nothing to load.
 */
import { request } from 'node:http';
import { ERROR_CODES, FerryError, type ErrorCode } from '../core/index.js';
import type { PullResult } from './pull.js';

/** What a pull request carries (the `ferry pull` options). */
export interface PullRequestBody {
  /** image reference */
  ref: string;
  /** containerd's gRPC socket */
  address: string;
  namespace?: string;
  snapshotter?: string;
  plainHttp?: boolean;
  /** `user:password` for the registry */
  user?: string;
  /** `os/arch` to pick from an index */
  platform?: string;
}

const codeOf = (c: unknown): ErrorCode => ((ERROR_CODES as readonly unknown[]).includes(c) ? c as ErrorCode : 'INTERNAL');

/** The FerryError of a non-200 answer (`{code, message}` body, its code kept). */
function apiError(status: number | undefined, body: string): FerryError {
  let e: { code?: unknown; message?: unknown } = {};
  try { e = JSON.parse(body) as typeof e; } catch { /* not JSON */ }
  return new FerryError(codeOf(e.code), typeof e.message === 'string' ? e.message : `snapshotter API answered ${status}`);
}

/**
 * Sends a pull to the snapshotter listening on `socket`; `progress` gets its step lines. Rejects
 * with the snapshotter's error (its code kept), or UNAVAILABLE (`cause.code` ENOENT /
 * ECONNREFUSED) when nothing listens there.
 */
export function requestPull(socket: string, body: PullRequestBody, progress?: (line: string) => void): Promise<PullResult> {
  return new Promise((resolve, reject) => {
    const payload = Buffer.from(JSON.stringify(body));
    const req = request({ socketPath: socket, method: 'POST', path: '/api/v1/pull', headers: { 'content-type': 'application/json', 'content-length': payload.length } }, (res) => {
      let buf = '';
      let done = false;
      res.setEncoding('utf8');
      if (res.statusCode !== 200) {
        res.on('data', (c: string) => { buf += c; });
        res.on('end', () => reject(apiError(res.statusCode, buf)));
        return;
      }
      const onLine = (l: string): void => {
        if (!l.trim()) return;
        let m: { progress?: string; result?: PullResult; error?: { code?: unknown; message?: string } };
        try { m = JSON.parse(l) as typeof m; } catch { return; }
        if (typeof m.progress === 'string') progress?.(m.progress);
        else if (m.result) { done = true; resolve(m.result); }
        else if (m.error) { done = true; reject(new FerryError(codeOf(m.error.code), m.error.message ?? 'pull failed')); }
      };
      res.on('data', (c: string) => {
        buf += c;
        for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) { onLine(buf.slice(0, i)); buf = buf.slice(i + 1); }
      });
      res.on('end', () => {
        onLine(buf);
        if (!done) reject(new FerryError('UNAVAILABLE', 'snapshotter API closed the pull without a result'));
      });
      res.on('error', (err) => { if (!done) reject(new FerryError('UNAVAILABLE', `snapshotter API: ${err.message}`, { cause: err })); });
    });
    req.on('error', (err) => reject(new FerryError('UNAVAILABLE', `snapshotter API ${socket}: ${(err as NodeJS.ErrnoException).code ?? err.message}`, { cause: err })));
    req.end(payload);
  });
}

/** The access trace of the image with this manifest digest, from the snapshotter on `socket` (`GET /api/v1/traces/{digest}`). */
export function requestTrace(socket: string, manifestDigest: string): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const req = request({ socketPath: socket, method: 'GET', path: `/api/v1/traces/${manifestDigest}` }, (res) => {
      let buf = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => { buf += c; });
      res.on('end', () => {
        if (res.statusCode !== 200) { reject(apiError(res.statusCode, buf)); return; }
        try { resolve(JSON.parse(buf)); } catch { reject(new FerryError('INTERNAL', 'snapshotter API: the trace is not JSON')); }
      });
      res.on('error', (err) => reject(new FerryError('UNAVAILABLE', `snapshotter API: ${err.message}`, { cause: err })));
    });
    req.on('error', (err) => reject(new FerryError('UNAVAILABLE', `snapshotter API ${socket}: ${(err as NodeJS.ErrnoException).code ?? err.message}`, { cause: err })));
    req.end();
  });
}
