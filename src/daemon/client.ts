/**
 * @module daemon/client
 * `DaemonClient`: the LazyFs interface over the HTTP API of `ferry daemon --apisock SOCK`.
 */
import { request } from 'node:http';
import { FerryError, ERROR_CODES, type ErrorCode } from '../core/index.js';
import type { LazyFs, MountInfo, MountRequest } from './types.js';
import type { PrefetchTrace } from '../oci/index.js';

export class DaemonClient implements LazyFs {
  constructor(readonly sockPath: string, private readonly timeoutMs = 120_000) {}

  private call(method: string, path: string, body?: unknown): Promise<{ status: number; body: Buffer }> {
    return new Promise((resolve, reject) => {
      const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
      const req = request({
        socketPath: this.sockPath, method, path,
        headers: payload ? { 'content-type': 'application/json', 'content-length': payload.length } : {},
      }, (res) => {
        const parts: Buffer[] = [];
        res.on('data', (c: Buffer) => parts.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(parts) }));
        res.on('error', reject);
      });
      req.setTimeout(this.timeoutMs, () => req.destroy(new FerryError('DEADLINE_EXCEEDED', `daemon ${method} ${path}: no answer in ${this.timeoutMs} ms`)));
      req.on('error', (err) => reject(FerryError.is(err) ? err : new FerryError('UNAVAILABLE', `daemon at ${this.sockPath}: ${err.message}`, { cause: err })));
      req.end(payload);
    });
  }

  private async json<T>(method: string, path: string, body?: unknown): Promise<T> {
    const r = await this.call(method, path, body);
    if (r.status >= 200 && r.status < 300) return (r.body.length ? JSON.parse(r.body.toString('utf8')) : undefined) as T;
    let code: ErrorCode = 'INTERNAL';
    let message = `daemon ${method} ${path}: status ${r.status}`;
    try {
      const e = JSON.parse(r.body.toString('utf8')) as { code?: string; message?: string };
      if (e.code && (ERROR_CODES as readonly string[]).includes(e.code)) code = e.code as ErrorCode;
      if (e.message) message = e.message;
    } catch { /* not JSON */ }
    throw new FerryError(code, message);
  }

  mount(req: MountRequest): Promise<MountInfo> { return this.json('POST', '/api/v1/mounts', req); }
  async umount(id: string): Promise<void> { await this.json('DELETE', `/api/v1/mounts/${encodeURIComponent(id)}`); }
  list(): Promise<MountInfo[]> { return this.json('GET', '/api/v1/mounts'); }
  trace(id: string): Promise<PrefetchTrace> { return this.json('GET', `/api/v1/mounts/${encodeURIComponent(id)}/trace`); }
  get(id: string): Promise<MountInfo> { return this.json('GET', `/api/v1/mounts/${encodeURIComponent(id)}`); }
  info(): Promise<{ version: string; state: string; pid: number; mounts: number }> { return this.json('GET', '/api/v1/daemon'); }
  async metricsText(): Promise<string> { return (await this.call('GET', '/metrics')).body.toString('utf8'); }
  /** The client holds no connection: nothing to close (the daemon keeps running). */
  async close(): Promise<void> { /* nothing */ }
}
