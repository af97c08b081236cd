/**
 * @module config/peer
 * `ferry peer` configuration (YAML/JSON, unknown keys rejected, every key optional). Ports follow
 * the legacy Dragonfly dfdaemon: proxy 65001, upload 65002. Sizes accept "4MiB"-style strings,
 * rates are bytes per second ("0" = unlimited).
 */
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { FerryError } from '../core/index.js';
import { parseConfig, durationSchema as duration, sizeSchema as size } from './parse.js';
import { clusterConfigSchema } from './cluster.js';

export const proxyRuleSchema = z
  .object({
    /** Matched against the URL without its query; first match wins. */
    regex: z.string(),
    /** Fetch upstream over https even if the request said http. */
    useTLS: z.boolean().default(false),
    /** Replace the authority (host:port) of the upstream URL. */
    redirect: z.string().default(''),
    /** Never P2P (pass through) for URLs matching this rule. */
    direct: z.boolean().default(false),
  })
  .strict();

export const peerConfigSchema = z
  .object({
    /**
     * The cluster secret shared with the scheduler and the other peers. Required when the upload
     * server listens on a non-loopback address: the upload API then answers only signed requests.
     */
    cluster: clusterConfigSchema,
    scheduler: z
      .object({
        /** Scheduler base URLs; tasks are sharded over them by consistent hash of the task id. */
        urls: z.array(z.string().url()).default([]),
        announceInterval: duration.default(30_000),
        /** Max time a register/reschedule call may take before the peer falls back to the source. */
        scheduleTimeout: duration.default(30_000),
      })
      .strict()
      .prefault({}),
    host: z
      .object({
        hostname: z.string().optional(),
        /** Advertised IP (default: the upload listen address, else the first non-internal IPv4). */
        ip: z.string().optional(),
        idc: z.string().optional(),
        location: z.string().optional(),
        /** Upload bandwidth announced to the scheduler in bits/s (default 10 Gbit or the upload rate limit). */
        maxTxBps: z.number().nonnegative().optional(),
        seed: z.boolean().default(false),
        /** Leech mode: never serve other peers. */
        disableShared: z.boolean().default(false),
      })
      .strict()
      .prefault({}),
    storage: z
      .object({
        dir: z.string().optional(),
        /** Disk quota for task data (0 = unlimited); LRU eviction of finished tasks above it. */
        quota: size.default(0),
        /** Keep finished tasks across restarts. */
        keep: z.boolean().default(true),
        taskTTL: duration.default(30 * 86_400_000),
        /** In-memory LRU of recent pieces (serving many children reads each piece from disk once). */
        memoryCache: size.default(64 * 1024 * 1024),
        /**
         * One-piece tasks up to this size (a lazy loader's range reads) are held in memory while they
         * download and written to disk in one write once complete, off the read's path; 0 = every task
         * writes its pieces to its data file as they arrive.
         */
        memoryBelow: size.default(4 * 1024 * 1024),
      })
      .strict()
      .prefault({}),
    proxy: z
      .object({
        listen: z.string().default('127.0.0.1:65001'),
        rules: z.array(proxyRuleSchema).default([{ regex: 'blobs/sha256.*', useTLS: false, redirect: '', direct: false }]),
        registryMirror: z
          .object({
            /** Default upstream for mirror-mode requests without X-Dragonfly-Registry or ?ns=. */
            url: z.string().url().optional(),
            /** Scheme used for an upstream taken from ?ns=<host>. */
            nsScheme: z.enum(['http', 'https']).default('https'),
          })
          .strict()
          .prefault({}),
        /**
         * CONNECT targets (regex on host:port) whose TLS is intercepted; they are allowed upstreams.
         * Anchor them (`^registry\.example:443$`).
         */
        hijackHosts: z.array(z.string()).default([]),
        /**
         * Further upstreams the proxy may reach besides registryMirror.url, hijackHosts and the rules'
         * redirect targets: `host`, `host:port`, `[v6]:port`, or a regex starting with `^` matched
         * against the whole `host:port`. Everything else (absolute URIs, CONNECT, X-Dragonfly-Registry,
         * ?ns=) is refused with 403.
         */
        allowedHosts: z.array(z.string().min(1)).default([]),
        caCert: z.string().optional(),
        caKey: z.string().optional(),
        /** Extra CA files trusted for upstream https (self-signed registries). */
        upstreamCaCerts: z.array(z.string()).default([]),
        insecureUpstream: z.boolean().default(false),
        /**
         * Access model: before serving a P2P task to a client, send the client's request upstream as a
         * HEAD with the client's own headers; serve only on 2xx (and relay 401/403/404 otherwise).
         */
        verifyUpstreamAccess: z.boolean().default(true),
        /** On a Range request, also download the whole task in the background (or per request: X-Dragonfly-Prefetch: true). */
        prefetch: z.boolean().default(false),
      })
      .strict()
      .prefault({}),
    upload: z
      .object({
        /** A non-loopback address requires a cluster secret (`cluster`). */
        listen: z.string().default('0.0.0.0:65002'),
        rateLimit: size.default(0),
      })
      .strict()
      .prefault({}),
    /** Private objects: see p2p/peer/access.ts and docs/p2p.md. */
    access: z
      .object({
        /**
         * Serve pieces (and accept download commands) of an object only to requesters whose own
         * registry credential the origin accepts for it; public objects are served to every member.
         */
        verify: z.boolean().default(true),
        /** How long a decision (per credential and repository) holds. */
        ttl: duration.default(30_000),
      })
      .strict()
      .prefault({}),
    download: z
      .object({
        rateLimit: size.default(0),
        backToSourceRateLimit: size.default(0),
        concurrentPieceCount: z.number().int().min(1).max(64).default(8),
        /**
         * Parallel origin range requests per task. Low by default so pieces complete one after another
         * (children can pipeline them) and the origin is not hammered (Dragonfly client PR #2030).
         */
        backToSourceConcurrency: z.number().int().min(1).max(64).default(2),
        pieceTimeout: duration.default(60_000),
        /**
         * Objects up to this size, and Range requests of up to this many bytes not held locally, go
         * straight to the origin (Dragonfly: 4 MiB); 0 = always P2P (a range then is its own range task).
         */
        directBelow: size.default(4 * 1024 * 1024),
        /**
         * Range tasks cover whole cells of this grid (bytes, aligned to multiples of it): nodes
         * whose lazy reads split a blob differently still share tasks, and overlapping reads reuse
         * one — at the price of fetching whole cells from the origin for scattered small reads.
         * 0 (default) = a range task is exactly the range asked for. Lazy loading through peers:
         * set the same value as the daemon's `ferry.p2p_range_grid` (1 MiB in the e2e test).
         */
        rangeGrid: size.default(0),
        maxScheduleCount: z.number().int().min(1).default(5),
        disableBackToSource: z.boolean().default(false),
        /**
         * Task id = blob digest for /v2/<name>/blobs/<digest> URLs (default): the same layer through two
         * repositories or registries is one task, the origin asked once. Access stays per repository:
         * every requester passes a HEAD of its own URL with its own credential (p2p/peer/access).
         */
        taskIdBasedBlobDigest: z.boolean().default(true),
        /**
         * A one-piece range task of an object the scheduler last said this host reads alone goes to
         * the origin at once and registers with its last report (p2p/peer/speculate): no
         * registration round trip before a lazy read's bytes. Another host reading the object ends it.
         * Off by default: the node that reads a blob first never asks another for a range while its
         * note holds, so at N = 2 the node ahead gets nothing from the other (`ferry bench --quick`'s
         * "bytes from another peer" check failed with it on).
         */
        sourceWhileRegistering: z.boolean().default(false),
      })
      .strict()
      .prefault({}),
  })
  .strict();

export type PeerConfig = z.infer<typeof peerConfigSchema>;
export type PeerConfigInput = z.input<typeof peerConfigSchema>;

export function parsePeerConfig(input: unknown): PeerConfig {
  return parseConfig(peerConfigSchema, input, 'peer');
}

export function loadPeerConfigFile(file?: string): PeerConfigInput {
  if (!file) return {};
  try {
    return (parseYaml(readFileSync(file, 'utf8')) ?? {}) as PeerConfigInput;
  } catch (err) {
    throw new FerryError('INVALID_ARGUMENT', `peer config ${file}: ${(err as Error).message}`, { cause: err });
  }
}
