/**
 * @module bench/registry
 * The benchmark's registries, side by side in one network namespace behind the one shaped link:
 * `ferry registry` on :5000 and CNCF distribution (Debian's docker-registry, what Harbor runs on)
 * on :5001. Each run is served by one of them, and each is measured by its own counters:
 * - ferry: `ferry_registry_blob_bytes_served_total` (blob body bytes) and
 *   `ferry_registry_requests_total` (every request of the v2 API and the token service; the
 *   `/metrics` scrapes themselves, route `other`, are left out);
 * - distribution: its Prometheus debug server (127.0.0.1:5002 inside the registry's namespace, not
 *   reachable from the nodes): `registry_http_requests_total` (every request) and
 *   `registry_http_response_size_bytes_sum{handler="blob"}` (blob response bytes).
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import type { Logger } from '../observe/index.js';
import { execInNetns, startDistributionRegistry, waitFor } from './env/index.js';
import { probeSubcommand, spawnFerry, type ManagedProcess } from './procs.js';
import type { RegistryKind } from './types.js';

/** What a registry's own counters say it served so far (null: it has no such counter). */
export interface RegistryCounters {
  blobBytes: number | null;
  requests: number | null;
}

export interface BenchRegistry {
  kind: RegistryKind;
  host: string;
  creds?: { username: string; password: string };
  counters(): Promise<RegistryCounters>;
  proc?: ManagedProcess;
  close(): Promise<void>;
}

export interface MetricSample {
  labels: Record<string, string>;
  value: number;
}

/** The samples of one metric in Prometheus text format (exact name; labels parsed). */
export function metricSamples(text: string, name: string): MetricSample[] {
  const out: MetricSample[] = [];
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line.startsWith(name)) continue;
    const rest = line.slice(name.length);
    if (rest[0] !== ' ' && rest[0] !== '{') continue;
    const labels: Record<string, string> = {};
    let valuePart = rest;
    if (rest[0] === '{') {
      const end = rest.indexOf('}');
      if (end < 0) continue;
      for (const m of rest.slice(1, end).matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[m[1]!] = m[2]!;
      valuePart = rest.slice(end + 1);
    }
    const v = Number(valuePart.trim().split(/\s+/)[0]);
    if (Number.isFinite(v)) out.push({ labels, value: v });
  }
  return out;
}

/** Sums the samples of one counter in Prometheus text format (null when it has none). */
export function sumMetric(text: string, name: string, keep: (labels: Record<string, string>) => boolean = () => true): number | null {
  const s = metricSamples(text, name);
  if (s.length === 0) return null;
  return s.filter((x) => keep(x.labels)).reduce((a, x) => a + x.value, 0);
}

/**
 * Bytes and requests a registry's /metrics text reports (see the module comment for which counters).
 * A labelled series appears only after its first observation: when the registry answered with its
 * metrics but a series is not there yet, it counts 0; a text without the registry's metrics is null.
 */
export function parseRegistryCounters(kind: RegistryKind, text: string): RegistryCounters {
  if (kind === 'ferry') {
    const blobBytes = sumMetric(text, 'ferry_registry_blob_bytes_served_total');
    const requests = sumMetric(text, 'ferry_registry_requests_total', (l) => l.route !== 'other' && l.route !== 'api');
    return { blobBytes, requests: blobBytes === null ? null : (requests ?? 0) };
  }
  const ours = /^registry_http_/m.test(text);
  return {
    blobBytes: ours ? (sumMetric(text, 'registry_http_response_size_bytes_sum', (l) => l.handler === 'blob') ?? 0) : null,
    requests: ours ? (sumMetric(text, 'registry_http_requests_total') ?? 0) : null,
  };
}

/** Counter difference over a run (null when either side is missing). */
export function counterDelta(before: number | null, after: number | null): number | null {
  return before !== null && after !== null ? after - before : null;
}

const PORTS: Record<RegistryKind, number> = { ferry: 5000, distribution: 5001 };
const DISTRIBUTION_DEBUG = '127.0.0.1:5002';

