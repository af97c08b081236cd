/**
 * @module p2p/peer/client
 * Client of a running peer (what `ferry get` and other parts of Ferry use): downloads one URL
 * through the peer's proxy in absolute-URI form with `X-Dragonfly-Use-P2P: true`, so any URL —
 * not only registry blobs — goes through P2P.
 */
import http, { type IncomingMessage } from 'node:http';
import { FerryError } from '../../core/index.js';
import { readAll } from '../common/index.js';
import { H } from '../common/index.js';

export class PeerClient {
  private readonly base: URL;

  /** `proxy` = the peer's proxy address (`http://127.0.0.1:65001` or `127.0.0.1:65001`). */
  constructor(proxy: string) {
    this.base = new URL(/^https?:\/\//.test(proxy) ? proxy : `http://${proxy}`);
  }

  /** GETs `url` through the peer. Resolves with the response once headers arrive; throws on non-2xx. */
  download(
    url: string,
    opts: { headers?: Record<string, string>; range?: [number, number]; signal?: AbortSignal } = {},
  ): Promise<IncomingMessage> {
    try {
      new URL(url);
    } catch {
      return Promise.reject(new FerryError('INVALID_ARGUMENT', `invalid URL ${JSON.stringify(url)}`));
    }
    return new Promise((resolve, reject) => {
      const headers: Record<string, string> = { ...(opts.headers ?? {}), [H.useP2P]: 'true' };
      if (opts.range) headers.range = `bytes=${opts.range[0]}-${opts.range[1]}`;
      const req = http.request(
        {
          hostname: this.base.hostname.replace(/^\[|\]$/g, ''),
          port: this.base.port || 80,
          method: 'GET',
          path: url,
          headers,
          ...(opts.signal ? { signal: opts.signal } : {}),
        },
        (res) => {
          const s = res.statusCode ?? 0;
          if (s >= 200 && s < 300) {
            resolve(res);
            return;
          }
          readAll(res, 1 << 20).then(
            (b) =>
              reject(
                new FerryError(
                  s === 401 ? 'UNAUTHENTICATED' : s === 403 ? 'PERMISSION_DENIED' : s === 404 ? 'NOT_FOUND' : 'UNAVAILABLE',
                  `peer answered ${s}${res.headers[H.errorType] ? ` (${String(res.headers[H.errorType])})` : ''}: ${b.toString('utf8').slice(0, 300)}`,
                ),
              ),
            reject,
          );
        },
      );
      req.on('error', (err) => reject(new FerryError('UNAVAILABLE', `peer ${this.base.host}: ${err.message}`, { cause: err })));
      req.end();
    });
  }

  async metrics(): Promise<string> {
    return new Promise((resolve, reject) => {
      http
        .get({ hostname: this.base.hostname, port: this.base.port || 80, path: '/metrics' }, (res) => {
          readAll(res).then((b) => resolve(b.toString('utf8')), reject);
        })
        .on('error', reject);
    });
  }
}
