/**
 * @module p2p/common/protocol
 * Wire shapes of the scheduler API and the peer upload API (JSON over HTTP/1.1 keep-alive; see
 * api/p2p/scheduler.openapi.yaml and api/p2p/peer.openapi.yaml). They mirror Dragonfly's
 * scheduler.v2 message set, with the bidirectional AnnouncePeer stream split into request/response
 * calls: register (answers a scheduling decision), events (piece/peer reports), reschedule. The
 * schemas check what the scheduler's handlers rely on (the types carry the rest); the error envelope
 * and statuses are httpx's.
 */
import { z } from 'zod';

export type HostType = 'normal' | 'super';

/** AnnounceHost. */
export interface HostInfo {
  id: string;
  ip: string;
  hostname: string;
  type: HostType;
  /** Base URL of the host's upload (piece) server, e.g. http://192.0.2.11:65002 */
  uploadUrl: string;
  idc?: string | undefined;
  /** `|`-separated, e.g. country|province|city|zone|cluster */
  location?: string | undefined;
  /** Max upload bandwidth in bits per second (0 = unknown). */
  maxTxBps?: number | undefined;
  /** Leech mode: never a parent. */
  disableShared?: boolean | undefined;
}

/** The inputs of the task id other than the URL (so a parent can recompute the id from a URL). */
export interface TaskIdOptions {
  tag?: string | undefined;
  application?: string | undefined;
  pieceLength?: number | undefined;
  filteredQueryParams?: string[] | undefined;
  blobDigest?: boolean | undefined;
  /**
   * Range task: the origin byte range `start-end` (inclusive, normalized) this task holds; its
   * content length is the range length. Part of the task id. Absent = the whole object.
   */
  range?: string | undefined;
}

export interface DownloadSpec extends TaskIdOptions {
  url: string;
  /** Origin request headers (Authorization etc.); forwarded to a triggered seed peer. */
  headers?: Record<string, string> | undefined;
  /** Length of the task's content: the origin object's, or for a range task the range's. */
  contentLength: number;
  /** The piece length actually used. */
  actualPieceLength: number;
  needBackToSource?: boolean | undefined;
  concurrentPieceCount?: number | undefined;
}

export interface RegisterRequest {
  peerId: string;
  hostId: string;
  taskId: string;
  download: DownloadSpec;
}

export interface ParentRef {
  peerId: string;
  hostId: string;
  ip: string;
  uploadUrl: string;
  isSeed: boolean;
  /**
   * The parent's own task when it is not the child's: a task holding all of the child's range (the
   * whole object or a larger range). The child asks the parent for its range task `from` this one.
   */
  taskId?: string | undefined;
  idc?: string | undefined;
  location?: string | undefined;
}

export type ScheduleResponse =
  | { kind: 'empty' }
  | { kind: 'normal'; parents: ParentRef[] }
  /**
   * `objectAlone` (range tasks): no other host has a peer of any task of this object — the peer
   * may send its next range tasks of the object to the origin at once and register them with
   * their last report (p2p/peer/speculate).
   */
  | { kind: 'needBackToSource'; description?: string; objectAlone?: boolean };

export interface PieceReport {
  number: number;
  length: number;
  digest: string;
  parentId?: string | undefined;
  costMs: number;
}

export type PeerEvent =
  | { kind: 'started' }
  | { kind: 'backToSourceStarted' }
  | { kind: 'pieceFinished'; piece: PieceReport }
  | { kind: 'pieceBackToSourceFinished'; piece: PieceReport }
  | { kind: 'pieceFailed'; pieceNumber?: number | undefined; parentId: string; temporary: boolean; description?: string }
  | { kind: 'pieceBackToSourceFailed'; pieceNumber?: number | undefined; status?: number | undefined }
  | { kind: 'finished' }
  | { kind: 'backToSourceFinished' }
  | { kind: 'failed'; description?: string }
  | { kind: 'backToSourceFailed'; description?: string };

export interface RescheduleRequest {
  /** Parents to block (the ones used in the previous round). */
  candidateParentIds: string[];
  description?: string;
}

/** Upload server: which pieces a peer holds for a task. */
export interface PieceListResponse {
  taskId: string;
  contentLength: number;
  pieceLength: number;
  pieceCount: number;
  pieces: { number: number; digest: string }[];
  done: boolean;
  failed: boolean;
}

/** Upload server: command a (seed) peer to download a task (scheduler seed trigger, preheat). */
export interface DownloadTaskRequest extends TaskIdOptions {
  url: string;
  headers?: Record<string, string> | undefined;
  /** Answer only when the download finished (preheat); otherwise 202 at once. */
  wait?: boolean | undefined;
}

export interface DownloadTaskResponse {
  taskId: string;
  contentLength?: number | undefined;
  state: 'started' | 'succeeded' | 'failed';
  description?: string | undefined;
}

