/**
 * @module snapshotter/protocol
 * The wire contract of the snapshotter's pull API (api/snapshotter.openapi.yaml), shared by its
 * server (pull-api.ts) and its client (pull-api-client.ts): the pull request and its schema, the
 * NDJSON lines of the answer, the pull result. The client imports the types only (`import type`,
 * erased by the compiler), so a `ferry pull` that relays its request loads no schema library.
 */
import { z } from 'zod';
import { FerryError } from '../core/index.js';
import { issuesText } from '../config/parse.js';
import type { ErrorEnvelope } from '../httpx/index.js';

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

export interface PulledLayer {
  digest: string;
  chainId: string;
  how: 'remote' | 'applied' | 'present';
  bytes: number;
}

export interface PullResult {
  name: string;
  manifestDigest: string;
  configDigest: string;
  layers: PulledLayer[];
  /** Bytes read from the registry (manifests, config, layer blobs). */
  bytesFetched: number;
  ms: number;
}

/** One line of the answer to `POST /api/v1/pull`: progress lines, then a result or an error. */
export type PullLine = { progress: string } | { result: PullResult } | { error: ErrorEnvelope };

const nonEmpty = z.string().min(1);
export const pullRequestSchema = z.strictObject({
  ref: nonEmpty,
  address: nonEmpty.refine((a) => a.startsWith('/'), 'must be an absolute unix socket path'),
  namespace: nonEmpty.optional(),
  snapshotter: nonEmpty.optional(),
  plainHttp: z.boolean().optional(),
  user: nonEmpty.optional(),
  platform: nonEmpty.optional(),
});

/** Checks a decoded request body; INVALID_ARGUMENT names every problem. */
export function parsePullRequest(v: unknown): PullRequestBody {
  const r = pullRequestSchema.safeParse(v);
  if (!r.success) throw new FerryError('INVALID_ARGUMENT', `invalid pull request: ${issuesText(r.error)}`);
  const out: PullRequestBody = { ref: r.data.ref, address: r.data.address };
  for (const k of ['namespace', 'snapshotter', 'user', 'platform', 'plainHttp'] as const) {
    if (r.data[k] !== undefined) (out as unknown as Record<string, unknown>)[k] = r.data[k];
  }
  return out;
}
