/**
 * @module cli/accel
 * `ferry accel --config config.yaml [--listen host:port] [--work-dir DIR]`: the acceleration service
 * (acceld), reading acceld's configuration file as it is.
 */
import { Command } from 'commander';
import { createLogger } from '../observe/index.js';
import { startAccel, type StartAccelOptions } from '../accel/index.js';
import { untilSignal, parseArgs } from './lifecycle.js';

export async function run(argv: string[]): Promise<number> {
  const cmd = new Command('ferry accel')
    .description('webhook-driven conversion service reading acceld config.yaml')
    .requiredOption('--config <file>', "acceld's config.yaml (v0.1.1 or current layout)")
    .option('--listen <host:port>', 'override server.host/server.port')
    .option('--work-dir <dir>', 'override provider.work_dir (task database, layer cache, scratch)')
    .exitOverride();
  const parsed = parseArgs(cmd, argv);
  if (parsed !== undefined) return parsed;
  const o = cmd.opts<{ config: string; listen?: string; workDir?: string }>();
  const log = createLogger({ name: 'accel' });
  let handle: Awaited<ReturnType<typeof startAccel>>;
  try {
    const opts: StartAccelOptions = { configPath: o.config, log };
    if (o.listen) opts.listen = o.listen;
    if (o.workDir) opts.workDir = o.workDir;
    handle = await startAccel(opts);
  } catch (err) {
    process.stderr.write(`ferry accel: ${(err as Error).message}\n`);
    return 2;
  }
  process.stdout.write(`accel listening on ${handle.url}\n`);
  await untilSignal(() => handle.close(), log);
  return 0;
}
