/**
 * @module config/scheduler
 * `ferry scheduler` configuration (YAML/JSON file, every key optional, unknown keys rejected).
 * Defaults are Dragonfly's scheduler defaults (candidateParentLimit 3, filterParentLimit 15,
 * backToSourceCount 200, retryBackToSourceLimit 4, retryLimit 5, retryInterval 500 ms).
 */
import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { FerryError } from '../core/index.js';
import { parseConfig, durationSchema as duration } from './parse.js';
import { clusterConfigSchema } from './cluster.js';

export const schedulerConfigSchema = z
  .object({
    /** A non-loopback address requires a cluster secret (`cluster`). */
    listen: z.string().default('127.0.0.1:8002'),
    /** The cluster secret shared with the peers: the peer RPC (/api/v1/*) answers only signed requests. */
    cluster: clusterConfigSchema,
    scheduling: z
      .object({
        candidateParentLimit: z.number().int().min(1).max(20).default(3),
        filterParentLimit: z.number().int().min(1).max(1000).default(15),
        backToSourceCount: z.number().int().min(0).default(200),
        retryBackToSourceLimit: z.number().int().min(0).default(4),
        retryLimit: z.number().int().min(1).default(5),
        retryInterval: duration.default(500),
        /**
         * Trigger the seed peer for a cold range task too (a lazy loader's read). Off: the first peer
         * of a range task fetches it from the origin itself — one registration and one range GET
         * instead of a seed trigger, the seed's own origin requests and a parent hop, for a task of a
         * few KiB (docs/results/bench-15.md measured that); later peers get it from any peer whose
         * task holds all of their range — the same range, a larger one, or the whole object.
         */
        seedRangeTasks: z.boolean().default(false),
      })
      .strict()
      .prefault({}),
    gc: z
      .object({
        hostTTL: duration.default(3_600_000),
        peerTTL: duration.default(86_400_000),
        interval: duration.default(60_000),
      })
      .strict()
      .prefault({}),
    preheat: z
      .object({
        /** Bearer tokens accepted on /oapi/v1/jobs; empty = no authentication (logged at start). */
        tokens: z.array(z.string().min(1)).default([]),
        /** Task ids of preheated blobs use the blob digest (must match the peers' `download.taskIdBasedBlobDigest`, on by default). */
        enableTaskIdBasedBlobDigest: z.boolean().default(true),
        /** Extra CA (PEM file) trusted when fetching manifests over https. */
        caCert: z.string().optional(),
        insecureSkipVerify: z.boolean().default(false),
        timeout: duration.default(3_600_000),
      })
      .strict()
      .prefault({}),
  })
  .strict();

export type SchedulerConfig = z.infer<typeof schedulerConfigSchema>;
export type SchedulerConfigInput = z.input<typeof schedulerConfigSchema>;

export function parseSchedulerConfig(input: unknown): SchedulerConfig {
  return parseConfig(schedulerConfigSchema, input, 'scheduler');
}

export function loadSchedulerConfig(file?: string): SchedulerConfig {
  if (!file) return parseSchedulerConfig({});
  let raw: unknown;
  try {
    raw = parseYaml(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new FerryError('INVALID_ARGUMENT', `scheduler config ${file}: ${(err as Error).message}`, { cause: err });
  }
  return parseSchedulerConfig(raw);
}
