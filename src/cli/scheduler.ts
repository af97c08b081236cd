/**
 * @module cli/scheduler
 * `ferry scheduler --listen ADDR [--config FILE]`: the P2P scheduler with the preheat job API.
 */
import { Command } from 'commander';
import { loadSchedulerConfig } from '../config/scheduler.js';
import { createLogger } from '../observe/index.js';
import { startScheduler } from '../p2p/index.js';
import { untilSignal, parseArgs } from './lifecycle.js';
import { CLUSTER_TOKEN_FILE_HELP, clusterOverride } from './cluster.js';

export async function run(argv: string[]): Promise<number> {
  const cmd = new Command('ferry scheduler')
    .description('P2P scheduler: parent selection, seed triggering, preheat jobs (/oapi/v1/jobs)')
    .option(
      '--listen <addr>',
      'listen address host:port (default from config, 127.0.0.1:8002; a non-loopback address needs a cluster secret)',
    )
    .option('--cluster-token-file <file>', CLUSTER_TOKEN_FILE_HELP)
    .option('--config <file>', 'YAML config file (keys: src/config/scheduler.ts; see the README P2P section)')
    .option('--token <token...>', 'bearer token(s) accepted by the preheat job API')
    .exitOverride();
  const parsed = parseArgs(cmd, argv);
  if (parsed !== undefined) return parsed;
  const o = cmd.opts<{ listen?: string; config?: string; token?: string[]; clusterTokenFile?: string }>();
  const log = createLogger({ name: 'scheduler' });
  try {
    const config = loadSchedulerConfig(o.config);
    if (o.token?.length) config.preheat.tokens = [...config.preheat.tokens, ...o.token];
    const cluster = clusterOverride(o.clusterTokenFile);
    if (cluster) config.cluster = cluster;
    const s = await startScheduler({ config, log, ...(o.listen ? { listen: o.listen } : {}) });
    process.stdout.write(`scheduler listening on ${s.url}\n`);
    await untilSignal(() => s.close(), log);
    return 0;
  } catch (err) {
    process.stderr.write(`ferry scheduler: ${(err as Error).message}\n`);
    return 1;
  }
}