async function metricsText(netns: string, url: string): Promise<string | undefined> {
  const r = await execInNetns(netns, 'curl', ['-s', '--max-time', '10', url], { timeoutMs: 15_000 });
  return r.code === 0 ? r.stdout : undefined;
}

async function startFerryRegistry(o: { netns: string; host: string; dir: string }): Promise<BenchRegistry> {
  const password = randomBytes(12).toString('hex');
  const proc = spawnFerry('registry', ['registry', '--listen', o.host, '--data', join(o.dir, 'data'), '--admin-password', password], {
    netns: o.netns,
    logPath: join(o.dir, 'registry.log'),
  });
  try {
    await waitFor(
      async () => {
        if (proc.exited()) throw new Error(`ferry registry exited: ${await proc.logTail()}`);
        const r = await execInNetns(o.netns, 'curl', ['-s', '-o', '/dev/null', '-w', '%{http_code}', `http://${o.host}/v2/`], {
          timeoutMs: 5_000,
        });
        return r.stdout === '200' || r.stdout === '401';
      },
      'ferry registry',
      30_000,
      200,
    );
  } catch (err) {
    await proc.stop();
    throw err;
  }
  const counters = async (): Promise<RegistryCounters> => {
    const text = await metricsText(o.netns, `http://${o.host}/metrics`);
    return text === undefined ? { blobBytes: null, requests: null } : parseRegistryCounters('ferry', text);
  };
  return { kind: 'ferry', host: o.host, creds: { username: 'admin', password }, counters, proc, close: () => proc.stop() };
}

async function startDistribution(o: { netns: string; host: string; dir: string }): Promise<BenchRegistry> {
  const d = await startDistributionRegistry({ dir: o.dir, listen: o.host, netns: o.netns, debugAddr: DISTRIBUTION_DEBUG });
  const counters = async (): Promise<RegistryCounters> => {
    const text = await metricsText(o.netns, `http://${DISTRIBUTION_DEBUG}/metrics`);
    return text === undefined ? { blobBytes: null, requests: null } : parseRegistryCounters('distribution', text);
  };
  return { kind: 'distribution', host: o.host, counters, close: () => d.close() };
}

/**
 * Starts the asked registries in the registry namespace. A `ferry registry` missing from this build
 * (or failing to start) is left out with a note; when it was the only one asked for, Debian's
 * docker-registry serves instead.
 */
export async function startBenchRegistries(o: {
  netns: string;
  ip: string;
  dir: string;
  kinds: RegistryKind[];
  log: Logger;
}): Promise<{ registries: BenchRegistry[]; notes: string[] }> {
  const notes: string[] = [];
  const out: BenchRegistry[] = [];
  try {
    for (const kind of o.kinds) {
      const dir = join(o.dir, kind);
      await mkdir(dir, { recursive: true });
      const host = `${o.ip}:${PORTS[kind]}`;
      if (kind === 'ferry') {
        const probe = await probeSubcommand('registry');
        if (!probe.ok) {
          notes.push(`${probe.reason ?? 'ferry registry unavailable'}: runs behind ferry registry not done`);
          continue;
        }
        try {
          out.push(await startFerryRegistry({ netns: o.netns, host, dir }));
        } catch (err) {
          notes.push(`ferry registry did not start (${(err as Error).message.split('\n')[0]}): runs behind it not done`);
          o.log.warn({ err }, 'ferry registry failed to start');
        }
      } else {
        out.push(await startDistribution({ netns: o.netns, host, dir }));
      }
    }
    if (out.length === 0) {
      const dir = join(o.dir, 'distribution');
      await mkdir(dir, { recursive: true });
      out.push(await startDistribution({ netns: o.netns, host: `${o.ip}:${PORTS.distribution}`, dir }));
      notes.push('used Debian docker-registry instead');
    }
  } catch (err) {
    for (const r of out) await r.close().catch(() => undefined);
    throw err;
  }
  return { registries: out, notes };
}
