/**
 * @module accel/client
 * Client of the accel HTTP API (accelctl's role): create a conversion task from a reference (a
 * PUSH_ARTIFACT payload with one resource), list tasks. Both send `authHeader` as the
 * Authorization header (the source host's webhook.auth_header); a refusal is UNAUTHENTICATED.
 */
import { FerryError } from '../core/index.js';
import { parseReference, formatReference } from '../remote/index.js';
import type { TaskView } from './store.js';

export class AccelClient {
  private readonly base: string;

  /** `addr`: `host:port` or `http://host:port` (accelctl's --addr, default localhost:2077). */
  constructor(addr = 'localhost:2077', private readonly opts: { authHeader?: string; timeoutMs?: number } = {}) {
    this.base = /^https?:\/\//.test(addr) ? addr.replace(/\/+$/, '') : `http://${addr}`;
  }

  private async call(method: string, path: string, body?: unknown): Promise<{ status: number; json: unknown; text: string; headers: Headers }> {
    const headers: Record<string, string> = {};
    if (body !== undefined) headers['content-type'] = 'application/json';
    if (this.opts.authHeader) headers.authorization = this.opts.authHeader;
    let res: Response;
    try {
      const init: RequestInit = { method, headers, signal: AbortSignal.timeout(this.opts.timeoutMs ?? 3_600_000) };
      if (body !== undefined) init.body = JSON.stringify(body);
      res = await fetch(`${this.base}${path}`, init);
    } catch (err) {
      const cause = (err as { cause?: { code?: string; message?: string; errors?: Array<{ code?: string }> } }).cause;
      const why = cause?.code ?? cause?.errors?.[0]?.code ?? cause?.message ?? (err as Error).message;
      throw new FerryError('UNAVAILABLE', `accel service at ${this.base}: ${why}`, { cause: err });
    }
    const text = await res.text();
    let json: unknown = text;
    try { json = JSON.parse(text); } catch { /* plain text */ }
    return { status: res.status, json, text, headers: res.headers };
  }

  /** Submits `ref` for conversion; with `sync` waits for the result. Returns the task ids. */
  async createTask(ref: string, opts: { sync?: boolean } = {}): Promise<string[]> {
    const r = parseReference(ref);
    const payload = {
      type: 'PUSH_ARTIFACT', occur_at: Math.floor(Date.now() / 1000), operator: 'ferry-task',
      event_data: {
        resources: [{ resource_url: formatReference(r), tag: r.tag ?? r.digest ?? '', ...(r.digest ? { digest: r.digest } : {}) }],
        repository: { name: r.repository.split('/').slice(1).join('/') || r.repository, namespace: r.repository.split('/')[0], repo_full_name: r.repository },
      },
    };
    const res = await this.call('POST', `/api/v1/conversions?sync=${opts.sync ? 'true' : 'false'}`, payload);
    if (res.status !== 200) throw this.failure(res);
    return (res.headers.get('x-ferry-task-ids') ?? '').split(',').filter(Boolean);
  }

  /** The tasks of the source hosts whose webhook.auth_header is this client's `authHeader`, newest first. */
  async listTasks(): Promise<TaskView[]> {
    const res = await this.call('GET', '/api/v1/conversions');
    if (res.status !== 200) throw this.failure(res);
    if (!Array.isArray(res.json)) throw new FerryError('INTERNAL', `accel: task list is not a JSON array: ${String(res.text).slice(0, 200)}`);
    return res.json as TaskView[];
  }

  private failure(res: { status: number; json: unknown }): FerryError {
    const m = res.json as { code?: string; message?: string } | null;
    const code = res.status === 401 ? 'UNAUTHENTICATED' : res.status === 400 || res.status === 413 ? 'INVALID_ARGUMENT' : 'INTERNAL';
    return new FerryError(code, `accel: ${res.status} ${m?.code ?? ''} ${m?.message ?? String(res.json)}`.replace(/ +/g, ' ').trim());
  }

  async health(): Promise<boolean> {
    const res = await this.call('GET', '/api/v1/health');
    return res.status === 200;
  }
}
