/**
 * @module bench/registry
 * The benchmark's registry, inside its own network namespace behind the shaped link: `ferry
 * registry` when this build has it (its counter ferry_registry_blob_bytes_served_total gives the
 * bytes served), otherwise Debian's docker-registry (then only interface counters count bytes).
 */
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import type { Logger } from '../observe/index.js';
import { execInNetns, startDistributionRegistry, waitFor } from './env/index.js';
import { probeSubcommand, spawnFerry, type ManagedProcess } from './procs.js';

export interface BenchRegistry {
  kind: 'ferry' | 'distribution';
  host: string;
  creds?: { username: string; password: string };
  /** Blob body bytes served so far (registry's own counter), null when the registry has none. */
  blobBytesServed(): Promise<number | null>;
  proc?: ManagedProcess;
  close(): Promise<void>;
}

/** Sums the samples of one counter in Prometheus text format. */
export function sumMetric(text: string, name: string): number | null {
  let found = false;
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const rest = line.slice(name.length);
    if (rest[0] !== ' ' && rest[0] !== '{') continue;
    const v = Number(line.trim().split(/\s+/).pop());
    if (Number.isFinite(v)) {
      sum += v;
      found = true;
    }
  }
  return found ? sum : null;
}

export async function startBenchRegistry(o: {
  netns: string;
  ip: string;
  dir: string;
  prefer?: 'ferry' | 'distribution';
  log: Logger;
}): Promise<{ registry: BenchRegistry; note?: string }> {
  await mkdir(o.dir, { recursive: true });
  const host = `${o.ip}:5000`;
  let note: string | undefined;
  if ((o.prefer ?? 'ferry') === 'ferry') {
    const probe = await probeSubcommand('registry');
    if (probe.ok) {
      const password = randomBytes(12).toString('hex');
      const proc = spawnFerry('registry', ['registry', '--listen', host, '--data', join(o.dir, 'data'), '--admin-password', password], {
        netns: o.netns,
        logPath: join(o.dir, 'registry.log'),
      });
      try {
        await waitFor(
          async () => {
            if (proc.exited()) throw new Error(`ferry registry exited: ${await proc.logTail()}`);
            const r = await execInNetns(o.netns, 'curl', ['-s', '-o', '/dev/null', '-w', '%{http_code}', `http://${host}/v2/`], {
              timeoutMs: 5_000,
            });
            return r.stdout === '200' || r.stdout === '401';
          },
          'ferry registry',
          30_000,
          200,
        );
        const blobBytesServed = async (): Promise<number | null> => {
          const r = await execInNetns(o.netns, 'curl', ['-s', `http://${host}/metrics`], { timeoutMs: 10_000 });
          return r.code === 0 ? sumMetric(r.stdout, 'ferry_registry_blob_bytes_served_total') : null;
        };
        return {
          registry: { kind: 'ferry', host, creds: { username: 'admin', password }, blobBytesServed, proc, close: () => proc.stop() },
        };
      } catch (err) {
        await proc.stop();
        note = `ferry registry did not start (${(err as Error).message.split('\n')[0]}); used docker-registry`;
        o.log.warn({ err }, 'ferry registry failed, falling back to docker-registry');
      }
    } else {
      note = `${probe.reason ?? 'ferry registry unavailable'}; used Debian docker-registry (bytes from interface counters only)`;
    }
  }
  const d = await startDistributionRegistry({ dir: o.dir, listen: host, netns: o.netns });
  const reg: BenchRegistry = { kind: 'distribution', host, blobBytesServed: async () => null, close: () => d.close() };
  return note ? { registry: reg, note } : { registry: reg };
}
