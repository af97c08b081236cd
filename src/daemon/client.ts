/**
 * @module daemon/client
 * `DaemonClient`: the LazyFs interface over the HTTP API of `ferry daemon --apisock SOCK` (wire
 * types in protocol.ts; errors come back as the FerryErrors the daemon threw).
 */
import { JsonClient } from '../httpx/client.js';
import type { CacheGcReport, CacheStatus, DaemonInfo, LazyFs, MountInfo, MountRequest, PrefetchTrace } from './protocol.js';

export class DaemonClient implements LazyFs {
  readonly #http: JsonClient;

  constructor(
    readonly sockPath: string,
    timeoutMs = 120_000,
  ) {
    this.#http = new JsonClient({ what: 'daemon', socketPath: sockPath, timeoutMs });
  }

  mount(req: MountRequest): Promise<MountInfo> {
    return this.#http.json('POST', '/api/v1/mounts', req);
  }
  async setAuth(id: string, auth: string | undefined): Promise<void> {
    await this.#http.json('PUT', `/api/v1/mounts/${encodeURIComponent(id)}/auth`, auth === undefined ? {} : { auth });
  }
  async umount(id: string): Promise<void> {
    await this.#http.json('DELETE', `/api/v1/mounts/${encodeURIComponent(id)}`);
  }
  list(): Promise<MountInfo[]> {
    return this.#http.json('GET', '/api/v1/mounts');
  }
  trace(id: string): Promise<PrefetchTrace> {
    return this.#http.json('GET', `/api/v1/mounts/${encodeURIComponent(id)}/trace`);
  }
  get(id: string): Promise<MountInfo> {
    return this.#http.json('GET', `/api/v1/mounts/${encodeURIComponent(id)}`);
  }
  gc(): Promise<CacheGcReport> {
    return this.#http.json('POST', '/api/v1/cache/gc', {});
  }
  cache(): Promise<CacheStatus> {
    return this.#http.json('GET', '/api/v1/cache');
  }
  info(): Promise<DaemonInfo> {
    return this.#http.json('GET', '/api/v1/daemon');
  }
  async metricsText(): Promise<string> {
    return (await this.#http.raw('GET', '/metrics')).body.toString('utf8');
  }
  /** The client holds no connection: nothing to close (the daemon keeps running). */
  async close(): Promise<void> {
    /* nothing */
  }
}
