/**
 * @module cli/daemon
 * `ferry daemon --apisock SOCK [--config FILE] [--data-dir DIR] [--pull-secret PATH…]
 * [--docker-config FILE | --no-docker-config]`: the long-lived lazy-loading
 * daemon with its HTTP API on a unix socket. On start it cleans up what a killed predecessor left
 * on the same data dir and mounts its images again; SIGINT/SIGTERM unmount everything. Registry
 * mounts use the credentials of their mount request first, then the daemon's credential chain.
 */
import { parseDuration, parseSize } from '../core/index.js';
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import { Command } from 'commander';
import { createLogger } from '../observe/index.js';
import { parseDaemonConfig } from '../config/daemon.js';
import { Daemon, startApi } from '../daemon/index.js';
import { addCredentialOptions, chainFromFlags, type CredentialFlags } from './credentials.js';
import { assertSocketFree, serveMetrics, type MetricsListener } from '../httpx/index.js';
import { untilSignal } from './lifecycle.js';
import { readTokenFile } from './token-file.js';

export async function run(argv: string[]): Promise<number> {
  const cmd = new Command('ferry daemon')
    .description('long-lived lazy-loading filesystem daemon with an HTTP API on a unix socket (nydusd)')
    .requiredOption('--apisock <path>', 'unix socket of the HTTP API')
    .option('--config <file>', 'nydusd-style JSON configuration')
    .option('--cache-quota <size>', "quota of the node's chunk cache, e.g. 20g (overrides ferry.cache_quota; default none)")
    .option(
      '--fill-deadline <duration>',
      'fetch each mounted image wholly within this long, e.g. 10m (overrides ferry.fill_deadline; default off)',
    )
    .option('--fill-rate <size>', "the background fill's idle rate per second, e.g. 4m (overrides ferry.fill_rate; default 4 MiB/s)")
    .option('--data-dir <dir>', 'state directory (mount records, cache, blob views)', '/var/lib/ferry/daemon')
    .option('--no-restore', 'do not mount again the images a killed predecessor had mounted (only clean up)')
    .option('--metrics-address <addr>', 'also serve /metrics on host:port (loopback unless --metrics-token-file) or a unix socket')
    .option('--metrics-token-file <file>', 'bearer token scrapers must send (mode 0600); required for a non-loopback --metrics-address')
    .exitOverride();
  addCredentialOptions(cmd, { explicit: false });
  try {
    cmd.parse(argv, { from: 'user' });
  } catch (e) {
    return (e as { exitCode?: number }).exitCode ?? 2;
  }
  const o = cmd.opts<
    {
      apisock: string;
      config?: string;
      dataDir: string;
      restore: boolean;
      cacheQuota?: string;
      fillDeadline?: string;
      fillRate?: string;
      metricsAddress?: string;
      metricsTokenFile?: string;
    } & CredentialFlags
  >();
  const log = createLogger({ name: 'ferry-daemon' });
  let config: ReturnType<typeof parseDaemonConfig>;
  try {
    config = parseDaemonConfig(o.config ? JSON.parse(await readFile(o.config, 'utf8')) : {});
    if (o.cacheQuota !== undefined) config.ferry.cache_quota = parseSize(o.cacheQuota);
    if (o.fillDeadline !== undefined) config.ferry.fill_deadline = o.fillDeadline === 'off' ? 0 : parseDuration(o.fillDeadline);
    if (o.fillRate !== undefined) config.ferry.fill_rate = parseSize(o.fillRate);
  } catch (err) {
    process.stderr.write(`ferry daemon: ${(err as Error).message}\n`);
    return 2;
  }
  const apisock = resolve(o.apisock);
  try {
    // before restore(): a daemon still serving there owns the mounts restore() would clean up
    await assertSocketFree(apisock, '--apisock');
  } catch (err) {
    process.stderr.write(`ferry daemon: ${(err as Error).message}\n`);
    return 2;
  }
  const chain = chainFromFlags(o, { log });
  const daemon = new Daemon({ log, dataDir: resolve(o.dataDir), config, credentialSources: chain.sources });
  const r = await daemon.restore({ remount: o.restore });
  if (r.restored.length || r.failed.length) log.info(r, 'mounts of the previous daemon restored');
  const api = await startApi(daemon, apisock, log);
  log.info({ credentials: chain.describe() }, "registry credential chain (after each mount request's own)");
  let metrics: MetricsListener | undefined;
  if (o.metricsAddress) {
    try {
      const token = o.metricsTokenFile ? readTokenFile(o.metricsTokenFile, '--metrics-token-file') : undefined;
      metrics = await serveMetrics({ registry: daemon.metrics, address: o.metricsAddress, token, what: '--metrics-address' });
      log.info({ metrics: metrics.address }, 'metrics listening');
    } catch (err) {
      process.stderr.write(`ferry daemon: ${(err as Error).message}\n`);
      await api.close();
      await daemon.close();
      return 2;
    }
  }
  await untilSignal(async () => {
    await metrics?.close();
    await api.close();
    await daemon.close();
  }, log);
  return 0;
}
