/**
 * @module accel/client
 * Client of the accel HTTP API (accelctl's role): create a conversion task from a reference (a
 * PUSH_ARTIFACT payload with one resource), list tasks. Both send `authHeader` as the
 * Authorization header (the source host's webhook.auth_header); a refusal is UNAUTHENTICATED.
 * Wire types and acceld's error vocabulary in protocol.ts.
 */
import { FerryError } from '../core/index.js';
import { JsonClient, decodeError, type RawAnswer } from '../httpx/index.js';
import { parseReference, formatReference } from '../remote/index.js';
import {
  CONVERSIONS_PATH,
  HEALTH_PATH,
  TASK_IDS_HEADER,
  accelErrorCategory,
  retryPath,
  type HarborWebhookPayload,
  type TaskView,
} from './protocol.js';

export class AccelClient {
  private readonly base: string;
  readonly #http: JsonClient;

  /** `addr`: `host:port` or `http://host:port` (accelctl's --addr, default localhost:2077). */
  constructor(addr = 'localhost:2077', opts: { authHeader?: string; timeoutMs?: number } = {}) {
    this.base = /^https?:\/\//.test(addr) ? addr.replace(/\/+$/, '') : `http://${addr}`;
    this.#http = new JsonClient({
      what: 'accel service',
      baseUrl: this.base,
      timeoutMs: opts.timeoutMs ?? 3_600_000,
      ...(opts.authHeader ? { headers: { authorization: opts.authHeader } } : {}),
    });
  }

  /** Submits `ref` for conversion; with `sync` waits for the result. Returns the task ids. */
  async createTask(ref: string, opts: { sync?: boolean } = {}): Promise<string[]> {
    const r = parseReference(ref);
    const [namespace = r.repository, ...rest] = r.repository.split('/');
    const payload: HarborWebhookPayload = {
      type: 'PUSH_ARTIFACT',
      operator: 'ferry-task',
      event_data: {
        resources: [{ resource_url: formatReference(r), tag: r.tag ?? r.digest ?? '', ...(r.digest ? { digest: r.digest } : {}) }],
        repository: { name: rest.join('/') || r.repository, namespace, repo_full_name: r.repository },
      },
    };
    const res = await this.#http.raw('POST', `${CONVERSIONS_PATH}?sync=${opts.sync ? 'true' : 'false'}`, payload);
    if (res.status !== 200) throw this.failure(res);
    return String(res.headers[TASK_IDS_HEADER] ?? '')
      .split(',')
      .filter(Boolean);
  }

  /** The tasks of the source hosts whose webhook.auth_header is this client's `authHeader`, newest first. */
  async listTasks(): Promise<TaskView[]> {
    const res = await this.#http.raw('GET', CONVERSIONS_PATH);
    if (res.status !== 200) throw this.failure(res);
    let json: unknown;
    try {
      json = JSON.parse(res.body.toString('utf8'));
    } catch {
      /* below */
    }
    if (!Array.isArray(json)) {
      throw new FerryError('INTERNAL', `accel: task list is not a JSON array: ${res.body.toString('utf8').slice(0, 200)}`);
    }
    return json as TaskView[];
  }

  /** Queues a FAILED task again (Ferry extension; the header of the task's source host); returns the task. */
  async retryTask(id: string): Promise<TaskView> {
    const res = await this.#http.raw('POST', retryPath(id));
    if (res.status !== 200) throw this.failure(res);
    return JSON.parse(res.body.toString('utf8')) as TaskView;
  }

  /** `accel: <status> <ERR_…> <message>`, its category from acceld's code. */
  private failure(res: RawAnswer): FerryError {
    let wire = '';
    try {
      wire = String((JSON.parse(res.body.toString('utf8')) as { code?: unknown }).code ?? '');
    } catch {
      /* not JSON */
    }
    const e = decodeError(res.status, res.body, { category: accelErrorCategory });
    return new FerryError(e.code, `accel: ${res.status} ${wire} ${e.message}`.replace(/ +/g, ' ').trim());
  }

  async health(): Promise<boolean> {
    const res = await this.#http.raw('GET', HEALTH_PATH);
    return res.status === 200;
  }
}
