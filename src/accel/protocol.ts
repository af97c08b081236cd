/**
 * @module accel/protocol
 * The accel API's wire contract (acceld's), shared by its server (server.ts), its client
 * (client.ts, accelctl's role) and the registry, whose webhooks call it: Harbor's event types and
 * its "Default" webhook payload (what the registry sends, what `POST /api/v1/conversions` accepts),
 * the task list, and acceld's `{code: "ERR_…", message}` error vocabulary mapped onto Ferry's
 * categories (the status comes from httpx's one table).
 */
import { z } from 'zod';
import type { ErrorCode } from '../core/index.js';

export const CONVERSIONS_PATH = '/api/v1/conversions';
export const HEALTH_PATH = '/api/v1/health';
/** Ferry extension: `POST` queues a FAILED task again (attempts from zero); answers the task. */
export const RETRY_PATH = '/api/v1/conversions/:id/retry';
export const retryPath = (id: string): string => `/api/v1/conversions/${encodeURIComponent(id)}/retry`;

/** Harbor's event types (notification.go); only PUSH_ARTIFACT triggers a conversion. */
export const HARBOR_EVENT_TYPES = [
  'PUSH_ARTIFACT',
  'PULL_ARTIFACT',
  'DELETE_ARTIFACT',
  'QUOTA_EXCEED',
  'QUOTA_WARNING',
  'SCANNING_FAILED',
  'SCANNING_STOPPED',
  'SCANNING_COMPLETED',
  'REPLICATION',
  'TAG_RETENTION',
] as const;

export type HarborEventType = (typeof HARBOR_EVENT_TYPES)[number];

export function isHarborEventType(t: string): t is HarborEventType {
  return (HARBOR_EVENT_TYPES as readonly string[]).includes(t);
}

/** Harbor's "Default" payload of an artifact event, as Harbor (and Ferry's registry) sends it. */
export interface HarborWebhookPayload {
  type: string;
  /**
   * Unix seconds of the event. With it, the event names its task: the same payload delivered again
   * (another registry replica, a retried delivery) finds the task the first made. `ferry task create`
   * leaves it out: a request is not an event, and two requests are two tasks unless one is still queued.
   */
  occur_at?: number;
  operator: string;
  event_data: {
    resources: Array<{ digest?: string; tag?: string; resource_url: string }>;
    repository: { name: string; namespace: string; repo_full_name: string; repo_type?: 'public' | 'private'; date_created?: number };
  };
}

/** What `POST /api/v1/conversions` needs of a payload (Harbor's other fields are accepted and ignored). */
export const harborWebhookPayloadSchema = z.object({
  type: z.string(),
  occur_at: z.number().optional(),
  operator: z.string().optional(),
  event_data: z.object({
    resources: z
      .array(
        z.object({
          resource_url: z.string().min(1),
          digest: z.string().optional(),
          tag: z.string().optional(),
        }),
      )
      .min(1),
  }),
});

export type TaskStatus = 'PROCESSING' | 'COMPLETED' | 'FAILED';

/** A task as `GET /api/v1/conversions` shows it: acceld's fields first, Ferry's after. */
export interface TaskView {
  id: string;
  created: string;
  /** RFC3339, or Go's zero time while the task is not finished (as acceld). */
  finished: string;
  source: string;
  source_size: number;
  target_size: number;
  status: TaskStatus;
  reason: string;
  target: string;
  target_digest: string;
  source_digest: string;
  attempts: number;
  /** ms since epoch of the next attempt while PROCESSING */
  next_run: number;
  running: boolean;
  /** the worker holding (or that last held) the task's lease: `host:pid:id`, empty before the first claim */
  worker: string;
}

/** Response header with the ids of the tasks a `POST /api/v1/conversions` created or found. */
export const TASK_IDS_HEADER = 'x-ferry-task-ids';

/** acceld's error codes by category (what the server puts in `code`). */
export function accelErrorCode(code: ErrorCode): string {
  switch (code) {
    case 'INVALID_ARGUMENT':
    case 'RESOURCE_EXHAUSTED':
      return 'ERR_ILLEGAL_PARAMETER';
    case 'UNAUTHENTICATED':
      return 'ERR_UNAUTHORIZED';
    case 'NOT_FOUND':
    case 'NOT_IMPLEMENTED':
      return 'ERR_INVALID_ENDPOINT';
    default:
      return 'ERR_INTERNAL';
  }
}

/** The category of an acceld error code (what the client makes of `code`). */
export function accelErrorCategory(wire: string): ErrorCode | undefined {
  switch (wire) {
    case 'ERR_ILLEGAL_PARAMETER':
      return 'INVALID_ARGUMENT';
    case 'ERR_UNAUTHORIZED':
      return 'UNAUTHENTICATED';
    case 'ERR_INVALID_ENDPOINT':
      return 'NOT_FOUND';
    case 'ERR_UNHEALTHY':
      return 'UNAVAILABLE';
    case 'ERR_CONVERT_FAILED':
    case 'ERR_INTERNAL':
      return 'INTERNAL';
    default:
      return undefined;
  }
}