/** Header names (Dragonfly's, so existing clients and hosts.toml snippets carry over). */
export const H = {
  registry: 'x-dragonfly-registry',
  useP2P: 'x-dragonfly-use-p2p',
  prefetch: 'x-dragonfly-prefetch',
  tag: 'x-dragonfly-tag',
  application: 'x-dragonfly-application',
  pieceLength: 'x-dragonfly-piece-length',
  filteredQueryParams: 'x-dragonfly-filtered-query-params',
  blobDigest: 'x-dragonfly-enable-task-id-based-blob-digest',
  taskId: 'x-dragonfly-task-id',
  errorType: 'x-dragonfly-error-type',
  finished: 'x-dragonfly-task-download-finished',
  pieceDigest: 'x-ferry-piece-digest',
  /** The requester's registry `Authorization`, forwarded on piece requests for the parent's access check. */
  originAuthorization: 'x-ferry-origin-authorization',
} as const;

// ---- schemas of the scheduler RPC bodies: the shapes its handlers rely on ----

const isHttpUrl = (s: string): boolean => {
  try {
    return /^https?:$/.test(new URL(s).protocol);
  } catch {
    return false;
  }
};
const httpUrl = z.string().refine(isHttpUrl, 'an http(s) URL');

/** `PUT /api/v1/hosts/{id}` (HostInfo). */
export const hostInfoSchema = z
  .object({
    id: z.string().min(1),
    ip: z.string().min(1),
    hostname: z.string(),
    type: z.enum(['normal', 'super']),
    uploadUrl: httpUrl,
  })
  .passthrough();

/** `POST /api/v1/peers` (RegisterRequest). */
export const registerRequestSchema = z
  .object({
    peerId: z.string().min(1),
    hostId: z.string().min(1),
    taskId: z.string().regex(/^[a-f0-9]{64}$/),
    download: z
      .object({
        url: httpUrl,
        contentLength: z.number().int().min(0),
        actualPieceLength: z.number().int().min(0),
        headers: z.record(z.string(), z.string()).optional(),
      })
      .passthrough(),
  })
  .passthrough();

const pieceSchema = z
  .object({
    number: z.number().int().min(0),
    length: z.number().min(0),
    digest: z.string(),
    costMs: z.number(),
  })
  .passthrough();

/** `POST /api/v1/peers/{id}/events` (`{events: PeerEvent[]}`). */
export const peerEventsSchema = z.object({
  events: z
    .array(
      z
        .object({ kind: z.string(), piece: pieceSchema.optional(), parentId: z.string().optional() })
        .passthrough()
        .refine(
          (e) => !['pieceFinished', 'pieceBackToSourceFinished'].includes(e.kind) || e.piece !== undefined,
          'piece events need `piece`',
        )
        .refine((e) => e.kind !== 'pieceFailed' || e.parentId !== undefined, 'pieceFailed needs `parentId`'),
    )
    .max(100_000),
});

/**
 * `POST /api/v1/events`: the reports of several peers of one host in one request (each peer's
 * events in order, as `POST /api/v1/peers/{id}/events` takes them). Answered with the ids the
 * scheduler does not know (their events are dropped, as the single-peer call would answer 404).
 */
export const peerReportsSchema = z.object({
  reports: z
    .array(z.object({ peerId: z.string().min(1), register: registerRequestSchema.optional() }).extend(peerEventsSchema.shape))
    .max(10_000),
});

/**
 * `register`: a peer that went to the origin without registering first (a range task of an object
 * its host reads alone, p2p/peer/speculate) registers together with its events — it is added as a
 * back-to-source peer, then its events apply.
 */
export interface PeerReports {
  reports: Array<{ peerId: string; events: PeerEvent[]; register?: RegisterRequest | undefined }>;
}

export interface PeerReportsResponse {
  unknown: string[];
  /** Of the peers registered with their report: those whose host is (still) the only one reading the object. */
  alone?: string[];
}

/** `POST /api/v1/peers/{id}/reschedule` (RescheduleRequest). */
export const rescheduleRequestSchema = z.object({ candidateParentIds: z.array(z.string()).optional() }).passthrough();

/**
 * `GET /oapi/v1/overview` (Ferry extension, behind the preheat job API's tokens): what the scheduler
 * knows now — hosts with their peers, tasks, and the bytes peers reported downloading from other
 * peers and from the source since it started. Read by the web console.
 */
export const OVERVIEW_PATH = '/oapi/v1/overview';

export interface SchedulerOverview {
  hosts: Array<{ id: string; hostname: string; ip: string; type: HostType; peers: number }>;
  tasks: Array<{
    id: string;
    url: string;
    state: string;
    contentLength: number;
    peers: number;
    /** Peers that finished the task. */
    succeededPeers: number;
    backToSourcePeers: number;
  }>;
  traffic: { fromPeers: number; fromSource: number };
}
